"""MTARD and ABSLD (issue 21) against their official code's formulas (spec-mtard-absld.md), written here
independently with explicit loops and ``math``, on 10 and 100 classes; their state against the spec's
worked examples and against hand-computed updates over two epochs. Their terms and statistics come from
train-mode forwards: the tests that check them run on a student with batch norm too (``bn``), where a forward
in the wrong mode or order gives other numbers (without batch norm, train and eval modes agree)."""
import math

import pytest
import torch
from _formulas import Tiny, ce_row, kl_row, rows, same_running_stats, softmax, train_forwards

import bench.methods.mtard as mtard_module
from bench.config.schema import TEACHER_ROLES
from bench.methods import METHODS, Batch, Context, parse_method
from bench.methods.absld import absld_temperature_update
from bench.methods.base import EpochEnd
from bench.methods.mtard import mtard_weight_update

B = 8


def code_kl(target_rows, student_rows):
    """The scripts' kl_loss then torch.mean: mean over B x C of p (log(p + 1e-5) - log q)."""
    total, n = 0.0, 0
    for t_row, s_row in zip(target_rows, student_rows):
        p, q = softmax(t_row), softmax(s_row)
        total += sum(a * (math.log(a + 1e-5) - math.log(b)) for a, b in zip(p, q))
        n += len(p)
    return total / n


def make_ctx(classes, y):
    return Context(num_classes=classes, n_train=B, train_labels=y, student_dim=6, teacher_dim=7,
                   device=torch.device("cpu"), epochs=4)


def batches(classes, n, seed=0):
    """``n`` fixed (x, x', y) triples."""
    g = torch.Generator().manual_seed(1000 * classes + seed)
    out = []
    for _ in range(n):
        x = torch.rand(B, 3, 2, 2, generator=g)
        x_adv = (x + 0.03 * torch.randn(x.shape, generator=g)).clamp(0, 1)
        out.append((x, x_adv, torch.randint(0, classes, (B,), generator=g)))
    return out


def nets(classes, bn=False):
    return Tiny(6, classes, 1, bn=bn), Tiny(7, classes, 2).eval(), Tiny(8, classes, 3, 2.0).eval()




def make_batch(x, y, s, t, nat=None, epoch=0, lr_scale=1.0):
    return Batch(x, y, torch.arange(B), s, t, epoch=epoch, teachers={"natural": nat} if nat else {},
                 lr_scale=lr_scale)


# --- MTARD --------------------------------------------------------------------------------------


def test_mtard_worked_example_pure_update():
    """Spec 1.3: KL (2.0, 1.0), (1.8, 0.6), (1.6, 0.3) -> w_nat 0.5, 0.4975, 0.4918806818."""
    init_adv, init_nat = 2.0, 1.0
    w = 0.5
    expected = [0.5, 0.4975, 0.4918806818]
    for (adv, nat), want in zip([(2.0, 1.0), (1.8, 0.6), (1.6, 0.3)], expected):
        w = mtard_weight_update(w, adv / init_adv, nat / init_nat, 0.025, 1.0)
        assert w == pytest.approx(want, rel=1e-9)
        assert 1 - w == pytest.approx(1 - want, rel=1e-9)


@pytest.mark.parametrize("classes", [10, 100])
def test_mtard_worked_example_through_losses(classes, monkeypatch):
    """The same three steps through ``losses()``: the code's loss values fed in; each step's terms use the
    weight already updated with that step's values (the update comes BEFORE the loss)."""
    queue = [2.0, 1.0, 1.8, 0.6, 1.6, 0.3]   # (adv, nat) per step, in the order losses() asks
    monkeypatch.setattr(mtard_module, "mtard_loss_value", lambda s, t: torch.tensor(queue.pop(0), dtype=torch.float64))
    s, t, nat = nets(classes)
    (x, x_adv, y), = batches(classes, 1)
    m = parse_method("mtard").build(make_ctx(classes, y))
    kl_adv = sum(kl_row(a, b) for a, b in zip(rows(t(x_adv)), rows(s(x_adv)))) / B
    kl_nat = sum(kl_row(a, b) for a, b in zip(rows(nat(x)), rows(s(x)))) / B
    for want in [0.5, 0.4975, 0.4918806818]:
        terms = m.losses(make_batch(x, y, s, t, nat), x_adv)
        assert m.state["w_nat"].item() == pytest.approx(want, rel=1e-9)
        assert terms["kd_nat"].item() == pytest.approx(want * kl_nat, rel=1e-5)
        assert terms["kd_adv"].item() == pytest.approx((1 - want) * kl_adv, rel=1e-5)
    assert m.state["init_adv"].item() == 2.0 and m.state["init_nat"].item() == 1.0
    # the update order is what is checked: the weight before this step's update would be 0.4975 here
    assert terms["kd_nat"].item() != pytest.approx(0.4975 * kl_nat, rel=1e-5)


@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("classes", [10, 100])
def test_mtard_against_script(classes, bn):
    """M10/M100:72-100: scale=0.1 gives the code's mean over B x C (x10 on CIFAR-100); the state's values are
    the code's, with the +1e-5; the teachers: robust at x', natural at x; forwards S(x') then S(x), train mode."""
    s, t, nat = nets(classes, bn)
    data = batches(classes, 2)
    m = parse_method("mtard:scale=0.1").build(make_ctx(classes, data[0][2]))
    w = 0.5
    for step, (x, x_adv, y) in enumerate(data):
        s.seen.clear()
        expected = train_forwards(s, [x_adv, x]) if bn else None
        terms = m.losses(make_batch(x, y, s, t, nat), x_adv)
        assert [id(v) for v in s.seen] == [id(x_adv), id(x)]   # S(x') then S(x), each once
        assert not bn or same_running_stats(s, expected)
        sa, sx, ta, tn = rows(s(x_adv)), rows(s(x)), rows(t(x_adv)), rows(nat(x))
        v_adv, v_nat = code_kl(ta, sa), code_kl(tn, sx)
        if step == 0:
            init_adv, init_nat = v_adv, v_nat
            assert m.state["init_adv"].item() == pytest.approx(v_adv, rel=1e-5)
            assert m.state["init_nat"].item() == pytest.approx(v_nat, rel=1e-5)
        la, ln = v_adv / init_adv, v_nat / init_nat
        w = w - 0.025 * (w - ln / (la + ln))
        assert m.state["w_nat"].item() == pytest.approx(w, rel=1e-6)
        # the code's loss: w_adv KL_adv + w_nat KL_nat, each mean over B x C without the 1e-5 (gradient-equal),
        # times 10 on CIFAR-100
        times = 10 if classes == 100 else 1
        exact_adv = times * sum(kl_row(a, b) for a, b in zip(ta, sa)) / (B * classes)
        exact_nat = times * sum(kl_row(a, b) for a, b in zip(tn, sx)) / (B * classes)
        assert terms["kd_adv"].item() == pytest.approx((1 - w) * exact_adv, rel=1e-4)
        assert terms["kd_nat"].item() == pytest.approx(w * exact_nat, rel=1e-4)
    assert step == 1 and m.state["w_nat"].item() != 0.5
    # the +1e-5 is in the state's values: they are not the exact KL / C
    exact = sum(kl_row(a, b) for a, b in zip(rows(t(data[0][1])), rows(s(data[0][1])))) / (B * classes)
    assert abs(m.state["init_adv"].item() - exact) > 3e-6
    # no gradient through the weights or the values
    assert not any(v.requires_grad for v in m.state.values())
    assert m.inner == METHODS.get("mtard").inner and m.inner.student_mode == "eval" and m.inner.start == "normal"


@pytest.mark.parametrize("classes", [10, 100])
def test_mtard_attack_objective_is_ce_against_labels(classes):
    s, t, nat = nets(classes)
    (x, x_adv, y), = batches(classes, 1)
    m = parse_method("mtard").build(make_ctx(classes, y))
    want = sum(ce_row(r, int(label)) for r, label in zip(rows(s(x_adv)), y))
    assert m.inner_objective(make_batch(x, y, s, t, nat), x_adv).item() == pytest.approx(want, rel=1e-5)


def test_mtard_state_after_two_epochs_eta_follows_lr():
    """Three batches at lr ratio 1, then three at 0.1 (eta 0.025 then 0.0025, M10:135-138); end_epoch leaves
    the state alone; the initial values stay the first batch's."""
    classes = 10
    s, t, nat = nets(classes)
    data = batches(classes, 3, seed=5)
    m = parse_method("mtard:eta=0.05:beta=2").build(make_ctx(classes, data[0][2]))
    w, init = 0.5, None
    for epoch, lr_scale in enumerate([1.0, 0.1]):
        for x, x_adv, y in data:
            m.losses(make_batch(x, y, s, t, nat, epoch=epoch, lr_scale=lr_scale), x_adv)
            v = (code_kl(rows(t(x_adv)), rows(s(x_adv))), code_kl(rows(nat(x)), rows(s(x))))
            init = init or v
            la, ln = v[0] / init[0], v[1] / init[1]
            w = w - 0.05 * lr_scale * (w - ln ** 2 / (la ** 2 + ln ** 2))
        m.end_epoch(EpochEnd(epoch, 0.1))
        assert m.state["w_nat"].item() == pytest.approx(w, rel=1e-6)
    assert m.state["init_adv"].item() == pytest.approx(init[0], rel=1e-5)
    # a broken decay (eta not following the lr) gives another weight
    assert m.state["w_nat"].item() != pytest.approx(0.5, rel=1e-4)


def test_mtard_uses_the_global_batch_mean_for_its_values():
    classes = 10
    s, t, nat = nets(classes)
    (x, x_adv, y), = batches(classes, 1)

    class Counting(Batch):
        calls = 0

        def global_mean(self, value):
            Counting.calls += 1
            return super().global_mean(value)
    m = parse_method("mtard").build(make_ctx(classes, y))
    m.losses(Counting(x, y, torch.arange(B), s, t, epoch=0, teachers={"natural": nat}), x_adv)
    assert Counting.calls == 2


# --- ABSLD --------------------------------------------------------------------------------------


def test_absld_worked_example_pure_update():
    """Spec 2.4: epoch-1 sums [100, ..., 1000], then [50]*9 + [150], r = 0.1."""
    tau = torch.ones(10)
    tau = absld_temperature_update(tau, torch.arange(100.0, 1001.0, 100.0), 0.1)
    assert tau.tolist() == pytest.approx([1.1, 1.077778, 1.055556, 1.033333, 1.011111, 0.988889, 0.966667,
                                          0.944444, 0.922222, 0.9], abs=1e-6)
    tau = absld_temperature_update(tau, torch.tensor([50.0] * 9 + [150.0]), 0.1)
    assert tau.tolist() == pytest.approx([1.111111, 1.088889, 1.066667, 1.044444, 1.022222, 1.0, 0.977778,
                                          0.955556, 0.933333, 0.8], abs=1e-6)
    # clamped to [0.5, 5]; all losses equal: unchanged (the code would give NaN)
    assert absld_temperature_update(torch.tensor([0.55, 4.95]), torch.tensor([2.0, 1.0]), 0.1).tolist() == \
        pytest.approx([0.5, 5.0])
    assert absld_temperature_update(torch.tensor([1.3, 0.7]), torch.tensor([3.0, 3.0]), 0.1).tolist() == \
        pytest.approx([1.3, 0.7])


def test_absld_worked_example_through_end_epoch():
    """The example's sums in the state (5,000 images per class, as CIFAR-10) and end_epoch twice."""
    m = parse_method("absld").build(make_ctx(10, torch.arange(B) % 10))
    for sums in (torch.arange(100.0, 1001.0, 100.0), torch.tensor([50.0] * 9 + [150.0])):
        m.state["loss_adv"] = sums.double().clone()
        m.state["loss_nat"] = sums.double().flip(0)
        m.state["count"] = torch.full((10,), 5000.0, dtype=torch.float64)
        m.end_epoch(EpochEnd(0, 1.0))
        assert m.state["loss_adv"].abs().sum() == 0 and m.state["count"].sum() == 0   # reset for the next epoch
    assert m.state["tau_adv"].tolist() == pytest.approx([1.111111, 1.088889, 1.066667, 1.044444, 1.022222, 1.0,
                                                         0.977778, 0.955556, 0.933333, 0.8], abs=1e-6)
    assert m.state["tau_nat"][0].item() == pytest.approx(0.9 - 0.1, abs=1e-6)   # class 0 is the hardest there


def expected_targets(z, y, ta, tn, temps):
    """A:96-100 as written: row i divided by tau_adv[y_i], then (aliased) by tau_nat[y_i]; or the paper's."""
    adv, nat = [], []
    for row, label in zip(z, y):
        a, n = ta[label], tn[label]
        if temps == "code":
            both = [v / a / n for v in row]
            adv.append(both)
            nat.append(both)
        else:
            adv.append([v / a for v in row])
            nat.append([v / n for v in row])
    return adv, nat


@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("classes", [10, 100])
@pytest.mark.parametrize("temps", ["paper", "code"])
def test_absld_against_script(classes, temps, bn):
    """A:94-127 and AL:26-59 with temperatures away from 1: the attack target (student in eval mode) and both
    terms, 5/6 and 1/6, scale=0.1 = the code's mean over B x C on CIFAR-10; the per-class CE sums of the
    detached train-mode logits, S(x') then S(x)."""
    s, t, _ = nets(classes, bn)
    (x, x_adv, y), = batches(classes, 1)
    m = parse_method(f"absld:scale=0.1:temps={temps}").build(make_ctx(classes, y))
    g = torch.Generator().manual_seed(7)
    m.state["tau_adv"] = 0.5 + 4.5 * torch.rand(classes, generator=g)
    m.state["tau_nat"] = 0.5 + 4.5 * torch.rand(classes, generator=g)
    ta, tn = m.state["tau_adv"].tolist(), m.state["tau_nat"].tolist()
    yl = y.tolist()
    adv_t, nat_t = expected_targets(rows(t(x)), yl, ta, tn, temps)
    batch = make_batch(x, y, s, t)
    s.eval()
    inner = sum(kl_row(a, b) for a, b in zip(adv_t, rows(s(x_adv))))
    assert m.inner_objective(batch, x_adv).item() == pytest.approx(inner, rel=1e-4)
    s.train()
    s.seen.clear()
    expected = train_forwards(s, [x_adv, x]) if bn else None
    terms = m.losses(batch, x_adv)
    assert [id(v) for v in s.seen] == [id(x_adv), id(x)]   # S(x') then S(x)
    assert not bn or same_running_stats(s, expected)
    sa, sx = rows(s(x_adv)), rows(s(x))
    kl_a = sum(kl_row(a, b) for a, b in zip(adv_t, sa)) / B
    kl_n = sum(kl_row(a, b) for a, b in zip(nat_t, sx)) / B
    assert terms["kd_adv"].item() == pytest.approx(0.1 * 5 / 6 * kl_a, rel=1e-4)
    assert terms["kd_nat"].item() == pytest.approx(0.1 * 1 / 6 * kl_n, rel=1e-4)
    if classes == 10:   # the script's torch.mean of the elementwise terms (the 1e-5 aside: a constant)
        exact = 5 / 6 * kl_a * B / (B * classes) + 1 / 6 * kl_n * B / (B * classes)
        assert (terms["kd_adv"] + terms["kd_nat"]).item() == pytest.approx(exact, rel=1e-4)
        assert 5 / 6 * code_kl(adv_t, sa) + 1 / 6 * code_kl(nat_t, sx) == pytest.approx(exact, abs=2e-5)
    for c in range(classes):
        mine = [i for i in range(B) if yl[i] == c]
        assert m.state["loss_adv"][c].item() == pytest.approx(sum(ce_row(sa[i], c) for i in mine), rel=1e-5, abs=1e-6)
        assert m.state["loss_nat"][c].item() == pytest.approx(sum(ce_row(sx[i], c) for i in mine), rel=1e-5, abs=1e-6)
        assert m.state["count"][c].item() == len(mine)
    assert not any(v.requires_grad for v in m.state.values())


def test_absld_code_temps_is_the_product_temperature():
    """E1: with tau_adv = 2 and tau_nat = 3 on class 0, temps=code divides by 6 everywhere; the paper's form by 2
    (attack, adversarial term) and 3 (clean term)."""
    s, t, _ = nets(10)
    x, x_adv, _ = batches(10, 1)[0]
    y = torch.zeros(B, dtype=torch.long)
    z = t(x).detach()
    for temps, (da, dn) in (("code", (6.0, 6.0)), ("paper", (2.0, 3.0))):
        m = parse_method(f"absld:temps={temps}").build(make_ctx(10, y))
        m.state["tau_adv"][0], m.state["tau_nat"][0] = 2.0, 3.0
        adv, nat = m.soft_targets(make_batch(x, y, s, t))
        assert torch.allclose(adv, z / da, rtol=1e-6) and torch.allclose(nat, z / dn, rtol=1e-6)
    assert METHODS.get("absld").official.official_options == "temps=code"


@pytest.mark.parametrize("bn", [False, True])
def test_absld_state_after_two_epochs(bn):
    """Three batches an epoch through losses(), end_epoch with the next epoch's lr ratio 1 then 0.1 (r decayed
    BEFORE that epoch's update, A:173-189); the means use the true per-class counts; sums reset each epoch;
    the statistics from train-mode forwards."""
    classes = 5   # Digits-like: few classes, unequal counts
    s, t, _ = nets(classes, bn)
    data = batches(classes, 3, seed=3)
    m = parse_method("absld:temps=code").build(make_ctx(classes, data[0][2]))
    tau = {"adv": [1.0] * classes, "nat": [1.0] * classes}
    kd_epoch2 = None
    for epoch, next_scale in enumerate([1.0, 0.1]):
        sums = {"adv": [0.0] * classes, "nat": [0.0] * classes}
        count = [0] * classes
        for x, x_adv, y in data:
            terms = m.losses(make_batch(x, y, s, t, epoch=epoch), x_adv)
            sa, sx = rows(s(x_adv)), rows(s(x))
            for i, label in enumerate(y.tolist()):
                sums["adv"][label] += ce_row(sa[i], label)
                sums["nat"][label] += ce_row(sx[i], label)
                count[label] += 1
            if epoch == 1:   # this epoch's soft labels use the temperatures after epoch 1
                adv_t, _ = expected_targets(rows(t(x)), y.tolist(), tau["adv"], tau["nat"], "code")
                kd_epoch2 = (terms["kd_adv"].item(), 5 / 6 * sum(kl_row(a, b) for a, b in zip(adv_t, sa)) / B)
        rate = 0.1 * next_scale
        for k in ("adv", "nat"):
            means = [sums[k][c] / max(count[c], 1) for c in range(classes)]
            mean = sum(means) / classes
            g = [v - mean for v in means]
            top = max(abs(v) for v in g)
            tau[k] = [min(max(tau[k][c] - rate * g[c] / top, 0.5), 5.0) for c in range(classes)]
        m.end_epoch(EpochEnd(epoch, next_scale))
        assert m.state["tau_adv"].tolist() == pytest.approx(tau["adv"], abs=1e-6)
        assert m.state["tau_nat"].tolist() == pytest.approx(tau["nat"], abs=1e-6)
        assert m.state["count"].sum() == 0 and m.state["loss_nat"].abs().sum() == 0
    assert kd_epoch2[0] == pytest.approx(kd_epoch2[1], rel=1e-4)
    assert max(abs(v - 1.0) for v in tau["adv"]) > 0.05   # the temperatures did move


def test_absld_uses_per_class_means_with_unequal_counts():
    """Sums [10, 10, 30] over counts [1, 10, 10]: the means [10, 1, 3] make class 0 the hardest; the raw sums
    would make class 2 the hardest (what would go wrong with a CIFAR constant)."""
    m = parse_method("absld").build(make_ctx(3, torch.arange(B) % 3))
    m.state["loss_adv"] = torch.tensor([10.0, 10.0, 30.0], dtype=torch.float64)
    m.state["loss_nat"] = torch.tensor([10.0, 10.0, 30.0], dtype=torch.float64)
    m.state["count"] = torch.tensor([1.0, 10.0, 10.0], dtype=torch.float64)
    m.end_epoch(EpochEnd(0, 1.0))
    tau = m.state["tau_adv"].tolist()
    assert tau[0] == pytest.approx(0.9, abs=1e-6) and tau[0] < tau[2] < tau[1]


# --- both ---------------------------------------------------------------------------------------


def test_registered_with_recipes_and_citations():
    mt, ab = METHODS.get("mtard"), METHODS.get("absld")
    for cls in (mt, ab):
        assert cls.citation and cls.summary and cls.note and cls.needs_teacher and cls.inner is not None
        r = cls.official
        assert r.code and r.checkpoint == "best-test-pgd20" and r.train["milestones"] == (215, 260, 285)
        assert r.train["epochs"] == 300 and r.attack == {"eps": 8 / 255, "step_ratio": 0.25, "steps": 10}
        assert all(k in r.sources for k in ("epochs", "lr", "milestones", "checkpoint", "eps"))
    assert set(mt.teachers) == {"natural"} <= set(TEACHER_ROLES)
    assert mt.official.options == {"cifar10": "scale=0.1", "cifar100": "scale=0.1"}
    assert ab.official.options == {"cifar10": "scale=0.1", "cifar100": "scale=0.01"}    # the mean over B x C
    assert ab.official.datasets == ("cifar10",) and mt.official.datasets == ("cifar10",)   # no runnable CIFAR-100 script
    assert "ECCV 2022" in mt.citation and "NeurIPS 2024" in ab.citation
