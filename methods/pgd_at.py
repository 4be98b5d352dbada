"""PGD adversarial training: train on the examples that maximise the student's cross-entropy."""
import torch.nn.functional as F

from bench.attacks import ce_loss
from methods import register
from methods.base import InnerMax, Method


@register
class PGDAT(Method):
    name = "pgd-at"
    citation = "Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks, ICLR 2018"
    summary = "CE(S(x'), y) on PGD examples"
    inner = InnerMax("CE(S(x'), y)", start="uniform", student_mode="train")
    schedule = "SGD 0.1, momentum 0.9, wd 5e-4, piecewise decay"

    def inner_objective(self, batch, x_adv):
        return ce_loss(batch.student(x_adv), batch.y)

    def losses(self, batch, x_adv):
        return {"ce_adv": F.cross_entropy(batch.student(x_adv), batch.y)}
