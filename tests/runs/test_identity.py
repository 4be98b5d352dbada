"""A run's identity (bench/runs/identity.py): what changes the trained weights names the run's folder; what
changes only the evaluation names the evaluation key."""
from dataclasses import replace

import pytest

from bench.config.schema import RunConfig
from bench.runs.identity import eval_key, student_run_id, weights_key
from bench.methods import parse_method

CFG = RunConfig()
KD = parse_method("kd")


def run_id(cfg=CFG, spec=KD, teacher="teacher-abc"):
    return student_run_id(spec, cfg, teacher)


def test_the_same_run_has_the_same_id():
    assert run_id() == run_id(replace(CFG)) and run_id().startswith("kd-")
    assert eval_key(CFG) == eval_key(replace(CFG))


def test_student_run_id_changes_with_what_trains_the_weights():
    ids = {
        "base": run_id(),
        "seed": run_id(replace(CFG, seed=1)),
        "lr": run_id(replace(CFG, train=replace(CFG.train, lr=0.01))),
        "epochs": run_id(replace(CFG, train=replace(CFG.train, epochs=2))),
        "train eps": run_id(replace(CFG, attack=replace(CFG.attack, eps=0.1))),
        "arch": run_id(replace(CFG, student_arch="cnn-wide")),
        "data": run_id(replace(CFG, data=replace(CFG.data, name="digits@5-9"))),
        "teacher": run_id(teacher="teacher-def"),
        "options": run_id(spec=parse_method("kd:t=2")),
    }
    assert len(set(ids.values())) == len(ids), ids


@pytest.mark.parametrize("change", [
    lambda c: replace(c, eval=replace(c.eval, n=5)),
    lambda c: replace(c, eval=replace(c.eval, attacks=("clean",), eps=0.1)),
    lambda c: replace(c, probe=replace(c.probe, epochs=2)),
    lambda c: replace(c, structure=False),
    lambda c: replace(c, device="cpu"),
    lambda c: replace(c, preset="another-name"),
    lambda c: replace(c, data=replace(c.data, data_dir="/elsewhere", download=True, on_device="no")),
], ids=["eval.n", "eval.attacks", "probe", "structure", "device", "preset", "data location"])
def test_student_run_id_ignores_evaluation_and_where_it_runs(change):
    assert run_id(change(CFG)) == run_id()
    assert weights_key(change(CFG)) == weights_key(CFG)


def test_eval_key_changes_with_the_evaluation_settings():
    base = eval_key(CFG)
    assert eval_key(replace(CFG, eval=replace(CFG.eval, n=5))) != base
    assert eval_key(replace(CFG, eval=replace(CFG.eval, n=6))) != eval_key(replace(CFG, eval=replace(CFG.eval, n=5)))
    assert eval_key(replace(CFG, eval=replace(CFG.eval, aa_n=5))) != base
    assert eval_key(replace(CFG, probe=replace(CFG.probe, epochs=2))) != base
    assert eval_key(replace(CFG, seed=1)) != base  # the seed draws the attacks' random starts
    assert eval_key(replace(CFG, train=replace(CFG.train, lr=0.01))) == base  # training alone: the same evaluation


def test_eval_key_follows_the_evaluation_code(monkeypatch):
    import bench.runs.identity as identity

    base, folder = eval_key(CFG), run_id()
    monkeypatch.setattr(identity, "eval_digest", lambda: "edited000000")
    assert eval_key(CFG) != base
    assert run_id() == folder  # the run's folder does not move: its weights are evaluated again


def test_student_run_id_follows_the_training_code(monkeypatch):
    import bench.runs.identity as identity

    base = run_id()
    monkeypatch.setattr(identity, "train_digest", lambda cls: "edited000000")
    assert run_id() != base
