import json

import pytest

from bench.cli.main import main
from bench.report.regress import FLOOR, bands, compare


def test_band_uses_seed_spread_with_a_floor():
    same = bands({"r": {"m": [0.8, 0.8, 0.8]}}, {"r": {"m": [0.8, 0.8, 0.8]}})[("r", "m")]
    assert same.sd == 0.0 and same.lowest == pytest.approx(0.8 - FLOOR)
    spread = bands({"r": {"m": [0.6, 0.7, 0.8]}}, {"r": {"m": [0.6, 0.7, 0.8]}})[("r", "m")]
    # one comparison (alpha 0.05); the pooled margin (one row: 2 degrees of freedom, t = 2.920) is larger
    # than the own one (both runs' seeds: 4 degrees of freedom, t = 2.132); sd 0.1, sqrt(1/3 + 1/3)
    assert spread.lowest == pytest.approx(0.7 - 2.920 * 0.1 * (2 / 3) ** 0.5, abs=1e-3)


def test_compare_verdicts():
    baseline = {"floor": 0.02, "values": {"ard": {"pgd20": [0.5, 0.5], "clean": [0.9, 0.9]}}}
    rows = compare(baseline, {"ard": {"pgd20": [0.47, 0.47], "clean": [0.895, 0.895]}})
    verdicts = {r["metric"]: r["verdict"] for r in rows}
    assert verdicts == {"pgd20": "DROP", "clean": "ok"}
    assert compare(baseline, {})[0]["verdict"] == "missing"


@pytest.mark.slow
def test_jobs_split_the_seeds_and_give_one_process_s_numbers():
    """--jobs 2: every seed runs once, in seed order, with the numbers one process gets on as many threads
    (a seed run twice, or lost, or a worker on other threads, changes them)."""
    import torch

    from bench.config.resolve import resolve
    from bench.report.regress import run_regression

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
    assert split == alone and len(alone["teacher"]["clean"]) == 3


@pytest.mark.slow
def test_regress_passes_on_itself_and_flags_a_weakened_method(capsys, tmp_path, monkeypatch):
    """A small version of the preset's design (10-epoch PGD-AT beside a one-epoch natural teacher, PGD-20
    on 120 images; an 8-seed baseline, a 3-seed check): the same code passes; PGD-AT whose training
    attack stops after one step (of ten) is flagged on PGD-20 (measured: 59.5 -> 43.3 % against a band
    that detects 5.1 points); PGD-AT without its attack too. On the full preset ARD with a 2-step attack
    or a halved KL weight is flagged (benchmarks/regress_bands.py)."""
    from dataclasses import replace

    from bench.runs import orchestrate

    base = ["regress", "--baseline", str(tmp_path / "b.json"), "--methods", "pgd-at", "--seeds", "0,1,2",
            "--epochs", "10", "--teacher-epochs", "1", "--n", "120", "teacher.method=natural",
            "eval.attacks=[clean,pgd20]", "eval.sanity.enabled=false", "structure=false", "probe.targets=[]"]
    assert main(base) == 2  # no baseline yet: one clear line
    assert "no baseline" in capsys.readouterr().err
    assert main(base + ["--update"]) == 2
    # the baseline's 8 seeds in two processes (--jobs 2, as CI runs the check): every seed comes back
    assert main(base + ["--update", "--reason", "test baseline", "--baseline-seeds", "0,1,2,3,4,5,6,7",
                        "--jobs", "2"]) == 0
    stored = json.loads((tmp_path / "b.json").read_text())
    assert stored["history"][-1]["why"] == "test baseline" and stored["seeds"] == list(range(8))
    assert stored["check_seeds"] == [0, 1, 2] and len(stored["values"]["pgd-at"]["pgd20"]) == 8
    assert len(stored["values"]["teacher"]["pgd20"]) == 8  # one teacher per seed: the teacher row has a spread
    capsys.readouterr()

    # same code, the check's seeds (the same numbers on this machine): within every band
    same = {row: {k: v[:3] for k, v in metrics.items()} for row, metrics in stored["values"].items()}
    assert all(r["verdict"] == "ok" for r in compare(stored, same))

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
    from bench.report.regress import config_changes
    stored = {"a": 1, "sub": {"b": [1, 2]}}
    defaults = {"a": 1, "sub": {"b": (1, 2), "new": None}, "added": False}
    assert config_changes(stored, {"a": 1, "sub": {"b": (1, 2), "new": None}, "added": False}, defaults) == []
    assert config_changes(stored, {"a": 2, "sub": {"b": (1, 2), "new": 5}, "added": False}, defaults) == ["a", "sub.new"]


def test_config_changes_read_a_renamed_field_under_its_new_name():
    """``bf16: false`` in a baseline made before the precision field is ``precision: fp32``."""
    from bench.report.regress import config_changes
    defaults = {"precision": "auto"}
    assert config_changes({"bf16": False}, {"precision": "fp32"}, defaults) == []
    assert config_changes({"bf16": True}, {"precision": "bf16"}, defaults) == []
    assert config_changes({"bf16": False}, {"precision": "auto"}, defaults) == ["precision"]


def test_false_alarm_rate_is_split_towards_the_robust_rows_robust_metrics():
    """Weighted Bonferroni: PGD-20 and AutoAttack of the rows with PGD-20 >= 20 % share FOCUS_SHARE of the
    family's rate, every other comparison the rest; the rates sum to the family's. A baseline without the
    split (made before it) keeps the plain split."""
    from bench.report.regress import FAMILY_ALPHA, FOCUS_SHARE, alphas, focus

    values = {"teacher": {"pgd20": [0.6, 0.62], "aa": [0.5, 0.52], "clean": [0.99, 0.98]},
              "crd": {"pgd20": [0.01, 0.0], "aa": [0.0, 0.0], "clean": [0.99, 0.99]}}
    assert focus(values) == {("teacher", "pgd20"), ("teacher", "aa")}
    rates = alphas(values)
    assert sum(rates.values()) == pytest.approx(FAMILY_ALPHA)
    assert rates["teacher", "aa"] == pytest.approx(FOCUS_SHARE * FAMILY_ALPHA / 2)
    assert rates["crd", "aa"] == pytest.approx((1 - FOCUS_SHARE) * FAMILY_ALPHA / 4)
    assert list(alphas(values, focus_share=0.0).values()) == [pytest.approx(FAMILY_ALPHA / 6)] * 6
    # the focus pair's band is narrower than the plain split's, the others' wider
    split, plain = bands(values, values), bands(values, values, focus_share=0.0)
    assert split["teacher", "pgd20"].lowest > plain["teacher", "pgd20"].lowest
    assert split["crd", "clean"].lowest <= plain["crd", "clean"].lowest


def test_a_many_seed_baseline_narrows_the_band_of_a_few_seed_check():
    """The baseline's mean and sd come from its own many seeds; the check's few seeds enter as 1/n."""
    rng = __import__("numpy").random.default_rng(1)
    many = {"r": {"pgd20": list(0.5 + 0.03 * rng.standard_normal(12))}}
    few = {"r": {"pgd20": many["r"]["pgd20"][:4]}}
    check = {"r": {"pgd20": list(0.5 + 0.03 * rng.standard_normal(4))}}
    assert bands(many, check)["r", "pgd20"].detectable < bands(few, check)["r", "pgd20"].detectable
    stated = bands(many, n_now=4)["r", "pgd20"]
    assert stated.n == 12 and stated.detectable == pytest.approx(bands(many, check)["r", "pgd20"].detectable, rel=0.5)


def test_check_refuses_other_seeds_than_the_baselines_check_seeds(tmp_path, capsys):
    from dataclasses import asdict

    from bench.config.presets import get_preset
    from bench.report.regress import write_baseline

    preset = get_preset("regress")
    write_baseline(tmp_path / "b.json", preset.config, list(preset.methods), tuple(range(6)),
                   {"teacher": {"pgd20": [0.5] * 6}}, "test", None, check_seeds=(0, 1))
    stored = json.loads((tmp_path / "b.json").read_text())
    assert stored["seeds"] == list(range(6)) and stored["check_seeds"] == [0, 1] and stored["focus_share"] > 0
    assert stored["config"] == json.loads(json.dumps(asdict(preset.config)))
    base = ["regress", "--baseline", str(tmp_path / "b.json"), "--seeds", "0,1,2"]
    assert main(base) == 2
    assert "another config (seeds)" in capsys.readouterr().err
