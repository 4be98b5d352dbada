"""The method registry. Every module in this package that defines a ``Method`` subclass decorated
with ``@register`` is imported here, so adding a method is adding one file."""
from __future__ import annotations

import importlib
import pkgutil

from bench.registry import Registry
from methods.base import Batch, Context, InnerMax, Method, MethodSpec, parse_options

METHODS: Registry[type[Method]] = Registry("method")


def register(cls: type[Method]) -> type[Method]:
    METHODS.add(cls.name, cls)
    return cls


def parse_method(text: str) -> MethodSpec:
    """``gacd:reweight=none:estimator=infonce`` -> MethodSpec."""
    name, *pairs = text.strip().split(":")
    cls = METHODS.get(name)
    return MethodSpec(name, parse_options(name, cls.Options, pairs), cls)


for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_") and _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["METHODS", "Batch", "Context", "InnerMax", "Method", "MethodSpec", "parse_method", "register"]
