"""Wall time of the default run's 9 trainings (gacd, ard, crd x seeds 0-2) as submitit local jobs
(`--executor local --jobs N`) against one process, side by side in one run.

The teacher is trained once beforehand and copied into both results folders, and evaluation is cut
to clean accuracy, so the two timings are the trainings (plus each mode's own start-up: the local
executor starts N Python processes that import torch). Run with nothing else on the machine:

    python benchmarks/executor.py [--jobs 2]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAST_EVAL = ["--attacks", "clean", "--no-sanity", "--transfer", "none", "--no-structure"]


def bench(*argv: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench", *argv], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-executor-"))
    try:
        common = ["run", *FAST_EVAL, "--name", "default"]
        bench(*common, "--only-teacher", "--no-report", "--results", str(work / "teacher"))
        for mode in ("inline", "local"):
            shutil.copytree(work / "teacher" / "teachers", work / mode / "teachers")
        inline = bench(*common, "--results", str(work / "inline"), "--reports", str(work / "inline-reports"))
        local = bench(*common, "--results", str(work / "local"), "--reports", str(work / "local-reports"),
                      "--executor", "local", "--jobs", str(args.jobs))
        print(f"9 trainings, one process:            {inline:7.1f} s")
        print(f"9 trainings, --executor local --jobs {args.jobs}: {local:7.1f} s")
        print(f"speed-up: {inline / local:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
