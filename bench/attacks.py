"""L-infinity attacks as pure functions on pixels in [0, 1].

``pgd_ascent`` is the one ascent loop: the training-time inner maximisation of every method and
the evaluation attacks (FGSM, PGD-k, CW-inf) are all calls of it with a different objective.
AutoAttack comes from the ``pyautoattack`` package.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from bench.registry import Registry

Start = Literal["uniform", "normal", "none"]
Objective = Callable[[torch.Tensor], torch.Tensor]  # x_adv -> scalar to maximise


def random_start(x: torch.Tensor, eps: float, start: Start,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform in the eps-ball (Madry/ARD), x + 0.001*N(0,1) (TRADES/RSLAD), or x itself."""
    if start == "uniform":
        noise = torch.rand(x.shape, generator=generator, device="cpu").to(x.device) * 2 - 1
        x = x + eps * noise
    elif start == "normal":
        x = x + 0.001 * torch.randn(x.shape, generator=generator, device="cpu").to(x.device)
    elif start != "none":
        raise ValueError(f"unknown start {start!r}; known: uniform, normal, none")
    return x.clamp(0.0, 1.0)


def pgd_ascent(objective: Objective, x: torch.Tensor, eps: float, step: float, steps: int,
               start: Start = "uniform", generator: torch.Generator | None = None,
               x_init: torch.Tensor | None = None) -> torch.Tensor:
    """Signed-gradient ascent on ``objective`` inside the L-inf eps-ball; returns a detached x_adv.

    Gradients are taken with respect to the input only, so no parameter gradient accumulates.
    ``x_init``: a start drawn elsewhere (a DDP rank's rows of the global batch's random start).
    """
    x = x.detach()
    lo, hi = (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)  # the ball and the box, once
    x_adv = torch.clamp(random_start(x, eps, start, generator) if x_init is None else x_init, lo, hi)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            grad, = torch.autograd.grad(objective(x_adv), x_adv)
        x_adv = torch.clamp(x_adv.detach() + step * grad.sign(), lo, hi)
    return x_adv


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="sum")


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin: best wrong logit minus the true logit, summed over the batch."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    wrong = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return (wrong - true).sum()


@dataclass(frozen=True)
class AttackSpec:
    """A whitebox evaluation attack: its loss, steps and step size relative to eps."""
    name: str
    loss: Literal["ce", "margin"]
    steps: int
    step_ratio: float          # step = step_ratio * eps
    start: Start
    restarts: int = 1

    def settings(self, eps: float) -> dict:
        return {**asdict(self), "eps": eps, "step": self.step_ratio * eps}


ATTACKS: Registry[AttackSpec] = Registry("attack")
# FGSM: one step of size eps. PGD-20: step eps/4 (2/255 at 8/255), random start.
# CW-inf: PGD-30 on the margin loss, step eps/4.
ATTACKS.add("fgsm", AttackSpec("fgsm", "ce", 1, 1.0, "none"))
ATTACKS.add("pgd20", AttackSpec("pgd20", "ce", 20, 0.25, "uniform"))
ATTACKS.add("cw", AttackSpec("cw", "margin", 30, 0.25, "uniform"))
AA_NAME = "aa"  # AutoAttack; listed by the CLI next to ATTACKS, run by ``bench.evaluation.autoattack_flags``


def whitebox_attack(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec,
                    eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Worst case over ``spec.restarts`` runs, per sample: a sample stays broken once broken."""
    loss = ce_loss if spec.loss == "ce" else margin_loss
    best = x.clone()
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(spec.restarts):
        todo = ~fooled
        if not todo.any():
            break
        xs, ys = x[todo], y[todo]
        adv = pgd_ascent(lambda xa: loss(model(xa), ys), xs, eps, spec.step_ratio * eps, spec.steps,
                         spec.start, generator)
        with torch.no_grad():
            now_fooled = model(adv).argmax(1) != ys
        idx = todo.nonzero().squeeze(1)
        best[idx] = adv
        fooled[idx[now_fooled]] = True
    return best


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
