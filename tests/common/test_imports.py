"""Every module imports with warnings as errors (a deprecation in the installed torch or another
dependency fails here first); the device run repeats it against the device's own torch."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_every_module_imports_with_warnings_as_errors():
    out = subprocess.run([sys.executable, "-W", "error", "benchmarks/device/import_all.py"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    count = int(out.stdout.split()[1])
    assert count == len(list((ROOT / "bench").rglob("*.py")) + list((ROOT / "methods").rglob("*.py"))) - 1
