"""AdaIAD, DGAD and IGDM (issue 21, the methods the present contract holds) against their official code's
formulas, written here independently with explicit loops, on 10 and 100 classes."""

import pytest
import torch
from _formulas import Tiny, kl_row, rows, softmax

from bench.methods import METHODS, Batch, Context, parse_method

B = 8


def setup(classes: int, epoch: int = 0, epochs: int = 10, teacher_scale: float = 1.0):
    g = torch.Generator().manual_seed(classes)
    x = torch.rand(B, 3, 2, 2, generator=g)
    x_adv = (x + 0.03 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    y = torch.randint(0, classes, (B,), generator=g)
    student, teacher = Tiny(6, classes, 1), Tiny(7, classes, 2, teacher_scale).eval()
    ctx = Context(num_classes=classes, n_train=B, train_labels=y, student_dim=6, teacher_dim=7,
                  device=torch.device("cpu"), epochs=epochs)
    return x, x_adv, y, student, teacher, ctx, Batch(x, y, torch.arange(B), student, teacher, epoch=epoch)


@pytest.mark.parametrize("classes", [10, 100])
@pytest.mark.parametrize("epoch", [0, 7])
def test_adaiad_against_main_py(classes, epoch):
    """main.py:371-381 with --temp 30, --IAD_alpha 1, --IAD_beta 0.1, --IAD_begin 60 of 200 (here 3 of 10)."""
    x, x_adv, y, s, t, ctx, batch = setup(classes, epoch)
    terms = parse_method("adaiad").build(ctx).losses(batch, x_adv)
    sa, ta, sx = rows(s(x_adv)), rows(t(x_adv)), rows(s(x))
    kd = 30 ** 2 * sum(kl_row(ta[i], sa[i], 30.0) for i in range(B)) / B
    assert terms["kd_adv"].item() == pytest.approx(kd, rel=1e-4)
    if epoch >= 3:
        a = [softmax(ta[i])[y[i]] ** 0.1 for i in range(B)]
        self_kl = sum((1 - a[i]) * kl_row(sx[i], sa[i]) for i in range(B)) / B
        assert terms["self_kl"].item() == pytest.approx(self_kl, rel=1e-4)
    else:
        assert "self_kl" not in terms
    # the attack is AdaAD's: the summed KL at x' through both networks
    m = parse_method("adaiad").build(ctx)
    assert m.inner_objective(batch, x_adv).item() == pytest.approx(
        sum(kl_row(ta[i], sa[i]) for i in range(B)), rel=1e-4)


def _swap(row, a, b):
    row = list(row)
    row[a], row[b] = row[b], row[a]
    return row


@pytest.mark.parametrize("classes", [10, 100])
@pytest.mark.parametrize("options", ["", "divisor=12", "mobilenet_form=true"])
def test_dgad_against_main_py(classes, options):
    """main.py:397-445: the teacher-wrong samples distilled at x, the others at x', the true class swapped to
    the top; sum over classes / the batch (or the script's args.bs, ``divisor``); + 1.0 MSE of softmaxes;
    and the MobileNetV2 line as the script parenthesises it."""
    x, x_adv, y, s, t, ctx, batch = setup(classes, teacher_scale=0.3)
    with torch.no_grad():  # the teacher right on half the samples, wrong on the others: both groups
        y = torch.where(torch.arange(B) < B // 2, t(x).argmax(1), (t(x).argmax(1) + 1) % classes)
    batch = Batch(x, y, torch.arange(B), s, t, epoch=0)
    m = parse_method(":".join(["dgad", *([options] if options else [])])).build(ctx)
    terms = m.losses(batch, x_adv)
    sx, sa, tx, ta = rows(s(x)), rows(s(x_adv)), rows(t(x)), rows(t(x_adv))
    wrong = [max(range(classes), key=lambda c: tx[i][c]) != int(y[i]) for i in range(B)]
    assert sum(wrong) == B // 2
    kl_c, kl_a = [], []
    for i in range(B):
        yi = int(y[i])
        t_clean = _swap(tx[i], yi, max(range(classes), key=lambda c: tx[i][c])) if wrong[i] else tx[i]
        best = max((c for c in range(classes) if c != yi), key=lambda c: ta[i][c])
        t_adv = _swap(ta[i], yi, best) if ta[i][yi] < ta[i][best] else ta[i]
        kl_c.append(kl_row(t_clean, sx[i]))
        kl_a.append(kl_row(t_adv, sa[i]))
    n = sum(wrong)
    lc = sum(k for k, w in zip(kl_c, wrong) if w) / n
    la = sum(k for k, w in zip(kl_a, wrong) if not w) / (B - n)
    d = 12 if options == "divisor=12" else B
    mse = sum((a - b) ** 2 for i in range(B) for a, b in zip(softmax(sa[i]), softmax(sx[i]))) / (B * classes)
    assert terms["consistency"].item() == pytest.approx(mse, rel=1e-4)
    if options == "mobilenet_form=true":
        assert terms["kd_product"].item() == pytest.approx(0.5 * (n / d * lc + (d - n) / d) * la, rel=1e-4)
    else:
        assert terms["kd_clean"].item() == pytest.approx(n / d * lc, rel=1e-4)
        assert terms["kd_adv"].item() == pytest.approx((d - n) / d * la, rel=1e-4)
    if not options:  # on a whole batch: each sample's own KL, averaged
        per_sample = sum(kl_c[i] if wrong[i] else kl_a[i] for i in range(B)) / B
        assert (terms["kd_clean"] + terms["kd_adv"]).item() == pytest.approx(per_sample, rel=1e-4)


@pytest.mark.parametrize("classes", [10, 100])
def test_igdm_against_igdm_py(classes):
    """igdm.py:51-59: KL(T(x') || S(x')) + alpha e/E KL(softmax(T(x+d) - T(x-d)) || softmax(S(x+d) - S(x-d))),
    batchmean, e 1-based, x - d not clipped."""
    x, x_adv, y, s, t, ctx, batch = setup(classes, epoch=4, epochs=10)
    terms = parse_method("igdm:alpha=2").build(ctx).losses(batch, x_adv)
    minus = x - (x_adv - x)
    sp, sm, tp, tm = rows(s(x_adv)), rows(s(minus)), rows(t(x_adv)), rows(t(minus))
    assert terms["kd_adv"].item() == pytest.approx(sum(kl_row(tp[i], sp[i]) for i in range(B)) / B, rel=1e-4)
    diff = sum(kl_row([a - b for a, b in zip(tp[i], tm[i])], [a - b for a, b in zip(sp[i], sm[i])])
               for i in range(B)) / B
    assert terms["igdm"].item() == pytest.approx(2 * 5 / 10 * diff, rel=1e-4)
    assert parse_method("igdm:ramp_epochs=200").build(ctx).ramp(199) == 1.0  # the script's hard-coded 200


def test_new_methods_are_registered_with_recipes_and_cite_their_papers():
    for name in ("adaiad", "dgad", "igdm"):
        cls = METHODS.get(name)
        assert cls.citation and cls.official is not None and cls.official.code and cls.inner is not None
