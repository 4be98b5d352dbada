"""Architecture registry. Each entry is an :class:`Arch`: a constructor
``(num_classes, in_channels, mean, std) -> BenchModel`` and the facts bench needs about it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from bench.models.base import BenchModel
from bench.registry import Registry


@dataclass(frozen=True)
class Arch:
    """An architecture and what the rest of bench knows about it, in one place."""
    name: str
    build: Callable[..., BenchModel]
    leaderboard: str | None = None   # the name RobustBench's leaderboards use (export)
    smoke: str | None = None         # the narrow twin with the same code path that smoke presets train
    published_as: str | None = None  # the architecture whose published numbers this one's rows are set beside

    @property
    def summary(self) -> str:
        """The first line of the constructor's docstring."""
        return (self.build.__doc__ or "").strip().partition("\n")[0]


ARCHS: Registry[Arch] = Registry("architecture")


def register_arch(name: str, leaderboard: str | None = None, smoke: str | None = None,
                  published_as: str | None = None) -> Callable:
    """Decorator: register a constructor as architecture ``name`` with its facts; returns it unchanged."""
    def decorate(build: Callable[..., BenchModel]) -> Callable[..., BenchModel]:
        ARCHS.add(name, Arch(name, build, leaderboard, smoke, published_as))
        return build
    return decorate


from bench.models import small, cifar  # noqa: E402,F401  (registration side effects)


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
