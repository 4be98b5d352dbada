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
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAIN_CODE = ("bench/attacks.py", "bench/data.py", "bench/io.py", "bench/runner.py", "bench/teacher.py",
              "bench/train.py", "bench/models", "methods/__init__.py", "methods/base.py", "methods/_contrast.py")
EVAL_CODE = ("bench/attacks.py", "bench/data.py", "bench/evaluation.py", "bench/sanity.py", "bench/structure.py",
             "bench/transfer.py", "bench/models", "bench/zoo.py", "bench/robustbench_compat.py")


def _files(paths) -> list[Path]:
    out = set()
    for rel in paths:
        p = (ROOT / rel) if not Path(rel).is_absolute() else Path(rel)
        out.update(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return sorted(out)


@lru_cache(maxsize=None)
def files_digest(paths: tuple[str, ...]) -> str:
    """sha256 over the (relative path, bytes) of every .py file under ``paths``; 12 hex digits."""
    h = hashlib.sha256()
    for f in _files(paths):
        name = str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else f.name
        h.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def method_file(cls: type) -> str:
    return inspect.getsourcefile(cls) or ""


def train_digest(method_cls: type) -> str:
    """Identity of the code that trains a model with ``method_cls``."""
    return files_digest(TRAIN_CODE + (method_file(method_cls),))


def eval_digest() -> str:
    return files_digest(EVAL_CODE)
