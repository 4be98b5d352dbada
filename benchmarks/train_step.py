"""Speed of bench's training loop against a reference loop written the way the official robust-
distillation scripts are (DataLoader over PIL images with torchvision transforms, float32, NCHW).

Both train the same student with the same ARD step (PGD-10 on the student, KL to the teacher's clean
soft labels) on the same data, from the same initial weights, alternating A/B/A/B so that the noise
of a shared machine hits both. Prints images/s of each and the ratio bench / reference.

    python benchmarks/train_step.py                   # digits, cnn-narrow student, cnn-wide teacher
    python benchmarks/train_step.py --dataset cifar10 --student resnet18 --teacher resnet18  # GPU
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from bench.config import AttackConfig, TrainConfig
from bench.data import load_dataset
from bench.models import build_model
from bench.runner import resolve_device
from bench.teacher import prepare_model
from bench.train import train_model
from methods import parse_method
from methods.base import Context


class PILImages(Dataset):
    """What torchvision's CIFAR10 does: a PIL image per item, transformed per item."""

    def __init__(self, x_uint8: torch.Tensor, y: torch.Tensor, transform):
        self.images = x_uint8.permute(0, 2, 3, 1).numpy()
        self.labels = y.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        img = self.images[i]
        img = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        return self.transform(img), self.labels[i]


def reference_epoch(student, teacher, loader, opt, eps, step, steps, t, device) -> int:
    """An ARD epoch as the official scripts write it."""
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--student", default="cnn-narrow")
    ap.add_argument("--teacher", default="cnn-wide")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per timed round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2, help="reference DataLoader workers (official: 2-4)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    device = resolve_device(args.device)
    data = load_dataset(args.dataset)
    eps, steps, t = 0.15 if args.dataset == "digits" else 8 / 255, 10, 30.0
    torch.manual_seed(0)
    student0 = build_model(args.student, data.num_classes, data.in_channels, data.mean, data.std)
    teacher = build_model(args.teacher, data.num_classes, data.in_channels, data.mean, data.std).to(device).eval()
    bench_teacher = prepare_model(copy.deepcopy(teacher), device)
    for p in [*teacher.parameters(), *bench_teacher.parameters()]:
        p.requires_grad_(False)

    size = data.image_size
    tf = transforms.Compose(([transforms.RandomCrop(size, padding=data.pad)] if data.pad else [])
                            + ([transforms.RandomHorizontalFlip()] if data.flip else []) + [transforms.ToTensor()])
    loader = DataLoader(PILImages(data.x_train, data.y_train, tf), batch_size=args.batch_size, shuffle=True,
                        num_workers=args.workers, persistent_workers=args.workers > 0)
    ref_student = copy.deepcopy(student0).to(device)
    ref_opt = torch.optim.SGD(ref_student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    gpu_data = data.to(device)
    train_cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size)
    attack_cfg = AttackConfig(eps=eps, steps=steps)
    spec = parse_method(f"ard:t={t}")

    def bench_round() -> float:
        student = prepare_model(copy.deepcopy(student0), device)
        ctx = Context(data.num_classes, len(data.y_train), gpu_data.y_train, student.feature_dim,
                      teacher.feature_dim, device, args.epochs)
        with tempfile.TemporaryDirectory() as tmp:
            sync()
            t0 = time.perf_counter()
            train_model(student, spec.build(ctx), gpu_data, train_cfg, attack_cfg, bench_teacher, Path(tmp), device)
            sync()
            return args.epochs * len(data.y_train) / (time.perf_counter() - t0)

    def ref_round() -> float:
        sync()
        t0 = time.perf_counter()
        seen = sum(reference_epoch(ref_student, teacher, loader, ref_opt, eps, eps / 4, steps, t, device)
                   for _ in range(args.epochs))
        sync()
        return seen / (time.perf_counter() - t0)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    ref_round()  # warm-up: DataLoader workers, allocator
    bench_round()
    ref, ours = [], []
    for _ in range(args.rounds):
        ref.append(ref_round())
        ours.append(bench_round())
    r, b = statistics.median(ref), statistics.median(ours)
    print(f"device {device}, dataset {args.dataset}, student {args.student}, teacher {args.teacher}, "
          f"batch {args.batch_size}, ARD step with PGD-{steps}")
    print(f"reference (DataLoader+PIL, {args.workers} workers): {r:8.1f} images/s  rounds {[round(v) for v in ref]}")
    print(f"bench (tensor data on device):        {b:8.1f} images/s  rounds {[round(v) for v in ours]}")
    print(f"ratio bench / reference: {b / r:.2f}x")


if __name__ == "__main__":
    main()
