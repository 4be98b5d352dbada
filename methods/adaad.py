"""AdaAD: the attack and the distillation both use the teacher at the moving adversarial point x'.

Read from the official repository boyellow/AdaAD (``AT_helper.py``, ``main.py``, ``README.md``):

* inner maximisation (``AT_helper.adaad_inner_loss``): with the defaults ``BN_eval=True`` and
  ``random_init=True`` the student is put in ``eval()`` and the attack starts at
  x + 0.001 N(0, 1) (clipped to [0, 1] only after the first step there, at once in the suite); it
  ascends KL(T(x') || S(x')) summed over classes and batch
  (``KLDivLoss(reduction='none')`` then ``torch.sum``), where the teacher (``eval()``) is re-run on
  the current x' at every step, so the input gradient flows through the teacher as well as the
  student.  Here: ``start="normal"``, ``student_mode="eval"``, ``batch.teacher(x_adv)`` inside the
  objective (the harness has frozen the teacher's parameters; ``pgd_ascent`` differentiates with
  respect to the input only).
* outer loss (``main.train``, method ``AdaAD``): ``alpha KL(T(x') || S(x')) + (1 - alpha)
  KL(T(x) || S(x))`` with ``--AdaAD_alpha 1.0`` (so only the adversarial term by default), the
  teacher outputs under ``no_grad``, no temperature (``--temp`` is used only by the AdaAD+IAD
  combination), the student in ``train()`` mode.
* reduction: on CIFAR-10 ``nn.KLDivLoss()`` with PyTorch's default ``reduction='mean'`` (sum over
  B x C elements / (B C) = batchmean / C); on CIFAR-100 ``(1/B) * sum`` = batchmean.  The suite
  uses batchmean; option ``scale=0.1`` reproduces the official CIFAR-10 magnitude (1/C with
  C = 10), ``scale=1`` is already the official CIFAR-100 loss.
* schedule (``main.py`` defaults and the README's command): 200 epochs, batch 128, SGD lr 0.1,
  momentum 0.9, weight decay 5e-4, piecewise lr (``lr_decay``: 0.1 before epoch 100, 0.01 before
  150, 0.001 after; 0-based, i.e. MultiStepLR milestones 100/150).  The argparse defaults for the
  attack are eps 16/255, step 4/255 (the paper's larger-radius setting); the README's headline
  command uses 8/255 and 2/255.  The attack budget is the suite's (``AttackConfig``), not the
  method's.

The paper's objective (alpha weighting the adversarial against the natural term) is what the code
computes; no divergence to report beyond the reduction above.
"""
from dataclasses import dataclass
from typing import ClassVar

import torch

from methods import register
from methods.base import InnerMax, Method, kl_div


@register
class AdaAD(Method):
    name = "adaad"
    citation = ("Huang, Chen, Wang, Lu, Cheng, Wang, Boosting Accuracy and Robustness of Student Models "
                "via Adaptive Adversarial Distillation, CVPR 2023")
    summary = "a KL(S(x') || T(x')) + (1-a) KL(S(x) || T(x)), a = 1; the teacher moves with x'"
    needs_teacher = True
    inner = InnerMax("sum KL(S(x') || T(x')), gradient through S and T", start="normal",
                     student_mode="eval", teacher_at="x' (adversarial)")
    schedule = ("200 epochs, SGD 0.1 (momentum 0.9), decay /10 at 100 and 150, wd 5e-4, batch 128; "
                "official CIFAR-10 loss = batchmean/10 (scale=0.1)")
    official_train: ClassVar[dict] = {"epochs": 200, "lr": 0.1, "milestones": (100, 150),
                                      "weight_decay": 5e-4, "batch_size": 128, "schedule": "step"}
    # CIFAR-10: nn.KLDivLoss() (mean over B x C); CIFAR-100: (1/B) sum = batchmean
    official_options: ClassVar[dict] = {"cifar10": "scale=0.1"}

    @dataclass(frozen=True)
    class Options:
        alpha: float = 1.0  # weight of the adversarial term; 1 - alpha on the clean term (official 1)
        scale: float = 1.0  # multiplies the whole loss; 1/C = the official CIFAR-10 magnitude

    def inner_objective(self, batch, x_adv):
        return kl_div(batch.student(x_adv), batch.teacher(x_adv), reduction="sum")

    def losses(self, batch, x_adv):
        o = self.options
        with torch.no_grad():
            teacher_adv = batch.teacher(x_adv)
        terms = {"kd_adv": o.scale * o.alpha * kl_div(batch.student(x_adv), teacher_adv)}
        if o.alpha < 1:
            terms["kd_nat"] = o.scale * (1 - o.alpha) * kl_div(batch.student(batch.x), batch.teacher_logits)
        return terms
