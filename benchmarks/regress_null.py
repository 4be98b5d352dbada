"""The regression check's false-alarm rate and power on the committed baseline, by simulation.
(Not a test: about a minute.)

The check's level is calibrated on the baseline (bench/regress/bands.py: normal seed vectors with the
baseline's means, sds and shrunk correlations). This measures, with other random draws, how often a
check of unchanged code raises any alarm under three models of seed variation:

* ``calibration model``: the model the level was calibrated on, fresh draws (the Monte Carlo check);
* ``no correlation``: the same sds, every metric independent (the most tests' worth of chances);
* ``real seeds``: the 20 seed vectors the baseline's update measured (its 16 and the check's 4), split
  at random into a baseline of 16 and a check of 4, each split calibrated by simulation alone and scored
  as the check is; the splits share seeds, so this rate is an illustration with real data, not a
  precise number. It is why the stored level is the lower of the simulated one and the one found on
  these splits (``bands.split_level``); the rate of the stored level over every split is printed too
  (at most 5 % by construction where the split level is the lower).

Then the power: for PGD-20 and AutoAttack of every robust row, the drop the check states it detects
with 80 % probability, and how often simulated checks with exactly that drop flag it; and the drops a
check of 8 seeds states (``bench regress --seeds``: its level calibrated for 8).

    python benchmarks/regress_null.py [--draws 20000]
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from bench.regress import bands
from bench.regress.check import BASELINE_DIR, Bands, _matrix


def _rate(base, d, level, draws, rng, corr=None) -> float:
    return float((bands.simulate(base, d, draws, rng, corr=corr) < level).mean())


def _real_splits(baseline: dict, splits: int, rng) -> tuple[float, int]:
    values = {row: {m: v + baseline["check_values"][row][m] for m, v in ms.items()}
              for row, ms in baseline["values"].items()}
    n_check = len(baseline["check_seeds"])
    every = _matrix(values, bands.design(values, n_check))
    b = every.shape[0]
    n_base = b - n_check
    alarms = 0
    for _ in range(splits):
        order = rng.permutation(b)
        part, check = every[order[:n_base]], every[order[n_base:]]
        sub = {row: {m: [v[i] for i in order[:n_base]] for m, v in ms.items()} for row, ms in values.items()}
        d = bands.design(sub, n_check)
        level = bands.calibrate(part, d, draws=3000, seed=int(rng.integers(1 << 30)))
        alarms += bool(((bands.tails(part, check, d) / d.weight) < level).any())
    return alarms / splits, n_base


def _power(base, d, level, k, drop, draws, rng) -> float:
    b = base.shape[0]
    sd = base.std(axis=0, ddof=1)
    check = base.mean(axis=0) + sd * rng.standard_normal((draws, d.n_check, base.shape[1]))
    check[..., k] -= drop
    t = bands.tails(np.broadcast_to(base, (draws, b, base.shape[1])), check, d)
    mine = (d.comp == k) & (d.seed < 0) & (d.side < 0)
    return float(((t / d.weight < level) & mine).any(axis=-1).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=20000)
    parser.add_argument("--splits", type=int, default=400)
    args = parser.parse_args(argv)
    baseline = json.loads((BASELINE_DIR / "regress.json").read_text())
    values, n_check = baseline["values"], len(baseline["check_seeds"])
    d = bands.design(values, n_check, baseline["calibration"]["shares"])
    base, level = _matrix(values, d), baseline["calibration"]["level"]
    rng = np.random.default_rng(1)
    print(f"baseline: {base.shape[0]} seeds, {len(d.keys)} comparisons, {len(d.comp)} tests "
          f"({int((d.seed >= 0).sum())} of them one check seed each); check: {n_check} seeds; "
          f"calibrated level {level:.4f} (the plain Bonferroni split's is {bands.FAMILY_ALPHA})")
    print(f"false alarms of unchanged code, calibration model: {100 * _rate(base, d, level, args.draws, rng):.1f} % "
          f"of {args.draws} simulated checks")
    print(f"false alarms of unchanged code, no correlation: "
          f"{100 * _rate(base, d, level, args.draws, rng, np.eye(base.shape[1])):.1f} % of {args.draws}")
    rate, n_base = _real_splits(baseline, args.splits, rng)
    print(f"false alarms of unchanged code, real seeds ({args.splits} random splits into {n_base} + {n_check}), "
          f"each at its own simulated level: {100 * rate:.1f} %")
    cal = baseline["calibration"]
    print(f"stored level {level:.4f} = the lower of the simulated {cal['simulated']:.4f} and the level on every "
          f"split of the 20 measured seeds {cal['split']:.4f}; false alarms at it, calibration model: "
          f"{100 * _rate(base, d, level, args.draws, rng):.1f} % of {args.draws}")
    print("power: the drop of the true mean that the check flags with 80 % probability (stated), and how "
          "often simulated checks with that drop flag it (the baseline's means and sds taken as the truth)")
    stated = bands.detectable(base, d, level)
    for k in np.flatnonzero(d.focus):
        row, metric = d.keys[k]
        hit = _power(base, d, level, k, stated[k, 0], 4000, rng)
        print(f"  {row:8s} {metric:6s} detects a drop of {100 * stated[k, 0]:.1f} points "
              f"(flagged in {100 * hit:.0f} % of 4000)")
    eight = Bands.of(baseline, 8)
    print("a check of 8 seeds detects drops of " + ", ".join(
        f"{row} {metric} {100 * eight.detect[k, 0]:.1f}" for k, (row, metric) in enumerate(eight.design.keys)
        if eight.design.focus[k]) + " points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
