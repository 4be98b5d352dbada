"""Issue 33: per-class numbers with their noise (images per class, the class spread's binomial
floor, the worst class's bias, Wilson intervals) and a worst case that folds in every attack run at
the evaluation's eps (the sanity check's stronger PGD, the eps-curve's point at eps); old records
still read."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from bench.config.schema import EvalConfig
from bench.eval import per_image
from bench.eval.protocol import evaluate

SIZES = [19, 16, 22, 20, 23]   # the digits default's images per class under AutoAttack (first 100)


def _draws(p: float, sizes, k: int = 200_000) -> np.ndarray:
    """k draws of the per-class accuracies when every class has accuracy p."""
    n = np.asarray(sizes)
    return np.random.default_rng(0).binomial(n, p, size=(k, len(n))) / n


def _bools(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool)


def test_the_noise_floor_is_the_hand_computed_root_of_the_expected_variance():
    # two one-image classes at p = 1/2: std = |a1 - a2| / 2 is 1/2 half the time: E[var] = 1/8
    assert per_image.noise_floor(0.5, [1, 1]) == pytest.approx(math.sqrt(1 / 8))
    assert per_image.noise_floor(0.5, [20]) == 0.0 and per_image.noise_floor(1.0, SIZES) == 0.0
    # a class without images has no accuracy, so no part in the spread
    assert per_image.noise_floor(0.5, [10, 0, 10]) == per_image.noise_floor(0.5, [10, 10])


@pytest.mark.parametrize("p", [0.3, 0.5, 0.9])
def test_the_noise_floor_matches_a_simulation_of_equal_classes(p):
    a = _draws(p, SIZES)
    variance = a.var(axis=1)                   # population variance, as class_summary's std
    se = variance.std() / math.sqrt(len(variance))
    floor = per_image.noise_floor(p, SIZES)
    assert floor ** 2 == pytest.approx(variance.mean(), abs=4 * se)
    assert a.std(axis=1).mean() <= floor       # Jensen: the expected std is below the root
    if p == 0.5:                               # the digits default: about 10 points of noise
        assert 0.09 < floor < 0.11


def test_the_worst_class_bias_is_the_exact_expected_minimum():
    # two one-image classes: the minimum is right only if both are, with probability p^2
    assert per_image.expected_worst(0.3, [1, 1]) == pytest.approx(0.09)
    assert per_image.worst_class_bias(0.7, [5]) == pytest.approx(0.0, abs=1e-12)  # one class
    for p in (0.2, 0.5, 0.95):
        sim = _draws(p, SIZES).min(axis=1).mean()
        assert per_image.expected_worst(p, SIZES) == pytest.approx(sim, abs=2e-3)
    # equal classes at 50 %: the worst of the five reads 13 points low on average
    assert -0.14 < per_image.worst_class_bias(0.5, SIZES) < -0.12


def test_the_wilson_interval_of_one_class():
    z2 = 1.959964 ** 2
    low, high = per_image.wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(z2 / (10 + z2), abs=1e-6)  # closed form at 0
    low, high = per_image.wilson(10, 20)
    assert low == pytest.approx(1 - high) and 0.29 < low < 0.30            # symmetric about 1/2
    assert all(math.isnan(v) for v in per_image.wilson(0, 0))


def test_the_class_summary_with_counts_states_the_noise():
    accs, counts = [1.0, 0.5, 0.25, None], [2, 4, 4, 0]
    s = per_image.class_summary(accs, counts)
    assert s["p"] == pytest.approx(5 / 10) and s["n"] == 10 and s["worst_n"] == 4
    assert s["floor"] == pytest.approx(per_image.noise_floor(0.5, [2, 4, 4]))
    assert s["worst_bias"] == pytest.approx(per_image.worst_class_bias(0.5, [2, 4, 4]))
    assert s["worst_interval"] == pytest.approx(list(per_image.wilson(1, 4)))
    assert "floor" not in per_image.class_summary(accs)       # without counts: as before
    rec = per_image.class_record({"aa": accs}, ["a", "b", "c", "d"], {"aa": counts})
    assert rec["n"] == {"aa": counts} and rec["summary"]["aa"] == s


def test_an_old_record_gets_its_class_counts_from_its_per_image_store():
    labels = torch.tensor([0, 1, 1, 2, 2, 2, 0, 1])
    flags = {"clean": torch.ones(8, dtype=torch.bool), "aa": _bools(1, 0, 1, 1, 0, 0)}
    stored = per_image.store(flags, labels)
    accs = {name: per_image.per_class(f, labels, 3) for name, f in flags.items()}
    old = {"classes": ["a", "b", "c"], "accuracy": accs,   # no "n": written before issue 33
           "summary": {k: per_image.class_summary(v) for k, v in accs.items()}}
    done = per_image.with_counts(old, stored)
    assert done["n"] == {"clean": [2, 3, 3], "aa": [1, 2, 3]}   # aa: its first 6 images
    assert done["summary"]["aa"]["floor"] > 0
    assert done["summary"]["aa"]["worst"] == old["summary"]["aa"]["worst"]
    assert per_image.with_counts(old, None) is old              # no store: as it was
    other = per_image.store({**flags, "aa": torch.ones(6, dtype=torch.bool)}, labels)
    assert per_image.with_counts(old, other) is old             # a store of other results


def test_a_folded_attack_on_fewer_images_constrains_only_those():
    flags = {"clean": _bools(1, 1, 1, 1, 1), "pgd20": _bools(1, 1, 1, 0, 1),
             "aa": _bools(1, 1, 1, 1), "sanity-pgd100x3": _bools(1, 0)}
    # the worst case stays on AutoAttack's 4 images; the sanity attack covered 2 and broke one
    assert per_image.worst_case(flags) == (pytest.approx(2 / 4), 4)
    unfolded = {k: v for k, v in flags.items() if k != "sanity-pgd100x3"}
    assert per_image.worst_case(unfolded)[0] == 3 / 4
    stored = per_image.store(flags, torch.zeros(5, dtype=torch.long))
    assert per_image.flags_for(stored, "worst").tolist() == [True, False, True, False]


def _eval(model, digits, **changes):
    cfg = replace(EvalConfig(), attacks=("clean", "fgsm"), n=60, eps=0.05, curve_eps=(),
                  sanity=replace(EvalConfig().sanity, n=40, strong_steps=10, strong_restarts=1))
    return evaluate(model, digits.x_test, digits.y_test, replace(cfg, **changes), num_classes=10)


def test_the_worst_case_folds_in_the_sanity_checks_attack_at_eps(trained_digits_model, digits):
    ev = _eval(trained_digits_model, digits)
    flags, _, _ = per_image.load(ev["per_image"])
    # the convergence check's PGD-10 at eps is kept; the large-eps check's PGD-20 at 4 eps is not
    assert set(flags) == {"clean", "fgsm", "sanity-pgd10x1"} and len(flags["sanity-pgd10x1"]) == 40
    every = flags["clean"] & flags["fgsm"]
    every[:40] &= flags["sanity-pgd10x1"]
    assert ev["metrics"]["worst"] == pytest.approx(every.mean())
    assert ev["metrics"]["worst"] < ev["metrics"]["fgsm"]   # it broke images FGSM left
    worst = ev["settings"]["worst"]
    assert worst["n"] == 60 and worst["attacks"] == ["clean", "fgsm", "sanity-pgd10x1"]
    assert worst["folded"] == {"sanity-pgd10x1": 40}
    assert set(ev["per_class"]) == {"clean", "fgsm"}
    assert ev["class_n"]["fgsm"] == per_image.class_counts(digits.y_test[:60], 10)


def test_the_worst_case_folds_in_the_curves_point_at_eps_alone(trained_digits_model, digits):
    sane = replace(EvalConfig().sanity, enabled=False)
    ev = _eval(trained_digits_model, digits, curve_eps=(0.025, 0.05), sanity=sane)
    flags, _, _ = per_image.load(ev["per_image"])
    assert set(flags) == {"clean", "fgsm", "curve@0.05"}      # not the curve's point at eps / 2
    assert ev["curve"]["0.05"] == pytest.approx(flags["curve@0.05"].mean())
    every = flags["clean"] & flags["fgsm"] & flags["curve@0.05"]
    assert ev["metrics"]["worst"] == pytest.approx(every.mean())
    assert ev["settings"]["worst"]["folded"] == {"curve@0.05": 60}
