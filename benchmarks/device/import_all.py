"""Import every module of bench/ and methods/ (run with ``python -W error``: a deprecation in the
installed torch or another dependency then fails here, not in the middle of a run). Prints the count.

    python -W error benchmarks/device/import_all.py
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def modules() -> list[str]:
    names = []
    # methods/ is the package bench.methods (pyproject's package-dir)
    for package, folder in (("bench", "bench"), ("bench.methods", "methods")):
        names.append(package)
        names += [m.name for m in pkgutil.walk_packages([str(ROOT / folder)], prefix=f"{package}.")
                  if not m.name.endswith(".__main__")]  # __main__ runs the command line
    return sorted(names)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    names = modules()
    for name in names:
        importlib.import_module(name)
    print(f"imported {len(names)} modules of bench and methods with warnings {sys.warnoptions or 'as usual'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
