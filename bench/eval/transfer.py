"""Transfer of robust features to another task: a linear probe on the frozen network.

The feature extractor is frozen (eval mode, no gradient); a linear head is trained on the target
training split's clean features; the probed network (frozen extractor + head) is then attacked as
a whole (the evaluation's attacks, in its threat model ``eval_cfg.norm``), so robust accuracy
measures robustness transferred through the features.
"""
from __future__ import annotations

from dataclasses import asdict, replace

import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks.ascent import batched
from bench.config.schema import EvalConfig, ProbeConfig
from bench.data.images import ImageData, to_float
from bench.eval.protocol import evaluate, without_sanity
from bench.models.base import BenchModel


class LinearProbe(BenchModel):
    """A frozen feature extractor with a new linear head."""

    def __init__(self, backbone: BenchModel, num_classes: int):
        super().__init__(in_channels=1)  # identity normalisation: the backbone normalises itself
        self.backbone = backbone.eval().requires_grad_(False)
        self.linear = nn.Linear(backbone.feature_dim, num_classes)
        self.feature_dim, self.num_classes = backbone.feature_dim, num_classes

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # batch-norm statistics of the frozen network never move
        return self

    def features(self, x):
        return self.backbone.features(x)

    def head(self, f):
        return self.linear(f)


@torch.no_grad()
def _features(model: BenchModel, x_u8: torch.Tensor, batch_size: int) -> torch.Tensor:
    return batched(lambda _, xb: model.features(to_float(xb)), x_u8, batch_size=batch_size)


def train_probe(backbone: BenchModel, target: ImageData, cfg: ProbeConfig, seed: int = 0) -> LinearProbe:
    """Fit the head by SGD on precomputed clean features of the target's training split."""
    probe = LinearProbe(backbone, target.num_classes)
    g = torch.Generator().manual_seed(seed)
    nn.init.normal_(probe.linear.weight, 0.0, 0.01, generator=g)
    nn.init.zeros_(probe.linear.bias)
    probe = probe.to(target.x_train.device)
    feats = _features(probe.backbone, target.x_train, 1000)
    y = target.y_train
    opt = torch.optim.SGD(probe.linear.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(y), generator=g).to(y.device)
        for i in range(0, len(y), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            loss = F.cross_entropy(probe.linear(feats[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return probe.eval()


def transfer_metrics(backbone: BenchModel, target: ImageData, cfg: ProbeConfig, eval_cfg: EvalConfig,
                     seed: int = 0, state_dir=None, desc: str = "") -> dict:
    """Clean and robust accuracy of the probed network on the target's test split."""
    probe = train_probe(backbone, target, cfg, seed)
    attacks = ("clean", *cfg.attacks)
    ev = evaluate(probe, target.x_test, target.y_test,
                  without_sanity(replace(eval_cfg, attacks=attacks, curve_eps=())), target.num_classes, seed,
                  state_dir, desc)
    return {"metrics": ev["metrics"], "settings": {**ev["settings"], "probe": asdict(cfg)},
            "timings": ev["timings"], "classes": target.classes}
