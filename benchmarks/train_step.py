"""Speed of bench's training step against a reference loop written the way the official robust-distillation
scripts are (DataLoader over PIL images with torchvision transforms, float32, NCHW), and against bench at
another commit (``--ref``), side by side in one run.

Every variant trains the same student with the same ARD step (PGD-10 on the student, KL to the teacher's
clean soft labels) on the same data from the same initial weights. Each measurement is a fresh process
(a warm-up epoch, then ``--epochs`` timed epochs), and the rounds alternate the variants, so that the noise
of a shared machine hits all of them. Prints images/s per variant (median over rounds) and the ratios.

    python benchmarks/train_step.py                       # digits: cnn-narrow student, cnn-wide teacher
    python benchmarks/train_step.py --ref HEAD~1          # and bench at that commit
    python benchmarks/train_step.py --dataset cifar10 --student resnet18 --teacher wrn-34-10 \\
        --batch-size 128 --train-limit 10000 --variants reference,bench-fp32,bench-bf16,bench-bf16-compile  # GPU

Variants: ``reference``; ``bench`` (the run's default precision: bf16 on CUDA, fp32 elsewhere);
``bench-fp32``, ``bench-bf16``, ``bench-bf16-compile``, ``bench-fp32-compile``; ``--ref REF`` adds
``bench@REF`` (that commit's defaults).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
BENCH_VARIANTS = {"bench": ("auto", False), "bench-fp32": ("fp32", False), "bench-bf16": ("bf16", False),
                  "bench-bf16-compile": ("bf16", True), "bench-fp32-compile": ("fp32", True)}


def reference_epoch(student, teacher, loader, opt, eps, step, steps, t, device) -> int:
    """An ARD epoch as the official scripts write it."""
    import torch
    import torch.nn.functional as F

    seen = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        student.train()
        x_adv = x.detach() + torch.empty_like(x).uniform_(-eps, eps)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                loss = F.cross_entropy(student(x_adv), y)
            grad = torch.autograd.grad(loss, [x_adv])[0]
            x_adv = x_adv.detach() + step * torch.sign(grad.detach())
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
        with torch.no_grad():
            t_out = teacher(x)
        loss = t * t * F.kl_div(F.log_softmax(student(x_adv) / t, 1), F.softmax(t_out / t, 1),
                                reduction="batchmean")
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
    return seen


def load_data(name: str, train_limit: int | None, synthetic: int | None):
    """The data set's first ``train_limit`` training images, or -- where its files are absent and
    ``synthetic`` is given -- that many synthetic images of its shape (speed does not depend on pixels)."""
    from bench.common.errors import BenchError
    from bench.data.sources import load_dataset, synthetic_stand_in

    try:
        return load_dataset(name, train_limit=train_limit or synthetic)
    except BenchError:
        if not synthetic:
            raise
        return synthetic_stand_in(name, n_train=synthetic, n_test=min(synthetic, 10000))


def measure(args) -> dict:
    """One variant in this process: a warm-up epoch, then ``args.epochs`` timed epochs; images/s."""
    import torch
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    from bench.common.device import resolve_device
    from bench.config.schema import AttackConfig, TrainConfig
    from bench.models import build_model
    from bench.train.loop import train_model
    from bench.train.teacher import prepare_model
    from bench.methods import parse_method
    from bench.methods.base import Context

    class PILImages(Dataset):
        """What torchvision's CIFAR10 does: a PIL image per item, transformed per item."""

        def __init__(self, x_uint8, y, transform):
            self.images, self.labels, self.transform = x_uint8.permute(0, 2, 3, 1).numpy(), y.tolist(), transform

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            img = self.images[i]
            return self.transform(Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)), self.labels[i]

    device = resolve_device(args.device)
    data = load_data(args.dataset, args.train_limit, args.synthetic)
    eps, steps, t = (0.2 if args.dataset.startswith("digits") else 8 / 255), 10, 30.0
    torch.manual_seed(0)
    student0 = build_model(args.student, data.num_classes, data.in_channels, data.mean, data.std)
    teacher = build_model(args.teacher, data.num_classes, data.in_channels, data.mean, data.std).eval()
    teacher.requires_grad_(False)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    if args.one == "reference":
        teacher = teacher.to(device)
        tf = transforms.Compose(([transforms.RandomCrop(data.image_size, padding=data.pad)] if data.pad else [])
                                + ([transforms.RandomHorizontalFlip()] if data.flip else []) + [transforms.ToTensor()])
        loader = DataLoader(PILImages(data.x_train, data.y_train, tf), batch_size=args.batch_size, shuffle=True,
                            num_workers=args.workers, persistent_workers=args.workers > 0,
                            pin_memory=device.type == "cuda")
        student = copy.deepcopy(student0).to(device)
        opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

        def epoch() -> int:
            return reference_epoch(student, teacher, loader, opt, eps, eps / 4, steps, t, device)
        run = epoch
    else:
        gpu_data = data.to(device)
        bench_teacher = prepare_model(teacher, device)
        attack_cfg = AttackConfig(eps=eps, steps=steps)
        kwargs = {}
        if args.one in BENCH_VARIANTS:  # this tree's options; a --ref tree runs with its own defaults
            precision, compiled = BENCH_VARIANTS[args.one]
            kwargs = {"precision": precision, "compile": compiled}
        spec = parse_method(f"ard:t={t}" if args.method == "ard" else args.method)

        def run() -> int:  # one epoch of a fresh student, as the reference's epochs (the same weights each time)
            student = prepare_model(copy.deepcopy(student0), device)
            ctx = Context(data.num_classes, len(data.y_train), gpu_data.y_train, student.feature_dim,
                          bench_teacher.feature_dim, device, 1)
            with tempfile.TemporaryDirectory() as tmp:
                train_model(student, spec.build(ctx), gpu_data, TrainConfig(epochs=1, batch_size=args.batch_size),
                            attack_cfg, bench_teacher, Path(tmp), device, **kwargs)
            return len(data.y_train)
    run()  # warm-up: workers, allocator, cuDNN autotuning, torch.compile
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    t0 = time.perf_counter()
    seen = sum(run() for _ in range(args.epochs))
    sync()
    out = {"images_per_s": seen / (time.perf_counter() - t0), "device": str(device)}
    if device.type == "cuda":
        out["peak_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits@0-4")
    ap.add_argument("--student", default="cnn-narrow")
    ap.add_argument("--teacher", default="cnn-wide")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--train-limit", type=int, default=None, help="first N training images (GPU runs on CIFAR)")
    ap.add_argument("--synthetic", type=int, default=None,
                    help="where the data set's files are absent: N synthetic images of its shape (and N real ones "
                         "where they are present)")
    ap.add_argument("--workers", type=int, default=2, help="reference DataLoader workers (official: 2-4)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--variants", default="reference,bench", help=f"comma list of reference, {', '.join(BENCH_VARIANTS)}")
    ap.add_argument("--ref", help="also bench at this git commit (e.g. HEAD~1, main)")
    ap.add_argument("--method", default="ard", help="bench's method (default ard, the reference loop's step; "
                                                    "another one compares bench with --ref only)")
    ap.add_argument("--json", help="write the medians here as JSON")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args)))
        return 0

    import _ref

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v != "reference" and v not in BENCH_VARIANTS]
    if unknown:
        print(f"train_step: unknown variant(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    passthrough = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                   if k in ("dataset", "student", "teacher", "epochs", "batch_size", "train_limit", "synthetic",
                            "workers", "device", "method")
                   and v is not None]
    with _ref.sides(args.ref) as sides:
        trees = {v: ROOT for v in variants}
        trees.update({f"bench@{args.ref}": tree for side, tree in sides.items() if side != _ref.THIS})
        results: dict[str, list[dict]] = {v: [] for v in trees}
        for r in range(args.rounds):
            for v, where in trees.items():
                one = "ref" if v.startswith("bench@") else v
                done = subprocess.run([sys.executable, str(HERE), f"--one={one}", *passthrough], cwd=where,
                                      env=_ref.env_for(where), capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{v} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
                    return 1
                results[v].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"round {r + 1}/{args.rounds} {v}: {results[v][-1]['images_per_s']:.1f} images/s",
                      file=sys.stderr, flush=True)
    med = {v: statistics.median(m["images_per_s"] for m in ms) for v, ms in results.items()}
    device = results[next(iter(results))][0]["device"]
    print(f"device {device}, dataset {args.dataset}, student {args.student}, teacher {args.teacher}, batch "
          f"{args.batch_size}, ARD step with PGD-10, {args.epochs} timed epochs x {args.rounds} rounds (median)")
    for v, ms in results.items():
        label = f"bench@{_ref.describe(args.ref)}" if v.startswith("bench@") else v
        peak = f"  peak {max(m['peak_gib'] for m in ms):.1f} GiB" if "peak_gib" in ms[0] else ""
        print(f"  {label:60s} {med[v]:9.1f} images/s  rounds {[round(m['images_per_s']) for m in ms]}{peak}")
    for v in med:
        if "reference" in med and v != "reference":
            print(f"ratio {v} / reference: {med[v] / med['reference']:.2f}x")
    if args.ref:
        for v in variants:
            if v != "reference":
                print(f"ratio {v} / bench@{args.ref}: {med[v] / med[f'bench@{args.ref}']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"medians": med, "rounds": results, "args": vars(args)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    sys.exit(main())
