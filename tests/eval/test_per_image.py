"""Issue 22: per-image results (bit-packed store, worst case over attacks, per-class accuracy, two
models compared image by image) and their place in the report (issue 33: the ablation's seeds x
images test)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from bench.config.schema import EvalConfig
from bench.eval import per_image
from bench.eval.protocol import evaluate
from bench.report.aggregate import Column, ablation_table, class_columns
from bench.records.record import RunRecord


def _record(role: str, method: str, seed: int, strength: float) -> RunRecord:
    """A student record with jittered accuracies (the seed-level test sees noise of a few points)."""
    jitter = 0.03 * np.random.default_rng(seed * 7 + len(method)).standard_normal()
    metrics = {k: min(1.0, v * strength + jitter) for k, v in {"clean": 0.95, "pgd20": 0.6, "aa": 0.5}.items()}
    return RunRecord(run_id=f"{role}-{method}-{seed}", role=role, method=method, method_name=method, options={},
                     note="", dataset="digits@0-4", arch="cnn-narrow", teacher_id="t0", seed=seed, config={},
                     metrics=metrics, curve={}, attack_settings={}, timings={})


@pytest.mark.parametrize("n", [1, 8, 13, 1000])
def test_the_bit_packed_store_round_trips(n):
    rng = np.random.default_rng(n)
    flags = {"clean": torch.tensor(rng.random(n) < 0.9), "pgd20": torch.tensor(rng.random(n) < 0.5),
             "aa": torch.tensor(rng.random(max(1, n // 3)) < 0.4)}  # AutoAttack on the first images only
    labels = torch.tensor(rng.integers(0, 10, n))
    stored = per_image.store(flags, labels)
    back, y, idx = per_image.load(stored)
    assert set(back) == set(flags)
    for name, f in flags.items():
        assert back[name].dtype == bool and np.array_equal(back[name], f.numpy())
    assert np.array_equal(y, labels.numpy()) and np.array_equal(idx, np.arange(n))
    # eight images a byte (plus base64's 4/3): the default run's store is small enough to commit
    assert len(stored["correct"]["pgd20"]["bits"]) <= 4 * ((n + 7) // 8 + 2) // 3 + 4


def test_the_worst_case_counts_an_image_only_if_every_attack_left_it_correct():
    t = torch.tensor
    flags = {"clean": t([1, 1, 1, 0, 1], dtype=torch.bool), "pgd20": t([1, 0, 1, 0, 1], dtype=torch.bool),
             "aa": t([1, 1, 0], dtype=torch.bool)}
    # on the 3 images AutoAttack covered: image 0 survives everything, 1 falls to PGD-20, 2 to AutoAttack
    assert per_image.worst_case(flags) == (pytest.approx(1 / 3), 3)
    assert per_image.worst_case({"clean": flags["clean"], "pgd20": flags["pgd20"]}) is None  # nothing to combine
    every = per_image.survived_all(flags, ["pgd20", "aa"], 5)  # the sanity check's "what every attack left"
    assert every.tolist() == [True, False, False, False, True]


def test_a_model_perfect_on_all_classes_but_one_shows_that_class_as_worst():
    labels = torch.arange(5).repeat(4)                                # 4 images of each of 5 classes
    correct = labels != 3
    correct[labels == 3] = torch.tensor([True, False, False, False])  # class 3: 1 of 4
    accs = per_image.per_class(correct, labels, 6)                    # class 5: no image
    assert accs == [1.0, 1.0, 1.0, 0.25, 1.0, None]
    s = per_image.class_summary(accs)
    assert s["worst_class"] == 3 and s["worst"] == 0.25 and s["classes"] == 5
    assert s["std"] == pytest.approx(np.std([1, 1, 1, 0.25, 1])) and s["range"] == 0.75


def test_two_models_differ_image_by_image_in_a_seeds_by_images_matrix():
    a = np.array([1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1], dtype=bool)
    b = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 1], dtype=bool)
    # discordant: a alone right on images 0-4 (5), b alone on image 7 (1)
    assert per_image.discordant(a, b) == (5, 1)
    d = per_image.differences([(a, b), (a[:10], b)])   # two seeds, cut to the images both cover
    assert d.shape == (2, 10) and d.dtype == np.int8
    assert d[0].tolist() == [1, 1, 1, 1, 1, 0, 0, -1, 0, 0] and (d[1] == d[0]).all()
    assert per_image.differences([]).shape == (0, 0)


class _Constant(nn.Module):
    """Predicts class 0 for every image."""

    def forward(self, x):
        out = torch.zeros(len(x), 5)
        out[:, 0] = 1.0
        return out + 0 * x.flatten(1)[:, :1]


def test_the_evaluation_returns_flags_per_class_and_the_worst_case(digits):
    cfg = replace(EvalConfig(), attacks=("clean", "fgsm", "pgd20"), n=40, curve_eps=(),
                  sanity=replace(EvalConfig().sanity, enabled=False))
    x, y = digits.x_test[:40], digits.y_test[:40] % 5
    ev = evaluate(_Constant(), x, y, cfg, num_classes=5)
    flags, labels, idx = per_image.load(ev["per_image"])
    assert np.array_equal(flags["clean"], (y == 0).numpy()) and np.array_equal(labels, y.numpy())
    assert ev["per_class"]["clean"] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert ev["metrics"]["worst"] == pytest.approx(float((y == 0).float().mean()))
    assert ev["settings"]["worst"]["n"] == 40


def _with_flags(recs, flags_by_method):
    """records -> their per-image dicts: each method's flags on the same 40 images, every seed alike."""
    labels = torch.zeros(40, dtype=torch.long)
    return {r.run_id: per_image.store({"aa": torch.tensor(flags_by_method[r.method])}, labels) for r in recs}


def test_the_ablation_table_tests_seeds_and_images_together_and_names_the_test():
    recs = [_record("student", m, s, 0.9) for m in ("gacd", "ard") for s in (0, 1, 2)]
    groups = {"gacd": recs[:3], "ard": recs[3:]}
    flags = {"gacd": [True] * 40, "ard": [True] * 25 + [False] * 15}  # 15 images gacd alone keeps, per seed
    for r in recs:   # accuracies their flags give (the table uses flags only where they agree)
        r.metrics["aa"] = float(np.float32(np.mean(flags[r.method])))
    stored = _with_flags(recs, flags)
    col = Column("AutoAttack", ("metrics", "aa"))
    row = ablation_table(groups, "gacd", [col], per_image=lambda r: stored[r.run_id]).iloc[0]
    # the same 15 images every seed: no seed spread, an image effect far beyond the (zero) noise
    assert row["Δ AutoAttack"].startswith("-37.5 [") and row["Δ AutoAttack"].endswith(" *")
    p, test = row["p AutoAttack (Holm)"].split()
    assert float(p) < 1e-3 and test == "s×i"
    # flags that do not give the stored accuracy (another evaluation's): the test over seeds
    for r in groups["ard"]:
        r.metrics["aa"] += 0.01 * r.seed
    assert ablation_table(groups, "gacd", [col], per_image=lambda r: stored[r.run_id]).iloc[0][
        "p AutoAttack (Holm)"].endswith(" t")
    # without per-image results: the paired t over seeds
    plain = ablation_table(groups, "gacd", [Column("Clean", ("metrics", "clean"))])
    assert plain.iloc[0]["p Clean (Holm)"].endswith(" t") and list(plain.columns) == [
        "Variant", "n", "Δ Clean", "p Clean (Holm)"]


def test_class_columns_show_the_worst_class_and_the_spread_per_attack():
    rec = _record("student", "gacd", 0, 0.9)
    rec.per_class = per_image.class_record({"clean": [1.0, 0.5], "aa": [0.4, 0.1]}, ["a", "b"])
    cols = class_columns([rec])
    assert [c.label for c in cols] == ["Clean worst class", "Clean class std", "AutoAttack worst class",
                                       "AutoAttack class std"]
    assert cols[2].value(rec) == pytest.approx(0.1) and cols[3].value(rec) == pytest.approx(0.15)
