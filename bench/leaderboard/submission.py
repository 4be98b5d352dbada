"""``bench export RUNSET --site``: what a contributor sends to join a leaderboard. A copy of the
run-set with every finished run's record, per-image store and config, and the digest of its weights
in place of the weights (``weights.json``), checked first as ``bench site`` checks it, so a submission
that would be refused is never written."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.common.errors import BenchError
from bench.common.io import atomic_write_text
from bench.eval.per_image import PER_IMAGE
from bench.records.record import RECORD
from bench.leaderboard.data import WEIGHTS_DIGEST, load_runs, weights_digest

KEPT = (RECORD, PER_IMAGE, "config.yaml")


def export_runset(results: Path, runset: str, out: Path) -> Path:
    """``out/RUNSET``: the submission (the run-set's manifest and each checked run's files)."""
    runs = load_runs(Path(results), [runset])        # refuses, in one line, what the site would refuse
    target = Path(out) / runset
    if target.exists():
        raise BenchError(f"export: {target} exists; remove it or pick another --out")
    src = Path(results) / runset
    target.mkdir(parents=True)
    if (src / "runset.json").is_file():
        shutil.copyfile(src / "runset.json", target / "runset.json")
    for run in runs:
        folder = target / run.record.run_id
        folder.mkdir()
        for name in KEPT:
            if (run.folder / name).is_file():
                shutil.copyfile(run.folder / name, folder / name)
        digest = weights_digest(run.folder)
        if digest:
            atomic_write_text(folder / WEIGHTS_DIGEST, json.dumps(digest, indent=1) + "\n")
    return target
