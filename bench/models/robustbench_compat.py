"""Import shims that let robustbench 1.1.1 import in this environment.

robustbench 1.1.1 imports two modules that this environment does not provide under those names:

* ``autoattack`` -- ``robustbench/eval.py`` does ``from autoattack import AutoAttack`` and
  ``from autoattack.state import EvaluationState``. The PyPI release of AutoAttack is
  ``pyautoattack`` (import name ``pyautoattack``), which has both. When no real ``autoattack`` is
  importable, ``sys.modules['autoattack']`` and ``sys.modules['autoattack.state']`` become aliases
  of ``pyautoattack`` and ``pyautoattack.state`` (the alias stays: it is the complete package).
* ``pkg_resources`` -- ``robustbench/loaders.py`` does ``import pkg_resources`` and calls only
  ``pkg_resources.resource_filename(__name__, path)`` (to find its ImageNet file lists). Recent
  setuptools no longer ships ``pkg_resources``. When it is not importable, a stand-in module with
  just ``resource_filename`` is registered *only while robustbench is being imported* and removed
  afterwards (robustbench keeps its reference), so other libraries that probe for
  ``pkg_resources`` still see that it is absent.

Neither shim is installed when the real module can be imported.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path

from bench.common.errors import BenchError


def _importable(name: str) -> bool:
    """Whether a real module ``name`` is loaded or can be found, without importing it."""
    if sys.modules.get(name) is not None:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _alias_autoattack() -> None:
    """Make ``import autoattack`` / ``autoattack.state`` resolve to pyautoattack, unless a real
    ``autoattack`` exists (then nothing is touched)."""
    if _importable("autoattack"):
        return
    try:
        pyautoattack = importlib.import_module("pyautoattack")
        state = importlib.import_module("pyautoattack.state")
    except ImportError as err:
        raise BenchError(f"robustbench needs AutoAttack, and neither autoattack nor pyautoattack is "
                         f"importable ({err}); install it with: pip install pyautoattack") from None
    sys.modules["autoattack"] = pyautoattack
    sys.modules["autoattack.state"] = state


def _resource_filename(package_or_requirement: str, resource_name: str) -> str:
    """``pkg_resources.resource_filename`` for an importable module or package name: the path of
    ``resource_name`` relative to the folder that holds the module (a package's own folder)."""
    if not isinstance(package_or_requirement, str):
        raise TypeError("bench's pkg_resources stand-in only accepts module names")
    module = importlib.import_module(package_or_requirement)
    locations = getattr(getattr(module, "__spec__", None), "submodule_search_locations", None)
    if locations:
        base = Path(next(iter(locations)))
    else:
        base = Path(module.__file__).parent
    return str(base.joinpath(*resource_name.split("/")))


def _pkg_resources_stub() -> types.ModuleType:
    stub = types.ModuleType("pkg_resources", "bench's minimal stand-in for setuptools' pkg_resources "
                                             "(only resource_filename), used while importing robustbench")
    stub.resource_filename = _resource_filename
    stub.__bench_stub__ = True
    return stub


@contextlib.contextmanager
def _temporary_pkg_resources() -> Iterator[None]:
    """Register the stand-in while the body runs, only when no real pkg_resources is importable."""
    if _importable("pkg_resources"):
        yield
        return
    stub = _pkg_resources_stub()
    sys.modules["pkg_resources"] = stub
    try:
        yield
    finally:
        if sys.modules.get("pkg_resources") is stub:
            del sys.modules["pkg_resources"]


def import_robustbench() -> types.ModuleType:
    """The ``robustbench`` package (with ``robustbench.utils`` and ``robustbench.model_zoo``
    loaded), after installing the shims above where needed; a BenchError when it cannot be imported."""
    loaded = sys.modules.get("robustbench")
    if loaded is not None and hasattr(loaded, "utils") and hasattr(loaded, "model_zoo"):
        return loaded
    _alias_autoattack()
    try:
        with _temporary_pkg_resources(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)      # torch.jit deprecations via timm
            warnings.simplefilter("ignore", DeprecationWarning)
            rb = importlib.import_module("robustbench")
            importlib.import_module("robustbench.utils")
            importlib.import_module("robustbench.model_zoo")
    except ImportError as err:
        raise BenchError(f"cannot import robustbench ({err}); install it with: "
                         f"pip install robustbench pyautoattack") from None
    return rb
