"""The install the README promises: CI runs its test command verbatim, the exact torch pins come
through constraints.txt, and pyproject.toml states the ranges the code supports (checked at their lower
bounds by benchmarks/lowest-deps.sh; they admit a GPU host's own torch, so an install without a package
registry there is not refused)."""
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]


def test_ci_runs_the_readmes_test_command_with_the_pins():
    commands = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2  # (a) the main job, (b) the tests: exactly two set-up commands
    assert all("-c constraints.txt" in c for c in commands)
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_pins_are_exact_and_inside_the_declared_range():
    pins = dict(re.findall(r"^([a-z-]+)==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M))
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ranges = dict(re.match(r"([a-z]+)>=(\S+)", d).groups() for d in deps if d.startswith(("torch>=", "torchvision>=")))
    assert set(ranges) == {"torch", "torchvision"} <= set(pins)

    def version(v):
        return tuple(int(p) for p in v.split(".")[:2])
    assert all(version(pins[k]) >= version(ranges[k]) for k in ranges)
    assert version(ranges["torch"]) <= (2, 11)  # the device machine's torch


def test_every_package_installs_and_methods_installs_inside_bench():
    """pyproject lists packages by name (package-dir maps methods/ to bench.methods), so a new
    sub-package left out of the list would be missing from the wheel; and no top-level "methods" may
    be installed beside other projects."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "bench").rglob("__init__.py")}
    assert set(tool["packages"]) == found | {"bench.methods"}
    assert tool["package-dir"] == {"bench.methods": "methods"}
    assert not any(p == "methods" or p.startswith("methods.") for p in tool["packages"])


def test_the_lowest_constraints_pin_every_declared_lower_bound():
    """constraints-lowest.txt (benchmarks/lowest-deps.sh installs it and runs the fast tests) pins each
    dependency at exactly its declared lower bound, so a bound raised or lowered without that check
    fails here."""
    pins = dict(re.findall(r"^([a-z0-9-]+)==(\S+)$", (ROOT / "constraints-lowest.txt").read_text(), re.M))
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bounds = dict(re.fullmatch(r"([a-z0-9-]+)>=(\S+)", d).groups() for d in deps)
    assert set(pins) == set(bounds)

    def padded(v):
        parts = [int(p) for p in v.split(".")]
        return parts + [0] * (3 - len(parts))
    # "torch>=2.4" is tested at 2.4.1 (the first 2.4 patch release with Python 3.11 wheels)
    assert all(padded(pins[k])[:len(bounds[k].split("."))] == padded(bounds[k])[:len(bounds[k].split("."))]
               for k in bounds), {k: (bounds[k], pins[k]) for k in bounds}
