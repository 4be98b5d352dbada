"""The regression check, checked: does unchanged code pass on "another machine", and does a real but
modest break fail? (Not a test: about 15 minutes on 2 CPU cores.)

Another machine is approximated by other seeds -- float rounding elsewhere moves training as a new
seed does -- so the stored baseline (seeds 0-11) is scored against the same code on as many new seeds
as a check runs (12, 13, ...). The breaks are modest changes to one method, each scored on the check's
seeds against that method's baseline row:

* ``ard-2-step``: ARD's student trained with its attack cut from 10 PGD steps to 2 (same eps and step
  size; the teacher keeps its 10);
* ``ard-half-kl``: ARD with its KL weight halved (``ard:scale=0.5``);
* ``pgd-at-natural``: PGD-AT trained without its attack (a gross break, for scale).

Each is also scored as the check stood before issue 19 would have scored the same numbers: a baseline of
the first 3 seeds, a 3-seed check, the plain Bonferroni split ("old bands").

    python benchmarks/regress_bands.py [--only same,ard-2-step]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import replace

from bench.config.presets import get_preset
from bench.report.regress import BASELINE_DIR, compare, format_table, run_regression
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


def _old(baseline: dict, now: dict) -> list[dict]:
    """The pre-issue-19 check on these numbers: 3 baseline seeds, 3 check seeds, the plain split."""
    first = {row: {k: v[:3] for k, v in metrics.items()} for row, metrics in baseline["values"].items()}
    return compare({**baseline, "values": first, "focus_share": 0.0},
                   {row: {k: v[:3] for k, v in metrics.items()} for row, metrics in now.items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma list of: same, ard-2-step, ard-half-kl, pgd-at-natural (default all)")
    args = parser.parse_args(argv)
    baseline = json.loads((BASELINE_DIR / "regress.json").read_text())
    preset = get_preset("regress")
    cfg, n_check = preset.config, len(baseline.get("check_seeds", baseline["seeds"]))
    fresh = tuple(range(max(baseline["seeds"]) + 1, max(baseline["seeds"]) + 1 + n_check))
    check_seeds = tuple(baseline.get("check_seeds", baseline["seeds"]))
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
    for name in names:
        run_cfg, methods, seeds, substitute = cases[name]
        t0 = time.perf_counter()
        with _student_attack_steps(2 if name == "ard-2-step" else None):
            now = run_regression(run_cfg, methods, seeds, substitute)
        rows = compare(baseline, now)
        old = {(r["row"], r["metric"]): r["verdict"] for r in _old(baseline, now)}
        if name != "same":  # the changed method's row (the teacher is retrained alongside, unchanged)
            rows = [r for r in rows if r["row"] == methods[0]]
        print(f"\n## {name}: seeds {list(seeds)} against the baseline's {baseline['seeds']} "
              f"({time.perf_counter() - t0:.0f} s)")
        print(format_table(rows))
        flagged = [f"{r['row']} {r['metric']}" for r in rows if r["verdict"] == "DROP"]
        old_flagged = [f"{r['row']} {r['metric']}" for r in rows if old.get((r["row"], r["metric"])) == "DROP"]
        print(f"{name}: flagged {len(flagged)} of {len(rows)} metrics {flagged}; the old bands on the same numbers "
              f"would flag {len(old_flagged)} {old_flagged}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
