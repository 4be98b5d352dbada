"""A git ref's tree beside the working tree, so that a benchmark can time both side by side in one run.

``checkout("HEAD~3")`` yields a temporary directory holding that commit (``git worktree add --detach``);
a process started with ``cwd`` and ``PYTHONPATH`` at it imports that commit's ``bench`` and ``methods``
(the editable install's finder comes after ``sys.path``).
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def describe(ref: str) -> str:
    """``ref`` as a short commit id and subject, for the printed table."""
    return _git("log", "-1", "--format=%h %s", ref)[:72]


@contextlib.contextmanager
def checkout(ref: str):
    """A detached worktree of ``ref`` in a temporary folder, removed afterwards."""
    _git("rev-parse", "--verify", f"{ref}^{{commit}}")  # a clear error for an unknown ref
    with tempfile.TemporaryDirectory(prefix="bench-ref-") as tmp:
        tree = Path(tmp) / "tree"
        _git("worktree", "add", "--detach", str(tree), ref)
        try:
            yield tree
        finally:
            _git("worktree", "remove", "--force", str(tree))


def env_for(tree: Path) -> dict:
    """The environment of a process that imports the code in ``tree``."""
    return {**os.environ, "PYTHONPATH": str(tree)}


@contextlib.contextmanager
def nothing():
    """The stand-in for ``checkout`` when no ref is asked for."""
    yield None


THIS = "this tree"


@contextlib.contextmanager
def sides(ref: str | None):
    """The trees to time: ``{"this tree": ROOT}`` and, with ``ref``, ``{"at <commit>": its worktree}``."""
    with (checkout(ref) if ref else nothing()) as tree:
        yield {THIS: ROOT} | ({f"at {describe(ref)}": tree} if tree is not None else {})


def speedup(seconds: dict[str, float]) -> str:
    """The line that gives this tree's speed-up over the other side (empty with one side)."""
    other = [s for s in seconds if s != THIS]
    return f"speed-up of this tree over {other[0]}: {seconds[other[0]] / seconds[THIS]:.2f}x" if other else ""
