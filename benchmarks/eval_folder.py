"""Wall time of `bench eval --attacks clean` on a folder of CIFAR-shaped images (what a new user tries
first with an external checkpoint), and with ``--ref REF`` the same command at that commit, side by side.

Writes N random 32x32 PNGs in ImageFolder layout (10 class folders) and a randomly initialised CIFAR
ResNet-18 state_dict to a temporary folder (the pixels and weights do not change the cost), then runs

    python -m bench eval --weights model.pt --arch resnet18 --dataset folder:DIR --attacks clean

    python benchmarks/eval_folder.py [--n 10000] [--ref 3601006]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

import _ref  # noqa: E402


def make_folder(root: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:06d}.png")


def make_weights(path: Path) -> None:
    import torch

    from bench.models import build_model

    torch.manual_seed(0)
    torch.save(build_model("resnet18", 10, 3).state_dict(), path)


def timed_eval(tree: Path, weights: Path, folder: Path, out: Path) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "bench", "eval", "--weights", str(weights), "--arch", "resnet18", "--dataset",
           f"folder:{folder}", "--attacks", "clean", "--out", str(out)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=tree, env=_ref.env_for(tree), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {tree}:\n{done.stderr[-3000:]}")
    images = re.findall(r"(\d+) test images", done.stderr + done.stdout)
    return wall, images[0] if images else "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="images in the folder (default 10000)")
    ap.add_argument("--ref", help="also time the command at this git commit")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        make_folder(tmp / "images", args.n)
        make_weights(tmp / "model.pt")
        print(f"wrote {args.n} PNGs and a ResNet-18 state_dict in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        with _ref.sides(args.ref) as sides:
            runs = {side: timed_eval(where, tmp / "model.pt", tmp / "images", tmp / f"out{i}")
                    for i, (side, where) in enumerate(sides.items())}
    print(f"bench eval --attacks clean, ResNet-18, folder of {args.n} CIFAR-shaped PNGs:")
    for side, (wall, images) in runs.items():
        print(f"  {side}: {wall:.1f} s wall, {images} images evaluated ({args.n / wall:.0f} images/s)")
    print(_ref.speedup({side: wall for side, (wall, _) in runs.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
