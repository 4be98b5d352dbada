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
def test_regress_passes_on_itself_and_flags_a_weakened_method(capsys, tmp_path, quick_autoattack):
    base = ["regress", "--baseline", str(tmp_path / "b.json"), "--methods", "pgd-at", "--seeds", "0,1,2",
            "--epochs", "6", "--teacher-epochs", "2", "--eps", "0.2", "--n", "120", "--aa-n", "4"]
    assert main(base) == 2  # no baseline yet: one clear line
    assert "no baseline" in capsys.readouterr().err
    assert main(base + ["--update"]) == 2
    assert main(base + ["--update", "--reason", "test baseline"]) == 0
    stored = json.loads((tmp_path / "b.json").read_text())
    assert stored["history"][-1]["why"] == "test baseline" and stored["seeds"] == [0, 1, 2]
    assert len(stored["values"]["pgd-at"]["pgd20"]) == 3 and "transfer:digits@5-9:pgd20" in stored["values"]["pgd-at"]
    assert len(stored["values"]["teacher"]["pgd20"]) == 3  # one teacher per seed: the teacher row has a spread
    capsys.readouterr()

    # same code, same seeds (the same numbers on this machine): within every band
    assert all(r["verdict"] == "ok" for r in compare(stored, stored["values"]))

    # PGD replaced by no attack in training: robustness collapses and is flagged by name
    assert main(base + ["--substitute", "pgd-at=natural"]) == 1
    out = capsys.readouterr().out
    flagged = out.split("REGRESSION:")[1]
    assert "pgd-at pgd20" in flagged and "pgd-at cw" in flagged and "teacher" not in flagged

    assert main(base[:-2] + ["--aa-n", "5"]) == 2  # another config than the baseline's
    assert "another config (eval.aa_n)" in capsys.readouterr().err


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
