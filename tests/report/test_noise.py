"""Issue 33 in the report: the worst case left out of the main table where it equals an attack's
column (and said so), what it folds in, the per-class noise floor beside the class spread, the
images per class and the worst class's bias in the text; records made before all this still build
a report."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch

from bench.common.io import atomic_write_json
from bench.config.schema import RunConfig
from bench.eval import per_image
from bench.report.aggregate import (class_columns, main_accuracy_columns, strongest_class_column,
                                    table, worst_equals)
from bench.report.build import build_report
from bench.records.record import RunRecord

N, N_AA, CLASSES = 50, 20, ["a", "b", "c", "d", "e"]
AA = {"n": N_AA, "package": "pyautoattack", "version": "standard", "attacks": ["apgd-ce"],
      "seed": 0, "n_target_classes": 4}


def _flags(seed: int, method: str, old: bool, broken_by_sanity: int) -> dict:
    rng = np.random.default_rng(seed + 10 * len(method))
    pgd = torch.tensor(rng.random(N) < 0.6)
    flags = {"clean": torch.ones(N, dtype=torch.bool), "pgd20": pgd,
             "aa": pgd[:N_AA] & torch.tensor(rng.random(N_AA) < 0.8)}
    if not old:
        sanity = torch.ones(N, dtype=torch.bool)
        sanity[torch.nonzero(flags["aa"]).flatten()[:broken_by_sanity]] = False
        flags["sanity-pgd100x3"] = sanity
    return flags


def _run(method: str, seed: int, old: bool, broken_by_sanity: int = 0) -> tuple[RunRecord, dict]:
    """A record and its per-image store: clean, PGD-20 and AutoAttack flags on 50 images of 5
    classes (AutoAttack on the first 20); ``old``: as written before issue 33 (no images per class,
    nothing folded in); ``broken_by_sanity``: AutoAttack's images the sanity check's PGD broke."""
    labels = torch.arange(N) % 5
    flags = _flags(seed, method, old, broken_by_sanity)
    worst, m = per_image.worst_case(flags)
    accs = {k: per_image.per_class(flags[k], labels, 5) for k in ("clean", "pgd20", "aa")}
    counts = None if old else {k: per_image.class_counts(labels, 5, len(flags[k])) for k in accs}
    per_class = per_image.class_record(accs, CLASSES, counts)
    settings = {"n": N, "aa": AA, "worst": {"n": m, "attacks": list(flags)}}
    if old:
        per_class.pop("n")
    else:
        settings["worst"]["folded"] = {"sanity-pgd100x3": m}
    metrics = {k: float(f.float().mean()) for k, f in flags.items() if not per_image.folded_only(k)}
    rec = RunRecord(run_id=f"{method}-{seed}", role="student", method=method, method_name=method,
                    options={}, note="", dataset="digits@0-4", arch="cnn-narrow", teacher_id="t0",
                    seed=seed, config=asdict(RunConfig(seed=seed)), curve={},
                    metrics={**metrics, "worst": worst}, attack_settings=settings,
                    timings={"train_s": 1.0}, per_class=per_class,
                    created=f"2026-01-01T00:00:0{seed}")
    return rec, per_image.store(flags, labels)


def _report(tmp_path, runs) -> tuple[str, pd.DataFrame]:
    for rec, stored in runs:
        rec.save(tmp_path / "results" / "syn" / rec.run_id)
        atomic_write_json(tmp_path / "results" / "syn" / rec.run_id / per_image.PER_IMAGE, stored)
    out = build_report(tmp_path / "results", "syn", tmp_path / "reports")
    return (out / "README.md").read_text(), pd.read_csv(out / "table.csv")


def test_old_records_build_a_report_with_the_noise_floor_from_their_per_image_store(tmp_path):
    runs = [_run(m, s, old=True) for m in ("gacd", "ard") for s in (0, 1)]
    readme, main = _report(tmp_path, runs)
    # nothing folded in: the worst case is AutoAttack's number on every run, and the caption says so
    assert "Worst case" not in main.columns and "It equals AutoAttack on every run" in readme
    assert "4 of 4 runs were evaluated before the worst case folded in" in readme
    i = list(main.columns).index("AutoAttack worst class")
    assert list(main.columns[i:i + 3]) == ["AutoAttack worst class", "AutoAttack class std",
                                           "AutoAttack class std floor"]
    assert all("[" not in str(v) for v in main["AutoAttack class std floor"])  # a mean alone
    assert ("Clean and PGD-20: 10, 10, 10, 10, 10 (50 images); AutoAttack: 4, 4, 4, 4, 4 "
            "(20 images)") in readme
    for said in ("Class std floor", "expected shortfall", "Wilson interval"):
        assert said in readme
    runs_csv = pd.read_csv(tmp_path / "reports" / "syn" / "runs.csv")
    assert "Worst case" in runs_csv.columns                          # kept per run


def test_a_worst_case_below_every_attack_is_a_column_and_names_what_it_folds_in(tmp_path):
    runs = [_run("gacd", 0, old=False, broken_by_sanity=1), _run("gacd", 1, old=False)]
    readme, main = _report(tmp_path, runs)
    assert "Worst case" in main.columns and "It equals" not in readme
    folds = "it folds in PGD-20, AutoAttack, PGD-100 with 3 restarts (the convergence check's)"
    assert folds in readme
    assert "evaluated before" not in readme
    rec = runs[0][0]
    assert rec.metrics["worst"] == pytest.approx(rec.metrics["aa"] - 1 / N_AA)  # the image it broke


def test_worst_equals_names_the_attack_the_worst_case_matches_on_every_run():
    same, _ = _run("gacd", 0, old=True)
    lower, _ = _run("gacd", 1, old=False, broken_by_sanity=2)
    assert worst_equals([same]) == "aa" and worst_equals([same, lower]) is None
    assert [c.label for c in main_accuracy_columns([same])] == ["Clean", "PGD-20", "AutoAttack"]
    assert "Worst case" in [c.label for c in main_accuracy_columns([same, lower])]


def test_class_columns_carry_the_floor_where_the_counts_are_known():
    new, _ = _run("gacd", 0, old=False)
    old, _ = _run("gacd", 0, old=True)
    assert [c.label for c in strongest_class_column([new])] == [
        "AutoAttack worst class", "AutoAttack class std", "AutoAttack class std floor"]
    assert len(class_columns([new])) == 9 and len(class_columns([old])) == 6
    floor = strongest_class_column([new])[-1]
    s = new.per_class["summary"]["aa"]
    assert floor.value(new) == pytest.approx(per_image.noise_floor(s["p"], [4] * 5))
    shown, numeric = table({"gacd": [new, _run("gacd", 1, old=False)[0]]}, [floor])
    assert "[" not in shown.iloc[0][floor.label] and np.isnan(numeric.iloc[0][f"{floor.label} low"])
