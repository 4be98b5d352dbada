"""The threat model's geometry on pixels in [0, 1]: the L-inf and L2 balls, their caps, projection and
random starts."""
from __future__ import annotations

import math
from typing import Callable, Literal

import torch

from bench.common.errors import BenchError

Start = Literal["uniform", "normal", "none"]
Norm = Literal["Linf", "L2"]
NORMS: tuple[str, ...] = ("Linf", "L2")
NORM_LABELS = {"Linf": "L∞", "L2": "L2"}  # how reports write a threat model
Objective = Callable[[torch.Tensor], torch.Tensor]  # x_adv -> scalar to maximise


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; known: {', '.join(NORMS)}")


def eps_cap(norm: str, dim: int | None = None) -> float | None:
    """Half the diameter of the [0, 1]^dim box in ``norm``: a ball that large around a mid-grey image
    covers the whole box, so a larger radius no longer bounds anything (L-inf 0.5, L2 0.5 sqrt(dim)).
    None for L2 while the image size is unknown."""
    _check_norm(norm)
    if norm == "Linf":
        return 0.5
    return None if dim is None else 0.5 * math.sqrt(dim)


def check_eps(eps: float, norm: str, dim: int | None = None) -> None:
    """One line (BenchError) for a radius outside (0, eps_cap]."""
    cap = eps_cap(norm, dim)
    if not eps > 0 or not math.isfinite(eps) or (cap is not None and eps > cap):
        bound = f"{cap:.4g}" if cap is not None else "0.5·√d"
        pixels = "pixels" if norm == "Linf" else f"{dim if dim is not None else 'd'} pixel values"
        raise BenchError(f"eps {eps:.4g} is outside (0, {bound}] for the {norm} threat model on {pixels} in [0, 1]"
                         + (" (half the box's L2 diameter)" if norm == "L2" else ""))


def _per_sample(v: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norms of ``v``, shaped to broadcast against it."""
    return v.reshape(len(v), -1).norm(dim=1).reshape(-1, *([1] * (v.dim() - 1)))


def l2_normalise(v: torch.Tensor) -> torch.Tensor:
    """Each sample scaled to unit L2 norm (a zero sample stays zero)."""
    return v / _per_sample(v).clamp_min(1e-12)


def project_l2(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Onto the L2 ball of radius eps around x, then the [0, 1] box (which only shortens x_adv - x)."""
    delta = x_adv - x
    delta = delta * (eps / _per_sample(delta).clamp_min(1e-12)).clamp(max=1.0)
    return (x + delta).clamp(0.0, 1.0)


def random_start(x: torch.Tensor, eps: float, start: Start,
                 generator: torch.Generator | None = None, norm: Norm = "Linf") -> torch.Tensor:
    """Uniform in the eps-ball (Madry/ARD), x + 0.001*N(0,1) (TRADES/RSLAD), or x itself.

    Uniform in the L2 ball: a Gaussian direction scaled to radius eps * U^(1/d), the volume-uniform
    radius in d dimensions (so most starts lie near the sphere when d is large)."""
    _check_norm(norm)
    # Drawn where the generator lives: a device generator (training) draws on the device, with no copy;
    # a CPU generator (evaluation's per-batch streams, the same on every device) draws on the CPU.
    # Without a generator, the global stream of x's device.
    where = generator.device if generator is not None else x.device
    if start == "uniform":
        if norm == "Linf":
            noise = torch.rand(x.shape, generator=generator, device=where).to(x.device) * 2 - 1
        else:
            direction = l2_normalise(torch.randn(x.shape, generator=generator, device=where))
            d = x[0].numel() if len(x) else 1
            radius = torch.rand(len(x), generator=generator, device=where).pow(1.0 / d)
            noise = (direction * radius.reshape(-1, *([1] * (x.dim() - 1)))).to(x.device)
        x = x + eps * noise
    elif start == "normal":
        x = x + 0.001 * torch.randn(x.shape, generator=generator, device=where).to(x.device)
    elif start != "none":
        raise ValueError(f"unknown start {start!r}; known: uniform, normal, none")
    return x.clamp(0.0, 1.0)
