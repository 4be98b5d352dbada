"""ARD: distil the teacher's clean soft labels into the student on its own PGD examples."""
from dataclasses import dataclass

import torch.nn.functional as F

from bench.attacks import ce_loss
from methods import register
from methods.base import InnerMax, Method, kl_div


@register
class ARD(Method):
    name = "ard"
    citation = "Goldblum et al., Adversarially Robust Distillation, AAAI 2020"
    summary = "a t^2 KL(S(x')/t || T(x)/t) + (1-a) CE(S(x), y)"
    needs_teacher = True
    inner = InnerMax("CE(S(x'), y)", start="uniform", student_mode="train", teacher_at="x (clean)")
    schedule = "200 epochs, SGD 0.1, decay /10 at 100 and 150, wd 2e-4, batch 128"
    paper_train = {"epochs": 200, "lr": 0.1, "milestones": (100, 150), "weight_decay": 2e-4, "batch_size": 128,
                   "schedule": "step"}

    @dataclass(frozen=True)
    class Options:
        alpha: float = 1.0  # weight of the distillation term (official default 1: no CE term)
        t: float = 30.0     # temperature

    def inner_objective(self, batch, x_adv):
        return ce_loss(batch.student(x_adv), batch.y)

    def losses(self, batch, x_adv):
        o = self.options
        terms = {"kd_adv": o.alpha * o.t ** 2 * kl_div(batch.student(x_adv), batch.teacher_logits, o.t)}
        if o.alpha < 1:
            terms["ce"] = (1 - o.alpha) * F.cross_entropy(batch.student(batch.x), batch.y)
        return terms
