#!/usr/bin/env bash
# The device run rehearsed here, on the CPU, with no package registry: prepare.sh, then run.sh --smoke in a
# fresh virtual environment that sees this environment's packages EXCEPT the ones the device lacks (and
# this project), the way the device's Python sees its own torch, numpy, pandas, ...; pip runs with
# PIP_NO_INDEX=1, so a wheel prepare.sh forgot fails the install or the imports, as it would there.
# Takes about 4 minutes; prints run.sh's summary and exits 1 if any step failed.
#   bash benchmarks/device/rehearse.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PYTHON=$PY bash benchmarks/device/prepare.sh >"$TMP/prepare.log"
head -1 "$TMP/prepare.log"

# a device-like environment: this one's site-packages, less the distributions prepare.sh carries
"$PY" -m venv "$TMP/venv"
"$PY" - "$TMP" <<'PY'
import os, sys, sysconfig
from importlib.metadata import distributions
from pathlib import Path

tmp = Path(sys.argv[1])
carried = {w.name.split("-")[0].lower().replace("_", "-") for w in Path(".whl").glob("*.whl")}  # what prepare.sh put there
site = Path(sysconfig.get_paths()["purelib"])
hidden = {p.name for p in site.glob("__editable__*bench*")}  # this project's editable install
for dist in distributions():
    if dist.metadata["Name"].lower().replace("_", "-") in carried:
        hidden |= {str(f).split("/")[0] for f in dist.files or []}
shown = tmp / "device-site"
shown.mkdir()
for entry in site.iterdir():
    if entry.name not in hidden and not entry.name.endswith(".pth"):
        os.symlink(entry, shown / entry.name)
venv_site = next((tmp / "venv" / "lib").glob("python3*/site-packages"))
(venv_site / "device-site.pth").write_text(f"{shown}\n")
print(f"device-like environment: {len(list(shown.iterdir()))} entries shown, hidden: {', '.join(sorted(hidden))}")
PY
PIP_NO_INDEX=1 PYTHON="$TMP/venv/bin/python" OUT="$TMP/out" BENCH_DEVICE_SITE="$TMP/site" \
  bash benchmarks/device/run.sh --smoke >"$TMP/run.out" 2>&1 || true
echo "--- versions.txt"; cat "$TMP/out/versions.txt"
echo "--- cuda-tests.log (BENCH_CUDA_TESTS_DEVICE=cpu: the CUDA tests' bodies on the CPU)"
grep -E " call |passed|failed|skipped" "$TMP/out/cuda-tests.log" | sort -u | head -16
echo "--- gpu-table.md (smoke sizes: the numbers mean nothing)"; cat "$TMP/out/gpu-table.md"
echo "--- back from \$OUT: $(ls "$TMP/out" | tr '\n' ' ')"
sed -n '/== summary/,$p' "$TMP/out/run.log"
if grep -q "^.*: exit [1-9]\|skipped (no time left)" <(sed -n '/== summary/,$p' "$TMP/out/run.log"); then
  echo "rehearsal: a step failed (its log: run.log above)"; sed -n '1,400p' "$TMP/out/run.log" | tail -60; exit 1
fi
echo "rehearsal: every step passed"
