#!/usr/bin/env bash
# Run THERE (the lent GPU machine), as benchmarks/device/prepare.sh prints: installs the carried wheels
# with --no-deps --no-index next to the machine's own torch, prints versions and the GPU, runs
# benchmarks/gpu.sh (the measurements come first), then the CUDA test subset (pytest -m cuda) and a
# `python -W error` import of every module, each step under its own limit and all of it inside one
# deadline (BENCH_DEVICE_BUDGET_S, default 530 s), so a failing or slow step costs its own rows only.
# Everything lands in $OUT (at most 8 files come back): run.log, versions.txt, freeze.txt,
# cuda-tests.log, gpu-table.md, gpu.tar.gz.
#   bash benchmarks/device/run.sh            # on the device machine
#   bash benchmarks/device/run.sh --smoke    # anywhere: tiny sizes, the CUDA tests' bodies on the CPU
set -uo pipefail
cd "$(dirname "$0")/../.."
SMOKE=""
if [ "${1:-}" = "--smoke" ]; then SMOKE=--smoke; fi
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
START=$(date +%s)
# the device's 10-minute command limit, less a margin; --smoke on a CPU runs the CUDA tests' bodies slowly
export BENCH_DEADLINE=$((START + ${BENCH_DEVICE_BUDGET_S:-$([ -n "$SMOKE" ] && echo 1200 || echo 530)}))
LOG=$OUT/run.log
SUMMARY=()

left() { echo $((BENCH_DEADLINE - $(date +%s))); }
step() {  # step NAME LIMIT_S COMMAND...: under min(LIMIT_S, time left), logged; never stops the script
  local name=$1 want=$2 t0 rc limit
  shift 2
  limit=$(left)
  if [ "$want" -lt "$limit" ]; then limit=$want; fi
  if [ "$limit" -lt 10 ]; then
    echo "== $name: skipped, $(left) s left" | tee -a "$LOG"; SUMMARY+=("$name: skipped (no time left)"); return
  fi
  t0=$(date +%s)
  echo "== $name (limit ${limit} s)" | tee -a "$LOG"
  timeout -k 5 "$limit" "$@" >>"$LOG" 2>&1
  rc=$?
  echo "== $name: exit $rc after $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
  SUMMARY+=("$name: exit $rc, $(( $(date +%s) - t0 )) s$([ $rc = 124 ] && echo ' (over its limit)')")
}

# 1. the carried wheels next to the machine's own packages (nothing is fetched: --no-index)
SITE=${BENCH_DEVICE_SITE:-/tmp/bench-site}
step install 90 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    .whl/*.whl
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}

# 2. what this machine is
{
  echo "date: $(date -u +%FT%TZ)"; echo "host: $(uname -a)"
  "$PY" - <<'PY'
import sys, torch, torchvision
print(f"python {sys.version.split()[0]} at {sys.executable}")
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), torchvision {torchvision.__version__}")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"gpu {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
from importlib.metadata import version
print("carried: " + ", ".join(f"{n} {version(n)}" for n in ("bench", "pyautoattack", "robustbench", "submitit", "omegaconf")))
PY
  nvidia-smi -L 2>/dev/null || echo "nvidia-smi: none"
} >"$OUT/versions.txt" 2>&1
cat "$OUT/versions.txt" | tee -a "$LOG"
"$PY" -m pip freeze --path "$SITE" >"$OUT/freeze.txt" 2>&1; "$PY" -m pip freeze >>"$OUT/freeze.txt" 2>&1

# 3. the measurements (benchmarks/gpu.sh: its own steps keep to BENCH_DEADLINE too); its JSON in one archive
WORK=$(mktemp -d)
step gpu.sh 400 env OUT="$WORK" bash benchmarks/gpu.sh $SMOKE
"$PY" benchmarks/gpu.py table --out "$WORK" >"$OUT/gpu-table.md" 2>>"$LOG"
tar -czf "$OUT/gpu.tar.gz" -C "$WORK" . 2>>"$LOG"

# 4. the CUDA subset (with --smoke on a machine without one: the same test bodies on the CPU)
if [ -n "$SMOKE" ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  export BENCH_CUDA_TESTS_DEVICE=cpu
fi
step cuda-tests "$([ -n "$SMOKE" ] && echo 400 || echo 150)" "$PY" -m pytest -q -m cuda -p no:cacheprovider --durations=0 tests/ \
    --junitxml="$WORK/cuda-tests.xml"
grep -E "passed|failed|error|skipped" "$LOG" | tail -1 >"$OUT/cuda-tests.log"
sed -n '/== cuda-tests (limit/,/== cuda-tests: exit/p' "$LOG" >>"$OUT/cuda-tests.log"

# 5. every module imported with warnings as errors (deprecations in this torch)
step imports-W-error 60 "$PY" -W error benchmarks/device/import_all.py

echo "== summary ($(( $(date +%s) - START )) s)" | tee -a "$LOG"
printf '%s\n' "${SUMMARY[@]}" | tee -a "$LOG"
