"""How much sooner does `bench regress --jobs N` finish than one process? (Not a test: minutes.)

Runs the regression preset's training and evaluation (``run_regression``, what `bench regress` times)
on the same seeds twice in one invocation, first in one process on every thread, then with ``--jobs``
processes sharing the threads, and prints both wall times and their ratio. Nothing else may run
meanwhile: the ratio is only meaningful side by side on an idle machine.

    python benchmarks/regress_jobs.py                       # seeds 0,1 of the preset, 1 vs 2 jobs
    python benchmarks/regress_jobs.py --seeds 0,1,2,3 --jobs 2 train.epochs=10
"""
from __future__ import annotations

import argparse
import time

import torch

from bench.config.resolve import resolve
from bench.regress.check import run_regression


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1", help="comma list (default 0,1)")
    ap.add_argument("--jobs", type=int, default=2, help="processes of the parallel run (default 2)")
    ap.add_argument("overrides", nargs="*", help="dotted overrides of the regress preset")
    args = ap.parse_args()
    resolved = resolve("regress", None, None, args.overrides)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    times = {}
    for jobs in (1, args.jobs):
        t0 = time.perf_counter()
        run_regression(resolved.config, list(resolved.methods), seeds, jobs=jobs)
        times[jobs] = time.perf_counter() - t0
        print(f"jobs {jobs}: {times[jobs]:.0f} s", flush=True)
    print(f"{len(seeds)} seed(s) of the regress preset, {torch.get_num_threads()} threads: "
          f"1 job {times[1]:.0f} s, {args.jobs} jobs {times[args.jobs]:.0f} s, "
          f"ratio {times[1] / times[args.jobs]:.2f}x")


if __name__ == "__main__":
    main()
