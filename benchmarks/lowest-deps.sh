#!/usr/bin/env bash
# Install the lowest versions pyproject.toml declares (constraints-lowest.txt) into a fresh virtual
# environment and run the fast tests there: the check behind the declared ranges. It downloads torch
# 2.4.1 and its CUDA libraries from PyPI (about 3 GB), so CI does not run it; run it before a release
# and whenever a lower bound moves.
#   bash benchmarks/lowest-deps.sh [VENV]         # default VENV: /tmp/bench-lowest
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-/tmp/bench-lowest}
rm -rf "$VENV" && python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -c constraints-lowest.txt -e ".[test]"
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for name in ("torch", "torchvision", "numpy", "pandas", "scipy", "matplotlib", "robustbench"):
    print(f"{name} {md.version(name)}")
PY
"$VENV/bin/python" -m pytest -m "not slow" -n 2 -p no:cacheprovider
# leave the project's own environment as it was: the editable install above wrote only into $VENV
