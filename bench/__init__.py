"""bench: adversarially robust knowledge distillation under one protocol.

``bench.run(...)`` runs what ``python -m bench run`` runs and returns its records and table;
``bench.evaluate(model, dataset=..., attacks=[...], eps=...)`` evaluates any ``nn.Module`` under the
suite's protocol (what ``python -m bench eval`` runs); ``bench.register_method`` adds a method from
user code; ``bench.site(["baselines"], out="site")`` builds the leaderboard website (``bench site``). Attributes load lazily, so ``import bench``
costs nothing until one is used."""
from __future__ import annotations

import importlib

_API = {"run": ("bench.api", "run"), "RunResult": ("bench.api", "RunResult"),
        "evaluate": ("bench.eval.model", "evaluate_model"), "EvalResult": ("bench.eval.model", "EvalResult"),
        "register_method": ("bench.methods", "register"), "load_methods": ("bench.methods", "load_file"),
        "site": ("bench.api", "site")}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name.startswith("__"):  # probes such as __wrapped__ are not submodules
        raise AttributeError(f"module 'bench' has no attribute {name!r}")
    if name in _API:
        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    try:  # a submodule not imported yet: bench.report.build, bench.config.schema, ...
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module 'bench' has no attribute {name!r}") from None


def __dir__():
    return sorted(set(globals()) | set(_API))
