"""RSLAD, IAD-I and AdaAD against their official formulas, recomputed here with explicit loops."""
import math

import pytest
import torch
import torch.nn.functional as F
from test_methods import (  # tests/ is on sys.path under pytest
    Tiny,
    ce_manual,
    kl_manual,
)

from bench.attacks.ascent import pgd_ascent
from bench.common.errors import BenchError
from bench.methods import METHODS, Batch, Context, parse_method

B, C = 6, 3
EPOCHS = 10  # IAD-I's default warm-up 0.3 -> introspection from 0-based epoch 3


@pytest.fixture
def setup():
    g = torch.Generator().manual_seed(7)
    x = torch.rand(B, 2, 2, 2, generator=g)
    x_adv = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    student, teacher = Tiny(4, 2), Tiny(5, 3).eval()
    teacher.requires_grad_(False)  # as the runner does
    ctx = Context(num_classes=C, n_train=18, train_labels=torch.tensor([0, 1, 2] * 6), student_dim=4,
                  teacher_dim=5, device=torch.device("cpu"), epochs=EPOCHS)
    return x, x_adv, y, student, teacher, ctx


def make_batch(x, y, student, teacher, epoch=0):
    return Batch(x, y, torch.arange(len(y)), student, teacher, epoch=epoch)


def build(name, ctx, **opts):
    return parse_method(":".join([name, *[f"{k}={v}" for k, v in opts.items()]])).build(ctx)


def softmax_rows(logits, t=1.0):
    out = []
    for row in logits.tolist():
        z = [math.exp(v / t) for v in row]
        out.append([v / sum(z) for v in z])
    return out


def kl_rows(s_logits, t_logits, t=1.0):
    """Per-sample sum_c q_c (log q_c - log p_c), q from the target logits, p from the student's."""
    return [sum(qc * (math.log(qc) - math.log(pc)) for pc, qc in zip(p, q))
            for p, q in zip(softmax_rows(s_logits, t), softmax_rows(t_logits, t))]


def constant_student():
    """A student whose logits do not depend on the input: only the teacher can move an objective."""
    s = Tiny(4, 2)
    with torch.no_grad():
        s.w.zero_()
    return s


def attack_raises_objective(m, batch, start):
    batch.student.train(m.inner.student_mode == "train")
    before = m.inner_objective(batch, batch.x).item()
    adv = pgd_ascent(lambda xa: m.inner_objective(batch, xa), batch.x, 0.1, 0.025, 10, start,
                     generator=torch.Generator().manual_seed(0))
    after = m.inner_objective(batch, adv).item()
    assert (adv - batch.x).abs().max() <= 0.1 + 1e-6
    assert after > before


# --- declarations: the facts read from the official code ------------------------------------------

@pytest.mark.parametrize("name,start,mode,teacher_at,train", [
    ("rslad", "normal", "eval", "x (clean)", (300, 0.1, (215, 260, 285), 2e-4, 128)),
    ("iad", "uniform", "train", "x (clean)", (200, 0.1, (100,), 2e-4, 128)),  # the code's effective schedule
    ("adaad", "normal", "eval", "x' (adversarial)", (200, 0.1, (100, 150), 5e-4, 128)),
])
def test_declarations(name, start, mode, teacher_at, train):
    cls = METHODS.get(name)
    assert cls.needs_teacher and cls.citation and cls.summary and cls.schedule != "-"
    assert (cls.inner.start, cls.inner.student_mode) == (start, mode)
    assert cls.inner.teacher_at.startswith(teacher_at)
    p = cls.official_schedule("cifar10")
    assert (p["epochs"], p["lr"], p["milestones"], p["weight_decay"], p["batch_size"]) == train
    assert p["schedule"] == "step"


# --- RSLAD -----------------------------------------------------------------------------------------

def test_rslad_inner_is_summed_kl_to_teacher_at_clean_x(setup):
    x, x_adv, y, s, t, ctx = setup
    m = build("rslad", ctx)
    got = m.inner_objective(make_batch(x, y, s, t), x_adv).item()
    assert got == pytest.approx(sum(kl_rows(s(x_adv), t(x))), rel=1e-5)
    assert got != pytest.approx(sum(kl_rows(s(x_adv), t(x_adv))), rel=1e-3)  # not the teacher at x'
    # with an input-independent student the objective cannot move: the teacher is fixed at x
    cs = constant_student()
    obj = lambda xa: m.inner_objective(make_batch(x, y, cs, t), xa)  # noqa: E731
    assert obj(x_adv).item() == pytest.approx(obj(x).item(), rel=1e-6)


def test_rslad_outer_loss(setup):
    x, x_adv, y, s, t, ctx = setup
    terms = build("rslad", ctx).losses(make_batch(x, y, s, t), x_adv)
    assert set(terms) == {"kd_adv", "kd_nat"}
    assert terms["kd_adv"].item() == pytest.approx(5 / 6 * kl_manual(s(x_adv), t(x)), rel=1e-5)
    assert terms["kd_nat"].item() == pytest.approx(1 / 6 * kl_manual(s(x), t(x)), rel=1e-5)
    terms = build("rslad", ctx, alpha=1, scale=0.1).losses(make_batch(x, y, s, t), x_adv)
    assert set(terms) == {"kd_adv"}
    assert terms["kd_adv"].item() == pytest.approx(0.1 * kl_manual(s(x_adv), t(x)), rel=1e-5)


def test_rslad_scale_one_over_c_has_the_official_gradient(setup):
    """The official scripts: mean over B x C of p_T (log(p_T + 1e-5) - log p_S); same gradient."""
    x, x_adv, y, s, t, ctx = setup
    m = build("rslad", ctx, scale=1 / C)
    ours = torch.autograd.grad(sum(m.losses(make_batch(x, y, s, t), x_adv).values()), list(s.parameters()))
    q = F.softmax(t(x), 1)

    def official_kl(logits):
        return (-F.log_softmax(logits, 1) * q + torch.log(q + 1e-5) * q).mean()
    official = 5 / 6 * official_kl(s(x_adv)) + 1 / 6 * official_kl(s(x))
    ref = torch.autograd.grad(official, list(s.parameters()))
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_rslad_attack_raises_its_objective(setup):
    x, x_adv, y, s, t, ctx = setup
    attack_raises_objective(build("rslad", ctx), make_batch(x, y, s, t), "normal")


# --- IAD-I -----------------------------------------------------------------------------------------

def reliability_manual(t_adv_logits, y, beta):
    return [p[label] ** beta for p, label in zip(softmax_rows(t_adv_logits), y.tolist())]


def test_iad_inner_is_ce(setup):
    x, x_adv, y, s, t, ctx = setup
    got = build("iad", ctx).inner_objective(make_batch(x, y, s, t), x_adv).item()
    assert got == pytest.approx(B * ce_manual(s(x_adv), y), rel=1e-5)


def test_iad_warmup_epoch_scales_with_the_schedule(setup):
    *_, ctx = setup
    assert build("iad", ctx).begin_epoch == 3
    for epochs, begin in ((200, 60), (30, 9), (1, 0)):
        c = Context(**{**ctx.__dict__, "epochs": epochs})
        assert build("iad", c).begin_epoch == begin
        assert build("iad", c).facts() == {"introspection_from_epoch": begin}
    assert build("iad", Context(**{**ctx.__dict__, "epochs": 200}), warmup=0).begin_epoch == 0
    with pytest.raises(BenchError, match="warmup"):
        parse_method("iad:warmup=1.5")


@pytest.mark.parametrize("weighting", ["code", "paper"])
def test_iad_before_warmup_is_ard(setup, weighting):
    x, x_adv, y, s, t, ctx = setup
    m = build("iad", ctx, t=2, teacher_weighting=weighting)
    terms = m.losses(make_batch(x, y, s, t, epoch=2), x_adv)
    assert set(terms) == {"kd_adv"}
    assert terms["kd_adv"].item() == pytest.approx(4 * kl_manual(s(x_adv), t(x), 2.0), rel=1e-5)


@pytest.mark.parametrize("weighting", ["code", "paper"])
@pytest.mark.parametrize("alpha", [1.0, 0.6])
def test_iad_after_warmup(setup, weighting, alpha):
    x, _, y, s, t, ctx = setup
    x_adv = torch.rand(x.shape, generator=torch.Generator().manual_seed(3))  # far from x
    m = build("iad", ctx, t=2, beta=0.1, alpha=alpha, teacher_weighting=weighting)
    terms = m.losses(make_batch(x, y, s, t, epoch=3), x_adv)
    a = reliability_manual(t(x_adv), y, 0.1)  # the teacher at x', not at x
    assert a != pytest.approx(reliability_manual(t(x), y, 0.1), rel=1e-4)
    teacher_kl = kl_rows(s(x_adv), t(x), 2.0)
    w = a if weighting == "paper" else [1.0] * B  # the code does not weight the teacher term
    assert terms["kd_adv"].item() == pytest.approx(
        alpha * 4 * sum(wi * k for wi, k in zip(w, teacher_kl)) / B, rel=1e-5)
    self_kl = kl_rows(s(x_adv), s(x))  # temperature 1, target the student on clean x
    assert terms["self_kl"].item() == pytest.approx(
        alpha * sum((1 - ai) * k for ai, k in zip(a, self_kl)) / B, rel=1e-5)
    if alpha < 1:
        assert terms["ce"].item() == pytest.approx((1 - alpha) * ce_manual(s(x), y), rel=1e-5)
    else:
        assert "ce" not in terms


def test_iad_self_term_gradient_flows_into_clean_student_unless_detached(setup):
    x, x_adv, y, s, t, ctx = setup
    params = list(s.parameters())
    with torch.no_grad():
        a = F.softmax(t(x_adv), 1).gather(1, y[:, None]).squeeze(1) ** 0.1

    def manual(detach):
        p_adv = F.log_softmax(s(x_adv), 1)
        q = F.softmax(s(x), 1)
        q = q.detach() if detach else q
        return ((1 - a) * (q * (q.log() - p_adv)).sum(1)).mean()
    for detach in (False, True):
        m = build("iad", ctx, detach_self=detach)
        got = torch.autograd.grad(m.losses(make_batch(x, y, s, t, epoch=5), x_adv)["self_kl"], params)
        ref = torch.autograd.grad(manual(detach), params)
        other = torch.autograd.grad(manual(not detach), params)
        assert all(torch.allclose(g, r, atol=1e-7, rtol=1e-4) for g, r in zip(got, ref))
        assert not all(torch.allclose(g, o, atol=1e-7, rtol=1e-4) for g, o in zip(got, other))


def test_iad_attack_raises_its_objective(setup):
    x, x_adv, y, s, t, ctx = setup
    attack_raises_objective(build("iad", ctx), make_batch(x, y, s, t), "uniform")


# --- AdaAD -----------------------------------------------------------------------------------------

def test_adaad_inner_uses_the_teacher_at_x_adv(setup):
    x, x_adv, y, s, t, ctx = setup
    m = build("adaad", ctx)
    got = m.inner_objective(make_batch(x, y, s, t), x_adv).item()
    assert got == pytest.approx(sum(kl_rows(s(x_adv), t(x_adv))), rel=1e-5)
    assert got != pytest.approx(sum(kl_rows(s(x_adv), t(x))), rel=1e-3)
    # with an input-independent student only the teacher term can move, and it does, with x'
    cs = constant_student()
    batch = make_batch(x, y, cs, t)
    moved = (x_adv + 0.05).clamp(0, 1)
    for xa in (x_adv, moved):
        assert m.inner_objective(batch, xa).item() == pytest.approx(sum(kl_rows(cs(xa), t(xa))), rel=1e-5)
    assert m.inner_objective(batch, moved).item() != pytest.approx(m.inner_objective(batch, x_adv).item(),
                                                                     rel=1e-4)
    # and the attack's input gradient flows through the (frozen) teacher
    xa = x_adv.clone().requires_grad_(True)
    grad, = torch.autograd.grad(m.inner_objective(batch, xa), xa)
    assert grad.abs().sum() > 0
    assert all(p.grad is None for p in t.parameters())


def test_adaad_outer_loss(setup):
    x, x_adv, y, s, t, ctx = setup
    terms = build("adaad", ctx).losses(make_batch(x, y, s, t), x_adv)
    assert set(terms) == {"kd_adv"}  # alpha = 1, as shipped
    assert terms["kd_adv"].item() == pytest.approx(kl_manual(s(x_adv), t(x_adv)), rel=1e-5)
    terms = build("adaad", ctx, alpha=0.7, scale=0.5).losses(make_batch(x, y, s, t), x_adv)
    assert terms["kd_adv"].item() == pytest.approx(0.5 * 0.7 * kl_manual(s(x_adv), t(x_adv)), rel=1e-5)
    assert terms["kd_nat"].item() == pytest.approx(0.5 * 0.3 * kl_manual(s(x), t(x)), rel=1e-5)
    sum(terms.values()).backward()  # the student gets gradients, the teacher none
    assert all(p.grad is not None for p in s.parameters())
    assert all(p.grad is None for p in t.parameters())


def test_adaad_attack_raises_its_objective(setup):
    x, x_adv, y, s, t, ctx = setup
    attack_raises_objective(build("adaad", ctx), make_batch(x, y, s, t), "normal")
