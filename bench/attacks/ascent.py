"""L-infinity and L2 attacks as pure functions on pixels in [0, 1], and the one batching loop.

``pgd_ascent`` is the one ascent loop: the training-time inner maximisation of every method and
the evaluation attacks (FGSM, PGD-k, CW) are all calls of it with a different objective, under
either threat model (``norm``): L-inf steps along the gradient's sign and clips to the eps-box; L2
steps along the per-sample L2-normalised gradient and projects onto the L2 ball of radius eps around
x, then onto the [0, 1] box (clipping to the box only shortens the perturbation, so the result stays
in the ball). AutoAttack comes from the ``pyautoattack`` package.

``batched`` is the one loop over batches that clean inference (``predict``), attack-and-score
(``attack_accuracy``: validation, the evaluation's attacks and eps-curve, transfer) and the
structure metrics' adversarial examples (``adversarial``) share.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal, Protocol

import torch
import torch.nn.functional as F

from bench.attacks.threat import (
    Norm,
    Objective,
    Start,
    _check_norm,
    l2_normalise,
    project_l2,
    random_start,
)
from bench.common.registry import Registry


def pgd_ascent(objective: Objective, x: torch.Tensor, eps: float, step: float, steps: int,
               start: Start = "uniform", generator: torch.Generator | None = None,
               x_init: torch.Tensor | None = None, norm: Norm = "Linf") -> torch.Tensor:
    """Gradient ascent on ``objective`` inside the ``norm`` eps-ball and the box; returns a detached x_adv.

    L-inf: signed-gradient steps, clipped to the ball and the box. L2: steps of length ``step`` along
    the per-sample L2-normalised gradient, projected onto the ball, then the box.
    Gradients are taken with respect to the input only, so no parameter gradient accumulates.
    ``x_init``: a start drawn elsewhere (a DDP rank's rows of the global batch's random start).
    """
    _check_norm(norm)
    x = x.detach()
    if norm == "Linf":
        lo, hi = (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)  # the ball and the box, once

        def project(z):
            return torch.clamp(z, lo, hi)
        direction = torch.sign
    else:
        def project(z):
            return project_l2(z, x, eps)
        direction = l2_normalise
    x_adv = project(random_start(x, eps, start, generator, norm) if x_init is None else x_init)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            grad, = torch.autograd.grad(objective(x_adv), x_adv)
        x_adv = project(x_adv.detach() + step * direction(grad))
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
    """A whitebox evaluation attack: its loss, steps and step size relative to eps (either norm)."""
    name: str
    loss: Literal["ce", "margin"]
    steps: int
    step_ratio: float          # step = step_ratio * eps
    start: Start
    restarts: int = 1

    def settings(self, eps: float, norm: Norm = "Linf") -> dict:
        return {**asdict(self), "eps": eps, "step": self.step_ratio * eps, "norm": norm}


ATTACKS: Registry[AttackSpec] = Registry("attack")
# FGSM: one step of size eps (under L2 one step of length eps along the normalised gradient: FGM).
# PGD-20: step eps/4 (2/255 at 8/255), random start. CW: PGD-30 on the margin loss, step eps/4.
# The same step ratios serve L2. RobustBench evaluates L2 (and L-inf) with AutoAttack alone, whose
# APGD has no fixed step (it starts at 2 eps and halves adaptively, for either norm); the Madry lab's
# robustness library evaluates L2 PGD with step 2.5 eps / steps (eps/8 at 20 steps), a rule it applies
# to L-inf too, where this suite already follows TRADES/ARD's eps/4; eps/4 for L2 keeps one protocol.
ATTACKS.add("fgsm", AttackSpec("fgsm", "ce", 1, 1.0, "none"))
ATTACKS.add("pgd20", AttackSpec("pgd20", "ce", 20, 0.25, "uniform"))
# PGD-10, step eps/4, random start: the per-epoch test attack of the official scripts that select on it
ATTACKS.add("pgd10", AttackSpec("pgd10", "ce", 10, 0.25, "uniform"))
ATTACKS.add("cw", AttackSpec("cw", "margin", 30, 0.25, "uniform"))
AA_NAME = "aa"  # AutoAttack; listed by the CLI next to ATTACKS, run by ``bench.eval.protocol.autoattack_flags``


def whitebox_attack(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec,
                    eps: float, generator: torch.Generator | None = None, norm: Norm = "Linf") -> torch.Tensor:
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
                         spec.start, generator, norm=norm)
        with torch.no_grad():
            now_fooled = model(adv).argmax(1) != ys
        idx = todo.nonzero().squeeze(1)
        best[idx] = adv
        fooled[idx[now_fooled]] = True
    return best


# --- the one batching loop --------------------------------------------------------------------------

def batched(fn: Callable[..., Any], *tensors: torch.Tensor, batch_size: int,
            select: Callable[[int], bool] | None = None, empty: Any = None) -> Any:
    """``fn(index, *slices)`` on consecutive batches of the aligned ``tensors`` (the batches ``select``
    keeps), outputs concatenated (a tuple output element by element); ``empty`` when none is kept.
    Autograd is the caller's: inference wraps it in ``torch.no_grad``, attacks take input gradients."""
    outs = []
    for index, i in enumerate(range(0, len(tensors[0]), batch_size)):
        if select is None or select(index):
            outs.append(fn(index, *(t[i:i + batch_size] for t in tensors)))
    if not outs:
        return empty
    if isinstance(outs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outs))
    return torch.cat(outs)


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Predicted labels, batch by batch."""
    return batched(lambda _, xb: model(xb).argmax(1), x, batch_size=batch_size)


GeneratorFor = Callable[[int], "torch.Generator | None"]  # batch index -> that batch's random stream


class BatchCache(Protocol):
    """Per-batch results kept elsewhere (resumable evaluation): None when batch ``index`` is not done."""
    def get(self, index: int) -> torch.Tensor | None: ...
    def put(self, index: int, correct: torch.Tensor) -> None: ...


def adversarial(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec, eps: float,
                batch_size: int, generator_for_batch: GeneratorFor, norm: Norm = "Linf") -> torch.Tensor:
    """``spec``'s adversarial examples of every image, batch by batch."""
    return batched(lambda i, xb, yb: whitebox_attack(model, xb, yb, spec, eps, generator_for_batch(i), norm),
                   x, y, batch_size=batch_size)


def attack_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec, eps: float,
                    batch_size: int, generator_for_batch: GeneratorFor, norm: Norm = "Linf",
                    select: Callable[[int], bool] | None = None, cache: BatchCache | None = None,
                    on_batch: Callable[[int], None] | None = None) -> torch.Tensor:
    """Per-image correctness (bool) under ``spec`` at ``eps``, batch by batch: the one attack-and-score
    path of validation, the evaluation (its attacks, eps-curve and sanity checks) and transfer.

    Batch ``index`` draws its random start from ``generator_for_batch(index)`` (one shared generator
    gives one stream over all batches). Only the batches ``select`` keeps are attacked and returned;
    a batch ``cache`` already holds is read back instead of attacked; ``on_batch(n)`` after each batch."""
    def score(index, xb, yb):
        ok = cache.get(index) if cache is not None else None
        if ok is None:
            adv = whitebox_attack(model, xb, yb, spec, eps, generator_for_batch(index), norm)
            ok = predict(model, adv, batch_size) == yb
            if cache is not None:
                cache.put(index, ok)
        if on_batch is not None:
            on_batch(len(xb))
        return ok
    return batched(score, x, y, batch_size=batch_size, select=select,
                   empty=torch.zeros(0, dtype=torch.bool, device=y.device))
