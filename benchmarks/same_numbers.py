"""Does a change keep every number? Runs the README's main job with this tree and with ``--ref REF`` (a
temporary worktree, bench/_ref.py), one after the other on this machine, and compares the report's
CSVs cell by cell, leaving out what is not a number of the protocol: wall times and the run ids (they
hold the code digests, so changed code always gets new ones).

    python benchmarks/same_numbers.py --ref main                    # python -m bench run --methods gacd,ard,crd
    python benchmarks/same_numbers.py --ref main -- --methods ard   # arguments after -- go to bench run

Exit status 0 when every compared cell is identical, 1 otherwise (the differing cells are printed).
Same seed gives the same numbers only on the same machine: compare two trees here, never with a
report made elsewhere.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

import _ref  # noqa: E402

CSVS = ("table.csv", "summary.csv", "runs.csv", "transfer.csv", "structure.csv")
NOT_NUMBERS = ("Train time (s, median)", "train_s median", "train_s", "eval_s", "run_id", "teacher_id")


def run(tree: Path, out: Path, extra: list[str]) -> Path:
    cmd = [sys.executable, "-m", "bench", "run", "--methods", "gacd,ard,crd", "--name", "same",
           "--results", str(out / "results"), "--reports", str(out / "reports"), *extra]
    done = subprocess.run(cmd, cwd=tree, env=_ref.env_for(tree), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {tree}:\n{done.stderr[-3000:]}")
    return out / "reports" / "same"


def compare(a: Path, b: Path) -> tuple[list[str], bool]:
    """Lines to print, and whether every cell both sides have is identical (a column only one side has,
    such as a new one, is named and not compared)."""
    lines, same = [], True
    for name in CSVS:
        if not (a / name).exists() and not (b / name).exists():
            continue
        x, y = pd.read_csv(a / name), pd.read_csv(b / name)
        common = [c for c in x.columns if c in y.columns]
        keep = [c for c in common if not any(c == n or c.startswith(n + " ") for n in NOT_NUMBERS)]
        only = [f"{c} (this tree only)" for c in x.columns if c not in y.columns] + [
            f"{c} (the ref only)" for c in y.columns if c not in x.columns]
        if x.shape[0] != y.shape[0]:
            lines.append(f"{name}: rows differ ({x.shape[0]} vs {y.shape[0]})")
            same = False
            continue
        diff = x[keep].compare(y[keep])
        same = same and diff.empty
        lines.append(f"{name}: {x.shape[0]} rows x {len(keep)} columns compared, "
                     + ("identical" if diff.empty else f"{diff.shape[0]} row(s) differ:\n{diff.to_string()}")
                     + (f"; not compared: {', '.join(only)}" if only else ""))
    return lines, same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", required=True, help="the git ref to compare this tree with")
    parser.add_argument("extra", nargs="*", help="arguments for bench run (after --)")
    args = parser.parse_args()
    with _ref.sides(args.ref) as sides, tempfile.TemporaryDirectory(prefix="bench-same-") as tmp:
        reports = {label: run(tree, Path(tmp) / str(i), args.extra) for i, (label, tree) in enumerate(sides.items())}
        (this, a), (other, b) = reports.items()
        print(f"{this} against {other}:")
        lines, same = compare(a, b)
    print("\n".join(lines))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
