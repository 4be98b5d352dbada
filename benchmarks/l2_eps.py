"""How the digits L2 default eps (its entry in bench/data/sources.py) was chosen: PGD-20 accuracy in the L2 ball of
a natural and an L2 PGD-AT cnn-narrow student on digits@0-4 at a few radii (seed 0, 20 epochs, the
default student schedule: SGD 0.05, momentum 0.9, weight decay 5e-4, cosine, batch 64, PGD-10 step eps/4).
A few minutes on 2 CPU cores:

    python benchmarks/l2_eps.py [EPS ...]     # default: 0.5 1.0 1.5 2.0
"""
from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from bench.attacks.ascent import ATTACKS, attack_accuracy, ce_loss, pgd_ascent, predict
from bench.config.schema import AttackConfig, TrainConfig
from bench.data.images import augment, to_float
from bench.data.sources import load_dataset
from bench.models import build_model


def train(data, eps: float | None, cfg: TrainConfig = TrainConfig(epochs=20), attack: AttackConfig = AttackConfig()):
    torch.manual_seed(0)
    model = build_model("cnn-narrow", data.num_classes, data.in_channels, data.mean, data.std)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(data.y_train))
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            x, y = to_float(augment(data.x_train[idx], data.pad, data.flip)), data.y_train[idx]
            if eps:
                x = pgd_ascent(lambda xa: ce_loss(model(xa), y), x, eps, attack.step_ratio * eps, attack.steps,
                               "uniform", norm="L2")
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        sched.step()
    return model.eval()


def main() -> int:
    radii = [float(a) for a in sys.argv[1:]] or [0.5, 1.0, 1.5, 2.0]
    data = load_dataset("digits@0-4")
    x, y = to_float(data.x_test), data.y_test

    def pgd(model, eps):
        g = torch.Generator().manual_seed(0)
        return float(attack_accuracy(model, x, y, ATTACKS.get("pgd20"), eps, 500, lambda _: g, "L2").float().mean())
    natural = train(data, None)
    print(f"natural clean {float((predict(natural, x, 500) == y).float().mean()):.3f}")
    for eps in radii:
        at = train(data, eps)
        print(f"L2 eps {eps}: natural PGD-20 {pgd(natural, eps):.3f}; L2 PGD-AT PGD-20 {pgd(at, eps):.3f}, "
              f"clean {float((predict(at, x, 500) == y).float().mean()):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
