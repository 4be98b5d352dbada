"""Stage 2, models: the architectures (small CNNs for digits, CIFAR ResNets / WRN / MobileNetV2), their
registry, and teachers from RobustBench's zoo (``zoo``, offline). ``build_model(arch, ...)`` returns a
:class:`BenchModel` that normalises its inputs itself."""
from __future__ import annotations

from bench.models import cifar, small  # noqa: F401  (registration side effects)
from bench.models.base import BenchModel
from bench.models.registry import ARCHS, Arch, register_arch


def build_model(arch: str, num_classes: int, in_channels: int = 3, mean=None, std=None) -> BenchModel:
    return ARCHS.get(arch).build(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)


def _entry(arch: str) -> Arch | None:
    return ARCHS.get(arch) if arch in ARCHS else None


# The three lookups below pass an unregistered name through unchanged: the callers (presets, published
# numbers, export) handle names that are checked, with the list of known ones, where a model is built.
def smoke_arch(arch: str) -> str:
    """The architecture a smoke-scale run trains in place of ``arch`` (itself when it has no twin)."""
    entry = _entry(arch)
    return (entry and entry.smoke) or arch


def published_arch(arch: str) -> str:
    """The architecture whose published numbers a row trained with ``arch`` is compared with."""
    entry = _entry(arch)
    return (entry and entry.published_as) or arch


def leaderboard_name(arch: str) -> str:
    """RobustBench's leaderboard name for ``arch`` (bench's own name when the leaderboards have none)."""
    entry = _entry(arch)
    return (entry and entry.leaderboard) or arch


def describe_archs() -> list[str]:
    """One line per architecture for ``bench list``: its summary, then its facts."""
    lines = []
    for name, a in ARCHS.items():
        facts = [f"{label} {value}" for label, value in (("leaderboard", a.leaderboard), ("smoke twin", a.smoke),
                                                         ("published as", a.published_as)) if value]
        lines.append("  " + "; ".join([f"{name:16s} {a.summary.rstrip('.')}", *facts]))
    return lines


__all__ = ["ARCHS", "Arch", "BenchModel", "build_model", "describe_archs", "leaderboard_name", "published_arch",
           "register_arch", "smoke_arch"]
