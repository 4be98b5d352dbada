"""What the official protocol's training details change (issue 20, items 3-5), measured on digits: each
switched alone against the default run's config, 3 seeds, paired over seeds (the seeds share the
initialisation), the same teacher everywhere (the default run's, trained once here in fp32).

* item 3, precision: the students train under bf16 autocast (``precision=bf16``; CPU autocast here, what
  ``auto`` gives on CUDA) against fp32, the official scripts' arithmetic;
* item 4, batch-norm statistics: ``clean_pass=true`` (the scripts' extra train-mode forwards of S(x)) for
  ARD, whose attack runs in train mode, and AdaAD, whose attack runs in eval mode on those statistics;
* item 5, input normalisation: the student without the data set's mean/std inside (``input_norm=none``,
  the scripts' ToTensor() pixels) against with.

Not a test: about 25 minutes on 2 CPU cores. Writes benchmarks/results/protocol_items.{json,md}; run again
with the same --results, finished runs are reused (same config and code).

    python benchmarks/protocol_items.py [--results /tmp/protocol-items]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import bench
from bench.common.io import atomic_write_text
from bench.data.sources import load_dataset
from bench.report.stats import holm, paired_difference
from bench.train.teacher import TEACHERS_DIR

METHODS = ("ard", "adaad")
SEEDS = (0, 1, 2)
METRICS = ("clean", "pgd20", "aa")
OUT = Path(__file__).resolve().parent / "results"


def _values(result, label: str) -> dict[str, dict[int, float]]:
    recs = [r for r in result.students if r.method == label]
    return {m: {r.seed: r.metrics[m] for r in recs} for m in METRICS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="/tmp/protocol-items", help="where the runs go (default %(default)s)")
    args = parser.parse_args(argv)
    results, t0 = Path(args.results), time.perf_counter()
    common = dict(preset="digits", seeds=list(SEEDS), results=results, reports=results / "reports", report=False)
    base = bench.run(methods=[*METHODS, *(f"{m}:clean_pass=true" for m in METHODS)], name="base", **common)
    teacher = next(r for r in base.records if r.role == "teacher")
    digits = load_dataset("digits@0-4")
    # the same trained teacher for every arm, as a file (its training precision must not move with the arm's)
    as_file = {"teacher.kind": "file", "teacher.path": str(results / TEACHERS_DIR / teacher.teacher_id / "model.pt"),
               "teacher.arch": teacher.arch, "teacher.method": "pgd-at", "teacher.mean": list(digits.mean),
               "teacher.std": list(digits.std)}
    arms = {"bf16": bench.run(methods=list(METHODS), name="bf16", overrides={**as_file, "precision": "bf16"},
                              **common),
            "raw pixels": bench.run(methods=list(METHODS), name="raw", overrides={**as_file, "input_norm": "none"},
                                    **common)}
    rows = []
    for m in METHODS:
        ref = _values(base, m)
        comparisons = [("4: clean_pass=true", _values(base, f"{m}:clean_pass=True")),
                       ("3: bf16 autocast", _values(arms["bf16"], m)),
                       ("5: input_norm=none", _values(arms["raw pixels"], m))]
        for item, now in comparisons:
            for metric in METRICS:
                d = paired_difference(now[metric], ref[metric])
                rows.append({"method": m, "item": item, "metric": metric, "diff": d.diff, "low": d.low,
                             "high": d.high, "p": d.p, "n": d.n,
                             "reference_mean": sum(ref[metric].values()) / len(ref[metric])})
    adjusted = holm([r["p"] for r in rows])
    for r, p in zip(rows, adjusted):
        r["p_holm"] = p
    seconds = time.perf_counter() - t0
    OUT.mkdir(exist_ok=True)
    payload = {"command": "python benchmarks/protocol_items.py", "seeds": list(SEEDS), "methods": list(METHODS),
               "preset": "digits", "seconds": round(seconds), "rows": rows}
    atomic_write_text(OUT / "protocol_items.json", json.dumps(payload, indent=1) + "\n")

    def pts(v):
        return "–" if math.isnan(v) else f"{100 * v:+.1f}"
    lines = [f"# Items 3-5 on digits (`python benchmarks/protocol_items.py`, {len(SEEDS)} seeds, "
             f"{seconds / 60:.0f} min)",
             "", "Change against the default config (fp32, no extra clean forward, the data set's normalisation "
             "inside the network), in points: mean over seeds [95 % interval], paired t-test over seeds, p Holm-"
             "adjusted over the whole table. Same teacher for every arm.", "",
             "| method | item | metric | default (%) | change | 95 % interval | p (Holm) |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['item']} | {r['metric']} | {100 * r['reference_mean']:.1f} | {pts(r['diff'])} | "
              f"[{pts(r['low'])}, {pts(r['high'])}] | {r['p_holm']:.2f} |" for r in rows]
    atomic_write_text(OUT / "protocol_items.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
