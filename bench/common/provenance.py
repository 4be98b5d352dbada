"""The code that produced a number, as part of the number's identity.

A run is reused only when the code that trained it and the code that evaluated it are byte for byte
the code here now: ``train_digest`` covers the training harness, the models, the shared method code
and the method's own file; ``eval_digest`` covers the attacks, the evaluation, sanity, structure and
transfer code. Reporting code is left out (a new plot does not retrain anything). The git commit is
recorded beside the digests, but is not what decides: a dirty tree has the commit of its parent.
"""
from __future__ import annotations

import hashlib
import inspect
import platform
import subprocess
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from bench.common.errors import BenchError

ROOT = Path(__file__).resolve().parents[2]
# what trains a model (the student's run folder is named after it) and what evaluates one
TRAIN_CODE = ("bench/attacks", "bench/data", "bench/models", "bench/train", "bench/common/io.py",
              "bench/common/precision.py", "bench/runs/orchestrate.py", "methods/__init__.py", "methods/base.py",
              "methods/_contrast.py")
EVAL_CODE = ("bench/attacks", "bench/data", "bench/eval", "bench/models", "bench/common/precision.py")


def _files(paths) -> list[Path]:
    out = set()
    for rel in paths:
        p = (ROOT / rel) if not Path(rel).is_absolute() else Path(rel)
        out.update(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return sorted(out)


def _digest(paths: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for f in _files(paths):
        name = str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else f.name
        h.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


@lru_cache(maxsize=None)
def files_digest(paths: tuple[str, ...]) -> str:
    """sha256 over the (relative path, bytes) of every .py file under ``paths``; 12 hex digits."""
    return _digest(paths)


def method_file(cls: type) -> str:
    """The file that defines ``cls`` ("" where none on disk does: a notebook cell, exec'd code)."""
    try:
        path = inspect.getsourcefile(cls) or ""
    except TypeError:  # a class whose module has no file
        return ""
    return path if path and Path(path).is_file() else ""


def train_digest(method_cls: type) -> str:
    """Identity of the code that trains a model with ``method_cls``: the harness and the method's own
    file. A user's method file (--methods-from, register_method) is hashed afresh on every call, since
    it may be edited and reloaded within one session; a class defined where no file holds it (a
    notebook cell) is identified by its source text."""
    path = method_file(method_cls)
    if path and Path(path).resolve().is_relative_to(ROOT):
        # a method built on another (AdaIAD on AdaAD) is also the code of the classes it inherits from
        bases = (method_file(c) for c in method_cls.__mro__[1:] if c is not object)
        inherited = tuple(p for p in dict.fromkeys(bases) if p and Path(p).resolve().is_relative_to(ROOT))
        return files_digest(TRAIN_CODE + (path,) + inherited)
    if path:
        return _digest(TRAIN_CODE + (path,))
    h = hashlib.sha256((files_digest(TRAIN_CODE) + "\0" + method_cls.__qualname__ + "\0"
                        + class_source(method_cls)).encode())
    return h.hexdigest()[:12]


def class_source(cls: type) -> str:
    """The source of a class no file holds. ``inspect.getsource`` needs the class's module file, which
    a notebook's ``__main__`` lacks; its functions' code still points at the cell (IPython keeps cells
    in linecache), so then the class is its functions' sources and its other attributes' reprs."""
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        pass
    parts = []
    for key, value in sorted(vars(cls).items()):
        func = getattr(value, "__func__", value)
        if inspect.isfunction(func):
            try:
                parts.append(inspect.getsource(func))
            except (OSError, TypeError):
                if key.startswith("__"):  # written by @dataclass (no source anywhere), not by the user
                    continue

                raise BenchError(f"method {getattr(cls, 'name', cls)!r}: the source of {key} cannot be found, so "
                                 "its runs could not be told apart from runs of edited code; define it in a file"
                                 ) from None
        elif isinstance(value, type):
            parts.append(f"{key}: {class_source(value)}")
        elif not key.startswith("__"):
            parts.append(f"{key} = {value!r}")
    return "\n".join(parts)


def eval_digest() -> str:
    return files_digest(EVAL_CODE)


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("robust-kd-bench", "torch", "torchvision", "pyautoattack", "robustbench", "numpy", "scikit-learn", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def git_commit() -> str | None:
    """HEAD's commit, with "-dirty" where tracked files differ from it (``changed_files`` says which)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=ROOT)
        if out.returncode != 0:
            return None
        return out.stdout.strip() + ("-dirty" if changed_files() else "")
    except (OSError, subprocess.SubprocessError):
        return None


OUTPUTS = ("reports/", "results/")   # what bench writes, not code: a rebuilt report does not make a tree dirty


def changed_files() -> list[str]:
    """The tracked files whose content differs from HEAD (staged or not), relative to the repository,
    outputs (reports, results) left out; [] outside a git checkout."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "-z"],
                             capture_output=True, text=True, timeout=5, cwd=ROOT)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    # entries "XY path\0", a rename followed by its old path as a further entry
    entries = out.stdout.split("\0")
    paths, skip = [], False
    for entry in entries:
        if skip or len(entry) < 4:
            skip = False
            continue
        skip = entry[0] in "RC"
        if not entry[3:].startswith(OUTPUTS):
            paths.append(entry[3:])
    return sorted(paths)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; platform's answer elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas() -> str:
    """The BLAS torch was built with, as torch's build configuration names it."""
    import torch

    for line in torch.__config__.show().splitlines():
        if "BLAS_INFO=" in line:
            return line.split("BLAS_INFO=", 1)[1].split(",")[0].strip()
    return "unknown"


def machine_facts(device: str = "cpu") -> dict:
    """What float rounding depends on, beside the code: torch and its BLAS, threads, CPU, device."""
    import torch

    facts = {"torch": torch.__version__, "blas": _blas(), "threads": torch.get_num_threads(),
             "cpu": _cpu_model(), "device": device, "python": platform.python_version()}
    if device.startswith("cuda") and torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name(0)
    return facts
