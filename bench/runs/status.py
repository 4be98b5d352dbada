"""Where each run of a run-set stands: done, running (with its epoch), failed (with the end of its
log), interrupted (its job died; the next `run` resumes it) or missing (`bench status RUNSET`).

A job writes ``status.json`` into the run folder when it starts and when it fails; the epoch comes
from the run's own per-epoch log, and "running" is confirmed by the run's lock being held.
"""
from __future__ import annotations

import json
import os
import socket
import traceback
from pathlib import Path

from filelock import Timeout

from bench.common import distributed
from bench.common.io import atomic_write_json, lock_for
from bench.common.provenance import now
from bench.records.record import RECORD
from bench.records.runset import entries, read_manifest
from bench.train.teacher import TEACHERS_DIR

STATUS = "status.json"
TAIL = 12   # lines of a failed run's log shown


def job_info() -> dict:
    """Who runs this: host, pid and the Slurm / submitit job, where there is one."""
    info = {"host": socket.gethostname(), "pid": os.getpid()}
    for var in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SUBMITIT_JOB_ID"):
        if os.environ.get(var):
            info[var.lower()] = os.environ[var]
    try:
        import submitit

        paths = submitit.JobEnvironment().paths
        info["log"] = str(paths.stderr)
    except Exception:  # not inside a submitit job
        pass
    return info


def mark_running(run_dir: Path, what: str) -> None:
    if not distributed.is_main():  # under torchrun rank 0 speaks for the run
        return
    atomic_write_json(Path(run_dir) / STATUS, {"state": "running", "what": what, "since": now(), **job_info()})


def mark_failed(run_dir: Path, error: BaseException) -> None:
    if not distributed.is_main():
        return
    lines = "".join(traceback.format_exception(error)).rstrip().splitlines()
    atomic_write_json(Path(run_dir) / STATUS, {"state": "failed", "when": now(), "error": lines[-TAIL:],
                                               **job_info()})


def _epochs_done(run_dir: Path) -> int:
    log = run_dir / "log.jsonl"
    return sum(1 for line in log.read_text().splitlines() if line.strip()) if log.exists() else 0


def _held(run_dir: Path) -> bool:
    lock = lock_for(run_dir, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False


def runset_status(results: Path, runset: str) -> list[dict]:
    """One row per planned run of the run-set (students and teacher rows)."""
    runset_dir = Path(results) / runset
    manifest = read_manifest(runset_dir)
    epochs = (manifest.get("config") or {}).get("train", {}).get("epochs")
    teachers = Path(results) / TEACHERS_DIR
    rows = []
    for e in entries(manifest):
        run_dir = runset_dir / e.run_id
        status = json.loads((run_dir / STATUS).read_text()) if (run_dir / STATUS).exists() else {}
        row = {"role": e.role, "method": e.method, "seed": e.seed, "run_id": e.run_id, "detail": []}
        if (run_dir / RECORD).exists():
            row["state"] = "done"
        elif _held(run_dir) or (e.role == "teacher" and _held(teachers / e.teacher_id)):
            training = run_dir if e.role == "student" else teachers / e.teacher_id
            done = _epochs_done(training)
            text = f"epoch {done}/{epochs} done" if e.role == "student" else f"teacher: {done} epochs done"
            if e.role == "student" and epochs and done >= epochs:
                text += ", evaluating"
            where = status.get("slurm_job_id") or status.get("host")
            row["state"], row["detail"] = "running", [text + (f" (job {where})" if where else "")]
        elif status.get("state") == "failed":
            row["state"] = "failed"
            row["detail"] = status.get("error", []) + ([f"job log: {status['log']}"] if status.get("log") else [])
        elif run_dir.exists():
            row["state"] = "interrupted"
            row["detail"] = [f"stopped after epoch {_epochs_done(run_dir)}; run the command again to resume"]
        else:
            row["state"] = "missing"
        rows.append(row)
    return rows


def format_status(rows: list[dict]) -> str:
    counts: dict[str, int] = {}
    lines = []
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
        seed = "" if r["seed"] is None else f"seed {r['seed']}"
        lines.append(f"{r['state']:11s} {r['role']:7s} {r['method']:28s} {seed:8s} {r['run_id']}")
        lines += [f"{'':12s}| {d}" for d in r["detail"] if d]
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    return "\n".join(lines + [f"{len(rows)} runs: {summary}" if rows else "no runs planned"])
