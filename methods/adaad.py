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

from bench.methods import register
from bench.methods.base import InnerMax, Method, PaperTeacher, Recipe, kl_div


@register
class AdaAD(Method):
    name = "adaad"
    citation = ("Huang, Chen, Wang, Lu, Cheng, Wang, Boosting Accuracy and Robustness of Student Models "
                "via Adaptive Adversarial Distillation, CVPR 2023")
    summary = "a KL(S(x') || T(x')) + (1-a) KL(S(x) || T(x)), a = 1; the teacher moves with x'"
    needs_teacher = True
    inner = InnerMax("sum KL(S(x') || T(x')), gradient through S and T", start="normal",
                     student_mode="eval", teacher_at="x' (adversarial)",
                     through_teacher=True)
    schedule = ("200 epochs, SGD 0.1 (momentum 0.9), decay /10 at 100 and 150, wd 5e-4, batch 128; "
                "official CIFAR-10 loss = batchmean/10 (scale=0.1)")
    official: ClassVar[Recipe] = Recipe(
        repo="boyellow/AdaAD@9e5c6e5",
        train={"epochs": 200, "lr": 0.1, "milestones": (100, 150), "weight_decay": 5e-4, "batch_size": 128,
               "schedule": "step"},
        attack={"eps": 8 / 255, "step_ratio": 0.25, "steps": 10},  # the README's command (argparse: 16/255, 4/255)
        # CIFAR-10: nn.KLDivLoss() (mean over B x C); CIFAR-100: (1/B) sum = batchmean
        options={"cifar10": "scale=0.1"},
        official_options="clean_pass=true", checkpoint="best-test-pgd10",
        teachers={"cifar10": PaperTeacher("Chen2021LTD_WRN34_20", "WRN-34-20", True, "README.md:20,51-83; main.py:206-214"),
                  "cifar100": PaperTeacher("Chen2021LTD_WRN34_10", "WRN-34-10", True, "README.md:20; main.py:226-230")},
        sources={"epochs": "main.py:58; README.md:61", "lr": "main.py:61,247", "weight_decay": "main.py:64,248",
                 "batch_size": "main.py:59", "milestones": "main.py:113-128,293-294 (lr_decay, 0-based epochs)",
                 "schedule": "main.py:113-128", "eps": "README.md:58 (--epsilon 8); main.py:328",
                 "step_ratio": "README.md:60 (--step_size 2)", "steps": "main.py:50,328",
                 "checkpoint": "main.py:463-506 (best_PGD10_acc_model.pth: test PGD-10 every epoch, :406-461)",
                 "precision": "fp32 (no amp anywhere)",
                 "input_norm": "config/dataset_config.py:12-16,33-37 (ToTensor, no Normalize)",
                 "options": "main.py:333 (net(inputs) before net(adv_inputs), even at AdaAD_alpha 1)",
                 "magnitude": "main.py (CIFAR-10: nn.KLDivLoss(), the mean over B x C; CIFAR-100: (1/B) sum, batchmean)"})

    @dataclass(frozen=True)
    class Options:
        alpha: float = 1.0  # weight of the adversarial term; 1 - alpha on the clean term (official 1)
        scale: float = 1.0  # multiplies the whole loss; 1/C = the official CIFAR-10 magnitude
        # run S(x) in train mode before S(x') every step even at alpha = 1, as main.py:333 does: weight 0,
        # but it moves batch-norm running statistics (eval-mode numbers)
        clean_pass: bool = False

    gradient_sites: ClassVar[dict[str, str]] = {
        "attack_teacher": "flow: T(x') in the attack's objective (adaad_inner_loss: the input "
                          "gradient passes through the teacher too)"}

    def inner_objective(self, batch, x_adv):
        target = self.flow(batch.teacher(x_adv), "attack_teacher")
        return kl_div(batch.student(x_adv), target, reduction="sum")

    def losses(self, batch, x_adv):
        o = self.options
        with torch.no_grad():
            teacher_adv = batch.teacher(x_adv)
        clean = None
        if o.alpha < 1:
            clean = batch.student(batch.x)
        elif o.clean_pass:  # the script's order: clean first, then adversarial
            with torch.no_grad():
                batch.student(batch.x)
        terms = {"kd_adv": o.scale * o.alpha * kl_div(batch.student(x_adv), teacher_adv)}
        if clean is not None:
            terms["kd_nat"] = o.scale * (1 - o.alpha) * kl_div(clean, batch.teacher_logits)
        return terms
