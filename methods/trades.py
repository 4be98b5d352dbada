"""TRADES: clean cross-entropy plus beta x KL between the student on x' and on x."""
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from bench.methods import register
from bench.methods.base import InnerMax, Method, Recipe, kl_div


@register
class TRADES(Method):
    name = "trades"
    citation = "Zhang et al., Theoretically Principled Trade-off between Robustness and Accuracy, ICML 2019"
    summary = "CE(S(x), y) + beta KL(S(x') || S(x))"
    inner = InnerMax("sum KL(S(x') || S(x)), S(x) fixed", start="normal", student_mode="eval")
    # train_trades_cifar10.py: a 1-based epoch loop with lr 0.1, x0.1 from epoch 75 (x0.01 from 90, x0.001
    # from 100, never reached in 76 epochs): epochs 75 and 76 run at 0.01, i.e. 0-based milestone 74.
    # KL: KLDivLoss(size_average=False) / batch_size = batchmean, the suite's convention.
    schedule = "76 epochs, SGD 0.1, lr 0.01 for the last two (from 1-based epoch 75), wd 2e-4, batch 128"
    official: ClassVar[Recipe] = Recipe(
        repo="yaodongyu/TRADES@6e8e11b",
        train={"epochs": 76, "lr": 0.1, "milestones": (74,), "weight_decay": 2e-4, "batch_size": 128,
               "schedule": "step"},
        attack={"eps": 0.031, "step_ratio": 0.007 / 0.031, "steps": 10},
        official_options="clean_pass=true", checkpoint="last", datasets=("cifar10",),
        sources={"epochs": "train_trades_cifar10.py:20", "lr": "train_trades_cifar10.py:24,153",
                 "weight_decay": "train_trades_cifar10.py:22,153", "batch_size": "train_trades_cifar10.py:16",
                 "milestones": "train_trades_cifar10.py:137-147 (x0.1 from epoch 75 of 76)",
                 "schedule": "train_trades_cifar10.py:137-147", "eps": "train_trades_cifar10.py:30 (0.031)",
                 "step_ratio": "train_trades_cifar10.py:34 (step 0.007)", "steps": "train_trades_cifar10.py:32",
                 "checkpoint": "train_trades_cifar10.py:169-173 (every epoch saved, none selected)",
                 "precision": "fp32 throughout", "input_norm": "train_trades_cifar10.py:59-63 (no Normalize)",
                 "options": "trades.py:79-82 (model(x_natural) again after model(x_adv))",
                 "datasets": "train_trades_cifar10.py is the repository's only CIFAR script; the other is MNIST's"})

    @dataclass(frozen=True)
    class Options:
        beta: float = 6.0  # weight of the robust KL term (TRADES' 1/lambda)
        # trades.py runs S(x) a second time after S(x') for the KL target (trades.py:82): the same values in
        # train mode, one more batch-norm running-statistics update; on: that extra forward, without a graph
        clean_pass: bool = False

    gradient_sites: ClassVar[dict[str, str]] = {
        "kl_target": "flow: S(x), the robust KL's target (trades.py:79-82: not detached)"}

    def inner_objective(self, batch, x_adv):
        if "clean_eval" not in batch.cache:
            with torch.no_grad():
                batch.cache["clean_eval"] = batch.student(batch.x)
        return kl_div(batch.student(x_adv), batch.cache["clean_eval"], reduction="sum")

    def losses(self, batch, x_adv):
        clean = batch.student(batch.x)
        target = self.flow(clean, "kl_target")
        terms = {"ce": F.cross_entropy(clean, batch.y),
                 "kl_robust": self.options.beta * kl_div(batch.student(x_adv), target)}
        if self.options.clean_pass:
            with torch.no_grad():
                batch.student(batch.x)
        return terms
