"""How often each test of two methods rejects when the methods are equal (issue 33), and what the
report's test costs in power: simulated ablations of ``bench.report.image_null`` (two methods, S
seeds, the digits preset's N = 226 test images; new images and new seeds every replicate).

Nulls, each at expected accuracy 0.5, 0.7 and 0.9, with S = 3 and 5 seeds:

* (i) image preferences only: each method prefers some images (logit sd 1.2), no seed effect
  beyond which images a seed's model gets right;
* (ii) seed variation only: a seed moves a method's expected accuracy by 2.5 points (sd), the
  total seed-to-seed sd (column ``seed sd``) coming to 2-3 points, as in the committed baselines;
* (iii) both; (iv) both, a seed moving the accuracy by 5 points (peeraid's and iad's AutoAttack in
  the committed baselines vary that much).

Tests (p < 0.05 counts as a rejection; no p-value, "no spread", as none):

* ``seeds×images``: the report's test (``bench.report.stats.seeds_images_difference``);
* ``paired t``: the report's where per-image flags are missing: the paired t over seeds on the
  counts (it holds the test images fixed, so image preferences alone make it reject);
* ``pooled McN.``: the report's before issue 33, retracted: the exact McNemar test on the seeds'
  discordant images pooled;
* ``image sign``: exact sign test over images of the seeds' summed differences: images as the
  unit, the trained models held fixed (not used);
* ``MSs+MSi Sat.`` and ``unbiased Sat``: the seeds x images t with its variance's other forms,
  (MS_seed + MS_image) / (S N) and (MS_seed + MS_image - MS_resid) / (S N), at Satterthwaite's df
  (not used: above alpha in (iii) or (iv)).

Not a test (about 2 minutes on 2 CPU cores; tests/report/test_stats.py runs three of the nulls).
Prints the table and writes it to benchmarks/results/image_tests_null.txt.

    python benchmarks/image_tests_null.py [--reps 4000]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from bench.common.io import atomic_write_text
from bench.report.image_null import (ALPHA, TESTS, Scenario, describe, monte_carlo_se,
                                     rejection_rates)

OUT = Path(__file__).resolve().parent / "results" / "image_tests_null.txt"
NULLS = {"(i) image preferences": (1.2, 0.0), "(ii) seeds, 2.5 pt": (0.0, 0.025),
         "(iii) both, 2.5 pt": (1.2, 0.025), "(iv) both, 5 pt": (1.2, 0.05)}
POWER = [("(iii) both, 2.5 pt", 0.7, 0.05), ("(iii) both, 2.5 pt", 0.7, 0.10)]
WIDTH = 13
LEFT = 47   # the scenario columns' width, up to the bar


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        model = names[0] if names else ""
    except OSError:
        model = ""
    return f"{os.cpu_count()}-core CPU ({model or platform.machine()})"


def _row(label: str, sc: Scenario, rates: dict[str, float]) -> str:
    look = describe(sc)
    head = (f"{label:22s} {sc.seeds:2d} {sc.accuracy:4.2f} {100 * look['seed_sd']:7.1f} "
            f"{look['discordant']:6.3f} |")
    return head + "".join(f"{rates[name]:>{WIDTH}.3f}" for name in TESTS)


def _summary(label: str, cells: list[str]) -> str:
    return f"{label:{LEFT - 1}s}|" + "".join(f"{c:>{WIDTH}s}" for c in cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=4000, help="replicates per scenario")
    args = parser.parse_args()
    t0 = time.perf_counter()
    bound = ALPHA + 3 * monte_carlo_se(ALPHA, args.reps)
    header = (f"{'scenario':22s} {'S':>2s} {'acc':>4s} {'seed sd':>7s} {'disc':>6s} |"
              + "".join(f"{name:>{WIDTH}s}" for name in TESTS))
    lines, worst = [header], {name: 0.0 for name in TESTS}
    for seeds in (3, 5):
        for label, (image_sd, points) in NULLS.items():
            for acc in (0.5, 0.7, 0.9):
                sc = Scenario(label, acc, seeds, image_sd, points)
                rates = rejection_rates(sc, args.reps, seed=len(lines))
                worst = {name: max(worst[name], rates[name]) for name in TESTS}
                lines.append(_row(label, sc, rates))
    lines.append(_summary("highest under a null", [f"{worst[n]:.3f}" for n in TESTS]))
    lines.append(_summary(f"<= alpha + 3 MC se ({bound:.3f})",
                          ["yes" if worst[n] <= bound else "NO" for n in TESTS]))
    lines += ["", "Power: method a's expected accuracy higher by the difference (a test above "
              "alpha under a null is not comparable here)", header]
    for label, acc, diff in POWER:
        image_sd, points = NULLS[label]
        for seeds in (3, 5):
            sc = Scenario(label, acc, seeds, image_sd, points, difference=diff)
            lines.append(_row(f"+{100 * diff:.0f} pt, {label[:5]}", sc,
                              rejection_rates(sc, args.reps, seed=len(lines))))
    seconds = time.perf_counter() - t0
    se = monte_carlo_se(ALPHA, args.reps)
    intro = [f"# python benchmarks/image_tests_null.py --reps {args.reps}: {seconds:.0f} s, "
             f"{_cpu()}",
             f"# rejection rate at alpha = {ALPHA} under nulls of equal expected accuracy, N = 226 "
             f"images, {args.reps} replicates a row (Monte Carlo se {se:.4f} at 0.05: a test that "
             f"keeps its alpha shows <= {bound:.3f})",
             "# seed sd: method b's accuracy sd over seeds, in points; disc: share of (seed, "
             "image) cells the two methods disagree on", ""]
    text = "\n".join(intro + lines) + "\n"
    print(text, end="")
    atomic_write_text(OUT, text)


if __name__ == "__main__":
    main()
