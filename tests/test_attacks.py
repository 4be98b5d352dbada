import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.attacks import (ATTACKS, ce_loss, margin_loss, pgd_ascent, random_start,
                           whitebox_attack)
from bench.data import to_float


def _tiny_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5)).eval()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.floats(1e-3, 0.5), steps=st.integers(1, 6),
       ratio=st.floats(0.05, 2.0), start=st.sampled_from(["uniform", "normal", "none"]))
def test_pgd_stays_in_ball_and_box(seed, eps, steps, ratio, start):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 3, 2, 2, generator=g)
    x[0] = 0.0  # corners of the box are where clipping matters
    x[1] = 1.0
    y = torch.randint(0, 5, (4,), generator=g)
    model = _tiny_model(seed)
    adv = pgd_ascent(lambda xa: ce_loss(model(xa), y), x, eps, ratio * eps, steps, start, g)
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.floats(1e-3, 0.5), name=st.sampled_from(["fgsm", "pgd20", "cw"]))
def test_eval_attacks_stay_in_ball_and_box(seed, eps, name):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 3, 2, 2, generator=g)
    y = torch.randint(0, 5, (3,), generator=g)
    adv = whitebox_attack(_tiny_model(seed), x, y, ATTACKS.get(name), eps, g)
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1


def test_random_starts():
    x = torch.full((1000,), 0.5)
    assert (random_start(x, 0.1, "none") == x).all()
    u = random_start(x, 0.1, "uniform") - x
    assert u.abs().max() <= 0.1 and u.std() > 0.05          # spread over the ball
    n = random_start(x, 0.1, "normal") - x
    assert n.abs().max() < 0.01 and n.std() > 0.0005         # 0.001 * N(0, 1)
    with pytest.raises(ValueError):
        random_start(x, 0.1, "gaussian")


def test_margin_loss_formula():
    logits = torch.tensor([[1.0, 3.0, 2.0], [5.0, 0.0, -1.0]])
    y = torch.tensor([2, 0])
    # sample 0: best wrong 3 - true 2 = 1; sample 1: best wrong 0 - true 5 = -5
    assert margin_loss(logits, y).item() == pytest.approx(-4.0)
    assert ce_loss(logits, y).item() == pytest.approx(F.cross_entropy(logits, y, reduction="sum").item())


def test_attacks_lower_accuracy_and_pgd_below_fgsm(trained_digits_model, digits):
    model = trained_digits_model
    x, y = to_float(digits.x_test), digits.y_test
    g = torch.Generator().manual_seed(0)

    def acc(xs):
        with torch.no_grad():
            return (model(xs).argmax(1) == y).float().mean().item()
    clean = acc(x)
    fgsm = acc(whitebox_attack(model, x, y, ATTACKS.get("fgsm"), 0.1, g))
    pgd = acc(whitebox_attack(model, x, y, ATTACKS.get("pgd20"), 0.1, g))
    assert clean > 0.9
    assert fgsm < clean - 0.05
    assert pgd <= fgsm


def test_autoattack_runs_and_is_below_clean(trained_digits_model, digits):
    from bench.evaluation import EvalState, autoattack_flags

    x, y = to_float(digits.x_test[:8]), digits.y_test[:8]
    robust, after, info, _ = autoattack_flags(trained_digits_model, x, y, 0.1, 10, "standard", 0, 10, EvalState(None))
    assert robust.shape == (8,)
    assert info["n_target_classes"] == 9 and info["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    accs = [after[a] for a in ["clean", *info["attacks"]]]
    assert accs == sorted(accs, reverse=True) and accs[-1] == float(robust.float().mean())
    with torch.no_grad():
        clean = (trained_digits_model(x).argmax(1) == y)
    assert not (robust & ~clean).any()  # a misclassified clean point is never robust
