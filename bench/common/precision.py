"""Numeric precision of training and evaluation: fp32, or bf16 autocast (the fast path on GPUs).

Training defaults to ``auto``: bf16 autocast on CUDA, fp32 elsewhere; the resolved precision is stored
with every run. Evaluation attacks run in fp32 unless bf16 is asked for (``eval.precision``).
fp32 on CUDA means IEEE fp32: PyTorch lets cuDNN convolutions (and, where asked, matmuls) round their
inputs to TF32 on Ampere and later GPUs, a 10-bit mantissa; ``autocast`` turns that off for fp32.
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


@contextlib.contextmanager
def ieee_fp32():
    """CUDA matmuls and cuDNN convolutions in full fp32 (no TF32) inside, the previous settings after."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def autocast(precision: str, device: torch.device):
    """bf16 autocast on ``device`` when ``precision`` resolves to bf16; for fp32 on CUDA, IEEE fp32
    (``ieee_fp32``); nothing on other devices."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return ieee_fp32() if device.type == "cuda" else contextlib.nullcontext()


def step_facts(precision: str, compile: bool, device: torch.device) -> dict:
    """How a training step ran, stored with its record: the device kind, the resolved precision and
    whether the forward was compiled."""
    device = torch.device(device)
    return {"device": device.type, "precision": resolve_precision(precision, device), "compile": compile}
