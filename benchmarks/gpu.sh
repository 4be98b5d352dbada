#!/usr/bin/env bash
# Issue 12's GPU measurements in one go, prepared for one GPU: <= 8 minutes on an H200, no data files and no
# internet needed (synthetic CIFAR-shaped images where the real files are absent). Prints one table:
# ARD-epoch images/s for bench (fp32, bf16, bf16 + compile) and an official-style loop, with their ratio;
# PGD-20 evaluation images/s; AutoAttack standard images/s on 500 images; peak memory; the --jobs-per-gpu
# throughput gain; and runs the CUDA no-host-sync test of the training step.
#   bash benchmarks/gpu.sh            # on the GPU host; saves the table under benchmarks/results/
#   bash benchmarks/gpu.sh --smoke    # tiny sizes on any device: checks the script's path (CI does)
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=()
SAVE=(--save)
if [ "${1:-}" = "--smoke" ]; then SMOKE=(--smoke); SAVE=(); fi
OUT=${OUT:-$(mktemp -d)}
python benchmarks/gpu.py train --out "$OUT" "${SMOKE[@]}"
python benchmarks/gpu.py eval --out "$OUT" "${SMOKE[@]}"
python benchmarks/gpu.py jobs --out "$OUT" "${SMOKE[@]}"
if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  python -m pytest -q -p no:cacheprovider tests/test_step.py -k cuda | tail -2
fi
python benchmarks/gpu.py table --out "$OUT" "${SAVE[@]}"
