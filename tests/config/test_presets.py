"""The preset catalogue (bench/config/presets.py): CIFAR teachers keep their own schedule, every method at
its official code's loss magnitude (reductions included), and schedules as the official scripts run them."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.config import presets as catalogue
from bench.config.presets import all_presets, official_train, official_variant
from bench.config.schema import TrainedTeacher
from bench.models.base import BenchModel
from bench.methods import Batch, Context, parse_method

# --- teachers keep their own schedule ----------------------------------------------------------------



def test_cifar10_presets_share_one_teacher_with_a_decaying_schedule(lrs):
    presets = all_presets()
    trained = {n: p.config.teacher for n, p in presets.items()
               if n.startswith("cifar10") and not n.endswith("-smoke") and isinstance(p.config.teacher, TrainedTeacher)}
    assert {"cifar10", "cifar10-ard", "cifar10-rslad", "cifar10-crd", "cifar10-trades"} <= set(trained)
    assert len(set(trained.values())) == 1  # every CIFAR-10 preset trains the same teacher
    teacher = next(iter(trained.values()))
    assert teacher.train == official_train("trades", "cifar10")  # TRADES' own schedule, not the students'
    assert lrs(teacher.train)[-1] < lrs(teacher.train)[0]      # its lr really decays
    for name in ("cifar10", "cifar10-rslad", "cifar10-crd"):
        assert presets[name].config.train != teacher.train


# --- official loss magnitudes, reductions included -----------------------------------------------

class Linear(BenchModel):
    def __init__(self, c, seed):
        super().__init__(in_channels=1)
        g = torch.Generator().manual_seed(seed)
        self.lin = nn.Linear(12, c)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(c, 12, generator=g))
        self.feature_dim, self.num_classes = 12, c

    def features(self, x):
        return x.flatten(1)

    def head(self, f):
        return self.lin(f)


def official_loss(name, dataset, s, t, x, x_adv, y):
    """The official scripts' outer losses, with their reductions (nn.KLDivLoss() means B x C)."""
    kl_mean = nn.KLDivLoss()  # reduction='mean' -- the official default
    if name == "ard":
        return 900 * kl_mean(F.log_softmax(s(x_adv) / 30, 1), F.softmax(t(x) / 30, 1))
    if name == "rslad":
        def kl(a, b):  # the scripts' p_T (log(p_T + 1e-5) - log p_S) without the 1e-5, a constant shift
            return -F.log_softmax(a, 1) * F.softmax(b, 1) + F.log_softmax(b, 1) * F.softmax(b, 1)
        factor = 10 if dataset == "cifar100" else 1
        return factor * (5 / 6 * torch.mean(kl(s(x_adv), t(x))) + 1 / 6 * torch.mean(kl(s(x), t(x))))
    if name == "adaad":
        if dataset == "cifar10":
            return kl_mean(F.log_softmax(s(x_adv), 1), F.softmax(t(x_adv), 1))
        return torch.sum(nn.KLDivLoss(reduction="none")(F.log_softmax(s(x_adv), 1), F.softmax(t(x_adv), 1))) / len(x)
    if name == "iad":  # IAD-I before the introspection: (1/B) sum of KLDivLoss(reduce=False)
        return torch.sum(nn.KLDivLoss(reduction="none")(F.log_softmax(s(x_adv), 1), F.softmax(t(x), 1))) / len(x)
    if name == "fair-ard":  # Fair-ARD.py:141: KLDivLoss() on each sample's 1-D vectors (mean over C), x w = 1
        per_sample = [kl_mean(F.log_softmax(s(x_adv)[i] / 30, 0), F.softmax(t(x)[i] / 30, 0)) for i in range(len(x))]
        return 900 * torch.stack(per_sample).mean()
    if name in ("fair-rslad", "absld"):  # torch.mean over B x C of both terms, no CIFAR-100 factor; tau = 1
        def kl(a, b):
            return -F.log_softmax(a, 1) * F.softmax(b, 1) + F.log_softmax(b, 1) * F.softmax(b, 1)
        return 5 / 6 * torch.mean(kl(s(x_adv), t(x))) + 1 / 6 * torch.mean(kl(s(x), t(x)))
    if name == "trades":  # KLDivLoss(size_average=False) / batch_size
        kl = nn.KLDivLoss(reduction="sum")(F.log_softmax(s(x_adv), 1), F.softmax(s(x), 1)) / len(x)
        return F.cross_entropy(s(x), y) + 6 * kl
    raise AssertionError(name)


@pytest.mark.parametrize("dataset,classes", [("cifar10", 10), ("cifar100", 100)])
@pytest.mark.parametrize("name", ["ard", "rslad", "adaad", "iad", "trades", "fair-ard", "fair-rslad", "absld"])
def test_official_variants_reproduce_the_official_loss(name, dataset, classes):
    """On CIFAR-100, Fair-ARD, Fair-RSLAD and ABSLD (CIFAR-10 scripts only) keep their script's arithmetic at
    C = 100: the mean over the classes, never batchmean."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 3, 4, generator=g)
    x_adv = (x + 0.03 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    y = torch.randint(0, classes, (8,), generator=g)
    s, t = Linear(classes, 1), Linear(classes, 2).eval()
    ctx = Context(num_classes=classes, n_train=8, train_labels=y, student_dim=12, teacher_dim=12,
                  device=torch.device("cpu"), epochs=200)
    method = parse_method(official_variant(name, dataset)).build(ctx)
    ours = sum(method.losses(Batch(x, y, torch.arange(8), s, t, epoch=0), x_adv).values())
    assert float(ours.detach()) == pytest.approx(float(official_loss(name, dataset, s, t, x, x_adv, y)), rel=1e-4)


def test_paper_presets_run_every_method_at_its_official_magnitude():
    for preset in catalogue.PAPER_PRESETS.values():
        dataset = preset.config.data.name
        assert preset.methods == tuple(official_variant(m, dataset) for m in catalogue.PAPER_METHODS)
    assert "ard:scale=0.1" in catalogue.PAPER_PRESETS["cifar10-resnet18"].methods
    assert "ard:scale=0.01" in catalogue.PAPER_PRESETS["cifar100-resnet18"].methods
    assert "adaad" in catalogue.PAPER_PRESETS["cifar100-resnet18"].methods  # batchmean there already


# --- schedules as the official scripts run them ---------------------------------------------------

def ard_script_lrs(epochs=200, base=0.1, schedule=(100, 150), factor=0.1):
    """ARD's / IAD-I's main loop: adjust_learning_rate(optimizer, epoch, lr) with lr always the base."""
    current, out = base, []
    for epoch in range(epochs):
        lr = base
        if epoch in schedule:
            lr *= factor
            current = lr
        out.append(current)
    return out


def trades_script_lrs(epochs=76, base=0.1):
    out = []
    for epoch in range(1, epochs + 1):
        lr = base
        if epoch >= 75:
            lr = base * 0.1
        if epoch >= 90:
            lr = base * 0.01
        out.append(lr)
    return out


@pytest.mark.parametrize("name,script", [("ard", ard_script_lrs), ("iad", ard_script_lrs),
                                         ("trades", trades_script_lrs)])
def test_code_schedules_give_the_scripts_learning_rates(name, script, lrs):
    assert lrs(official_train(name, "cifar10")) == pytest.approx(script())


def test_paper_form_and_per_dataset_schedules():
    assert official_train("ard", "cifar10", "paper").milestones == (100, 150)
    assert official_train("ard", "cifar100").batch_size == 256 and official_train("ard", "cifar10").batch_size == 128
    assert catalogue.PAPER_PRESETS["cifar100-resnet18"].config.train.batch_size == 256
    assert "cifar10-ard-paper" in all_presets() and "cifar10-rslad-paper" not in all_presets()
