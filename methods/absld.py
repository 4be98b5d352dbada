"""ABSLD: RSLAD's soft labels sharpened or smoothed per class, by a temperature that each epoch moves
against the class's share of the student's loss (hard classes get sharper labels).

Read from the official repository zhaoshiji123/ABSLD @7407c3a (``resnet18_absld_cifar10.py`` = A,
``absld_loss.py`` = AL; all code in 99ed9cd). There is only this CIFAR-10 ResNet-18 script: no CIFAR-100
and no MobileNetV2 script.

* soft labels (A:94-100): z = T(x), the teacher at the clean x (eval, ``no_grad``); for sample i the
  logits are divided by a temperature of its true class: tau_adv[y_i] for the attack and the adversarial
  term, tau_nat[y_i] for the clean term (the paper's form, option ``temps=paper``, the default).
* defect E1, the in-place aliasing (A:95-100): ``teacher_logits.detach()`` shares storage with its
  source, so ``teacher_logits_new_adv`` and ``teacher_logits_new_nat`` are one buffer and the row-wise
  in-place divisions compound: the attack target, the adversarial term and the clean term all use
  z_i / (tau_adv[y_i] tau_nat[y_i]), a temperature in [0.25, 25]. Option ``temps=code`` computes that
  (divided by tau_adv, then by tau_nat, in the code's order). The published number most likely came from
  the code as released (the aliasing lines look like untouched working code): ``official_options`` turns
  it on. That is an inference; the repository does not prove it.
* inner maximisation (AL:26-59, called at A:104 with step 2/255, eps 8/255, 10 steps): the sum over batch
  and classes of KL(softmax(z~_adv) || softmax(S(x'))) (``KLDivLoss(reduction='none')`` then
  ``torch.sum``), the student in ``eval()``, start x + 0.001 N(0, 1) (clamped to [0, 1] at once here,
  after the first step in the code).
* train-mode forwards per step (batch-norm running statistics): S(x') (AL:53-58), then S(x) (A:105-106).
* outer loss (A:58-59, 121-127): ``5/6 KL_adv + 1/6 KL_nat``, each ``mean_{B x C} p (log(p + 1e-5) -
  log p_S)``, no other temperature. Here ``scale * kl_div`` (batchmean; ``scale=0.1`` is the code's
  magnitude on CIFAR-10); the +1e-5 depends on the teacher only and does not change the gradient; the
  code's ``torch.log(softmax(.))`` (E3) is ``log_softmax`` here. There is no CIFAR-100 script: on
  CIFAR-100 the official protocol applies this recipe, says so on the row, and keeps its arithmetic, the
  mean over B x 100 (``scale=0.01``).
* per-class statistics (A:77, 85-86, 107-119): per-sample CE of the *detached* train-mode logits S(x') and
  S(x) against y, temperature 1, taken before the batch's SGD step (E4), added into per-class sums reset
  at the start of every epoch. Here the sums are divided by the true per-class counts of the epoch before
  the update: on CIFAR-10 every class has 5,000 images, a common factor that ``g / max|g|`` cancels, so
  this is the code's update; on unbalanced data (Digits) the sums would favour frequent classes. Under
  torchrun sums and counts are summed over ranks (``EpochEnd.reduce``).
* temperature update (A:173-189), at the end of each epoch, for tau_adv from L_adv and tau_nat from L_nat:
  ``g = L - mean_c L``, ``tau <- clamp(tau - r g / max_c |g|, 0.5, 5)``. The rate r = 0.1 is multiplied by
  0.1 at the end of epochs 215, 260 and 285 *before* that epoch's update (A:173-176): here
  ``rate * EpochEnd.lr_scale`` (the next epoch's lr ratio), which is exactly that under the step
  schedule (under another schedule r follows the lr). If all L are equal, ``max|g| = 0`` and the code
  would produce NaN temperatures; here tau is left unchanged.
* evaluation and checkpoints (A:131-172): test PGD-20 (step 0.003, uniform start) after epochs 10, 20, ...,
  210 and every epoch from 215 (``select_every``, ``select_dense_from``, ``select_step``); ``_pgd_best`` keeps
  the best average test PGD-20 accuracy: ``best-test-pgd20``, the reported checkpoint. Its fairness-aware
  ``_pgd_fair_best`` (average + worst-class PGD accuracy / 100, A:155-160; the worst class over test batches
  sorted by class) is kept beside it as ``fair-best`` (``also_keep``), evaluated and reported under that name.
* defect E2: ``prefix`` is never defined (A:158, 166, 172), so the committed script raises ``NameError``
  at its first evaluation, after epoch 10: the script was edited after the runs behind the paper.
"""
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from bench.methods import register
from bench.methods.base import InnerMax, Method, PaperTeacher, Recipe, kl_div

TEMP_MIN, TEMP_MAX = 0.5, 5.0   # A:71-72


def absld_temperature_update(tau: torch.Tensor, loss: torch.Tensor, rate: float) -> torch.Tensor:
    """A:178-189: clamp(tau - rate (L - mean L) / max|L - mean L|, 0.5, 5) for per-class losses ``loss``
    (sums or means: a common factor cancels); tau unchanged where all L are equal (the code: NaN)."""
    loss = loss.double()
    g = loss - loss.mean()
    # g / max|g|, and 0 when max|g| = 0 (then every g is 0), without reading the device back
    step = g / g.abs().max().clamp_min(torch.finfo(torch.float64).tiny)
    return (tau.double() - rate * step).clamp(TEMP_MIN, TEMP_MAX).to(tau.dtype)


@register
class ABSLD(Method):
    name = "absld"
    citation = ("Zhao, Duan, Wang, Wei, Improving Adversarial Robust Fairness via Anti-Bias Soft Label Distillation, "
                "NeurIPS 2024")
    summary = ("a KL(S(x') || T(x)/tau_adv[y]) + (1-a) KL(S(x) || T(x)/tau_nat[y]), a = 5/6, per-class tau moved "
               "each epoch against the class's share of the student's CE")
    needs_teacher = True
    inner = InnerMax("sum KL(S(x') || T(x)/tau_adv[y])", start="normal", student_mode="eval", teacher_at="x (clean)")
    schedule = ("300 epochs, SGD 0.1 (momentum 0.9), decay /10 at 215, 260 and 285 (the temperature rate too), "
                "wd 2e-4, batch 128; official loss = batchmean/C (scale=1/C); CIFAR-10 script only")
    note = "official: temps=code (the code's aliased product temperature); the committed script stops at epoch 10"
    official: ClassVar[Recipe] = Recipe(
        repo="zhaoshiji123/ABSLD@7407c3a",
        train={"epochs": 300, "lr": 0.1, "milestones": (215, 260, 285), "weight_decay": 2e-4, "batch_size": 128,
               "schedule": "step", "select_every": 10, "select_dense_from": 215, "select_step": 0.003,
               "also_keep": ("fair-best",)},
        attack={"eps": 8 / 255, "step_ratio": 0.25, "steps": 10},
        # mean over B x C: 1/10 on CIFAR-10, 1/100 by the same arithmetic on CIFAR-100 (no CIFAR-100 script)
        options={"cifar10": "scale=0.1", "cifar100": "scale=0.01"},
        datasets=("cifar10",),
        teachers={"cifar10": PaperTeacher("WRN-34-10 from ./models/model_cifar_wrn.pt (TRADES' file name; the "
                                          "README does not say)", "WRN-34-10", False,
                                          "resnet18_absld_cifar10.py:61-62")},
        official_options="temps=code",
        checkpoint="best-test-pgd20",
        sources={"epochs": "resnet18_absld_cifar10.py:20,83",
                 "lr": "resnet18_absld_cifar10.py:54 (SGD 0.1, momentum 0.9)",
                 "weight_decay": "resnet18_absld_cifar10.py:54",
                 "batch_size": "resnet18_absld_cifar10.py:21,33-34",
                 "milestones": "resnet18_absld_cifar10.py:173-176 (lr and the temperature rate x 0.1 after epochs "
                               "215, 260, 285)",
                 "schedule": "resnet18_absld_cifar10.py:173-176",
                 "eps": "resnet18_absld_cifar10.py:104 (epsilon=8/255)",
                 "step_ratio": "resnet18_absld_cifar10.py:104 (step_size=2/255)",
                 "steps": "resnet18_absld_cifar10.py:104 (perturb_steps=10)",
                 "checkpoint": "resnet18_absld_cifar10.py:163-168 (_pgd_best: best average test PGD-20; the "
                               "fairness-aware _pgd_fair_best at :155-160 is not a suite policy)",
                 "precision": "resnet18_absld_cifar10.py:12-14 (fp32, seeds 0)",
                 "input_norm": "resnet18_absld_cifar10.py:24-31 (ToTensor, no Normalize)",
                 "options": "resnet18_absld_cifar10.py:94-100 (in-place division through aliased .detach() "
                            "views: every soft label at T(x) / (tau_adv[y] tau_nat[y]))",
                 "magnitude": "absld_loss.py / resnet18_absld_cifar10.py:121-124 (the mean over B x C: 1/10 on CIFAR-10, 1/100 by the same arithmetic on CIFAR-100)",
                 "datasets": "only resnet18_absld_cifar10.py: no CIFAR-100 script",
                 "select_every": "resnet18_absld_cifar10.py:131 (scored after epochs 10, 20, ..., 210, then every epoch from 215)", "select_dense_from": "resnet18_absld_cifar10.py:131", "select_step": "resnet18_absld_cifar10.py:138 (attack_pgd 20 iterations, step_size=0.003)", "also_keep": "resnet18_absld_cifar10.py:155-160 (_pgd_fair_best: test PGD-20 + worst class / 100)"})

    @dataclass(frozen=True)
    class Options:
        alpha: float = 5 / 6  # weight of the adversarial term; 1 - alpha on the clean term (A:125)
        scale: float = 1.0    # multiplies both terms; 0.1 = the official script's magnitude on CIFAR-10
        rate: float = 0.1     # class_labels_temp_rate (A:69), times the next epoch's lr ratio
        # paper: tau_adv for the attack and the adversarial term, tau_nat for the clean term;
        # code: the released script's aliasing, tau_adv * tau_nat everywhere (A:96-100)
        temps: Literal["paper", "code"] = "paper"

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        c, dev = ctx.num_classes, ctx.device
        self.state.update(
            tau_adv=torch.ones(c, device=dev), tau_nat=torch.ones(c, device=dev),   # A:66-67
            loss_adv=torch.zeros(c, dtype=torch.float64, device=dev),               # this epoch's CE sums
            loss_nat=torch.zeros(c, dtype=torch.float64, device=dev),
            count=torch.zeros(c, dtype=torch.float64, device=dev))                  # and samples per class

    def soft_targets(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits of the adversarial target, logits of the clean target): T(x) divided per sample."""
        if "absld_targets" not in batch.cache:
            z = batch.teacher_logits.float()   # fp32 even under bf16: a temperature of 1.011 stays one
            t_adv = self.state["tau_adv"][batch.y].float()[:, None]
            t_nat = self.state["tau_nat"][batch.y].float()[:, None]
            if self.options.temps == "code":
                both = z / t_adv / t_nat
                batch.cache["absld_targets"] = (both, both)
            else:
                batch.cache["absld_targets"] = (z / t_adv, z / t_nat)
        return batch.cache["absld_targets"]

    def inner_objective(self, batch, x_adv):
        return kl_div(batch.student(x_adv), self.soft_targets(batch)[0], reduction="sum")

    def losses(self, batch, x_adv):
        o, state = self.options, self.state
        z_adv, z_nat = self.soft_targets(batch)
        s_adv = batch.student(x_adv)     # train-mode forward #1 (AL:53-58)
        s_nat = batch.student(batch.x)   # train-mode forward #2 (A:105-106)
        with torch.no_grad():            # per-class CE of the detached logits (A:107-119)
            y = batch.y
            state["loss_adv"].index_add_(0, y, F.cross_entropy(s_adv.detach().float(), y, reduction="none").double())
            state["loss_nat"].index_add_(0, y, F.cross_entropy(s_nat.detach().float(), y, reduction="none").double())
            state["count"].index_add_(0, y, torch.ones_like(y, dtype=torch.float64))
        terms = {"kd_adv": o.scale * o.alpha * kl_div(s_adv, z_adv)}
        if o.alpha < 1:
            terms["kd_nat"] = o.scale * (1 - o.alpha) * kl_div(s_nat, z_nat)
        return terms

    def end_epoch(self, end):
        state = self.state
        count = end.reduce(state["count"]).clamp_min(1.0)   # a class not seen: mean 0 (the code's sum 0)
        rate = self.options.rate * end.lr_scale             # decayed before this epoch's update (A:173-176)
        state["tau_adv"] = absld_temperature_update(state["tau_adv"], end.reduce(state["loss_adv"]) / count, rate)
        state["tau_nat"] = absld_temperature_update(state["tau_nat"], end.reduce(state["loss_nat"]) / count, rate)
        for key in ("loss_adv", "loss_nat", "count"):   # the next epoch's sums start at zero (A:85-86)
            state[key] = torch.zeros_like(state[key])

    def facts(self):
        return {"final_tau_adv": [round(v, 6) for v in self.state["tau_adv"].tolist()],
                "final_tau_nat": [round(v, 6) for v in self.state["tau_nat"].tolist()]}
