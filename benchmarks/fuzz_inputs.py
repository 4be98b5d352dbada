"""Generated hostile input for the command line and every file format bench reads (tests/fuzz/hostile.py):
how many cases per format were tried, how many were accepted or refused in one line, and every failure
(a traceback, a second stderr line, another exit status, a file written outside the case's folder).

    python benchmarks/fuzz_inputs.py [N] [--save]    # N cases per format (default 1000); --save writes
                                                     # benchmarks/results/fuzz_inputs.txt
CI runs the same formats with 40 cases each (tests/fuzz/test_hostile_inputs.py)."""
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
import hostile  # noqa: E402


def main(argv: list[str]) -> int:
    n = int(next((a for a in argv if a.isdigit()), "1000"))
    lines = [f"# python benchmarks/fuzz_inputs.py {n}: generated cases per format (Hypothesis, derandomized)",
             f"{'format':22s} {'cases':>6s} {'accepted':>9s} {'refused':>8s} {'failures':>9s} {'seconds':>8s}"]
    total_cases, total_failures = 0, []
    for name in sorted(hostile.FORMATS):
        t0 = time.perf_counter()
        tried, outcomes, failures = hostile.run_format(name, n)
        lines.append(f"{name:22s} {tried:6d} {outcomes['ok']:9d} {outcomes['refused']:8d} {len(failures):9d} "
                     f"{time.perf_counter() - t0:8.1f}")
        total_cases += tried
        total_failures += [f"{name}: {f}" for f in failures]
    lines += [*total_failures, f"{total_cases} cases in {len(hostile.FORMATS)} formats: {len(total_failures)} "
              "failures (tracebacks, second stderr lines, other exit statuses, files written outside)"]
    print("\n".join(lines))
    if "--save" in argv:
        (ROOT / "benchmarks" / "results" / "fuzz_inputs.txt").write_text("\n".join(lines) + "\n")
    return 1 if total_failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
