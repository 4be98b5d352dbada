#!/usr/bin/env bash
# Prepared for a GPU host (run when one is available; needs no data files, no internet):
# the paper grid's whole path at smoke scale on every GPU of the machine, one process against
# `--executor local --gpus N`, side by side; then one run over 2 GPUs with torchrun and --sync-bn
# (the NCCL path the CPU tests cannot reach). Prints wall times and the ratio.
#   bash benchmarks/gpu_grid.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=$(nvidia-smi -L | wc -l)
OUT=$(mktemp -d)
GRID=(paper cifar10-resnet18 --scale smoke --seeds 0,1,2,3 --results "$OUT/r" --reports "$OUT/p")
python -m bench "${GRID[@]}" --only-teacher --no-report --methods ard >/dev/null 2>&1    # teacher cached for both
t0=$(date +%s.%N); python -m bench "${GRID[@]}" >/dev/null 2>"$OUT/inline.err"; t1=$(date +%s.%N)
rm -rf "$OUT/r/cifar10-resnet18-smoke"
python -m bench "${GRID[@]}" --executor local --gpus "$N" >/dev/null 2>"$OUT/local.err"; t2=$(date +%s.%N)
python - "$t0" "$t1" "$t2" "$N" <<'PY'
import sys
t0, t1, t2, n = map(float, sys.argv[1:])
print(f"grid (10 methods x 4 seeds, smoke scale): one process {t1 - t0:.0f} s; {int(n)} GPUs {t2 - t1:.0f} s; "
      f"speed-up {(t1 - t0) / (t2 - t1):.2f}x")
PY
if [ "$N" -ge 2 ]; then
  torchrun --standalone --nproc-per-node 2 -m bench paper cifar10-resnet18 --scale smoke --methods gacd --seeds 0 \
      --sync-bn --results "$OUT/r2" --reports "$OUT/p2" 2>"$OUT/ddp.err" | tail -3
fi
python -m bench status cifar10-resnet18-smoke --results "$OUT/r" | tail -1
