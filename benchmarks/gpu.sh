#!/usr/bin/env bash
# Issue 12's GPU measurements in one go, prepared for one GPU: about 8 minutes on an H200, no data files and
# no internet needed (synthetic CIFAR-shaped images where the real files are absent). Prints one table:
# ARD-epoch images/s for bench (fp32, bf16, bf16 + compile) and an official-style loop, with their ratio;
# PGD-20 evaluation images/s; AutoAttack standard images/s on 500 images; peak memory; the --jobs-per-gpu
# throughput gain; and runs the CUDA no-host-sync test of the training step. A step that fails or runs over
# its limit costs its rows, not the table.
#   bash benchmarks/gpu.sh            # on the GPU host; saves the table under benchmarks/results/
#   bash benchmarks/gpu.sh --smoke    # tiny sizes on any device: checks the script's path
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SMOKE=()
SAVE=(--save)
if [ "${1:-}" = "--smoke" ]; then SMOKE=(--smoke); SAVE=(); fi
OUT=${OUT:-$(mktemp -d)}
# each step's limit, cut to what is left before $BENCH_DEADLINE (epoch seconds; benchmarks/device/run.sh sets it)
lim() { local left=$(( ${BENCH_DEADLINE:-$(( $(date +%s) + 100000 ))} - $(date +%s) - 15 )); echo $(( $1 < left ? $1 : left )); }
"$PY" benchmarks/gpu.py train --out "$OUT" "${SMOKE[@]}" || echo "gpu.sh: the train step failed" >&2
timeout "$(lim 240)" "$PY" benchmarks/gpu.py eval --out "$OUT" "${SMOKE[@]}" || echo "gpu.sh: the eval step failed" >&2
if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  timeout "$(lim 120)" "$PY" -m pytest -q -p no:cacheprovider tests/train/test_step.py -k cuda | tail -3
fi
timeout "$(lim 240)" "$PY" benchmarks/gpu.py jobs --out "$OUT" "${SMOKE[@]}" || echo "gpu.sh: the jobs step failed" >&2
"$PY" benchmarks/gpu.py table --out "$OUT" "${SAVE[@]}"
