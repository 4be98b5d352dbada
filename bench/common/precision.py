"""Numeric precision of training and evaluation: fp32, or bf16 autocast (the fast path on GPUs).

Training defaults to ``auto``: bf16 autocast on CUDA, fp32 elsewhere; the resolved precision is stored
with every run. Evaluation attacks run in fp32 unless bf16 is asked for (``eval.precision``).
"""
from __future__ import annotations

import contextlib

import torch

from bench.common.errors import BenchError

PRECISIONS = ("auto", "bf16", "fp32")


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run computes in: ``auto`` is bf16 on CUDA and fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise BenchError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if torch.device(device).type == "cuda" else "fp32"
    return precision


def autocast(precision: str, device: torch.device):
    """bf16 autocast on ``device`` when ``precision`` resolves to bf16; nothing for fp32."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def step_facts(precision: str, compile: bool, device: torch.device) -> dict:
    """How a training step ran, stored with its record: the device kind, the resolved precision and
    whether the forward was compiled."""
    device = torch.device(device)
    return {"device": device.type, "precision": resolve_precision(precision, device), "compile": compile}
