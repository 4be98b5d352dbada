import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.attacks import (
    ATTACKS,
    ce_loss,
    margin_loss,
    pgd_ascent,
    random_start,
    whitebox_attack,
)
from bench.data.images import to_float


def _tiny_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5)).eval()


def distance(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample size of a perturbation in the threat model's norm."""
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "Linf" else flat.norm(dim=1)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(2e-3, 1.0), steps=st.integers(1, 6),
       ratio=st.floats(0.05, 2.0), start=st.sampled_from(["uniform", "normal", "none"]),
       norm=st.sampled_from(["Linf", "L2"]))
def test_pgd_stays_in_ball_and_box(seed, scale, steps, ratio, start, norm):
    """Both threat models: every iterate within eps of x in the norm, and inside [0, 1]."""
    eps = scale * (0.5 if norm == "Linf" else 3.0)   # L2 up to 3.0: past the box's reach, where the box clips
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 3, 2, 2, generator=g)
    x[0] = 0.0  # corners of the box are where clipping matters
    x[1] = 1.0
    y = torch.randint(0, 5, (4,), generator=g)
    model = _tiny_model(seed)
    adv = pgd_ascent(lambda xa: ce_loss(model(xa), y), x, eps, ratio * eps, steps, start, g, norm=norm)
    assert (distance(adv - x, norm) <= eps + 1e-5).all()
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_autoattack_runs_and_is_below_clean(trained_digits_model, digits):
    from bench.eval.protocol import autoattack_flags
    from bench.eval.state import EvalState
    x, y = to_float(digits.x_test[:8]), digits.y_test[:8]
    robust, after, info, _ = autoattack_flags(trained_digits_model, x, y, 0.1, 10, "standard", 0, 10, EvalState(None))
    assert robust.shape == (8,)
    assert info["n_target_classes"] == 9 and info["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    accs = [after[a] for a in ["clean", *info["attacks"]]]
    assert accs == sorted(accs, reverse=True) and accs[-1] == float(robust.float().mean())
    with torch.no_grad():
        clean = (trained_digits_model(x).argmax(1) == y)
    assert not (robust & ~clean).any()  # a misclassified clean point is never robust


def _pgd_ascent_before_l2(objective, x, eps, step, steps, start="uniform", generator=None, x_init=None):
    """bench.attacks.ascent.pgd_ascent as it was before the L2 threat model (commit 1a9fa19), kept to pin L-inf."""
    x = x.detach()
    lo, hi = (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)
    x_adv = torch.clamp(random_start(x, eps, start, generator) if x_init is None else x_init, lo, hi)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            grad, = torch.autograd.grad(objective(x_adv), x_adv)
        x_adv = torch.clamp(x_adv.detach() + step * grad.sign(), lo, hi)
    return x_adv


@pytest.mark.parametrize("start", ["uniform", "normal", "none"])
def test_linf_pgd_is_bit_identical_to_before_l2(trained_digits_model, digits, start):
    x, y = to_float(digits.x_test[:64]), digits.y_test[:64]

    def objective(xa):
        return ce_loss(trained_digits_model(xa), y)
    new = pgd_ascent(objective, x, 0.2, 0.05, 10, start, torch.Generator().manual_seed(3))
    old = _pgd_ascent_before_l2(objective, x, 0.2, 0.05, 10, start, torch.Generator().manual_seed(3))
    assert torch.equal(new, old)
    given = x + 0.1
    assert torch.equal(pgd_ascent(objective, x, 0.2, 0.05, 3, x_init=given),
                       _pgd_ascent_before_l2(objective, x, 0.2, 0.05, 3, x_init=given))


def test_attack_accuracy_is_the_per_batch_attack(trained_digits_model, digits):
    """The one batched path equals attacking batch by batch by hand, per-batch streams and one shared stream."""
    from bench.attacks.ascent import adversarial, attack_accuracy, batched
    model, spec = trained_digits_model, ATTACKS.get("pgd20")
    x, y = to_float(digits.x_test[:70]), digits.y_test[:70]
    by_hand = torch.cat([model(whitebox_attack(model, x[i:i + 32], y[i:i + 32], spec, 0.1,
                                               torch.Generator().manual_seed(i))).argmax(1) == y[i:i + 32]
                         for i in range(0, 70, 32)])
    got = attack_accuracy(model, x, y, spec, 0.1, 32, lambda index: torch.Generator().manual_seed(32 * index))
    assert torch.equal(got, by_hand) and got.dtype == torch.bool
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    shared = adversarial(model, x, y, spec, 0.1, 32, lambda _: g1)
    one_stream = torch.cat([whitebox_attack(model, x[i:i + 32], y[i:i + 32], spec, 0.1, g2) for i in range(0, 70, 32)])
    assert torch.equal(shared, one_stream)
    # select keeps some batches, a cache answers for the ones it holds, on_batch counts images
    cache, counted = {1: torch.zeros(32, dtype=torch.bool)}, []

    class Cache:
        def get(self, index):
            return cache.get(index)

        def put(self, index, ok):
            cache[index] = ok
    part = attack_accuracy(model, x, y, spec, 0.1, 32, lambda index: torch.Generator().manual_seed(32 * index),
                           select=lambda index: index > 0, cache=Cache(), on_batch=counted.append)
    assert torch.equal(part, torch.cat([torch.zeros(32, dtype=torch.bool), by_hand[64:]])) and counted == [32, 6]
    assert set(cache) == {1, 2}
    none = attack_accuracy(model, x, y, spec, 0.1, 32, lambda _: None, select=lambda _: False)
    assert none.shape == (0,) and none.dtype == torch.bool
    f, logits = batched(lambda _, xb: (model.features(xb), model(xb)), x, batch_size=32)
    assert f.shape == (70, model.feature_dim) and logits.shape == (70, 10)


def test_validation_keeps_one_stream_over_batches(trained_digits_model, digits):
    from bench.train.selection import Selection

    val = Selection("best-val", digits.x_test[:200], digits.y_test[:200])
    x, y = to_float(val.x), val.y
    adv = whitebox_attack(trained_digits_model, x, y, ATTACKS.get("pgd20"), 0.1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = float((trained_digits_model(adv).argmax(1) == y).float().mean())  # the pre-batching definition
    assert val.score(trained_digits_model, 0.1) == whole
    assert val.score(trained_digits_model, 0.1, batch_size=64) == whole
    # the same radius is a far smaller set in L2 than in L-inf (the L-inf box reaches 0.3 sqrt(64) = 2.4)
    assert val.score(trained_digits_model, 0.3, "L2") > val.score(trained_digits_model, 0.3)
    ten = Selection("best-test-pgd10", val.x, val.y)
    assert ten.key == "test_pgd10" and ten.attack == "pgd10" and ten.split == "test"
