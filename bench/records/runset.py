"""A run-set's manifest: which runs make it up, merged by every command and job that adds to it.

Any number of ``bench`` processes (a Slurm array, local workers, two terminals) may work on one
run-set. Each plans its (method, seed) runs before training anything and merges them here under a
file lock: an entry is keyed by (role, method, seed), so a re-run with changed code or config replaces
its own entry and leaves every other job's entries alone. ``bench report`` and ``bench status`` read
the merged manifest; a run listed here without a finished record is *missing*.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.common.errors import BenchError
from bench.common.io import atomic_write_json, lock_for
from bench.common.log import log

RUNSET_FILE = "runset.json"


@dataclass(frozen=True)
class Entry:
    role: str             # student | teacher
    method: str           # variant label (the teacher's method label for a teacher row)
    seed: int | None      # student seed; for a teacher, the student seed it serves (None: all seeds)
    run_id: str           # folder name under results/RUNSET/
    teacher_id: str
    own: bool = False     # a teacher row of a method's own teacher (an official recipe's), not the run's

    @property
    def key(self) -> tuple:
        # the run's teacher row is replaced when its config changes; a recipe's own teacher is one more row
        if self.role == "student":
            return (self.role, self.method, self.seed)
        return (self.role, self.teacher_id if self.own else "", self.seed)


NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_name(name: str) -> str:
    """A run-set's name is one folder under results/ and reports/: letters, digits, '.', '_', '-', not
    starting with '.' (no path separators, no '..': nothing is written outside those folders)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise BenchError(f"run-set name {name!r}: use letters, digits, '.', '_' and '-' (one folder name, "
                         "at most 128 characters)")
    return name


def _check_fields(manifest: dict) -> None:
    """Every field a reader uses has its type (a TypeError otherwise: the manifest is damaged)."""
    kinds = {"runs": list, "methods": list, "commands": list, "config": dict, "command": str}
    for key, kind in kinds.items():
        if manifest.get(key) is not None and not isinstance(manifest[key], kind):
            raise TypeError(f"{key} is not a {kind.__name__}")
    if not isinstance((manifest.get("config") or {}).get("train", {}), dict):
        raise TypeError("config.train is not a mapping")


def read_manifest(runset_dir: Path, repair: bool = False) -> dict:
    """The run-set's manifest ({} when there is none yet). A damaged one is refused in one line, or,
    with ``repair`` (a command about to plan its runs into it), dropped with one line saying so: the
    plan rebuilds it and finished runs are reused from their folders."""
    path = Path(runset_dir) / RUNSET_FILE
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text())
        entries(manifest)
        _check_fields(manifest)
        return manifest
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
        if not repair:
            raise BenchError(f"{path} is damaged (not a run-set manifest); run the command that made the run-set "
                             "again: it rebuilds the manifest and reuses every finished run") from None
        log(f"bench: {path} was damaged: rebuilt from this command's plan (finished runs are reused; runs planned "
            "by other commands join it again when those commands run)")
        return {}


def entries(manifest: dict) -> list[Entry]:
    return [Entry(**e) for e in manifest.get("entries", [])]


def merge_manifest(runset_dir: Path, planned: list[Entry], meta: dict) -> dict:
    """Add (or replace, by key) ``planned`` in the run-set's manifest, atomically under a lock.

    ``meta``: the command, the methods in the order asked, compare_to and the config. The command is
    recorded only when it adds or replaces an entry (a job running a slice of a planned grid does not)."""
    runset_dir = Path(runset_dir)
    with lock_for(runset_dir / RUNSET_FILE):
        old = read_manifest(runset_dir, repair=True)
        current = entries(old)
        index = {e.key: i for i, e in enumerate(current)}
        changed = False
        for e in planned:
            if e.key in index:
                if current[index[e.key]] != e:
                    current[index[e.key]], changed = e, True
            else:
                index[e.key] = len(current)
                current.append(e)
                changed = True
        commands = list(old.get("commands", []))
        if changed and meta.get("command") and meta["command"] not in commands:
            commands.append(meta["command"])
        methods = list(old.get("methods", []))
        methods += [m for m in meta.get("methods", []) if m not in methods]
        manifest = {
            "entries": [asdict(e) for e in current],
            "runs": [e.run_id for e in current],
            "methods": methods,
            "commands": commands,
            "command": commands[-1] if commands else meta.get("command", ""),
            "compare_to": meta.get("compare_to") if meta.get("compare_to") is not None else old.get("compare_to"),
            "config": meta.get("config") if changed or "config" not in old else old["config"],
        }
        atomic_write_json(runset_dir / RUNSET_FILE, manifest)
    return manifest
