import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.config.schema import EvalConfig, ProbeConfig
from bench.data.sources import load_dataset
from bench.eval.structure import (
    class_correlation,
    correlation_gap,
    linear_cka,
    structure_metrics,
)
from bench.eval.transfer import train_probe, transfer_metrics
from bench.report.stats import interval as mean_ci


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 100.0))
def test_cka_self_one_and_invariant_to_rotation_and_isotropic_scaling(seed, scale):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 6, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))  # orthogonal
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-9)
    y = torch.randn(40, 3, generator=g, dtype=torch.float64)
    assert linear_cka(x, y) == pytest.approx(linear_cka(scale * x @ q, y), abs=1e-9)
    assert 0.0 <= linear_cka(x, y) <= 1.0


def test_cka_of_unrelated_features_is_small():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2000, 4, generator=g), torch.randn(2000, 4, generator=g)
    assert linear_cka(x, y) < 0.05


def test_correlation_gap():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 5, generator=g)
    assert correlation_gap(logits, logits) == 0.0
    # the diagonal (always 1 - 1 = 0) does not dilute the gap: C(C-1) off-diagonal entries count
    other = torch.randn(50, 5, generator=torch.Generator().manual_seed(9))
    gap = (class_correlation(logits) - class_correlation(other)).abs()
    assert correlation_gap(logits, other) == pytest.approx(float(gap.sum() / 20), rel=1e-9)
    assert correlation_gap(logits, 3 * logits + 1) == pytest.approx(0.0, abs=1e-6)  # affine (float32 input)
    corr = class_correlation(logits)
    assert torch.allclose(corr.diagonal(), torch.ones(5, dtype=torch.float64))
    assert correlation_gap(logits, torch.randn(50, 5, generator=g)) > 0.05


def test_probe_trains_only_the_head_and_robust_le_clean(trained_digits_model):
    target = load_dataset("digits@5-9")
    before = {k: v.clone() for k, v in trained_digits_model.state_dict().items()}
    probe = train_probe(trained_digits_model, target, ProbeConfig(epochs=5))
    after = trained_digits_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics, bit for bit
    assert not any(p.requires_grad for p in probe.backbone.parameters())
    out = transfer_metrics(trained_digits_model, target, ProbeConfig(epochs=5),
                           EvalConfig(eps=0.1, n=100, curve_eps=()))
    m = out["metrics"]
    assert set(m) == {"clean", "pgd20"} and m["pgd20"] <= m["clean"]
    assert m["clean"] > 0.5  # digits features carry over to unseen digit classes
    assert out["classes"] == ["5", "6", "7", "8", "9"]


def test_structure_of_a_model_with_itself(trained_digits_model, digits):
    out = structure_metrics(trained_digits_model, trained_digits_model, digits.x_test[:80], digits.y_test[:80], 0.1)
    for split in ("clean", "adv"):
        assert out[split]["corr_gap"] == pytest.approx(0.0, abs=1e-12)
        assert out[split]["cka"] == pytest.approx(1.0, abs=1e-6)
        assert out[split]["agreement"] == 1.0
    assert out["adv"]["fools_teacher_given_student"] == 1.0


def test_class_subsets(digits):
    a, b = load_dataset("digits@0-4"), load_dataset("digits@5-9")
    assert a.classes == ["0", "1", "2", "3", "4"] and b.classes == ["5", "6", "7", "8", "9"]
    assert len(a.y_train) + len(b.y_train) == len(digits.y_train)
    assert int(b.y_train.max()) == 4  # relabelled
    from bench.common.errors import BenchError
    with pytest.raises(BenchError, match="at least two"):
        load_dataset("digits@3")
    with pytest.raises(BenchError, match="not like"):
        load_dataset("digits@a-b")


def test_statistics():
    iv = mean_ci([1.0, 2.0, 3.0])
    assert (iv.mean, iv.n) == (2.0, 3) and iv.high - iv.mean == pytest.approx(4.303 * 1 / math.sqrt(3), rel=1e-3)
    assert math.isnan(mean_ci([0.5]).low)
    clipped = mean_ci([0.97, 1.0, 0.99], (0.0, 1.0))  # an accuracy interval never leaves [0, 1]
    assert clipped.high == 1.0 and clipped.low < clipped.mean < 1.0
