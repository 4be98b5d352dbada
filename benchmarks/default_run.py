"""Wall time of the README's main job, cold (no cached teacher), in throw-away results folders; with
``--ref REF``, the same job at that git commit too, side by side in one run (alternating, ``--rounds``).

    python benchmarks/default_run.py                  # python -m bench run --methods gacd,ard,crd
    python benchmarks/default_run.py --ref HEAD~5     # and the same command at HEAD~5; prints the ratio
    python benchmarks/default_run.py --ref main -- --methods ard   # arguments after -- go to bench run

Prints each wall time, the ratio, where the time went (from the records: teacher training, student
training, evaluation, AutoAttack) and the evaluation protocol each side reports (so that a faster run
that evaluates less says so), then this tree's table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

import _ref  # noqa: E402


def run_once(tree: Path, extra: list[str]) -> dict:
    """One cold run of the main job with the code in ``tree``; its wall time and time split."""
    with tempfile.TemporaryDirectory(prefix="bench-default-") as tmp:
        cmd = [sys.executable, "-m", "bench", "run", "--methods", "gacd,ard,crd", "--results", f"{tmp}/results",
               "--reports", f"{tmp}/reports", *extra]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=tree, env=_ref.env_for(tree), capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed in {tree}:\n{done.stderr[-3000:]}")
        records = [json.loads(p.read_text()) for p in Path(tmp, "results").glob("*/*/record.json")]
        metas = [json.loads(p.read_text()) for p in Path(tmp, "results", "teachers").glob("*/meta.json")]
        report = next(Path(tmp, "reports").glob("*/README.md")).read_text()
    split = {"teacher training": sum(m["train_s"] for m in metas),
             "student training": sum(r["timings"]["train_s"] for r in records if r["role"] == "student"),
             "evaluation": sum(r["timings"]["eval_s"] for r in records),
             "of which AutoAttack": sum(r["timings"].get("eval_aa_s", 0.0) for r in records)}
    protocol = [line for line in report.splitlines() if line.startswith("- AutoAttack") or line.startswith("- FGSM")]
    return {"wall": wall, "split": split, "protocol": protocol, "report": report}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", help="also time the job at this git commit (e.g. HEAD~5, main)")
    ap.add_argument("--rounds", type=int, default=1, help="runs per side, alternating (default 1)")
    ap.add_argument("extra", nargs="*", help="more `bench run` arguments (after --)")
    args = ap.parse_args()
    with _ref.sides(args.ref) as sides:
        runs: dict[str, list[dict]] = {s: [] for s in sides}
        for r in range(args.rounds):
            for side, where in sides.items():
                runs[side].append(run_once(where, args.extra))
                print(f"round {r + 1}/{args.rounds}, {side}: {runs[side][-1]['wall']:.0f} s", file=sys.stderr, flush=True)
    walls = {s: statistics.median(x["wall"] for x in rs) for s, rs in runs.items()}
    print(runs[_ref.THIS][-1]["report"])
    print("python -m bench run --methods gacd,ard,crd " + " ".join(args.extra) + ", cold (teacher trained), "
          f"median of {args.rounds} run(s) per side:")
    for side, rs in runs.items():
        split = ", ".join(f"{k} {v:.0f} s" for k, v in rs[-1]["split"].items())
        print(f"  {side}: {walls[side]:.0f} s wall ({split})")
        for line in rs[-1]["protocol"]:
            print(f"      {line}")
    print(_ref.speedup(walls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
