"""The regression check, checked: does unchanged code pass on "another machine", and does a real
break fail? (Not a test: about 10 minutes on 2 CPU cores.)

Another machine is approximated by other seeds -- float rounding elsewhere moves training as a new
seed does -- so the stored baseline (seeds 0-2) is scored against the same code on seeds 3-5. The
break is pgd-at trained without its attack (natural training), on the baseline's seeds.

    python benchmarks/regress_bands.py
"""
from __future__ import annotations

import json
import time

from bench.config.presets import get_preset
from bench.report.regress import BASELINE_DIR, compare, format_table, run_regression


def main() -> None:
    baseline = json.loads((BASELINE_DIR / "regress.json").read_text())
    preset = get_preset("regress")
    t0 = time.perf_counter()
    rows = compare(baseline, run_regression(preset.config, list(preset.methods), (3, 4, 5)))
    print(format_table(rows))
    print(f"same code, seeds 3-5 against the baseline's {baseline['seeds']}: "
          f"{sum(r['verdict'] != 'ok' for r in rows)} of {len(rows)} metrics flagged "
          f"({time.perf_counter() - t0:.0f} s)")
    t0 = time.perf_counter()
    broken = run_regression(preset.config, ["pgd-at"], tuple(baseline["seeds"]), {"pgd-at": "natural"})
    rows = [r for r in compare(baseline, broken) if r["row"] == "pgd-at"]
    print(format_table(rows))
    print(f"pgd-at trained without its attack: flagged {[r['metric'] for r in rows if r['verdict'] == 'DROP']} "
          f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
