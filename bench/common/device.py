"""Which device a command runs on, checked once (one clear line for one this machine lacks), and the
global seed."""
from __future__ import annotations

import torch

from bench.common.errors import BenchError


def resolve_device(name: str) -> torch.device:
    """auto, cpu, cuda or cuda:i (and mps where PyTorch has it); anything else is one clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = name.partition(":")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise BenchError(f"device {name!r} asked for, but CUDA is not available here")
        if index and not (index.isdigit() and int(index) < torch.cuda.device_count()):
            raise BenchError(f"device {name!r}: this machine has cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return torch.device(name)
    if name == "cpu" or (name == "mps" and torch.backends.mps.is_available()):
        return torch.device(name)
    raise BenchError(f"unknown or unavailable device {name!r}; use auto, cpu or cuda[:i]")


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
