"""Damaged state on disk (issue 18): each kind of damage to a finished run's folder is either derived
again with one line saying so (a record from its weights, a teacher from its config, a manifest from
the plan, a checkpoint from the first epoch) or refused in one line (what cannot be derived)."""
import json
import shutil

import pytest

from bench.cli.main import main

TINY = ["--methods", "kd", "--seeds", "0", "--epochs", "1", "--teacher-epochs", "1", "--attacks", "clean,pgd20",
        "--n-images", "64", "--no-sanity", "--transfer", "none", "--no-structure", "--name", "d"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished tiny run-set (teacher trained here, one kd student), copied by each test."""
    root = tmp_path_factory.mktemp("finished")
    assert main(["run", *TINY, "--results", str(root / "r"), "--reports", str(root / "p")]) == 0
    return root


@pytest.fixture
def copy(finished, tmp_path):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    return tmp_path


def again(where, capsys, *extra):
    code = main(["run", *TINY, "--results", str(where / "r"), "--reports", str(where / "p"), *extra])
    out = capsys.readouterr()
    return code, out.err


def student(where):
    (run,) = [p for p in (where / "r" / "d").glob("kd-*") if p.is_dir()]
    return run


def truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


@pytest.mark.slow
def test_garbage_manifest_is_refused_by_status_and_rebuilt_by_the_run(copy, capsys):
    capsys.readouterr()
    (copy / "r" / "d" / "runset.json").write_text("{not json")
    assert main(["status", "d", "--results", str(copy / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runset.json is damaged" in err[0]
    code, err = again(copy, capsys)
    assert code == 0 and err.count("was damaged: rebuilt from this command's plan") == 1
    assert "reusing finished run" in err and "training teacher" not in err
    assert len(json.loads((copy / "r" / "d" / "runset.json").read_text())["entries"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_record_is_evaluated_again_from_the_weights(copy, capsys, damage):
    capsys.readouterr()
    record = student(copy) / "record.json"
    before = json.loads(record.read_text())["metrics"]
    truncate(record) if damage == "truncated" else record.write_text("[1, 2, 3]")
    code, err = again(copy, capsys)
    assert code == 0 and err.count("is damaged: evaluating the run's weights again") == 1
    assert "epoch 1/1" not in err.split("kd seed 0")[-1]     # nothing retrained
    assert json.loads(record.read_text())["metrics"] == before


@pytest.mark.slow
def test_truncated_teacher_weights_are_trained_again(copy, capsys):
    capsys.readouterr()
    (weights,) = (copy / "r" / "teachers").glob("*/model.pt")
    truncate(weights)
    code, err = again(copy, capsys)          # every run loads its teacher first
    assert code == 0 and "are damaged; training it again from its config" in err and "training teacher" in err


@pytest.mark.slow
def test_truncated_checkpoint_trains_again_from_the_first_epoch(copy, capsys):
    capsys.readouterr()
    run = student(copy)
    (run / "record.json").unlink()
    truncate(run / "checkpoint.pt")
    code, err = again(copy, capsys)
    assert code == 0 and err.count("checkpoint.pt is damaged: training") == 1
    assert (run / "record.json").exists()


def test_what_cannot_be_derived_is_refused_in_one_line(copy, capsys):
    capsys.readouterr()
    run = student(copy)
    truncate(run / "model.pt")                 # a finished run's exported weights: the record stays valid
    assert main(["export", str(run), "--robustbench", "--out", str(copy / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable PyTorch weights file" in err[0]
    (teacher,) = (copy / "r" / "teachers").glob("*/model.pt")
    truncate(teacher)                          # a teacher given as a file is the user's: nothing derives it
    code, err = again(copy, capsys, "--teacher", str(teacher), "--teacher-arch", "cnn-wide")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not a readable PyTorch weights file" in err
