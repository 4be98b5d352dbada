"""Where an evaluation's time goes: each attack's, the sanity checks' and the other stages' share of every
record of a run-set (the run-set's planned runs, read from results/; nothing is run), and which sanity checks were skipped because the
numbers already decided them (issue 22, item 6).

    python benchmarks/eval_shares.py baselines [--results results]

Prints one line per stage: the median share over the run-set's records, and its range.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from bench.records.record import RunRecord, load_records
from bench.records.runset import read_manifest


def shares(records: list[RunRecord]) -> dict[str, list[float]]:
    """{stage: [share of eval_s per record]} over the records that timed their evaluation."""
    out: dict[str, list[float]] = {}
    for r in records:
        total = r.timings.get("eval_s")
        if not total:
            continue
        for key, seconds in r.timings.items():
            if key.startswith("eval_") and key != "eval_s" and seconds is not None:
                out.setdefault(key[len("eval_"):-len("_s")], []).append(seconds / total)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runset")
    parser.add_argument("--results", default="results")
    args = parser.parse_args()
    folder = Path(args.results) / args.runset
    records = load_records(folder, read_manifest(folder).get("runs")) if folder.is_dir() else []
    if not records:
        print(f"no records under {folder}", file=sys.stderr)
        return 2
    found = shares(records)
    print(f"{len(records)} records of {folder}; share of eval_s per stage (median [min, max]):")
    for stage, values in sorted(found.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"  {stage:>24}: {100 * statistics.median(values):5.1f} % [{100 * min(values):.1f}, "
              f"{100 * max(values):.1f}] over {len(values)}")
    skipped = [why for r in records for why in (r.sanity or {}).get("skipped", {}).items()]
    print(f"sanity checks skipped (decided by the numbers): {len(skipped)}"
          + "".join(f"\n  {check}: {why}" for check, why in skipped[:5]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
