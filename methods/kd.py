"""Hinton knowledge distillation on clean inputs (no attack)."""
from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F

from bench.methods import register
from bench.methods._repdistiller import REPDISTILLER
from bench.methods.base import Method, Recipe, kl_div


@register
class KD(Method):
    name = "kd"
    citation = "Hinton et al., Distilling the Knowledge in a Neural Network, 2015"
    summary = "(1-a) CE(S(x), y) + a t^2 KL(S(x)/t || T(x)/t)"
    needs_teacher = True
    schedule = "240 epochs, SGD 0.05, decay at 150/180/210, wd 5e-4, batch 64 (RepDistiller's train_student.py)"
    # RepDistiller (train_student.py --distill kd -r 0.1 -a 0.9 -b 0, --kd_T 4) is CIFAR-100 only; the same
    # recipe stands for CIFAR-10
    official: ClassVar[Recipe] = REPDISTILLER

    @dataclass(frozen=True)
    class Options:
        alpha: float = 0.9  # weight of the distillation term
        t: float = 4.0      # temperature

    def losses(self, batch, x_adv):
        o = self.options
        logits = batch.student(batch.x)
        return {"ce": (1 - o.alpha) * F.cross_entropy(logits, batch.y),
                "kd": o.alpha * o.t ** 2 * kl_div(logits, batch.teacher_logits, o.t)}
