"""Wall time of the README's main job, cold (no cached teacher), in a throw-away results folder.

    python benchmarks/default_run.py            # runs: python -m bench run --methods gacd,ard,crd
Prints the wall time against the 5-minute target and the table the run wrote.
"""
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 300


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "bench", "run", "--methods", "gacd,ard,crd",
               "--results", f"{tmp}/results", "--reports", f"{tmp}/reports", *sys.argv[1:]]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        print((Path(tmp) / "reports" / "digits" / "README.md").read_text())
    print(f"default run, cold (teacher trained): {wall:.0f} s wall; target {TARGET_S} s; "
          f"ratio to target {wall / TARGET_S:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
