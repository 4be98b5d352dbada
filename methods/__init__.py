"""The method registry. Every module in this package that defines a ``Method`` subclass decorated
with ``@register`` is imported here, so adding a method is adding one file.

Methods from outside the package join the same registry three ways: ``@bench.register_method`` (this
``register``) in user code, ``--methods-from FILE`` (``load_file``), and the ``bench.methods``
entry-point group of any installed distribution, loaded the first time the registry is read."""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import pkgutil
import sys
from pathlib import Path

from bench.common.errors import BenchError
from bench.common.registry import Registry
from bench.methods.base import Batch, Context, InnerMax, Method, MethodSpec, parse_options

ENTRY_POINT_GROUP = "bench.methods"


class MethodRegistry(Registry):
    """The method registry; reading it first loads the ``bench.methods`` entry points (once)."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self._entry_points_loaded = False

    def load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True  # before loading: an entry point may read the registry
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()  # a module (its @register decorators run) or a Method subclass
            except Exception as err:
                raise BenchError(f"entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP}) failed to load: "
                                 f"{type(err).__name__}: {err}") from None
            if isinstance(obj, type) and issubclass(obj, Method) and obj.name not in self._items:
                register(obj)

    def get(self, name: str):
        self.load_entry_points()
        return super().get(name)

    def names(self) -> list[str]:
        self.load_entry_points()
        return super().names()

    def __contains__(self, name: str) -> bool:
        self.load_entry_points()
        return super().__contains__(name)


METHODS: MethodRegistry = MethodRegistry("method")


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a ``Method`` subclass to the registry under ``cls.name``. A name another
    class holds is an error; the same class defined again (a re-run notebook cell, a reloaded file:
    same module and qualified name) replaces its earlier definition."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise BenchError(f"register: {cls!r} is not a subclass of bench.methods.base.Method")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or ":" in name or "," in name:
        raise BenchError(f"register: {cls.__qualname__} needs a class attribute name = \"...\" "
                         "(no ':' or ',': they separate options and methods)")
    old = METHODS._items.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        if old.__module__ == f"bench.{cls.__module__}":   # the folder imported a second time, by its path
            raise BenchError(f"the methods/ folder was imported as a package of its own ({cls.__module__}): "
                             "it is bench.methods (from bench.methods.kd import KD, not from methods.kd)")
        raise BenchError(f"method {name!r} is already registered (by {old.__module__}.{old.__qualname__}); "
                         f"pick another name; registered: {', '.join(sorted(METHODS._items))}")
    METHODS._items[name] = cls
    return cls


_LOADED: dict[Path, object] = {}


def load_file(path: str | Path):
    """Import a user's Python file so the methods it registers are available (once per file per
    process: a grid's jobs may run in one process). Missing or raising: one line."""
    if "\x00" in str(path):
        raise BenchError(f"--methods-from {str(path)!r}: a path with a NUL byte")
    path = Path(path).expanduser().resolve()
    if path in _LOADED:
        return _LOADED[path]
    if not path.is_file():
        raise BenchError(f"--methods-from {path}: no such file")
    # a stable module name per path, in sys.modules: inspect.getsourcefile (the code digest) finds it
    module_name = f"bench_user_methods_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise BenchError(f"--methods-from {path}: not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BenchError as err:
        sys.modules.pop(module_name, None)
        raise BenchError(f"--methods-from {path}: {err}") from None
    except Exception as err:
        sys.modules.pop(module_name, None)
        tb, lineno = err.__traceback__, None
        while tb is not None:  # the last line of the user's file on the way to the error
            if tb.tb_frame.f_code.co_filename == str(path):
                lineno = tb.tb_lineno
            tb = tb.tb_next
        line = f" (line {lineno})" if lineno is not None else ""
        raise BenchError(f"--methods-from {path}{line}: {type(err).__name__}: {err}") from None
    _LOADED[path] = module
    return module


def parse_method(text: str) -> MethodSpec:
    """``gacd:reweight=none:estimator=infonce`` -> MethodSpec."""
    name, *pairs = text.strip().split(":")
    cls = METHODS.get(name)
    return MethodSpec(name, parse_options(name, cls.Options, pairs), cls)


for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_") and _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["METHODS", "Batch", "Context", "InnerMax", "Method", "MethodSpec", "load_file", "parse_method",
           "register"]
