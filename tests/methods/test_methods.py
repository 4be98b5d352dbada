"""Each method's losses on fixed tiny tensors against the formula written out independently here."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.common.errors import BenchError
from bench.common.registry import Registry
from bench.models.base import BenchModel
from bench.methods import METHODS, Batch, Context, parse_method
from bench.methods._contrast import MemoryBank, info_nce, nce_loss
from bench.methods.gacd import teacher_weights

B, C, D_IN = 6, 3, 8


class Tiny(BenchModel):
    def __init__(self, dim: int, seed: int):
        super().__init__(in_channels=2)
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(D_IN, dim, generator=g) * 0.5)
        self.linear = nn.Linear(dim, C)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(C, dim, generator=g))
            self.linear.bias.copy_(torch.randn(C, generator=g) * 0.1)
        self.feature_dim, self.num_classes = dim, C

    def features(self, x):
        return torch.tanh(self.normalize(x).flatten(1) @ self.w)

    def head(self, f):
        return self.linear(f)


@pytest.fixture
def setup():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, 2, 2, 2, generator=g)
    x_adv = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    student, teacher = Tiny(4, 2), Tiny(5, 3).eval()
    labels = torch.tensor([0, 1, 2] * 6)  # 18 training samples
    ctx = Context(num_classes=C, n_train=18, train_labels=labels, student_dim=4, teacher_dim=5,
                  device=torch.device("cpu"), epochs=1, build_student=lambda: Tiny(4, 9))
    batch = Batch(x, y, torch.arange(B), student, teacher, epoch=0, teachers={"natural": Tiny(5, 4).eval()})
    return x, x_adv, y, student, teacher, ctx, batch


def kl_manual(s_logits, t_logits, t=1.0):
    """sum_c q_c (log q_c - log p_c), averaged over samples, written with explicit loops."""
    total = 0.0
    for s_row, t_row in zip(s_logits.tolist(), t_logits.tolist()):
        zs = [v / t for v in s_row]
        zt = [v / t for v in t_row]
        ls = [v - math.log(sum(math.exp(u) for u in zs)) for v in zs]
        lt = [v - math.log(sum(math.exp(u) for u in zt)) for v in zt]
        total += sum(math.exp(a) * (a - b) for a, b in zip(lt, ls))
    return total / len(s_logits)


def ce_manual(logits, y):
    total = 0.0
    for row, label in zip(logits.tolist(), y.tolist()):
        total += math.log(sum(math.exp(v) for v in row)) - row[label]
    return total / len(y)


def build(name, ctx, **opts):
    text = ":".join([name, *[f"{k}={v}" for k, v in opts.items()]])
    return parse_method(text).build(ctx)


def test_natural_and_pgd_at(setup):
    x, x_adv, y, s, t, ctx, batch = setup
    assert build("natural", ctx).losses(batch, None)["ce"].item() == pytest.approx(ce_manual(s(x), y), rel=1e-5)
    terms = build("pgd-at", ctx).losses(batch, x_adv)
    assert terms["ce_adv"].item() == pytest.approx(ce_manual(s(x_adv), y), rel=1e-5)


def test_trades(setup):
    x, x_adv, y, s, t, ctx, batch = setup
    terms = build("trades", ctx).losses(batch, x_adv)
    assert terms["ce"].item() == pytest.approx(ce_manual(s(x), y), rel=1e-5)
    assert terms["kl_robust"].item() == pytest.approx(6.0 * kl_manual(s(x_adv), s(x)), rel=1e-4)


def test_kd(setup):
    x, x_adv, y, s, t, ctx, batch = setup
    terms = build("kd", ctx, alpha=0.7, t=4).losses(batch, None)
    assert terms["ce"].item() == pytest.approx(0.3 * ce_manual(s(x), y), rel=1e-5)
    assert terms["kd"].item() == pytest.approx(0.7 * 16 * kl_manual(s(x), t(x), 4.0), rel=1e-4)


def test_ard(setup):
    x, x_adv, y, s, t, ctx, batch = setup
    terms = build("ard", ctx).losses(batch, x_adv)
    assert set(terms) == {"kd_adv"}  # alpha = 1: no CE term, as shipped
    assert terms["kd_adv"].item() == pytest.approx(900 * kl_manual(s(x_adv), t(x), 30.0), rel=1e-4)
    terms = build("ard", ctx, alpha=0.5, t=2).losses(batch, x_adv)
    assert terms["kd_adv"].item() == pytest.approx(0.5 * 4 * kl_manual(s(x_adv), t(x), 2.0), rel=1e-4)
    assert terms["ce"].item() == pytest.approx(0.5 * ce_manual(s(x), y), rel=1e-5)


def nce_manual(p_pos, p_neg, n_data):
    """CRD's NCE: -log(P/(P + K/N)) - sum log((K/N)/(Pn + K/N)), per sample."""
    out = []
    for pos, negs in zip(p_pos, p_neg):
        k_pn = len(negs) / n_data
        val = -math.log(pos / (pos + k_pn + 1e-7))
        val -= sum(math.log(k_pn / (q + k_pn + 1e-7)) for q in negs)
        out.append(val)
    return out


def test_crd_against_manual_nce(setup, monkeypatch):
    x, x_adv, y, s, t, ctx, batch = setup
    m = build("crd", ctx, feat_dim=4, k=5, tau=0.5)
    assert m.heads["bank_s"].k == 5
    neg = torch.tensor([[(i + j + 1) % 18 for j in range(5)] for i in range(B)])
    monkeypatch.setattr(MemoryBank, "negatives", lambda self, idx, shard=None, generator=None: neg)
    bank_s, bank_t = m.heads["bank_s"].bank.clone(), m.heads["bank_t"].bank.clone()
    with torch.no_grad():
        v_s = m.heads["embed_s"](s.features(x))
        v_t = m.heads["embed_t"](t.features(x))
    terms = m.losses(batch, None)

    def scores(query, bank):
        raw = [[math.exp(float(bank[k] @ query[i]) / 0.5) for k in [i, *neg[i].tolist()]] for i in range(B)]
        z = sum(sum(r) for r in raw) / (B * 6) * 18  # fixed at the first batch: mean x n_data
        return [[v / z for v in r] for r in raw]
    ps, pt = scores(v_s, bank_t), scores(v_t, bank_s)
    expected = (sum(nce_manual([r[0] for r in ps], [r[1:] for r in ps], 18)) / B
                + sum(nce_manual([r[0] for r in pt], [r[1:] for r in pt], 18)) / B)
    assert terms["nce"].item() == pytest.approx(0.8 * expected, rel=1e-4)
    assert terms["ce"].item() == pytest.approx(ce_manual(s(x), y), rel=1e-5)
    # momentum 0.5 update of the student bank, renormalised
    upd = F.normalize(bank_s[:B] * 0.5 + v_s * 0.5, dim=1)
    assert torch.allclose(m.heads["bank_s"].bank[:B], upd, atol=1e-6)


def test_memory_bank_negatives_are_other_class_and_k_capped():
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 5)
    bank = MemoryBank(18, 4, labels, k=1000, tau=0.07, momentum=0.5)
    assert bank.k == 18 - 10  # the largest class leaves 8 others
    idx = torch.arange(18)
    for _ in range(20):
        neg = bank.negatives(idx)
        assert neg.shape == (18, 8)
        assert (labels[neg] != labels[idx][:, None]).all()


def test_memory_bank_negatives_are_drawn_without_replacement_and_uniformly():
    """RepDistiller's np.random.choice(cls_negative[y], K, replace=False): each row's K negatives are
    distinct (the old with-replacement draw repeated some in almost every row), and every other-class
    sample is equally likely."""
    labels = torch.tensor([0] * 30 + [1] * 20 + [2] * 10)
    bank = MemoryBank(60, 4, labels, k=12, tau=0.07, momentum=0.5)
    g = torch.Generator().manual_seed(0)
    idx = torch.tensor([0, 35, 55] * 200)
    neg = bank.negatives(idx, generator=g)
    assert all(len(set(row.tolist())) == 12 for row in neg)
    assert (labels[neg] != labels[idx][:, None]).all()
    hits = torch.bincount(neg[idx == 0].flatten(), minlength=60)[30:].float()  # class-0 rows: pool of 30
    expected = 200 * 12 / 30  # 80 per sample; binomial sd about 7
    assert hits.min() > expected - 35 and hits.max() < expected + 35
    # the pool exactly: K = pool size gives every other-class sample once per row
    full = MemoryBank(60, 4, labels, k=30, tau=0.07, momentum=0.5).negatives(torch.tensor([0]), generator=g)
    assert sorted(full[0].tolist()) == list(range(30, 60))


def test_nce_and_infonce_prefer_close_positives():
    p_neg = torch.full((1, 4), 0.1)
    assert nce_loss(torch.tensor([0.9]), p_neg, 10) < nce_loss(torch.tensor([0.2]), p_neg, 10)
    q = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    close = F.normalize(torch.tensor([[1.0, 0.1], [0.1, 1.0]]), dim=1)
    far = F.normalize(torch.tensor([[0.1, 1.0], [1.0, 0.1]]), dim=1)
    assert (info_nce(q, close, 0.1) < info_nce(q, far, 0.1)).all()


def test_infonce_formula_and_class_mask():
    g = torch.Generator().manual_seed(0)
    q, k = F.normalize(torch.randn(4, 3, generator=g), dim=1), F.normalize(torch.randn(4, 3, generator=g), dim=1)
    y = torch.tensor([0, 0, 1, 1])
    got = info_nce(q, k, 0.2, y[:, None] != y[None, :])
    for i in range(4):
        allowed = [j for j in range(4) if j == i or y[j] != y[i]]
        denom = sum(math.exp(float(q[i] @ k[j]) / 0.2) for j in allowed)
        assert got[i].item() == pytest.approx(-(float(q[i] @ k[i]) / 0.2) + math.log(denom), rel=1e-5)


def test_gacd_infonce_loss_matches_formula(setup):
    x, x_adv, y, s, t, ctx, batch = setup
    m = build("gacd", ctx, feat_dim=4, tau=0.5, alpha=0.5, t=2)
    terms = m.losses(batch, x_adv)
    with torch.no_grad():
        v_s = m.heads["embed_s"](s.features(x_adv))
        v_t = m.heads["embed_t"](t.features(x))
        p_true = F.softmax(t(x), 1)[torch.arange(B), y]
    w = p_true / p_true.mean()
    expected = 0.0
    for i in range(B):
        allowed = [j for j in range(B) if j == i or y[j] != y[i]]
        logz = math.log(sum(math.exp(float(v_t[i] @ v_s[j]) / 0.5) for j in allowed))
        expected += float(w[i]) * (logz - float(v_t[i] @ v_s[i]) / 0.5)
    assert terms["contrast"].item() == pytest.approx(0.8 * expected / B, rel=1e-4)
    assert terms["ce_adv"].item() == pytest.approx(ce_manual(s(x_adv), y), rel=1e-5)
    assert terms["kd_adv"].item() == pytest.approx(0.5 * 4 * kl_manual(s(x_adv), t(x), 2.0), rel=1e-4)


def test_gacd_reweighting_to_zero_removes_the_term(setup):
    x, x_adv, y, s, t, ctx, batch = setup
    m = build("gacd", ctx, reweight="teacher-correct", alpha=0)
    correct = t(x).argmax(1) == y
    with torch.no_grad():
        full = m._contrastive(batch, m.heads["embed_s"](s.features(x_adv)), m.heads["embed_t"](t.features(x)))
    w = correct.float() / correct.float().mean()
    assert m.losses(batch, x_adv)["contrast"].item() == pytest.approx(0.8 * (w * full).mean().item(), rel=1e-5)
    # changing a zero-weighted sample's term leaves the loss unchanged
    logits = torch.tensor([[3.0, 0, 0], [0, 0, 3.0]])
    wt = teacher_weights(logits, torch.tensor([0, 1]), "teacher-correct", 0.1)
    assert wt.tolist() == [2.0, 0.0]
    pw = teacher_weights(logits, torch.tensor([0, 1]), "teacher-prob-pow", 0.1)
    p = F.softmax(logits, 1)[[0, 1], [0, 1]] ** 0.1
    assert torch.allclose(pw, p / p.mean())
    assert teacher_weights(logits, torch.tensor([0, 1]), "none", 0.1).tolist() == [1.0, 1.0]


def test_gacd_nce_and_symmetric_run(setup):
    x, x_adv, y, s, t, ctx, batch = setup
    for opts in ({"estimator": "nce"}, {"estimator": "nce", "anchor": "symmetric"}, {"anchor": "symmetric"},
                 {"attack": "ce"}):
        m = build("gacd", ctx, **opts)
        terms = m.losses(batch, x_adv)
        assert all(torch.isfinite(v) for v in terms.values())
        assert m.inner_objective(batch, x_adv).ndim == 0


@pytest.mark.parametrize("name", [n for n, c in METHODS.items() if c.inner is not None])
def test_attack_increases_own_inner_objective(setup, name):
    from bench.attacks.ascent import pgd_ascent
    x, x_adv, y, s, t, ctx, batch = setup
    torch.manual_seed(0)
    m = parse_method(name).build(ctx)
    s.eval()
    before = m.inner_objective(batch, x).item()
    adv = pgd_ascent(lambda xa: m.inner_objective(batch, xa), x, 0.1, 0.025, 10, "none")
    after = m.inner_objective(batch, adv).item()
    assert after > before


def test_option_parsing_and_errors():
    spec = parse_method("gacd:reweight=none:estimator=nce")
    assert spec.options.reweight == "none" and spec.options.estimator == "nce"
    assert spec.label == "gacd:estimator=nce:reweight=none"
    assert parse_method("gacd").label == "gacd"
    assert parse_method("ard:t=4").options.t == 4.0
    with pytest.raises(BenchError, match="known: .*reweight"):
        parse_method("gacd:colour=red")
    with pytest.raises(BenchError, match="not one of"):
        parse_method("gacd:reweight=maybe")
    with pytest.raises(BenchError, match="not a valid float"):
        parse_method("ard:t=hot")
    with pytest.raises(BenchError, match="known: .*ard.*gacd"):
        parse_method("nosuch")


def test_registry_rejects_duplicates():
    reg = Registry("thing")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", 2)
    with pytest.raises(BenchError, match="known: a"):
        reg.get("b")
    with pytest.raises(ValueError):
        METHODS.add("gacd", object)


def test_every_method_documents_itself():
    for name, cls in METHODS.items():
        assert cls.name == name and cls.citation and cls.summary
