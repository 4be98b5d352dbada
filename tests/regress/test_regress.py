import copy
import json

import numpy as np
import pytest

from bench.cli.main import main
from bench.regress import check as regress
from bench.regress.check import Measured, compare, make_baseline

ENTRY = {"who": "test", "why": "test", "when": "now", "commit": None, "seconds": 0}
METRICS = ("clean", "pgd20", "aa")


def _values(rows: dict[str, float], seeds, rng, sd=0.02, shift=None) -> dict:
    """Per row and metric, one value per seed: the row's level, minus 10 points per metric, plus noise."""
    shift = shift or {}
    return {row: {m: [float(np.clip(level - 0.1 * i - shift.get((row, m), 0) + sd * rng.standard_normal(), 0, 1))
                      for _ in seeds] for i, m in enumerate(METRICS)} for row, level in rows.items()}


def _baseline(seed=0, check=(0, 1, 2, 3), base=tuple(range(4, 20))):
    rng = np.random.default_rng(seed)
    rows = {"teacher": 0.95, "ard": 0.9, "crd": 0.2}
    measured = Measured([*check, *base], {})
    for row, metrics in _values(rows, (*check, *base), rng).items():
        measured.values[row] = metrics
    return make_baseline(regress.RunConfig(), ["ard", "crd"], measured, base, check, {}, ENTRY, None)


@pytest.fixture(scope="module")
def synthetic():
    return _baseline()


def _check(baseline, values=None, flags=None):
    now = Measured(baseline["check_seeds"], copy.deepcopy(values or baseline["check_values"]), flags or {})
    return {(r["row"], r["metric"]): r["verdict"] for r in compare(baseline, now)}


def test_unchanged_values_pass_and_the_band_ignores_the_check_s_own_spread(synthetic):
    assert set(_check(synthetic).values()) == {"ok"}
    # the band is the baseline's: a check whose seeds spread widely gets no wider band (the old check pooled them)
    wide = copy.deepcopy(synthetic["check_values"])
    wide["ard"]["pgd20"] = [v + d for v, d in zip(wide["ard"]["pgd20"], (-0.12, 0.12, -0.12, 0.12))]
    rows = {(r["row"], r["metric"]): r for r in compare(synthetic, Measured([0, 1, 2, 3], wide, {}))}
    same = {(r["row"], r["metric"]): r for r in compare(synthetic, Measured([0, 1, 2, 3], synthetic["check_values"], {}))}
    assert rows["ard", "pgd20"]["low"] == same["ard", "pgd20"]["low"]
    assert rows["ard", "pgd20"]["verdict"] == "SEED 0,2 LOW"


def test_one_collapsed_seed_fails_even_when_the_mean_stays_in_its_band(synthetic):
    values = copy.deepcopy(synthetic["check_values"])
    values["ard"]["pgd20"][2] = 0.2                      # one seed collapsed to chance
    assert _check(synthetic, values)["ard", "pgd20"] in ("DROP", "SEED 2 LOW")
    band = next(r for r in compare(synthetic, Measured([0, 1, 2, 3], values, {})) if r["metric"] == "pgd20"
                and r["row"] == "ard")
    mean = sum(synthetic["check_values"]["ard"]["pgd20"]) / 4
    low = band["seed_low"] - 0.005                        # just below the one-seed bound ...
    values["ard"]["pgd20"] = [low if j == 2 else mean + (mean - low) / 3 for j in range(4)]  # ... same mean
    verdicts = _check(synthetic, values)
    assert verdicts["ard", "pgd20"] == "SEED 2 LOW"


def test_a_rise_far_above_the_band_fails_as_a_drop_does(synthetic):
    for sign, word in ((+1, "RISE"), (-1, "DROP")):
        values = copy.deepcopy(synthetic["check_values"])
        values["ard"]["aa"] = [v + sign * 0.1 for v in values["ard"]["aa"]]
        assert _check(synthetic, values)["ard", "aa"] == word


def test_nan_missing_sanity_flags_and_new_metrics_fail(synthetic):
    values = copy.deepcopy(synthetic["check_values"])
    values["ard"]["aa"][1] = float("nan")
    del values["crd"]["clean"]
    values["crd"]["worst"] = [0.1] * 4
    verdicts = _check(synthetic, values, flags={"teacher": {3: ["not_converged"]}})
    assert verdicts["ard", "aa"] == "NaN" and verdicts["crd", "clean"] == "MISSING"
    assert verdicts["teacher", "sanity"] == "SANITY seed 3: not_converged"
    assert verdicts["crd", "worst"].startswith("NEW")
    # with a NaN the table still prints (one line a comparison, no traceback)
    text = regress.format_table(compare(synthetic, Measured([0, 1, 2, 3], values, {})))
    assert "NaN" in text


def test_a_low_row_can_fail_both_ways(synthetic):
    """A row near 0 % (CRD under attack) has a band above it: it fails when the attack stops working."""
    values = copy.deepcopy(synthetic["check_values"])
    values["crd"]["aa"] = [0.3] * 4
    assert _check(synthetic, values)["crd", "aa"] == "RISE"


def test_a_check_of_more_seeds_gets_its_own_level_and_narrower_bands(synthetic):
    four, eight = regress.Bands.of(synthetic), regress.Bands.of(synthetic, 8)
    assert (eight.detect[:, 0] < four.detect[:, 0]).all()
    assert eight.design.n_check == 8 and (eight.low > four.low).all()


def test_baseline_records_its_machine_and_calibration(synthetic):
    cal = synthetic["calibration"]
    assert 0.01 < cal["level"] < 0.2 and cal["draws"] >= 10000
    assert synthetic["format"] == regress.FORMAT and synthetic["seeds"] == list(range(4, 20))
    facts = regress.machine_facts()
    assert {"torch", "blas", "threads", "cpu", "device"} <= set(facts)


def test_update_refuses_check_seeds_inside_the_baseline(tmp_path):
    from bench.common.errors import BenchError

    with pytest.raises(BenchError, match="independent"):
        regress.update(regress.RunConfig(), ["ard"], (0, 1), tmp_path / "b.json", "why", (1, 2, 3))


def test_update_shows_moves_refuses_them_and_keeps_the_run(tmp_path, monkeypatch, capsys):
    """--update prints old against new; a mean outside the old band is written only with --accept-moves,
    and the refused run is reused (not trained again) by the accepted update."""
    rng = np.random.default_rng(3)
    calls = []

    def fake_run(cfg, methods, seeds, substitute=None, jobs=1, method_files=()):
        calls.append(seeds)
        shift = {("ard", "pgd20"): 0.08} if len(calls) > 1 else {}
        return Measured(list(seeds), _values({"teacher": 0.95, "ard": 0.9}, seeds, rng, shift=shift), {})

    monkeypatch.setattr(regress, "run_regression", fake_run)
    monkeypatch.setattr(regress, "git_commit", lambda: "abc")
    path, cfg = tmp_path / "b.json", regress.RunConfig()
    first = regress.update(cfg, ["ard"], (0, 1, 2, 3), path, "first", tuple(range(4, 16)))
    assert first.written and "pass" in first.lines[0]
    second = regress.update(cfg, ["ard"], (0, 1, 2, 3), path, "ard moved", tuple(range(4, 16)))
    assert not second.written and "--accept-moves" in second.lines[-1]
    moved = [line for line in second.lines[1].splitlines() if line.startswith("!")]
    assert any("ard" in line and "pgd20" in line for line in moved)
    assert json.loads(path.read_text())["history"][-1]["why"] == "first"
    third = regress.update(cfg, ["ard"], (0, 1, 2, 3), path, "ard moved", tuple(range(4, 16)), accept_moves=True)
    assert third.written and len(calls) == 2 and "kept by the refused update" in third.lines[0]
    assert json.loads(path.read_text())["history"][-1]["why"] == "ard moved"


@pytest.mark.slow
def test_jobs_split_the_seeds_and_give_one_process_s_numbers():
    """--jobs 2: every seed runs once, in seed order, with the numbers one process gets on as many threads
    (a seed run twice, or lost, or a worker on other threads, changes them)."""
    import torch

    from bench.config.resolve import resolve
    from bench.regress.check import run_regression

    cfg = resolve("regress", overrides=["train.epochs=1", "teacher.train.epochs=1", "eval.n=40", "structure=false",
                                        "eval.attacks=[clean,fgsm]", "eval.sanity.enabled=false",
                                        "probe.targets=[]"]).config
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # one process on one thread ...
        alone = run_regression(cfg, ["pgd-at"], (0, 1, 2))
        torch.set_num_threads(2)  # ... and two workers sharing two: one thread each, on any machine
        split = run_regression(cfg, ["pgd-at"], (0, 1, 2), jobs=2)
    finally:
        torch.set_num_threads(threads)
    assert split.values == alone.values and len(alone.values["teacher"]["clean"]) == 3


@pytest.mark.slow
def test_regress_passes_on_itself_and_flags_a_weakened_method(capsys, tmp_path, monkeypatch):
    """A small version of the preset's design (10-epoch PGD-AT beside a one-epoch natural teacher, PGD-20
    on 120 images; a 6-seed baseline, 3 other seeds for the check): the update's own check seeds pass; PGD-AT
    whose training attack stops after one step (of ten) is flagged on PGD-20; PGD-AT without its attack
    too. On the full preset ARD with a 2-step attack or a halved KL weight is flagged
    (benchmarks/regress_bands.py)."""
    from dataclasses import replace

    from bench.runs import orchestrate

    base = ["regress", "--baseline", str(tmp_path / "b.json"), "--methods", "pgd-at", "--seeds", "0,1,2",
            "--epochs", "10", "--teacher-epochs", "1", "--n", "120", "teacher.method=natural",
            "eval.attacks=[clean,pgd20]", "eval.sanity.enabled=false", "structure=false", "probe.targets=[]"]
    assert main(base) == 2  # no baseline yet: one clear line
    assert "no baseline" in capsys.readouterr().err
    assert main(base + ["--update"]) == 2
    assert main(base + ["--update", "--reason", "x", "--baseline-seeds", "2,3,4"]) == 2  # seed 2 in both
    assert "independent" in capsys.readouterr().err
    # the baseline's 6 seeds and the 3 check seeds in two processes (--jobs 2, as CI runs the check)
    assert main(base + ["--update", "--reason", "test baseline", "--baseline-seeds", "3,4,5,6,7,8",
                        "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "the check's seeds [0, 1, 2] against the new baseline: all" in out
    stored = json.loads((tmp_path / "b.json").read_text())
    assert stored["history"][-1]["why"] == "test baseline" and stored["seeds"] == list(range(3, 9))
    assert stored["check_seeds"] == [0, 1, 2] and len(stored["values"]["pgd-at"]["pgd20"]) == 6
    assert len(stored["values"]["teacher"]["pgd20"]) == 6  # one teacher per seed: the teacher row has a spread
    assert stored["machine"]["jobs"] == 2 and stored["machine"]["torch"]

    # the student's training attack cut to one step: flagged by name, the teacher (trained elsewhere) is not
    real = orchestrate.train_model
    monkeypatch.setattr(orchestrate, "train_model", lambda student, method, data, train_cfg, attack_cfg, *a, **k:
                        real(student, method, data, train_cfg, replace(attack_cfg, steps=1), *a, **k))
    assert main(base) == 1
    flagged = capsys.readouterr().out.split("REGRESSION:")[1]
    assert "pgd-at pgd20" in flagged and "teacher" not in flagged
    monkeypatch.setattr(orchestrate, "train_model", real)

    assert main(base + ["--substitute", "pgd-at=natural"]) == 1  # no attack at all
    assert "pgd-at pgd20" in capsys.readouterr().out.split("REGRESSION:")[1]
    assert main(["100" if a == "120" else a for a in base]) == 2  # another config than the baseline's
    assert "another config (eval.n)" in capsys.readouterr().err


def test_config_changes_ignore_new_fields_at_their_default():
    from bench.regress.check import config_changes
    stored = {"a": 1, "sub": {"b": [1, 2]}}
    defaults = {"a": 1, "sub": {"b": (1, 2), "new": None}, "added": False}
    assert config_changes(stored, {"a": 1, "sub": {"b": (1, 2), "new": None}, "added": False}, defaults) == []
    assert config_changes(stored, {"a": 2, "sub": {"b": (1, 2), "new": 5}, "added": False}, defaults) == ["a", "sub.new"]


def test_config_changes_read_a_renamed_field_under_its_new_name():
    """``bf16: false`` in a baseline made before the precision field is ``precision: fp32``."""
    from bench.regress.check import config_changes
    defaults = {"precision": "auto"}
    assert config_changes({"bf16": False}, {"precision": "fp32"}, defaults) == []
    assert config_changes({"bf16": True}, {"precision": "bf16"}, defaults) == []
    assert config_changes({"bf16": False}, {"precision": "auto"}, defaults) == ["precision"]


def test_check_refuses_another_config_other_seeds_and_an_old_format(tmp_path, capsys, synthetic):
    from bench.config.presets import get_preset

    preset = get_preset("regress")
    path = tmp_path / "b.json"
    path.write_text(json.dumps({**synthetic, "config": json.loads(json.dumps(regress.asdict(preset.config))),
                                "methods": list(preset.methods)}))
    assert main(["regress", "--baseline", str(path), "--seeds", "0,1,4"]) == 2
    assert "are baseline seeds" in capsys.readouterr().err
    assert main(["regress", "--baseline", str(path), "--methods", "ard"]) == 2
    assert "another config (methods)" in capsys.readouterr().err
    path.write_text(json.dumps({**synthetic, "format": 1}))
    assert main(["regress", "--baseline", str(path)]) == 2
    assert "older format" in capsys.readouterr().err


def test_fp32_on_cuda_turns_tf32_off_and_restores_it():
    """The regress preset trains and evaluates in fp32 "the same arithmetic on every device": on CUDA that
    needs TF32 off for convolutions (cuDNN's default is on); the flags are set even without a GPU."""
    import torch

    from bench.common.precision import autocast

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    try:
        with autocast("fp32", torch.device("cuda")):
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32
        with autocast("fp32", torch.device("cpu")):
            assert torch.backends.cudnn.allow_tf32   # nothing to change off CUDA
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.fixture(scope="module")
def committed():
    return json.loads((regress.BASELINE_DIR / "regress.json").read_text())


def _verdicts(baseline, values):
    return {(r["row"], r["metric"]): r["verdict"] for r in compare(baseline, Measured(baseline["check_seeds"], values, {}))}


def test_the_committed_baseline_passes_its_check_seeds_and_fails_each_break(committed):
    """The check's seeds 0-3 as the update measured them pass; each break of them fails by name."""
    assert set(_verdicts(committed, committed["check_values"]).values()) == {"ok"}
    robust = [row for row in regress.stats.robust_rows(committed["values"]) if row != "teacher"]
    for row in robust:
        collapsed = copy.deepcopy(committed["check_values"])
        collapsed[row]["pgd20"][1] = 0.2                             # one seed at chance (5 classes)
        assert _verdicts(committed, collapsed)[row, "pgd20"] in ("DROP", "SEED 1 LOW")
        band = next(r for r in compare(committed, Measured([0, 1, 2, 3], committed["check_values"], {}))
                    if (r["row"], r["metric"]) == (row, "aa"))
        inflated = copy.deepcopy(committed["check_values"])
        inflated[row]["aa"] = [band["high"] + 0.1] * 4               # 10 points above the band
        assert _verdicts(committed, inflated)[row, "aa"] == "RISE"
    broken = copy.deepcopy(committed["check_values"])
    broken["gacd"]["aa"][0] = float("nan")
    del broken["ard"]["worst"]
    verdicts = _verdicts(committed, broken)
    assert verdicts["gacd", "aa"] == "NaN" and verdicts["ard", "worst"] == "MISSING"
