"""How much of the teacher's structure a student carries: pure functions on outputs, and their use.

- class-correlation gap: mean |corr_T - corr_S| over the off-diagonal entries of the C x C
  correlation matrices of the logits over a set of inputs;
- linear CKA between penultimate features (Kornblith et al., ICML 2019);
- prediction agreement, and how often the student's adversarial examples also fool the teacher;
- transfer of attacks both ways: the teacher's accuracy on the student's PGD-20 examples and the student's
  accuracy on PGD-20 examples crafted on the teacher (how much of the student's robustness is the
  teacher's: a student that resists the teacher's examples no better than its own shares its weaknesses).
"""
from __future__ import annotations

import torch
from torch import nn

from bench.attacks.ascent import ATTACKS, adversarial, batched
from bench.data.images import to_float


def class_correlation(logits: torch.Tensor) -> torch.Tensor:
    """C x C Pearson correlation between classes' logits across samples (float64)."""
    z = logits.double() - logits.double().mean(0, keepdim=True)
    cov = z.t() @ z
    sd = cov.diagonal().clamp_min(1e-12).sqrt()
    return cov / (sd[:, None] * sd[None, :])


def correlation_gap(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> float:
    """Mean |corr_T - corr_S| over the C(C-1) off-diagonal entries (the diagonal is 1 in both)."""
    gap = (class_correlation(teacher_logits) - class_correlation(student_logits)).abs()
    off = ~torch.eye(gap.shape[0], dtype=torch.bool, device=gap.device)
    return float(gap[off].mean())


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same n samples: (n, d1), (n, d2)."""
    x = x.double() - x.double().mean(0, keepdim=True)
    y = y.double() - y.double().mean(0, keepdim=True)
    cross = (y.t() @ x).pow(2).sum()
    return float(cross / ((x.t() @ x).pow(2).sum().sqrt() * (y.t() @ y).pow(2).sum().sqrt()))


@torch.no_grad()
def _outputs(model: nn.Module, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    def features_and_logits(_, xb):
        f = model.features(xb)
        return f, model.head(f)
    return batched(features_and_logits, x, batch_size=batch_size)


TEACHER_STREAM = 7919   # offset of the seed of the teacher-side attack's random starts


def structure_metrics(student: nn.Module, teacher: nn.Module, x_u8: torch.Tensor, y: torch.Tensor,
                      eps: float, batch_size: int = 500, seed: int = 0, norm: str = "Linf") -> dict:
    """Structure metrics on clean inputs and on the student's PGD-20 examples (in the ``norm`` ball),
    plus the matrices. The attack's batches draw on one random stream (``seed``)."""
    student.eval()
    teacher.eval()
    x = to_float(x_u8)
    g = torch.Generator().manual_seed(seed)
    x_adv = adversarial(student, x, y, ATTACKS.get("pgd20"), eps, batch_size, lambda _: g, norm)
    out: dict = {}
    for name, inputs in (("clean", x), ("adv", x_adv)):
        fs, ls = _outputs(student, inputs, batch_size)
        ft, lt = _outputs(teacher, inputs, batch_size)
        out[name] = {"corr_gap": correlation_gap(lt, ls), "cka": linear_cka(fs, ft),
                     "agreement": float((ls.argmax(1) == lt.argmax(1)).double().mean())}
        if name == "clean":
            out["corr_teacher"] = class_correlation(lt).tolist()
            out["corr_student"] = class_correlation(ls).tolist()
        else:
            fooled_s = ls.argmax(1) != y
            fooled_t = lt.argmax(1) != y
            out["adv"]["fools_teacher"] = float(fooled_t.double().mean())
            out["adv"]["fools_teacher_given_student"] = (
                float(fooled_t[fooled_s].double().mean()) if fooled_s.any() else float("nan"))
            out["transfer"] = {"student_to_teacher": 1.0 - float(fooled_t.double().mean()),
                               "student_whitebox": 1.0 - float(fooled_s.double().mean())}
    # the other direction: PGD-20 crafted on the teacher (its own stream, so the student's examples above
    # stay what they were), replayed on the student
    g_t = torch.Generator().manual_seed(seed + TEACHER_STREAM)
    x_t = adversarial(teacher, x, y, ATTACKS.get("pgd20"), eps, batch_size, lambda _: g_t, norm)
    ls, lt = _outputs(student, x_t, batch_size)[1], _outputs(teacher, x_t, batch_size)[1]
    out["transfer"] |= {"teacher_to_student": float((ls.argmax(1) == y).double().mean()),
                        "teacher_whitebox": float((lt.argmax(1) == y).double().mean())}
    return out
