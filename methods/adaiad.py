"""AdaIAD: AdaAD's attack with IAD-I's introspection, at ARD's temperature.

Read from the official repository boyellow/AdaAD @9e5c6e5 (``main.py``, method ``AdaAD_with_IAD1``,
lines 355-381; ``AT_helper.adaad_inner_loss``; the README's AdaIAD command, lines 85-100):

* inner maximisation: AdaAD's (``bench.methods.adaad``): sum over batch and classes of KL(T(x') || S(x')),
  gradient through student and teacher, start x + 0.001 N(0, 1), the student in ``eval()``; the
  README's command sets eps 8/255, step 2/255, 10 steps (the argparse defaults are 16/255 and 4/255).
* outer loss (``main.py:371-381``), with the defaults ``--temp 30``, ``--IAD_alpha 1``,
  ``--IAD_beta 0.1``, ``--IAD_begin 60`` (a 0-based epoch of 200)::

      alpha t^2 (1/B) sum_i KL_i(T(x')/t || S(x')/t)                       teacher at x', not at x
    + alpha (1/B) sum_i (1 - A_i) KL_i(S(x) || S(x'))   from epoch 60, t = 1, A_i = p_T(y_i | x')^beta
    + (1 - alpha) CE(S(x), y)

  A_i is taken with ``.item()`` (a constant); the S(x) target of the self term is a fresh train-mode
  forward and is not detached (the gradient reaches S(x) too), as in IAD-I. The teacher term is not
  weighted by A_i, and there is no teacher term at the clean x. ``KLDivLoss(reduce=False)`` summed and
  divided by B is batchmean (no per-data-set switch, unlike AdaAD's CIFAR-10 branch).
* train-mode forwards per step (batch-norm running statistics): S(x) (``ori_outputs``, only logged),
  S(x'), from epoch 60 S(x) (the self term's target), then S(x) for the CE term at weight 0 -- the last
  update is always a clean batch. Option ``clean_pass`` adds the forwards the loss does not need, in
  that order; the official recipe turns it on.
* the teacher's logits at x' are not under ``no_grad`` in the script (its parameters collect gradients
  that are never used); here they are computed without a graph: the student's gradient is the same.
* warm-up: the official 60 of 200 epochs is the fraction ``warmup=0.3`` of the run's epochs, as in
  ``methods.iad``.
"""
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from bench.methods import register
from bench.methods.adaad import AdaAD
from bench.methods.base import PaperTeacher, Recipe, Warmup, check_warmup, kl_div


@register
class AdaIAD(Warmup, AdaAD):
    name = "adaiad"
    citation = ("Huang, Chen, Wang, Lu, Cheng, Wang, Boosting Accuracy and Robustness of Student Models "
                "via Adaptive Adversarial Distillation, CVPR 2023 (AdaIAD: AdaAD with IAD-I)")
    summary = ("a t^2 KL(S(x')/t || T(x')/t) + a (1-A) KL(S(x') || S(x)) after warm-up + (1-a) CE(S(x), y), "
               "t = 30, A = p_T(y|x')^beta; AdaAD's attack")
    schedule = ("200 epochs, SGD 0.1 (momentum 0.9), decay /10 at 100 and 150, wd 5e-4, batch 128; "
                "introspection from epoch 60")
    official: ClassVar[Recipe] = Recipe(
        repo="boyellow/AdaAD@9e5c6e5",
        train={"epochs": 200, "lr": 0.1, "milestones": (100, 150), "weight_decay": 5e-4, "batch_size": 128,
               "schedule": "step"},
        attack={"eps": 8 / 255, "step_ratio": 0.25, "steps": 10},
        official_options="clean_pass=true", checkpoint="best-test-pgd10",
        teachers={"cifar10": PaperTeacher("Chen2021LTD_WRN34_20", "WRN-34-20", True, "README.md:20,51-83; main.py:206-214"),
                  "cifar100": PaperTeacher("Chen2021LTD_WRN34_10", "WRN-34-10", True, "README.md:20; main.py:226-230")},
        sources={"epochs": "main.py:58", "lr": "main.py:61,247", "weight_decay": "main.py:64,248",
                 "batch_size": "main.py:59", "milestones": "main.py:113-128 (lr_decay, 0-based epochs)",
                 "schedule": "main.py:113-128", "eps": "README.md:85-100 (--epsilon 8)",
                 "step_ratio": "README.md:85-100 (--step_size 2)", "steps": "README.md:85-100 (--num_steps 10)",
                 "checkpoint": "main.py:463-506 (best_PGD10_acc_model.pth, test PGD-10 every epoch)",
                 "precision": "fp32", "input_norm": "config/dataset_config.py:12-16 (no Normalize)",
                 "options": "main.py:360 (ori_outputs), :378/:381 (S(x) for the CE term at weight 0)"})

    @dataclass(frozen=True)
    class Options:
        alpha: float = 1.0    # weight of the distillation terms; (1 - alpha) on CE(S(x), y) (official 1)
        t: float = 30.0       # temperature of the teacher term (official --temp 30; IAD-I's own is 1)
        beta: float = 0.1     # A = p_T(y | x')^beta (official --IAD_beta 0.1)
        warmup: float = 0.3   # fraction of the epochs before the introspection starts (official 60/200)
        clean_pass: bool = False  # the script's train-mode S(x) forwards the loss does not need

        def __post_init__(self):
            check_warmup(self.warmup)

    gradient_sites: ClassVar[dict[str, str]] = {
        **AdaAD.gradient_sites,
        "self_target": "flow: S(x), the self term's target (main.py:371-381, as IAD-I: not "
                       "detached)"}

    def losses(self, batch, x_adv):
        o = self.options
        if o.clean_pass:  # ori_outputs = net(inputs): logged only, but a batch-norm update
            with torch.no_grad():
                batch.student(batch.x)
        adv = batch.student(x_adv)
        with torch.no_grad():
            teacher_adv = batch.teacher(x_adv)
        terms = {"kd_adv": o.alpha * o.t ** 2 * kl_div(adv, teacher_adv, o.t)}
        if batch.epoch >= self.begin_epoch:
            a = F.softmax(teacher_adv.float(), dim=1).gather(1, batch.y[:, None]).squeeze(1).pow(o.beta)
            clean = batch.student(batch.x)
            target = self.flow(clean, "self_target")
            terms["self_kl"] = o.alpha * ((1 - a) * kl_div(adv, target, reduction="none")).mean()
        if o.alpha < 1:
            terms["ce"] = (1 - o.alpha) * F.cross_entropy(batch.student(batch.x), batch.y)
        elif o.clean_pass:  # the CE term's S(x) at weight 0
            with torch.no_grad():
                batch.student(batch.x)
        return terms
