"""Which regression preset resolves the smallest drop per CI minute? (Not a test: minutes to an hour.)

Runs candidate configurations of the regression check (the ``regress`` preset with dotted overrides)
on seeds 0..N-1 from scratch, and prints, side by side, each candidate's per-(row, metric) seed sd,
its wall time per seed, and the drop ``bench regress`` would detect with 80 % power if the candidate
were the preset with a 16-seed baseline and a check of k seeds (k = 3 ... 8; the mean test of
bench/regress/bands.py at its focus share of the family's rate, uncalibrated, with the measured sds for
the baseline's). Every candidate's per-seed values
and seconds are kept in ``--out`` (one JSON file, rewritten after each candidate), so an interrupted
scan resumes where it stopped and ``--table`` reprints it without running anything.

    python benchmarks/regress_presets.py --seeds 5 --quick          # training variance only (no AA, sanity, ...)
    python benchmarks/regress_presets.py --seeds 5 --only eps0.1-e40  # one candidate with the full evaluation
    python benchmarks/regress_presets.py --table
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

from bench.common.io import atomic_write_json
from bench.config.resolve import resolve
from scipy import stats

from bench.regress.bands import FAMILY_ALPHA, POWER, SHARES
from bench.regress.check import run_regression

# Each candidate: dotted overrides of the regress preset, explicit in every knob a candidate varies, so
# that a candidate means the same runs whatever the preset holds today. OLD is the preset before issue 19.
OLD = {"train.epochs": 20, "teacher.train.epochs": 20, "attack.eps": 0.2, "eval.eps": 0.2, "eval.aa_n": 50,
       "eval.aa_attacks": []}
CANDIDATES: dict[str, dict] = {
    "old-preset": OLD,
    "e60": {**OLD, "train.epochs": 60, "teacher.train.epochs": 60},
    "eps0.1": {**OLD, "attack.eps": 0.1, "eval.eps": 0.1},
    "eps0.1-e40": {**OLD, "attack.eps": 0.1, "eval.eps": 0.1, "train.epochs": 40, "teacher.train.epochs": 40},
    "eps0.15-e40": {**OLD, "attack.eps": 0.15, "eval.eps": 0.15, "train.epochs": 40, "teacher.train.epochs": 40},
    "wide-e40": {**OLD, "student_arch": "cnn-wide", "train.epochs": 40, "teacher.train.epochs": 40},
}
# --quick: the training's seed variance alone, measured with the cheap attacks on every test image
QUICK = {"eval.attacks": ["clean", "fgsm", "pgd20", "cw"], "eval.sanity.enabled": False, "structure": False,
         "probe.targets": []}
KEY = ("pgd20", "aa")                        # the metrics the target is stated for
ROBUST_ROWS = ("teacher", "gacd", "ard", "pgd-at")  # the rows the target names
BASELINE_SEEDS = 16                          # the baseline is made once, offline, with this many seeds
FOCUS_ALPHA = FAMILY_ALPHA * SHARES["focus-drop"] / (len(KEY) * len(ROBUST_ROWS))


def detectable(sd: float, n: int, alpha: float = FOCUS_ALPHA, n_base: int = BASELINE_SEEDS) -> float:
    """The drop the regress bands flag with probability POWER for a metric of seed sd ``sd`` when the
    baseline has ``n_base`` seeds, the check ``n``, and the comparison is made at false-alarm rate
    ``alpha`` (its share of the family's): the moderated t-margin (2 (n_base - 1) df) plus z_POWER sd."""
    crit = stats.t.isf(alpha, 2 * (n_base - 1)) + stats.norm.ppf(POWER)
    return crit * sd * math.sqrt(1 / n_base + 1 / n)


def table(results: dict) -> str:
    lines = []
    for name, res in results.items():
        values, per_seed = res["values"], res["seconds"] / len(res["seeds"])
        lines.append(f"\n## {name}: {json.dumps(res['overrides'])}  ({len(res['seeds'])} seeds, "
                     f"{per_seed:.0f} s per seed{', quick' if res.get('quick') else ''})")
        metrics = sorted({k for v in values.values() for k in v}, key=lambda k: (k not in KEY, k))
        lines.append(f"{'row':10s} " + " ".join(f"{k[-18:]:>18s}" for k in metrics))
        for row, vals in values.items():
            cells = []
            for k in metrics:
                v = vals.get(k, [])
                cells.append(f"{100 * statistics.mean(v):7.1f} ±{100 * statistics.stdev(v):5.1f}    "
                             if len(v) > 1 else f"{'':18s}")
            lines.append(f"{row:10s} " + " ".join(cells))
        for n in (3, 4, 5, 6, 8):
            worst = {k: max((detectable(statistics.stdev(values[r][k]), n)
                             for r in ROBUST_ROWS if k in values.get(r, {})), default=None) for k in KEY}
            drops = ", ".join(f"{k} {100 * d:.1f}" for k, d in worst.items() if d is not None)
            lines.append(f"  check with {n} seeds ({n * per_seed / 60:.1f} min), baseline {BASELINE_SEEDS}: "
                         f"the worst robust row detects ≥ {drops} points")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per candidate (default 5)")
    parser.add_argument("--only", help="comma list of candidates (default: all)")
    parser.add_argument("--quick", action="store_true", help="no AutoAttack, sanity, structure or transfer")
    parser.add_argument("--out", default="benchmarks/results/regress_presets.json")
    parser.add_argument("--table", action="store_true", help="print the stored results and stop")
    args = parser.parse_args(argv)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    names = args.only.split(",") if args.only else list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        print(f"unknown candidate(s) {', '.join(unknown)}; known: {', '.join(CANDIDATES)}", file=sys.stderr)
        return 2
    seeds = tuple(range(args.seeds))
    for name in [] if args.table else names:
        key = f"{name}{' (quick)' if args.quick else ''}"
        overrides = {**CANDIDATES[name], **(QUICK if args.quick else {})}
        if key in results and results[key]["seeds"] == list(seeds) and results[key]["overrides"] == overrides:
            continue  # done with these very overrides (resumed)
        resolved = resolve("regress", overrides=overrides)
        t0 = time.perf_counter()
        values = run_regression(resolved.config, list(resolved.methods), seeds).values
        results[key] = {"overrides": overrides, "seeds": list(seeds), "quick": args.quick,
                        "seconds": time.perf_counter() - t0, "values": values}
        atomic_write_json(out, results)
        print(f"{key}: {results[key]['seconds']:.0f} s", flush=True)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
