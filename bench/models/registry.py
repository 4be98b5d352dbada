"""The architecture registry: each entry is an :class:`Arch`, a constructor
``(num_classes, in_channels, mean, std) -> BenchModel`` and the facts bench needs about it. The
architecture files register themselves here; ``bench.models`` imports them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from bench.common.registry import Registry
from bench.models.base import BenchModel


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
