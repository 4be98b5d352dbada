#!/usr/bin/env bash
# Run HERE (the CPU machine) before a device window: puts into .whl/ (git-ignored) the wheels of what the
# device machine lacks -- the pure-Python dependencies it does not have (never torch: the device uses its
# own) and this project itself -- checks that the working tree plus .whl/ fit the 64 MiB that travel, and
# prints the device call to make. The versions are this environment's (the ones CI tests).
#   bash benchmarks/device/prepare.sh            # then make the call it prints
# PYTHON=... picks the interpreter whose environment gives the versions (default: python).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
WHL=.whl
LIMIT=$((64 * 1024 * 1024))
# Absent from the device image (its package list: /work/.library/device/KINDS.md); robustbench imports
# geotorch and gdown, and gdown imports bs4 (beautifulsoup4, soupsieve). Everything else bench imports
# (numpy, scipy, pandas, matplotlib, scikit-learn, jinja2, pyyaml, tqdm, filelock, cloudpickle, timm,
# requests, tensorboard, pytest, hypothesis, torchvision) is there.
LACKS=(pyautoattack robustbench submitit omegaconf geotorch gdown beautifulsoup4 soupsieve)

specs=$("$PY" - "${LACKS[@]}" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1:]))
except PackageNotFoundError as err:
    sys.exit(f"prepare.sh: {err.name} is not installed here; install the project first (README, command b)")
PY
)  # an assignment, so that set -e stops here when a package is missing
read -r -a SPECS <<<"$specs"
rm -rf "$WHL" && mkdir -p "$WHL"     # only once the versions are known: a failure keeps the last carry
for spec in "${SPECS[@]}"; do
  # a wheel for the device's Python (3.12, x86-64); a package that ships only its source is built here
  # into a pure-Python wheel, which any Python 3 installs
  if ! "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d "$WHL" "$spec" \
        2>/dev/null; then
    "$PY" -m pip wheel -q --no-deps -w "$WHL" "$spec"
  fi
done
"$PY" -m pip wheel -q --no-deps -w "$WHL" .          # this project, installed there against its own torch
for w in "$WHL"/*.whl; do
  case "$w" in *-py3-none-any.whl|*-py2.py3-none-any.whl|*cp312*) ;;
    *) echo "prepare.sh: $w is not pure Python and not built for CPython 3.12" >&2; exit 2;; esac
done

# the carry must hold one wheel of each package the device lacks, and this project's
for name in "${LACKS[@]}" robust-kd-bench; do
  stem=$(printf '%s' "$name" | tr '-' '_')
  if ! ls "$WHL" | grep -qi "^${stem}-"; then
    echo "prepare.sh: no wheel of $name in $WHL; the device run would fail there" >&2
    exit 2
  fi
done

wheels=$(du -cb "$WHL"/*.whl | tail -1 | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | grep total$ \
       | awk '{s += $1} END {print s + 0}')
total=$((wheels + tree))
awk -v w="$wheels" -v t="$tree" -v n="$(ls "$WHL" | wc -l)" -v d="$WHL" 'BEGIN {m = 1048576;
  printf "wheels: %s (%d files, %.1f MiB); working tree %.1f MiB; together %.1f MiB of 64 MiB\n", d, n, w / m, t / m,
         (w + t) / m}'
if [ "$total" -gt "$LIMIT" ]; then
  echo "prepare.sh: over the 64 MiB that travel to the device; ignore or remove untracked files" >&2
  exit 2
fi
cat <<'CALL'
device call (the device tool's `run`; one command, about 9 minutes of its 10):
  command:   bash benchmarks/device/run.sh
  carry:     [".whl"]
  timeout_s: 570
everything comes back under $OUT: run.log, versions.txt, freeze.txt, cuda-tests.log, gpu-table.md, gpu.tar.gz
CALL
