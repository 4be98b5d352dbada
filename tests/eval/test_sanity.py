"""Sanity flags (bench/eval/sanity.py): masked gradients are flagged; the committed default report has none."""
import json

import pytest
import torch
from torch import nn

from bench.config.schema import EvalConfig, SanityConfig


class Quantised(nn.Module):
    """Input quantisation: a non-differentiable preprocessing that masks gradients."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 4) / 4)


@pytest.mark.slow
def test_masked_gradients_are_flagged(trained_digits_model, digits):
    from bench.eval.protocol import evaluate
    cfg = EvalConfig(eps=0.1, attacks=("clean", "fgsm", "pgd20"), n=100,
                     sanity=SanityConfig(n=100, strong_steps=20, strong_restarts=1))
    masked = evaluate(Quantised(trained_digits_model).eval(), digits.x_test, digits.y_test, cfg, 10)["sanity"]
    assert "zero_gradients" in masked["flags"] and masked["checks"]["zero_gradients"]["value"] > 0.9
    plain = evaluate(trained_digits_model, digits.x_test, digits.y_test, cfg, 10)["sanity"]
    assert "zero_gradients" not in plain["flags"] and "large_eps" not in plain["flags"]
    assert set(plain["checks"]) == {"iterative_weaker", "large_eps", "not_converged", "zero_gradients",
                                    "nondeterministic"}


def test_default_run_students_are_not_flagged():
    """The committed default report (reports/digits, made by `python -m bench run`) has no flags."""
    from pathlib import Path

    runs = json.loads((Path(__file__).resolve().parents[2] / "reports" / "digits" / "runs.json").read_text())
    students = [r for r in runs if r["role"] == "student"]
    assert students and all(r["sanity"]["checks"] for r in students)
    assert [r["method"] for r in students if r["sanity"]["flags"]] == []


def test_thresholds_decide_as_autoattack_checks_do():
    """SanityConfig's defaults flag exactly where AutoAttack's checks.py warns: Square breaking more
    than 0.2 % after the white-box attacks (check_square_sr), and any input with an all-zero gradient
    (check_zero_gradients). The old 1 % thresholds stayed silent on 0.3 % and on 1 image in 500."""
    import warnings

    from pyautoattack import checks

    from bench.eval.sanity import square_found
    s = SanityConfig()
    for white, square in [(0.5, 0.5), (0.5, 0.499), (0.5, 0.4979), (0.5, 0.497), (0.3, 0.29), (0.42, 0.415)]:
        acc = {"clean": 0.9, "apgd-ce": white + 0.01, "apgd-t": white, "square": square}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            checks.check_square_sr(acc)
        found = square_found(acc)
        assert (found > s.blackbox_margin) == bool(caught), (white, square)
    for zeros in (0, 1, 7):
        grad = torch.ones(500, 3)
        grad[:zeros] = 0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            checks.check_zero_gradients(grad)
        assert (zeros / 500 > s.zero_grad_max) == bool(caught), zeros
