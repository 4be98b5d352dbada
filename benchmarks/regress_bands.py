"""The regression check, checked: does unchanged code pass on "another machine", and does a real but
modest break fail? (Not a test: about 15 minutes on 2 CPU cores.)

Another machine is approximated by other seeds -- float rounding elsewhere moves training as a new
seed does -- so the stored baseline (seeds 4-19; the check's 0-3 are scored when it is made) is
scored against the same code on as many further seeds as a check runs (20, 21, ...). The breaks are
modest changes to one method, each scored on the check's seeds against that method's baseline row:

* ``ard-2-step``: ARD's student trained with its attack cut from 10 PGD steps to 2 (same eps and step
  size; the teacher keeps its 10);
* ``ard-half-kl``: ARD with its KL weight halved (``ard:scale=0.5``);
* ``pgd-at-natural``: PGD-AT trained without its attack (a gross break, for scale).

    python benchmarks/regress_bands.py [--only same,ard-2-step] [--jobs 2]
    python benchmarks/regress_bands.py --rescore     # the kept numbers against today's baseline
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from bench.common.io import atomic_write_json
from bench.config.presets import get_preset
from bench.regress.check import BASELINE_DIR, Measured, compare, format_table, run_regression
from bench.runs import orchestrate


@contextlib.contextmanager
def _student_attack_steps(steps: int | None):
    """Students (not the teacher, trained elsewhere) train with ``steps`` attack steps."""
    real = orchestrate.train_model
    if steps is not None:
        orchestrate.train_model = lambda student, method, data, train_cfg, attack_cfg, *a, **k: real(
            student, method, data, train_cfg, replace(attack_cfg, steps=steps), *a, **k)
    try:
        yield
    finally:
        orchestrate.train_model = real


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma list of: same, ard-2-step, ard-half-kl, pgd-at-natural (default all)")
    parser.add_argument("--jobs", type=int, default=1, help="processes side by side (as bench regress --jobs)")
    parser.add_argument("--out", default="benchmarks/results/regress_bands.json",
                        help="where the measured numbers are kept")
    parser.add_argument("--rescore", action="store_true",
                        help="score the kept numbers against the baseline as it is now; train nothing")
    args = parser.parse_args(argv)
    baseline = json.loads((BASELINE_DIR / "regress.json").read_text())
    preset = get_preset("regress")
    cfg, check_seeds = preset.config, tuple(baseline["check_seeds"])
    first = max(baseline["seeds"] + baseline["check_seeds"]) + 1
    fresh = tuple(range(first, first + len(check_seeds)))
    cases = {
        "same": (cfg, list(preset.methods), fresh, {}),
        "ard-2-step": (cfg, ["ard"], check_seeds, {}),
        "ard-half-kl": (cfg, ["ard"], check_seeds, {"ard": "ard:scale=0.5"}),
        "pgd-at-natural": (cfg, ["pgd-at"], check_seeds, {"pgd-at": "natural"}),
    }
    names = args.only.split(",") if args.only else list(cases)
    if set(names) - set(cases):
        print(f"unknown case(s): {', '.join(sorted(set(names) - set(cases)))}", file=sys.stderr)
        return 2
    kept = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    for name in names:
        run_cfg, methods, seeds, substitute = cases[name]
        t0 = time.perf_counter()
        if args.rescore:
            k = kept[name]
            now = Measured(k["seeds"], k["values"], {r: {int(s): f for s, f in by.items()}
                                                     for r, by in k["flags"].items()})
        else:
            with _student_attack_steps(2 if name == "ard-2-step" else None):
                # a patched attack does not reach spawned processes: that case runs in this one
                now = run_regression(run_cfg, methods, seeds, substitute,
                                     jobs=1 if name == "ard-2-step" else args.jobs)
        kept[name] = {"seeds": now.seeds, "values": now.values, "flags": now.flags}
        atomic_write_json(Path(args.out), kept)   # the measured numbers: --rescore scores them again
        rows = compare(baseline, now)
        if name != "same":  # the changed method's row (the teacher is retrained alongside, unchanged)
            rows = [r for r in rows if r["row"] == methods[0]]
        print(f"\n## {name}: seeds {list(seeds)} against the baseline's {baseline['seeds']} "
              f"({time.perf_counter() - t0:.0f} s)")
        print(format_table(rows, show_all=name != "same"))
        flagged = [f"{r['row']} {r['metric']} ({r['verdict']})" for r in rows if r["verdict"] != "ok"]
        print(f"{name}: flagged {len(flagged)} of {len(rows)} comparisons {flagged}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
