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
