"""DGAD: AdaAD's attack; each sample distilled on its clean or its adversarial input by where the teacher
errs, with the teacher's true-class logit swapped to the top, plus a prediction-consistency term.

Read from the official repository kunsaram01/DGAD @a0329c8 (``main.py``, method ``DGAD``, lines 390-447;
the code came in commit 7494ffc; ``AT_helper.adaad_inner_loss``):

* inner maximisation: AdaAD's (``bench.methods.adaad``): sum KL(T(x') || S(x')), gradient through both,
  start x + 0.001 N(0, 1), the student in ``eval()``; eps 8/255, step 2/255, 10 steps (main.py:55-57).
* split (main.py:409-413): M = the samples the teacher misclassifies at the clean x; they are distilled
  at x, the others (R) at x'.
* label swaps, on the teacher's raw logits (equivalent to swapping probabilities): for i in M the
  true-class logit and the largest one trade places (main.py:416-419); for every sample whose true-class
  logit at x' is below the best other class's, those two trade places (main.py:422-427).
* loss (main.py:429-445), no temperature, per-sample KL summed over classes::

      (n/D) (1/n) sum_{i in M} KL_i(T~(x) || S(x)) + ((D - n)/D) (1/(B - n)) sum_{i in R} KL_i(T~(x') || S(x'))
    + beta MSE(softmax S(x'), softmax S(x))          mean over B x C elements, both sides with gradients

  with n = |M|. The script's D is the configured batch size (``args.bs`` = 128), so on full batches this
  is the per-sample mean of each sample's KL, and on the epoch's last, smaller batch (80 of 50,000 / 128)
  the two groups are weighted otherwise; here D is the batch's own size (option ``divisor=128`` gives
  the script's weights).
* MobileNetV2 (main.py:439-441): the script's line ``0.5 * ((n/D) Lc + ((D - n)/D)) * La + beta MSE`` is
  mis-parenthesised: the clean term enters only as a product with the adversarial one. The published
  MobileNetV2 numbers most likely come from it (the same line stands in all three places the upload has
  it); option ``mobilenet_form=true`` computes it, the default is the form of the other architectures.
* train-mode forwards: S(x), then S(x') (main.py:397-398), both used by the loss.
"""
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from bench.methods import register
from bench.methods.adaad import AdaAD
from bench.methods.base import PaperTeacher, Recipe, kl_div


def swap_true_with(logits: torch.Tensor, y: torch.Tensor, other: torch.Tensor,
                   rows: torch.Tensor) -> torch.Tensor:
    """``logits`` with, in ``rows`` (bool), the entries at ``y`` and ``other`` exchanged (a copy)."""
    at_y, at_other = logits.gather(1, y[:, None]), logits.gather(1, other[:, None])
    swapped = logits.scatter(1, other[:, None], at_y).scatter(1, y[:, None], at_other)
    return torch.where(rows[:, None], swapped, logits)


def guided_targets(t_clean: torch.Tensor, t_adv: torch.Tensor, y: torch.Tensor):
    """(mask M of samples the teacher errs on at x, swapped clean logits, swapped adversarial logits)."""
    wrong = t_clean.argmax(1) != y
    clean = swap_true_with(t_clean, y, t_clean.argmax(1), wrong)
    others = t_adv.scatter(1, y[:, None], float("-inf"))
    best_other = others.argmax(1)
    below = t_adv.gather(1, y[:, None]).squeeze(1) < others.gather(1, best_other[:, None]).squeeze(1)
    return wrong, clean, swap_true_with(t_adv, y, best_other, below)


@register
class DGAD(AdaAD):
    name = "dgad"
    citation = "Park, Min, Dynamic Guidance Adversarial Distillation with Enhanced Teacher Knowledge, ECCV 2024"
    summary = ("per sample KL(S(x) || T~(x)) where the teacher errs at x, else KL(S(x') || T~(x')), T~ = true "
               "class swapped to the top; + beta MSE(p_S(x'), p_S(x)); AdaAD's attack")
    schedule = "200 epochs, SGD 0.1 (momentum 0.9), decay /10 at 100 and 150, wd 5e-4, batch 128"
    official: ClassVar[Recipe] = Recipe(
        repo="kunsaram01/DGAD@a0329c8",
        train={"epochs": 200, "lr": 0.1, "milestones": (100, 150), "weight_decay": 5e-4, "batch_size": 128,
               "schedule": "step"},
        attack={"eps": 8 / 255, "step_ratio": 0.25, "steps": 10}, checkpoint="best-test-pgd10",
        official_options="divisor=128", by_student_options={"mobilenetv2": "mobilenet_form=true"},
        teachers={"cifar100": PaperTeacher("Chen2021LTD_WRN34_10", "WRN-34-10", True, "main.py:233-236")},
        sources={"epochs": "main.py (--epochs 200)", "lr": "main.py:253-255",
                 "weight_decay": "main.py:67-70,253-255",
                 "batch_size": "main.py:166-171", "milestones": "main.py:120-135,300-301 (lr_decay, 0-based)",
                 "schedule": "main.py:120-135", "eps": "main.py:55", "step_ratio": "main.py:57 (2/255)",
                 "steps": "main.py:56", "checkpoint": "main.py:555-655 (best_PGD10_acc_model.pth on the test set)",
                 "precision": "fp32", "input_norm": "config/dataset_config.py:12-16 (no Normalize)",
                 "options": "main.py:429-445 (D = args.bs, 128, in the group weights); main.py:439-441 (the MobileNetV2 line, as the published MobileNetV2 numbers most likely ran)"})

    @dataclass(frozen=True)
    class Options:
        beta: float = 1.0             # weight of the consistency term (--ALP_beta 1.0; --alp on)
        divisor: int = 0              # D in the group weights: 0 = the batch's size; 128 = the script's args.bs
        mobilenet_form: bool = False  # the script's mis-parenthesised MobileNetV2 line (main.py:439-441)

    gradient_sites: ClassVar[dict[str, str]] = {
        **AdaAD.gradient_sites,
        "consistency_adv": "flow: softmax S(x') in the consistency MSE (main.py:429-445: both "
                           "sides with gradients)",
        "consistency_clean": "flow: softmax S(x) in the consistency MSE (main.py:429-445)"}

    def losses(self, batch, x_adv):
        o = self.options
        s_clean, s_adv = batch.student(batch.x), batch.student(x_adv)
        with torch.no_grad():
            t_adv = batch.teacher(x_adv)
        wrong, t_clean, t_adv = guided_targets(batch.teacher_logits, t_adv, batch.y)
        m = wrong.float()
        n, size = m.sum(), float(len(batch.y))
        d = float(o.divisor) or size
        kl_clean = (m * kl_div(s_clean, t_clean, reduction="none")).sum() / (n + 1e-10)
        kl_adv = ((1 - m) * kl_div(s_adv, t_adv, reduction="none")).sum() / (size - n).clamp_min(1e-10)
        consistency = F.mse_loss(F.softmax(self.flow(s_adv, "consistency_adv"), dim=1),
                                 F.softmax(self.flow(s_clean, "consistency_clean"), dim=1))
        if o.mobilenet_form:
            return {"kd_product": 0.5 * (n / d * kl_clean + (d - n) / d) * kl_adv,
                    "consistency": o.beta * consistency}
        return {"kd_clean": n / d * kl_clean, "kd_adv": (d - n) / d * kl_adv, "consistency": o.beta * consistency}
