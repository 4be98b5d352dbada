"""MTARD: a robust teacher at x' and a natural teacher at x, their two KL terms weighted by a state that
balances how fast each loss falls.

Read from the official repository zhaoshiji123/MTARD @6480a1b (``mtard/mtard_resnet18_cifar10.py`` = M10,
``mtard/mtard_resnet18_cifar100.py`` = M100, ``mtard/mtard_loss.py`` = ML; the code came in a46fbc2 and
dbfb908). M100 differs from M10 only in its data sets, its model package and the x10 at M100:79-80.

* inner maximisation (ML:27-58, called at M10:74 with step 2/255, eps 8/255, 10 steps): CE(S(x'), y) of
  the student against the true labels -- no teacher, no temperature -- the student in ``eval()`` (ML:38),
  start x + 0.001 N(0, 1) (ML:40; the code clamps to [0, 1] only after the first step, the suite at
  once, as for RSLAD). The mean reduction of ``CrossEntropyLoss()`` does not matter to sign steps; here
  the sum (``ce_loss``).
* teachers: the run's teacher is the robust one, evaluated at x' (ML:56-57, ``no_grad``, eval mode); the
  natural teacher (role ``natural``, ``batch.teachers["natural"]``) at the clean x (M10:72-73). The code
  computes T_nat(x) before the attack; both are eval-mode and gradient-free, so the order is immaterial.
* train-mode forwards per step, in the code's order (batch-norm running statistics): S(x') (ML:55), then
  S(x) (M10:75-76).
* loss (M10:51-53, 77-80, 100): ``w_adv KL_adv + w_nat KL_nat`` with
  ``KL_adv = mean_{B x C} p_T(x') (log(p_T(x') + 1e-5) - log p_S(x'))`` against the robust teacher and
  ``KL_nat`` the same at x against the natural teacher; temperature 1 everywhere; M100 multiplies each
  mean by 10. The +1e-5 shifts the loss by a constant of the teacher only: the gradient is the exact KL's.
  Here ``scale * kl_div`` (batchmean): ``scale=0.1`` is the code's magnitude on CIFAR-10 (mean over
  B x 10) and on CIFAR-100 (10 x the mean over B x 100).
* state (M10:44-49, 82-98), updated every step *before* the step's loss is formed, so the step's loss
  uses weights that already saw the step's losses:
  ``w_nat <- w_nat - eta (w_nat - r_nat)``, ``r_nat = l_nat^beta / (l_adv^beta + l_nat^beta)``,
  ``l_* = KL_*.item() / init_*``, ``init_*`` the KL values of the very first batch (never reset; at that
  step l = 1, 1 and w stays 0.5), ``w_adv = 1 - w_nat``, beta (``bert``) 1, eta 0.025. The values that
  drive the state are the code's, with the +1e-5 (``mtard_loss_value``), computed detached and averaged
  over the global batch under torchrun (``batch.global_mean``); the x10 of M100 cancels in the ratio and
  is left out. The code keeps the weights as Python floats from ``.item()``; here float64 tensors on the
  device (the same numbers, no host sync, no gradient through them).
* eta decay: the code multiplies eta by 0.1 at the end of epochs 215, 260 and 285, with the lr
  (M10:135-138). Here ``eta * batch.lr_scale``: the same under the step schedule; under another schedule
  eta follows the lr (the suite's generalisation).
* no temperatures: the entropy-based temperature of the journal extension (B-MTARD,
  zhaoshiji123/MTARD-extension) is not in this code and not here.
* evaluation and checkpoint (M10:108-134): every evaluated model (after epoch 1, epochs 20, 40, ..., 200,
  then every epoch from 215) is saved with its test PGD-20 accuracy in the file name, no selection logic:
  the published number is one of those files, so the policy is ``best-test-pgd20`` (scored every epoch
  here, with the suite's PGD-20, where the script's ``attack_pgd`` steps 0.003 from a uniform start).

Teacher facts (the teachers are the run's configuration, not this module's):

* D1: the CIFAR-10 natural teacher of the paper is a ResNet-56 (its GitHub issue #5; ``cifar10_nat_teacher_models/``
  was added in bd4a912 for it), but M10:59 builds it as ``wideresnet()`` and never imports that package:
  the published number came from an uncommitted variant. The robust teacher is WRN-34-10 (TRADES) on
  CIFAR-10 and WRN-70-16 on CIFAR-100 (README:9, GitHub issue #8). Checkpoint paths are empty (M10:21-22, D3).
* D2: M100 cannot run as committed: after ``from cifar100_models import *`` the name ``wideresnet`` is a
  submodule, so M100:54 raises ``TypeError``; the CIFAR-100 natural teacher is not stated in the code
  (``WideResNet_22_6`` is only a hint).
* There is no MobileNetV2 script (``mobilenet_v2()`` exists in the model packages).
"""
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from bench.attacks import ce_loss
from bench.methods import register
from bench.methods.base import InnerMax, Method, PaperTeacher, Recipe, kl_div


def mtard_loss_value(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """The code's KL value (M10:51-53, 79): mean over B x C of p_T (log(p_T + 1e-5) - log p_S)
    (the caller runs it without a graph, as the code's ``.item()``)."""
    p = F.softmax(teacher_logits.float(), dim=1)
    log_q = F.log_softmax(student_logits.float(), dim=1)
    return (p * (torch.log(p + 1e-5) - log_q)).mean()


def global_value(batch, value: torch.Tensor) -> torch.Tensor:
    """The global batch's mean of ``value``, float64 and detached; where ``value`` has a graph
    (only with the site ``loss_values`` flipped, a mutation) this rank's gradient is kept."""
    mean = batch.global_mean(value).double()
    return mean + (value - value.detach()).double() if value.requires_grad else mean


def mtard_weight_update(w_nat, lhat_adv, lhat_nat, eta, beta=1.0):
    """One step of M10:87-96: w_nat - eta (w_nat - r_nat), r_nat = l_nat^b / (l_adv^b + l_nat^b).
    Floats or tensors; w_adv = 1 - the result."""
    r_nat = lhat_nat ** beta / (lhat_adv ** beta + lhat_nat ** beta)
    return w_nat - eta * (w_nat - r_nat)


@register
class MTARD(Method):
    name = "mtard"
    citation = ("Zhao, Yu, Sun, Zhang, Wei, Enhanced Accuracy and Robustness via Multi-Teacher Adversarial "
                "Distillation, ECCV 2022")
    summary = ("w_adv KL(S(x') || T_rob(x')) + w_nat KL(S(x) || T_nat(x)), w_nat <- w_nat - eta (w_nat - r_nat), "
               "r_nat from each loss relative to its first value; CE attack")
    needs_teacher = True
    teachers = {"natural": "naturally trained teacher, at the clean x"}
    inner = InnerMax("CE(S(x'), y)", start="normal", student_mode="eval",
                     teacher_at="x' (robust teacher), x (natural teacher)")
    schedule = ("300 epochs, SGD 0.1 (momentum 0.9), decay /10 at 215, 260 and 285 (eta too), wd 2e-4, batch 128; "
                "official loss = batchmean/10 (scale=0.1)")
    note = ("natural teacher: ResNet-56 on CIFAR-10 (MTARD's GitHub issue #5; the script builds wideresnet()); "
            "the CIFAR-100 script does not run as committed")
    official: ClassVar[Recipe] = Recipe(
        repo="zhaoshiji123/MTARD@6480a1b",
        train={"epochs": 300, "lr": 0.1, "milestones": (215, 260, 285), "weight_decay": 2e-4, "batch_size": 128,
               "schedule": "step", "select_every": 20, "select_dense_from": 215, "select_step": 0.003},
        attack={"eps": 8 / 255, "step_ratio": 0.25, "steps": 10},
        # mean over B x C on CIFAR-10; 10 x that mean on CIFAR-100: batchmean / 10 on both
        options={"cifar10": "scale=0.1", "cifar100": "scale=0.1"},
        checkpoint="best-test-pgd20",
        datasets=("cifar10",),
        teachers={"cifar10": PaperTeacher("Zhang2019Theoretically", "WRN-34-10", True, "README:9 (TRADES' WRN-34-10)"),
                  "cifar100": PaperTeacher("Gowal2020Uncovering", "WRN-70-16", True,
                                           "README:9 and issue #8 (the teacher of RSLAD's CIFAR-100 script)")},
        sources={"epochs": "mtard/mtard_resnet18_cifar10.py:16,65",
                 "lr": "mtard/mtard_resnet18_cifar10.py:42 (SGD 0.1, momentum 0.9)",
                 "weight_decay": "mtard/mtard_resnet18_cifar10.py:42",
                 "batch_size": "mtard/mtard_resnet18_cifar10.py:17,34 (mtard_resnet18_cifar100.py: 128 too)",
                 "milestones": "mtard/mtard_resnet18_cifar10.py:135-138 (lr and eta x 0.1 after epochs 215, 260, "
                               "285)",
                 "schedule": "mtard/mtard_resnet18_cifar10.py:135-138",
                 "eps": "mtard/mtard_resnet18_cifar10.py:18,74 (8/255)",
                 "step_ratio": "mtard/mtard_resnet18_cifar10.py:74 (step_size=2/255)",
                 "steps": "mtard/mtard_resnet18_cifar10.py:74 (perturb_steps=10)",
                 "checkpoint": "mtard/mtard_resnet18_cifar10.py:15,108-134 (every evaluated model saved with its "
                               "test PGD-20 accuracy in the file name; no selection logic)",
                 "precision": "mtard/mtard_resnet18_cifar10.py (fp32 throughout)",
                 "input_norm": "mtard/mtard_resnet18_cifar10.py:24-31 (ToTensor, no Normalize)",
                 "options": "mtard/mtard_resnet18_cifar10.py:79-80 (torch.mean over B x C); "
                            "mtard_resnet18_cifar100.py:79-80 (10 x that mean)",
                 "datasets": "mtard_resnet18_cifar100.py:54 calls wideresnet(), which its cifar100_models do not define: the CIFAR-100 script does not run as committed",
                 "magnitude": "mtard/mtard_resnet18_cifar10.py:79-80 (torch.mean over B x C); mtard_resnet18_cifar100.py:79-80 (10 x that mean)",
                 "select_every": "mtard/mtard_resnet18_cifar10.py:108 (epochs 20, 40, ..., 200, then every epoch from 215; its extra evaluation after epoch 1 is left out)", "select_dense_from": "mtard/mtard_resnet18_cifar10.py:108", "select_step": "mtard/mtard_resnet18_cifar10.py:116 (attack_pgd 20 iterations, step_size=0.003)"})

    @dataclass(frozen=True)
    class Options:
        eta: float = 0.025    # weight_learn_rate (M10:19), times this epoch's lr ratio
        beta: float = 1.0     # exponent of the relative losses (``bert``, M10:20)
        w_nat0: float = 0.5   # the natural term's starting weight (M10:44-47); w_adv = 1 - w_nat
        scale: float = 1.0    # multiplies both KL terms; 0.1 = the official scripts' magnitude

        def __post_init__(self):
            if not 0.0 <= self.w_nat0 <= 1.0:
                raise ValueError(f"w_nat0={self.w_nat0} must lie in [0, 1]")
            if self.eta < 0:
                raise ValueError(f"eta={self.eta} must be >= 0")

    gradient_sites: ClassVar[dict[str, str]] = {
        "loss_values": "stop: the KL values that move the weights (M10:82-98, .item(): the "
                       "weights are constants)"}

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        # w_nat; after the first batch also init_adv and init_nat (the code's first KL values)
        self.state["w_nat"] = torch.tensor(float(options.w_nat0), dtype=torch.float64, device=ctx.device)

    def inner_objective(self, batch, x_adv):
        return ce_loss(batch.student(x_adv), batch.y)

    def losses(self, batch, x_adv):
        o, state = self.options, self.state
        s_adv = batch.student(x_adv)            # train-mode forward #1 (ML:55)
        with torch.no_grad():
            t_adv = batch.teacher(x_adv)        # the robust teacher at x' (ML:56-57)
            t_nat = batch.teachers["natural"](batch.x)  # the natural teacher at x (M10:72-73)
        s_nat = batch.student(batch.x)          # train-mode forward #2 (M10:75-76)
        with self.no_grad("loss_values"):
            value_adv, value_nat = mtard_loss_value(s_adv, t_adv), mtard_loss_value(s_nat, t_nat)
        value_adv, value_nat = global_value(batch, value_adv), global_value(batch, value_nat)
        if "init_adv" not in state:             # the very first batch (M10:82-85)
            state["init_adv"], state["init_nat"] = value_adv.detach(), value_nat.detach()
        w_nat = mtard_weight_update(state["w_nat"], value_adv / state["init_adv"],
                                    value_nat / state["init_nat"], o.eta * batch.lr_scale, o.beta)
        state["w_nat"] = w_nat.detach()         # no graph kept across steps
        w_nat = w_nat.float()
        return {"kd_adv": (1 - w_nat) * o.scale * kl_div(s_adv, t_adv),
                "kd_nat": w_nat * o.scale * kl_div(s_nat, t_nat)}

    def facts(self):
        return {"final_w_nat": float(self.state["w_nat"])}
