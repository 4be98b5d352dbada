"""Model registry. Each entry is a constructor ``(num_classes, in_channels, mean, std) -> BenchModel``."""
from __future__ import annotations

from bench.models.base import BenchModel
from bench.registry import Registry

ARCHS: Registry = Registry("architecture")

from bench.models import small, cifar  # noqa: E402,F401  (registration side effects)


def build_model(arch: str, num_classes: int, in_channels: int = 3, mean=None, std=None) -> BenchModel:
    return ARCHS.get(arch)(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)


__all__ = ["ARCHS", "BenchModel", "build_model"]
