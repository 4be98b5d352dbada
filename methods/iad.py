"""IAD-I: ARD whose student, after a warm-up, also distils from itself where the teacher is unreliable.

Read from the official repository ZFancy/IAD (``IAD-I.py``, the ARD-based variant; ``IAD-II.py`` is
the AKD-based one and is not implemented here):

* inner maximisation (class ``AttackPGD``): CE(S(x'), y) summed over the batch, uniform start in the
  eps-ball (not clipped to [0, 1] before the first step there; the suite clips), 10 steps of 2/255
  at eps 8/255; ``train()`` calls ``net.train()`` before the attack, so
  the student's batch norm is in *train* mode during it.  The teacher plays no part in the attack.
* reliability (``train``): ``guide = teacher_net(pert_inputs)``, i.e. the teacher at x', and
  A_i = softmax(guide)_i[y_i] ** beta, taken with ``.item()`` (a constant), beta = 0.1 (``--beta``).
* outer loss (``train``), with the script's defaults ``--alpha 1.0``, ``--temp 1.0``,
  ``--begin 60`` of ``--epochs 200``; the epoch counter is 0-based and the introspection term is on
  when ``epoch >= begin``::

      alpha t^2 mean_i KL_i(S(x')/t || T(x)/t)                  teacher term, T at clean x
    + alpha     mean_i (1 - A_i) KL_i(S(x') || S(x))            self term, only after warm-up, t = 1
    + (1 - alpha) CE(S(x), y)

  Two facts of the code, which is the default here:
  - the teacher term is NOT multiplied by A_i, whereas the paper's IAD-I objective weights it by
    A_i (a teacher confident in y at x' is trusted, an unreliable one is traded for the student's
    own soft label; see the suite's reference spec, shared/reference/methods.md); option
    ``teacher_weighting="paper"`` multiplies each sample's teacher term by A_i after the warm-up;
  - S(x) in the self term is NOT detached (``F.softmax(basic_net(inputs))`` feeds ``KLDivLoss`` as
    the target, which back-propagates into it); option ``detach_self=True`` stops that gradient.
  The self term also carries the factor alpha and no temperature, as in the code.
* reduction: ``(1/len(outputs)) * sum`` = batchmean, the suite's convention; no scale needed.
* warm-up: the official 60 of 200 epochs is expressed as the fraction ``warmup=0.3`` of the run's
  epochs (``ctx.epochs``), rounded to the nearest epoch, so it scales with short schedules; the
  term is active for 0-based ``batch.epoch >= round(warmup * epochs)`` (``facts()`` records it).
* schedule: 200 epochs, SGD lr 0.1, momentum 0.9, weight decay 2e-4, batch 128,
  ``--lr_schedule 100 150``.  Note ``adjust_learning_rate`` multiplies the *initial* lr each time,
  so the script as written runs 0.1 until epoch 100 and 0.01 afterwards (the second "decay"
  re-sets 0.01): the official recipe uses milestones (100,), as the script runs, and ``paper_train``
  keeps the declared 100/150 (preset ``cifar10-iad-paper``). Batch 128 on CIFAR-10 and CIFAR-100.
"""
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from bench.attacks import ce_loss
from bench.methods import register
from bench.methods.base import InnerMax, Method, Recipe, Warmup, check_warmup, kl_div


@register
class IAD(Warmup, Method):
    name = "iad"
    citation = ("Zhu, Yao, Han, Zhang, Liu, Niu, Zhou, Xu, Yang, Reliable Adversarial Distillation "
                "with Unreliable Teachers, ICLR 2022")
    summary = ("a t^2 KL(S(x')/t || T(x)/t) + a (1-A) KL(S(x') || S(x)) after warm-up + (1-a) CE(S(x), y), "
               "A = p_T(y|x')^beta")
    needs_teacher = True
    inner = InnerMax("CE(S(x'), y)", start="uniform", student_mode="train",
                     teacher_at="x (clean); x' (adversarial) for the reliability A")
    schedule = ("200 epochs, SGD 0.1 (momentum 0.9), decay /10 at 100 (declared 100 and 150; the code's "
                "second decay has no effect), wd 2e-4, batch 128; introspection from epoch 60")
    official: ClassVar[Recipe] = Recipe(
        repo="ZFancy/IAD@a8091a8",
        train={"epochs": 200, "lr": 0.1, "milestones": (100,), "weight_decay": 2e-4, "batch_size": 128,
               "schedule": "step"},
        attack={"eps": 8 / 255, "step_ratio": 0.25, "steps": 10},
        official_options="clean_pass=true", checkpoint="best-test-pgd10",
        sources={"epochs": "IAD-I.py:21,229", "lr": "IAD-I.py:18,224", "weight_decay": "IAD-I.py:224",
                 "batch_size": "IAD-I.py:76 (CIFAR-10), :82 (CIFAR-100)",
                 "milestones": "IAD-I.py:19,49-53,230 (adjust_learning_rate restarts from the initial lr: one decay)",
                 "schedule": "IAD-I.py:49-53", "eps": "IAD-I.py:135-139", "step_ratio": "IAD-I.py:135-139 (2/255)",
                 "steps": "IAD-I.py:135-139",
                 "checkpoint": "IAD-I.py:243-259 (bestpoint.pth.tar: best test PGD-10, every epoch, :194-215)",
                 "precision": "fp32", "input_norm": "IAD-I.py:66-73 (ToTensor, no Normalize)",
                 "options": "IAD-I.py:169 (an unused S(x') forward), :179/:181 (S(x) at weight 0, every step)"})
    paper_train: ClassVar[dict] = {**official.train, "milestones": (100, 150)}

    @dataclass(frozen=True)
    class Options:
        alpha: float = 1.0   # weight of the distillation terms; (1 - alpha) on CE(S(x), y) (official 1)
        t: float = 1.0       # temperature of the teacher term (official --temp 1.0)
        beta: float = 0.1    # A = p_T(y | x')^beta (official --beta 0.1)
        warmup: float = 0.3  # fraction of the epochs before the introspection starts (official 60/200)
        teacher_weighting: Literal["code", "paper"] = "code"  # paper: teacher term x A after warm-up
        detach_self: bool = False  # stop the gradient through S(x) in the self term (code: not detached)
        # the script's extra train-mode forwards, kept for their batch-norm running statistics: an unused
        # S(x') after the adversarial one (IAD-I.py:169) and S(x) at weight 0 every step, warm-up included
        # (:179, :181)
        clean_pass: bool = False

        def __post_init__(self):
            check_warmup(self.warmup)

    gradient_sites: ClassVar[dict[str, str]] = {
        "self_target": "flow: S(x), the self term's target (IAD-I.py: KLDivLoss differentiates "
                       "its target; option detach_self stops it)"}

    def inner_objective(self, batch, x_adv):
        return ce_loss(batch.student(x_adv), batch.y)

    def reliability(self, batch, x_adv) -> torch.Tensor:
        """A_i = p_T(y_i | x'_i)^beta, a constant (no gradient)."""
        with torch.no_grad():
            p = F.softmax(batch.teacher(x_adv).float(), dim=1)
            return p.gather(1, batch.y[:, None]).squeeze(1).pow(self.options.beta)

    def losses(self, batch, x_adv):
        o = self.options
        adv = batch.student(x_adv)
        teacher_kl = kl_div(adv, batch.teacher_logits, o.t, reduction="none")
        active = batch.epoch >= self.begin_epoch
        if o.clean_pass:
            with torch.no_grad():
                batch.student(x_adv)
        clean = batch.student(batch.x) if (active or o.alpha < 1) else None
        if o.clean_pass and o.alpha == 1:  # the CE term's S(x), at weight 0
            with torch.no_grad():
                batch.student(batch.x)
        if active:
            a = self.reliability(batch, x_adv)
            if o.teacher_weighting == "paper":
                teacher_kl = a * teacher_kl
        terms = {"kd_adv": o.alpha * o.t ** 2 * teacher_kl.mean()}
        if active:
            target = clean.detach() if o.detach_self else self.flow(clean, "self_target")
            terms["self_kl"] = o.alpha * ((1 - a) * kl_div(adv, target, reduction="none")).mean()
        if o.alpha < 1:
            terms["ce"] = (1 - o.alpha) * F.cross_entropy(clean, batch.y)
        return terms
