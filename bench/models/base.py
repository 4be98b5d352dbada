"""The contract every bench model meets.

Inputs are pixels in [0, 1]; the per-channel normalisation lives inside the model (as in
RobustBench) so attacks work in pixel space. ``features(x)`` returns the pooled penultimate
features and ``head(f)`` the logits; ``forward = head(features(x))``.
The normalisation buffers are not persistent, so a model's state_dict has exactly the parameter
names of the classic implementation and published checkpoints load unchanged.
"""
from __future__ import annotations

import abc
from typing import Sequence

import torch
from torch import nn


def _layout(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        and not x.is_contiguous() else torch.contiguous_format


class _GlobalAvgPool(torch.autograd.Function):
    """Mean over H and W, (B, C, H, W) -> (B, C), whose input gradient keeps the input's memory layout.

    The forward is ``adaptive_avg_pool2d(x, 1)``'s own reduction (``mean`` over H, W). Its stock backward
    returns a broadcast NCHW view, so the ReLU backward before it mixes NCHW and channels_last operands and
    falls off the vectorised path (measured on CPU: 25x slower, a sixth of a small CNN's training step).
    The gradient here has the same values, laid out as the input."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape, ctx.layout = x.shape, _layout(x)
        return x.mean((2, 3))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        b, c, h, w = ctx.shape
        return (grad / (h * w))[:, :, None, None].expand(b, c, h, w).contiguous(memory_format=ctx.layout)


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C): the average over each channel (every architecture's last pooling); without a
    gradient to take (inference, AutoAttack's queries) the plain reduction, which skips the Function's cost."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _GlobalAvgPool.apply(x)
    return x.mean((2, 3))


class GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return global_avg_pool(x)


class BenchModel(nn.Module, abc.ABC):
    feature_dim: int
    num_classes: int

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 in_channels: int = 3):
        super().__init__()
        mean = [0.0] * in_channels if mean is None else list(mean)
        std = [1.0] * in_channels if std is None else list(std)
        self.register_buffer("input_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_std

    @abc.abstractmethod
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features, shape (B, feature_dim); applies the normalisation."""

    @abc.abstractmethod
    def head(self, f: torch.Tensor) -> torch.Tensor:
        """Logits from features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
