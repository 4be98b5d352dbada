"""Hinton knowledge distillation on clean inputs (no attack)."""
from dataclasses import dataclass

import torch.nn.functional as F

from methods import register
from methods.base import Method, kl_div


@register
class KD(Method):
    name = "kd"
    citation = "Hinton et al., Distilling the Knowledge in a Neural Network, 2015"
    summary = "(1-a) CE(S(x), y) + a t^2 KL(S(x)/t || T(x)/t)"
    needs_teacher = True

    @dataclass(frozen=True)
    class Options:
        alpha: float = 0.9  # weight of the distillation term
        t: float = 4.0      # temperature

    def losses(self, batch, x_adv):
        o = self.options
        logits = batch.student(batch.x)
        return {"ce": (1 - o.alpha) * F.cross_entropy(logits, batch.y),
                "kd": o.alpha * o.t ** 2 * kl_div(logits, batch.teacher_logits, o.t)}
