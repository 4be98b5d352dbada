"""Fair-ARD / Fair-RSLAD / Fair-IAD (NISP-official/Fair-ARD @910c8cd) and PeerAiD (jaewonalive/PeerAiD @cd12e92)
against their official code's formulas, written here independently with explicit loops and ``math``, on 10 and
100 classes; the Fair weights against the spec's worked examples; the kappa statistic against a hand-written
PGD loop; the Fair state over epochs driven through ``losses`` / ``end_epoch``; PeerAiD's gradient routing,
forwards and peer. The Fair methods' terms and kappa come from the student's forwards in a given mode and order:
their tests run on a student with batch norm too (``bn``), where a forward in the wrong mode or order gives other
numbers (without batch norm, train and eval modes agree)."""
import math

import pytest
import torch
import torch.nn.functional as F
from _formulas import Tiny, ce_row, kl_row, rows, same_running_stats, softmax, train_forwards
from torch import nn

from bench.attacks.threat import random_start
from bench.config.schema import AttackConfig
from bench.train.loop import adversarial_examples
from bench.methods import METHODS, Batch, Context, parse_method
from bench.methods._fair import class_weights
from bench.methods.base import EpochEnd

B = 8


def setup(classes: int, epoch: int = 0, epochs: int = 10, bn: bool = False):
    g = torch.Generator().manual_seed(classes)
    x = torch.rand(B, 3, 2, 2, generator=g)
    x_adv = (x + 0.03 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    y = torch.randint(0, classes, (B,), generator=g)
    student, teacher = Tiny(6, classes, 1, bn=bn), Tiny(7, classes, 2).eval()
    ctx = Context(num_classes=classes, n_train=B, train_labels=y, student_dim=6, teacher_dim=7,
                  device=torch.device("cpu"), epochs=epochs, build_student=lambda: Tiny(6, classes, 5, bn=bn))
    return x, x_adv, y, student, teacher, ctx, Batch(x, y, torch.arange(B), student, teacher, epoch=epoch)


def build(label, ctx):
    return parse_method(label).build(ctx)




BN = pytest.mark.parametrize("bn", [False, True])


# --- the Fair weights: the spec's worked examples (pure function) ---------------------------------------------

def test_fair_weights_worked_examples():
    w = class_weights(torch.tensor([1.0, 2.0, 4.0]), 2.0)
    assert w.tolist() == pytest.approx([2.2857, 0.8333, 0.8333], abs=1e-4)
    assert class_weights(torch.tensor([8.0, 2.0]), 2.0).tolist() == pytest.approx([0.8333, 1.8824], abs=1e-4)
    ten = class_weights(torch.tensor([6.0, 8, 4, 3, 5, 4, 7, 6, 7, 7]), 2.0)
    assert ten.tolist() == pytest.approx([.8333, .8333, 1.5299, 2.5, .9792, 1.5299, .8333, .8333, .8333, .8333],
                                         abs=1e-4)
    assert float(ten.sum()) == pytest.approx(11.539, abs=1e-3)  # clamped, not renormalised: the sum is not C
    # the same by hand: r = (1/(K + 1e-5))^beta, r C / sum r, clamp [5/6, 5/2]
    k = [6, 8, 4, 3, 5, 4, 7, 6, 7, 7]
    r = [(1 / (v + 1e-5)) ** 2 for v in k]
    hand = [min(max(v * 10 / sum(r), 5 / 6), 5 / 2) for v in r]
    assert ten.tolist() == pytest.approx(hand, rel=1e-5)


def test_fair_rslad_literal_weights_are_nan_on_a_class_at_zero():
    """Fair-RSLAD.py:99 has (1/Kbar)^beta (kappa_eps=0): a class with Kbar 0 gets inf x (C/inf) = NaN (the others
    0 -> 5/6), so its samples' loss is NaN; the +1e-5 of the other scripts gives it 5/2. With Kbar > 0 they agree."""
    kbar = torch.tensor([0.0, 3.0, 5.0])
    literal = class_weights(kbar, 2.0, eps=0.0)
    assert math.isnan(literal[0]) and literal[1:].tolist() == pytest.approx([5 / 6, 5 / 6])
    assert class_weights(kbar, 2.0).tolist() == pytest.approx([2.5, 5 / 6, 5 / 6])
    kbar = torch.tensor([1.0, 2.0, 4.0])
    assert class_weights(kbar, 2.0, eps=0.0).tolist() == pytest.approx(class_weights(kbar, 2.0).tolist(), rel=1e-4)
    assert parse_method("fair-rslad").options.kappa_eps == 1e-5
    assert parse_method("fair-rslad:kappa_eps=0").options.kappa_eps == 0.0


# --- kappa: counted at x_0 .. x_{K-1} from the attack's own forwards ---------------------------------------

@BN
@pytest.mark.parametrize("name", ["fair-ard", "fair-rslad", "fair-iad"])
def test_kappa_counts_correct_iterates_of_the_harness_attack(name, bn):
    """The harness's attack (bench.train.loop.adversarial_examples -> pgd_ascent) with the method's objective
    against a hand-written PGD loop from the same start, the student in the attack's mode (train for Fair-ARD
    and Fair-IAD, eval for Fair-RSLAD): kappa_i = #{k < K : argmax S(x_k)_i = y_i}, x_K not counted, and the
    same x_adv."""
    classes, steps, eps = 10, 6, 0.3
    x, _, _, s, t, ctx, _ = setup(classes, bn=bn)
    m = build(name, ctx)
    with torch.no_grad():  # labels the student (in the attack's mode) gets right at x: kappa then falls
        y = s.train(m.inner.student_mode == "train")(x).argmax(1)
    s.train()
    y[:2] = (y[:2] + 1) % classes  # and two it gets wrong
    cfg = AttackConfig(eps=eps, step_ratio=0.25, steps=steps)
    batch = Batch(x, y, torch.arange(B), s, t, epoch=0, generator=torch.Generator().manual_seed(3))
    x_adv = adversarial_examples(m, batch, cfg)
    kappa = batch.cache["kappa"]

    # by hand: the same start, projection, step; counts from the logits the gradient is taken at
    z = random_start(x, eps, m.inner.start, torch.Generator().manual_seed(3))
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    z = torch.max(torch.min(z, hi), lo)
    counts = [0] * B
    s.train(m.inner.student_mode == "train")
    for _ in range(steps):
        z.requires_grad_(True)
        logits = s(z)
        for i, row in enumerate(rows(logits)):
            counts[i] += int(max(range(classes), key=lambda c: row[c]) == int(y[i]))
        if name == "fair-rslad":
            loss = sum(F.kl_div(F.log_softmax(logits[i], 0), F.softmax(t(x)[i], 0).detach(), reduction="sum")
                       for i in range(B))
        else:
            loss = sum(F.cross_entropy(logits[i:i + 1], y[i:i + 1]) for i in range(B))
        g, = torch.autograd.grad(loss, z)
        z = torch.max(torch.min(z.detach() + 0.25 * eps * g.sign(), hi), lo)
    s.train()
    assert torch.allclose(x_adv, z, atol=1e-6)
    assert kappa.tolist() == counts
    assert any(0 < c < steps for c in counts)  # the predictions change along the path: a real count


def test_kappa_is_counted_in_the_base_methods_attack_mode():
    assert [METHODS.get(n).inner.student_mode for n in ("fair-ard", "fair-rslad", "fair-iad")] == \
        ["train", "eval", "train"]
    assert [METHODS.get(n).inner.start for n in ("fair-ard", "fair-rslad", "fair-iad")] == \
        ["uniform", "normal", "uniform"]


@BN
@pytest.mark.parametrize("name,base", [("fair-ard", "ard"), ("fair-rslad", "rslad"), ("fair-iad", "iad")])
def test_fair_attack_objective_is_the_base_methods(name, base, bn):
    x, x_adv, y, s, t, ctx, batch = setup(10, bn=bn)
    s.train(METHODS.get(name).inner.student_mode == "train")
    assert build(name, ctx).inner_objective(batch, x_adv).item() == pytest.approx(
        build(base, ctx).inner_objective(batch, x_adv).item(), rel=1e-6)


# --- the loss terms against the code's formulas ------------------------------------------------------------

def weighted(m, classes):
    """Non-trivial per-class weights in the method's state (as after some epoch)."""
    m.state["weights"] = torch.linspace(5 / 6, 5 / 2, classes)
    return m.state["weights"].tolist()


@BN
@pytest.mark.parametrize("classes", [10, 100])
@pytest.mark.parametrize("alpha", [1.0, 0.6])
def test_fair_ard_against_fair_ard_py(classes, alpha, bn):
    """Fair-ARD.py:136-148: alpha t^2 (1/B) sum_i w[y_i] KLDivLoss()(1-D) + (1-alpha) (1/B) sum_i w[y_i] CE(S(x_i)),
    'mean' over C = option scale 1/C; train-mode S(x') then S(x)."""
    x, x_adv, y, s, t, ctx, batch = setup(classes, bn=bn)
    m = build(f"fair-ard:scale={1 / classes}:alpha={alpha}", ctx)
    w = weighted(m, classes)
    expected = train_forwards(s, [x_adv, x] if alpha < 1 else [x_adv]) if bn else None
    terms = m.losses(batch, x_adv)
    assert not bn or same_running_stats(s, expected)
    sa, tx, sx = rows(s(x_adv)), rows(t(x)), rows(s(x))
    kd = sum(w[y[i]] * kl_row(tx[i], sa[i], 30.0) / classes for i in range(B)) / B
    assert terms["kd_adv"].item() == pytest.approx(alpha * 900 * kd, rel=1e-4)
    if alpha < 1:
        ce = sum(w[y[i]] * ce_row(sx[i], int(y[i])) for i in range(B)) / B
        assert terms["ce"].item() == pytest.approx((1 - alpha) * ce, rel=1e-4)
    else:
        assert set(terms) == {"kd_adv"}
    assert parse_method("fair-ard").cls.magnitude_options("cifar10") == "scale=0.1"


@BN
@pytest.mark.parametrize("classes", [10, 100])
def test_fair_rslad_against_fair_rslad_py(classes, bn):
    """Fair-RSLAD.py:126-138: kl_loss(a, b) = -a b + log(b + 1e-5) b per sample x w[y_i], (1/B) sum, mean over C;
    5/6 on x', 1/6 on x (train mode, in that order), b = softmax(T(x)). The suite's exact KL differs by a
    constant of the teacher only."""
    x, x_adv, y, s, t, ctx, batch = setup(classes, bn=bn)
    m = build(f"fair-rslad:scale={1 / classes}", ctx)
    w = weighted(m, classes)
    expected = train_forwards(s, [x_adv, x]) if bn else None
    terms = m.losses(batch, x_adv)
    assert not bn or same_running_stats(s, expected)
    sa, sx, tx = rows(s(x_adv)), rows(s(x)), rows(t(x))

    def code_term(student_rows):
        total = 0.0
        for i in range(B):
            b, logq = softmax(tx[i]), [math.log(v) for v in softmax(student_rows[i])]
            total += w[y[i]] * sum(-a * bc + math.log(bc + 1e-5) * bc for a, bc in zip(logq, b))
        return total / B / classes

    shift = sum(w[y[i]] * sum(bc * (math.log(bc + 1e-5) - math.log(bc)) for bc in softmax(tx[i]))
                for i in range(B)) / B / classes
    assert terms["kd_adv"].item() == pytest.approx(5 / 6 * (code_term(sa) - shift), rel=1e-4)
    assert terms["kd_nat"].item() == pytest.approx(1 / 6 * (code_term(sx) - shift), rel=1e-4)


@BN
@pytest.mark.parametrize("classes", [10, 100])
@pytest.mark.parametrize("epoch", [0, 7])
def test_fair_iad_against_fair_iad_py(classes, epoch, bn):
    """Fair-IAD.py:173-199, --temp 1 --alpha 1 --beta_iad 0.1 --begin 60 of 200 (here 3 of 10): per-sample KL
    summed (KLDivLoss(reduce=False).sum()), x w[y_i], (1/B) sum; the self term x (1 - A_i) after the warm-up;
    train-mode S(x') then (after the warm-up) S(x)."""
    x, x_adv, y, s, t, ctx, batch = setup(classes, epoch, bn=bn)
    m = build("fair-iad", ctx)
    w = weighted(m, classes)
    expected = train_forwards(s, [x_adv, x] if epoch >= 3 else [x_adv]) if bn else None
    terms = m.losses(batch, x_adv)
    assert not bn or same_running_stats(s, expected)
    sa, tx, ta, sx = rows(s(x_adv)), rows(t(x)), rows(t(x_adv)), rows(s(x))
    kd = sum(w[y[i]] * kl_row(tx[i], sa[i]) for i in range(B)) / B
    assert terms["kd_adv"].item() == pytest.approx(kd, rel=1e-4)
    if epoch >= 3:
        a = [softmax(ta[i])[y[i]] ** 0.1 for i in range(B)]
        self_kl = sum(w[y[i]] * (1 - a[i]) * kl_row(sx[i], sa[i]) for i in range(B)) / B
        assert terms["self_kl"].item() == pytest.approx(self_kl, rel=1e-4)
    else:
        assert set(terms) == {"kd_adv"}
    # temperature and the CE term on the adversarial output (alpha < 1, after warm-up)
    m = build("fair-iad:t=4:alpha=0.5", ctx)
    w = weighted(m, classes)
    terms = m.losses(batch, x_adv)
    kd = sum(w[y[i]] * kl_row(tx[i], sa[i], 4.0) for i in range(B)) / B
    assert terms["kd_adv"].item() == pytest.approx(0.5 * 16 * kd, rel=1e-4)
    if epoch >= 3:
        ce = sum(w[y[i]] * ce_row(sa[i], int(y[i])) for i in range(B)) / B
        assert terms["ce"].item() == pytest.approx(0.5 * ce, rel=1e-4)


# --- the Fair state over epochs -----------------------------------------------------------------------------

def _fair_step(m, s, t, x, x_adv, y, kappa, epoch):
    batch = Batch(x, y, torch.arange(len(y)), s, t, epoch=epoch)
    batch.cache["kappa"] = torch.tensor(kappa)
    return m.losses(batch, x_adv)["kd_adv"].item()


@BN
def test_fair_state_over_three_epochs(bn):
    """Two batches an epoch, unbalanced classes (2, 3, 1 samples). Epoch 0 trains with ones and measures
    Kbar = [1, 2, 4] (true counts; the code's len/C = 2 would give [1, 3, 2]) -> the spec's [2.2857, .8333, .8333];
    epoch 1 trains with those and measures Kbar = [5, 1, 5] from its own kappa only -> [5/6, 5/2, 5/6];
    epoch 2 sees no class-2 sample: the weights of classes 0, 1 are normalised over the two, class 2 keeps its own."""
    classes = 3
    x, x_adv, _, s, t, ctx, _ = setup(classes, bn=bn)
    x, x_adv = x[:3], x_adv[:3]
    m = build("fair-ard:scale=0.5", ctx)
    ref = build("ard:scale=0.5", ctx)
    ya, yb = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1])
    sa, tx = rows(s(x_adv)), rows(t(x))

    def hand(w, y):
        return 0.5 * 900 * sum(w[y[i]] * kl_row(tx[i], sa[i], 30.0) for i in range(3)) / 3

    # epoch 0: all ones (the plain ARD loss)
    loss = _fair_step(m, s, t, x, x_adv, ya, [0, 2, 4], 0)
    assert loss == pytest.approx(ref.losses(Batch(x, ya, torch.arange(3), s, t, epoch=0), x_adv)["kd_adv"].item(),
                                 rel=1e-6)
    _fair_step(m, s, t, x, x_adv, yb, [2, 2, 2], 0)
    assert m.state["kappa_sum"].tolist() == [2, 6, 4] and m.state["count"].tolist() == [2, 3, 1]
    m.end_epoch(EpochEnd(0, 1.0))
    w1 = m.state["weights"].tolist()
    assert w1 == pytest.approx([2.2857, 0.8333, 0.8333], abs=1e-4)
    assert m.state["kappa_sum"].tolist() == [0, 0, 0] and m.state["count"].tolist() == [0, 0, 0]

    # epoch 1: trains with epoch 0's weights; its own kappa only decides the next
    assert _fair_step(m, s, t, x, x_adv, ya, [5, 1, 5], 1) == pytest.approx(hand(w1, ya), rel=1e-4)
    assert _fair_step(m, s, t, x, x_adv, yb, [5, 1, 1], 1) == pytest.approx(hand(w1, yb), rel=1e-4)
    m.end_epoch(EpochEnd(1, 1.0))
    r = [(1 / (k + 1e-5)) ** 2 for k in (5, 1, 5)]
    w2 = [min(max(v * 3 / sum(r), 5 / 6), 5 / 2) for v in r]
    assert m.state["weights"].tolist() == pytest.approx(w2, rel=1e-5)
    assert w2 == pytest.approx([5 / 6, 5 / 2, 5 / 6])

    # epoch 2: class 2 absent
    assert _fair_step(m, s, t, x, x_adv, yb, [6, 3, 3], 2) == pytest.approx(hand(w2, yb), rel=1e-4)
    m.end_epoch(EpochEnd(2, 1.0))
    r = [(1 / (k + 1e-5)) ** 2 for k in (6, 3)]
    w3 = [min(max(v * 2 / sum(r), 5 / 6), 5 / 2) for v in r] + [w2[2]]
    assert m.state["weights"].tolist() == pytest.approx(w3, rel=1e-5)

    # the state is checkpointed with the run: a copy restores it
    fresh = build("fair-ard:scale=0.5", ctx)
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh.state["weights"], m.state["weights"])


def test_fair_end_epoch_reduces_sums_and_counts_over_ranks():
    """Another rank saw one more class-2 sample with kappa 0: Kbar = [1, 2, 2], not [1, 2, 4]."""
    x, x_adv, _, s, t, ctx, _ = setup(3)
    m = build("fair-rslad", ctx)
    _fair_step(m, s, t, x[:6], x_adv[:6], torch.tensor([0, 0, 1, 1, 1, 2]), [0, 2, 2, 2, 2, 4], 0)
    other = {id(m.state["kappa_sum"]): torch.tensor([0, 0, 0]), id(m.state["count"]): torch.tensor([0, 0, 1])}
    m.end_epoch(EpochEnd(0, 1.0, lambda v: v + other[id(v)]))
    assert m.state["weights"].tolist() == pytest.approx(class_weights(torch.tensor([1.0, 2, 2]), 2.0).tolist())


def test_fair_batch_without_an_attack_adds_nothing():
    x, x_adv, y, s, t, ctx, batch = setup(10)
    m = build("fair-iad", ctx)
    m.losses(batch, x_adv)  # no kappa in the cache
    assert int(m.state["count"].sum()) == 0
    m.end_epoch(EpochEnd(0, 1.0))
    assert m.state["weights"].tolist() == [1.0] * 10


# --- forwards the official scripts make for their batch-norm statistics (clean_pass) ---------------------------

def _inputs_seen(s, x, x_adv):
    return ["x'" if torch.equal(v, x_adv) else "x" if torch.equal(v, x) else "?" for v in s.seen]


@pytest.mark.parametrize("label,epoch,expected", [
    ("fair-ard", 0, ["x'"]), ("fair-ard:clean_pass=true", 0, ["x'", "x"]),
    ("fair-iad", 0, ["x'"]), ("fair-iad:clean_pass=true", 0, ["x'", "x", "x'"]),
    ("fair-iad", 7, ["x'", "x"]), ("fair-iad:clean_pass=true", 7, ["x'", "x", "x'"]),
    ("fair-rslad", 0, ["x'", "x"])])
@BN
def test_fair_student_forwards_in_the_scripts_order(label, epoch, expected, bn):
    """Fair-ARD.py:133-137 (S(x') then S(x) every step); Fair-IAD.py:164-170 (S(x'), S(x) every step, then the
    unused basicop S(x')); Fair-RSLAD.py:78,125; each in train mode (the running statistics of those forwards)."""
    x, x_adv, y, s, t, ctx, batch = setup(10, epoch, bn=bn)
    stats = train_forwards(s, [{"x": x, "x'": x_adv}[v] for v in expected]) if bn else None
    terms = build(label, ctx).losses(batch, x_adv)
    assert _inputs_seen(s, x, x_adv) == expected
    assert not bn or same_running_stats(s, stats)
    plain = build(label.split(":")[0], ctx)
    s.seen.clear()
    assert {k: v.item() for k, v in terms.items()} == pytest.approx(
        {k: v.item() for k, v in plain.losses(batch, x_adv).items()})  # the extra forwards change no term


# --- PeerAiD ------------------------------------------------------------------------------------------------

def _peer_setup(classes, options="", bn=False):
    """(BatchNorm only where a test needs it: on CPU its tiny forwards are slow.) x' further from x than in
    ``setup``: the self KL is then not so small that float32 cancellation decides its fourth digit."""
    x, _, y, s, t, ctx, _ = setup(classes, bn=bn)
    x_adv = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(7))).clamp(0, 1)
    m = build(":".join(["peeraid", *([options] if options else [])]), ctx)
    peer = m.networks()["peer"].module
    s.train()
    peer.train()
    return x, x_adv, y, s, m, peer, Batch(x, y, torch.arange(B), s, None, epoch=0)


def test_peeraid_peer_is_one_network():
    x, x_adv, y, s, m, peer, batch = _peer_setup(10)
    nets = m.networks()
    assert set(nets) == {"peer"} and nets["peer"] is m.networks()["peer"] and nets["peer"].module is peer
    assert nets["peer"].train == {}  # the run's optimiser settings
    assert isinstance(peer, Tiny) and peer is not s
    assert not METHODS.get("peeraid").needs_teacher


@pytest.mark.parametrize("classes", [10, 100])
@pytest.mark.parametrize("extra", ["", "lambda1=0.035:t=2:tau_r=3"])
def test_peeraid_against_main_py(classes, extra):
    """main.py:363, 393-397 with the README's CIFAR commands (T 5, tr 1, g1 1, g2 0.1 / 1, l1 0, l2 1, l3 1) and the
    recipe's magnitude options (nn.KLDivLoss() 'mean' = batchmean / C): explicit loops over the formulas."""
    dataset = "cifar10" if classes == 10 else "cifar100"
    options = ":".join(o for o in (METHODS.get("peeraid").magnitude_options(dataset), extra) if o)
    x, x_adv, y, s, m, peer, batch = _peer_setup(classes, options)
    o = m.options
    assert o.scale == pytest.approx(1 / classes) and o.gamma2 == (0.1 if classes == 10 else 1.0)
    terms = m.losses(batch, x_adv)
    with torch.no_grad():  # train mode: batch statistics, the same values as inside losses()
        pa, sa, sx = rows(peer(x_adv)), rows(s(x_adv)), rows(s(x))
    tt, tr = o.t, o.tau_r
    peer_ce = sum(ce_row(pa[i], int(y[i])) for i in range(B)) / B
    peer_kl = sum(kl_row(sa[i], pa[i], tr) for i in range(B)) / (B * classes)
    kl_peer = sum(kl_row(pa[i], sa[i], tt) for i in range(B)) / (B * classes)
    kl_self = sum(kl_row(sx[i], sa[i], tt) for i in range(B)) / (B * classes)
    assert terms["peer_ce"].item() == pytest.approx(1.0 * peer_ce, rel=1e-4)
    assert terms["peer_kl"].item() == pytest.approx(o.gamma2 * tr * tr * peer_kl, rel=1e-4)
    assert terms["student_kl_peer"].item() == pytest.approx(1.0 * tt * tt * kl_peer, rel=1e-4)
    assert terms["student_kl_self"].item() == pytest.approx(1.0 * tt * tt * kl_self, rel=1e-4)
    if extra:
        ce = sum(ce_row(sa[i], int(y[i])) for i in range(B)) / B
        assert terms["student_ce"].item() == pytest.approx(0.035 * ce, rel=1e-4)
    else:
        assert "student_ce" not in terms  # lambda1 = 0 on CIFAR


@pytest.mark.parametrize("classes", [10, 100])
def test_peeraid_attack_objective_uses_the_peers_eval_mode_clean_logits(classes):
    """attack_function.py:65-84 with main.py:346-352: sum_i KL(softmax(P_eval(x_i)) || softmax(S(x'_i))), P(x) once a
    batch in eval mode without a graph, the peer back in train() and its running statistics untouched."""
    x, x_adv, y, s, m, peer, batch = _peer_setup(classes, bn=True)
    with torch.no_grad():
        p_train = peer(x)  # (a train-mode forward moves the running statistics: before the eval-mode one)
        peer.eval()
        p_eval = peer(x)
        peer.train()
    assert not torch.allclose(p_eval, p_train, rtol=1e-2)  # the modes differ, so the test sees which one
    p_eval = rows(p_eval)
    tracked = int(peer.bn.num_batches_tracked)
    peer.seen.clear()
    s.eval()
    value = m.inner_objective(batch, x_adv).item()
    m.inner_objective(batch, x_adv)
    with torch.no_grad():
        sa = rows(s(x_adv))
    assert value == pytest.approx(sum(kl_row(p_eval[i], sa[i]) for i in range(B)), rel=1e-4)
    assert len(peer.seen) == 1 and peer.training and int(peer.bn.num_batches_tracked) == tracked
    assert not batch.cache["peeraid_peer_clean"].requires_grad
    assert METHODS.get("peeraid").inner.start == "normal" and METHODS.get("peeraid").inner.student_mode == "eval"


def test_peeraid_harness_attack_runs_with_the_peer_frozen():
    x, x_adv, y, s, m, peer, batch = _peer_setup(10)
    batch.generator = torch.Generator().manual_seed(0)
    peer.seen.clear()
    adv = adversarial_examples(m, batch, AttackConfig(eps=0.1, steps=3))
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and len(peer.seen) == 1
    assert all(p.requires_grad for p in peer.parameters()) and all(p.grad is None for p in peer.parameters())
    assert s.training and peer.training


@pytest.mark.parametrize("second_forward,expected", [(True, ["x'", "x'", "x"]), (False, ["x'", "x"])])
def test_peeraid_forwards_and_batch_norm_updates(second_forward, expected):
    """main.py:359-387: P(x') train, S(x') train, S(x') train again, S(x) train: the student's running statistics
    move three times a step (two without the second forward), the peer's once; the terms are the same."""
    x, x_adv, y, s, m, peer, batch = _peer_setup(10, f"second_forward={second_forward}", bn=True)
    s.seen.clear()
    peer.seen.clear()
    n_s, n_p = int(s.bn.num_batches_tracked), int(peer.bn.num_batches_tracked)
    terms = m.losses(batch, x_adv)
    assert _inputs_seen(s, x, x_adv) == expected and _inputs_seen(peer, x, x_adv) == ["x'"]
    assert int(s.bn.num_batches_tracked) - n_s == len(expected) and int(peer.bn.num_batches_tracked) - n_p == 1
    other = build(f"peeraid:second_forward={not second_forward}", m.ctx)
    other._peer = m._peer
    assert {k: v.item() for k, v in terms.items()} == pytest.approx(
        {k: v.item() for k, v in other.losses(batch, x_adv).items()}, rel=1e-5)


def _grads(loss, params):
    return [g if g is not None else torch.zeros_like(p)
            for g, p in zip(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True), params)]


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
def test_peeraid_gradient_routing():
    """One backward of L_peer + L_student (main.py:400-401): the student receives the gamma2 term's gradient through
    the undetached S(x') (compare: the same loss with that S(x') detached) and the lambda3 term's through S(x);
    the peer receives nothing from L_student (its logits are detached there)."""
    x, x_adv, y, s, m, peer, batch = _peer_setup(10, "scale=0.1:gamma2=5")
    sp, pp = list(s.parameters()), list(peer.parameters())
    terms = m.losses(batch, x_adv)
    total = sum(terms.values())
    g_student, g_peer = _grads(total, sp), _grads(total, pp)

    def hand(detach_target: bool, detach_nat: bool):
        pa, st = peer(x_adv), s(x_adv)
        st2, sx = s(x_adv), s(batch.x)
        tgt = st.detach() if detach_target else st
        nat = sx.detach() if detach_nat else sx
        kl = nn.KLDivLoss()  # 'mean': sum / (B C), as main.py
        return (F.cross_entropy(pa, y) + kl(F.log_softmax(pa, 1), F.softmax(tgt, 1)) * 5
                + kl(F.log_softmax(st2 / 5, 1), F.softmax(pa.detach() / 5, 1)) * 25
                + kl(F.log_softmax(st2 / 5, 1), F.softmax(nat / 5, 1)) * 25)

    code = hand(False, False)
    assert code.item() == pytest.approx(total.item(), rel=1e-5)
    for a, b in zip(g_student, _grads(code, sp)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    for a, b in zip(g_peer, _grads(code, pp)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    # the gamma2 term reaches the student: detaching its S(x') changes the student's gradient, by exactly that term
    detached = _grads(hand(True, False), sp)
    assert max(float((a - b).abs().max()) for a, b in zip(g_student, detached)) > 1e-4
    gamma2_part = _grads(terms["peer_kl"], sp)
    for a, b, c in zip(g_student, detached, gamma2_part):
        assert torch.allclose(a - b, c, rtol=1e-3, atol=1e-7)
    # the lambda3 target S(x) is not detached either
    assert max(float((a - b).abs().max()) for a, b in zip(g_student, _grads(hand(False, True), sp))) > 1e-5
    # the peer: nothing from the student's terms; all of its gradient is L_peer's
    student_terms = terms["student_kl_peer"] + terms["student_kl_self"]
    grads = torch.autograd.grad(student_terms, pp, retain_graph=True, allow_unused=True)
    assert all(g is None or float(g.abs().max()) == 0.0 for g in grads)
    for a, b in zip(g_peer, _grads(terms["peer_ce"] + terms["peer_kl"], pp)):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-8)


def test_peeraid_needs_a_student_builder():
    from bench.common.errors import BenchError
    x, x_adv, y, s, t, ctx, batch = setup(10)
    m = build("peeraid", Context(**{**ctx.__dict__, "build_student": None}))
    with pytest.raises(BenchError, match="build_student"):
        m.networks()


# --- recipes --------------------------------------------------------------------------------------------------

def test_recipes():
    for name, epochs, milestones, paper in (("fair-ard", 200, (100,), (100, 150)),
                                            ("fair-rslad", 300, (215, 260, 285), None),
                                            ("fair-iad", 200, (100,), (100, 150))):
        cls = METHODS.get(name)
        r = cls.official
        assert cls.needs_teacher and r.code and r.checkpoint == "last"
        assert r.train["epochs"] == epochs and r.train["milestones"] == milestones and r.train["nesterov"] is True
        assert r.train["weight_decay"] == 2e-4 and r.train["batch_size"] == 128 and r.train["lr"] == 0.1
        assert r.datasets == ("cifar10",) and "cifar100" not in r.by_dataset  # the scripts are CIFAR-10 only
        assert (cls.paper_train or {}).get("milestones", milestones) == (paper or milestones)
        assert "Robust Fairness" in cls.citation and "NeurIPS 2023" in cls.citation
    assert METHODS.get("fair-ard").official.official_options == "clean_pass=true"
    assert METHODS.get("fair-iad").official.official_options == "clean_pass=true"
    assert METHODS.get("fair-rslad").magnitude_options("cifar10") == "scale=0.1"
    assert parse_method("fair-iad").options.beta_iad == 0.1 and parse_method("fair-iad").options.beta == 2.0
    r = METHODS.get("peeraid").official
    assert r.train["milestones"] == (214, 259, 284) and r.train["swa_start"] == 214 and r.train["epochs"] == 300
    assert not r.train.get("nesterov", False) and r.checkpoint == "best-test-pgd10"
    assert r.options == {"cifar10": "scale=0.1", "cifar100": "scale=0.01:gamma2=1"}
    assert "CVPR 2024" in METHODS.get("peeraid").citation


# --- through the harness's training loop (tiny, in memory) ----------------------------------------------------

def _tiny_data(classes=3, n=40):
    from bench.data.images import ImageData
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 2, 2), generator=g, dtype=torch.uint8)
    y = torch.tensor([0] * 20 + [1] * 15 + [2] * 5)[torch.randperm(n, generator=g)]  # unbalanced
    return ImageData("tiny", x, y, x[:8], y[:8], [str(c) for c in range(classes)], (0.0,) * 3, (1.0,) * 3)


def test_fair_ard_through_the_training_loop(tmp_path, monkeypatch):
    """Two epochs of train_model: every sample counted once an epoch (true per-class counts), kappa in [0, K],
    the weights of epoch 1 from epoch 0's statistics, the accumulators empty after each epoch."""
    from bench.config.schema import TrainConfig
    from bench.train.loop import train_model
    from bench.methods._fair import FairReweight
    data = _tiny_data()
    student, teacher = Tiny(6, 3, 1), Tiny(7, 3, 2).eval()
    ctx = Context(num_classes=3, n_train=40, train_labels=data.y_train, student_dim=6, teacher_dim=7,
                  device=torch.device("cpu"), epochs=2)
    m = build("fair-ard:scale=0.3333", ctx)
    seen = []
    real = FairReweight.end_epoch

    def spy(self, end):
        seen.append((end.reduce(self.state["kappa_sum"]).clone(), self.state["count"].clone(),
                     self.state["weights"].clone()))
        real(self, end)
    monkeypatch.setattr(FairReweight, "end_epoch", spy)
    train_model(student, m, data, TrainConfig(epochs=2, batch_size=16, lr=0.05), AttackConfig(eps=0.1, steps=3),
                teacher, tmp_path, torch.device("cpu"))
    assert len(seen) == 2
    for sums, counts, _ in seen:
        assert counts.tolist() == [20, 15, 5] and bool((sums <= 3 * counts).all())
    assert seen[0][2].tolist() == [1.0, 1.0, 1.0]  # epoch 0 trains with ones
    kbar = seen[0][0].float() / seen[0][1].float()
    assert seen[1][2].tolist() == pytest.approx(class_weights(kbar, 2.0).tolist())  # epoch 1 with epoch 0's
    assert m.state["count"].tolist() == [0, 0, 0]


def test_peeraid_through_the_training_loop_with_swa(tmp_path):
    from bench.config.schema import TrainConfig
    from bench.train.loop import train_model
    data = _tiny_data()
    student = Tiny(6, 3, 1)
    ctx = Context(num_classes=3, n_train=40, train_labels=data.y_train, student_dim=6, teacher_dim=None,
                  device=torch.device("cpu"), epochs=2, build_student=lambda: Tiny(6, 3, 5))
    m = build("peeraid:scale=0.3333", ctx)
    peer = m.networks()["peer"].module
    before = [p.detach().clone() for p in peer.parameters()]
    history = train_model(student, m, data, TrainConfig(epochs=2, batch_size=16, lr=0.05, swa_start=1),
                          AttackConfig(eps=0.1, steps=2), None, tmp_path, torch.device("cpu"))
    assert m.networks()["peer"].module is peer
    assert any(not torch.equal(a, b) for a, b in zip(before, peer.parameters()))  # the peer trains
    assert [r["swa_snapshots"] for r in history] == [0, 1]
    assert {"peer_ce", "peer_kl", "student_kl_peer", "student_kl_self"} <= set(history[-1])
