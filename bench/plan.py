"""The plan of a preset and its cost, from a throughput measured on this device (`paper --dry-run`).

Cost model (counted in image passes, then divided by the measured images/s):
  training, per epoch:  N_train x (attack steps + 1) student forward-backward passes for a method with
                        an inner maximisation (else N_train); N_train teacher forwards, and N_train x
                        steps teacher forward-backward passes when the method evaluates the teacher at x';
  evaluation, per model: n x (FGSM 1 + PGD-20 20 + CW 30 + structure 20 + 20 per curve eps and per
                        transfer target) forward-backward passes, plus about AA_PASSES per AutoAttack image
                        (APGD-CE 100, APGD-T 9 x 100 and FAB-T on the points still robust, Square's 5,000
                        queries forward-only; a rough figure for a robust model).
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from bench.presets import Preset
from bench.models import build_model

AA_PASSES = 1500
# images (train, test), channels, size, classes of the data sets a preset may name, without loading them
KNOWN = {"cifar10": (50000, 10000, 3, 32, 10), "cifar100": (50000, 10000, 3, 32, 100),
         "stl10": (5000, 8000, 3, 96, 10), "digits": (1347, 450, 1, 8, 10)}


def measure(arch: str, channels: int, size: int, classes: int, device: torch.device, batch: int,
            iters: int = 3) -> tuple[float, float]:
    """(forward-backward, forward) images per second of ``arch`` on ``device``."""
    model = build_model(arch, classes, channels).to(device).to(memory_format=torch.channels_last)
    x = torch.rand(batch, channels, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(step) -> float:
        step()  # warm-up
        sync()
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        sync()
        return iters * batch / (time.perf_counter() - t0)

    def fwd_bwd():
        xa = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xa), y), xa)

    with torch.no_grad():
        fwd = timed(lambda: model(x))
    return timed(fwd_bwd), fwd


def estimate(preset: Preset, methods: list, device: torch.device) -> tuple[list[dict], dict]:
    """Rows of (method, passes, hours) and the measured throughputs."""
    cfg = preset.config
    base = cfg.data.name.partition("@")[0]
    n_train, n_test, channels, size, classes = KNOWN.get(base, KNOWN["cifar10"])
    n_train = min(n_train, cfg.data.train_limit or n_train)
    size = cfg.data.image_size or size
    batch = cfg.train.batch_size if device.type == "cuda" else 16
    s_fb, s_f = measure(cfg.student_arch, channels, size, classes, device, batch)
    t_fb, t_f = measure(cfg.teacher.arch, channels, size, classes, device, batch)
    n = min(cfg.eval.n or n_test, n_test)
    aa_n = min(cfg.eval.aa_n or n, n) if "aa" in cfg.eval.attacks else 0
    per_eval = n * (1 + 20 + 30 + 20 + 20 * len(cfg.eval.curve_eps) + 20 * len(cfg.probe.targets)) + aa_n * AA_PASSES
    steps = cfg.attack.steps
    rows = []
    for spec in methods:
        inner = spec.cls.inner
        student = n_train * ((steps + 1) if inner else 1)
        teacher_fb = n_train * steps if inner and inner.teacher_at.startswith("x'") else 0
        teacher_f = n_train if spec.cls.needs_teacher else 0
        train_s = cfg.train.epochs * (student / s_fb + teacher_f / t_f + teacher_fb / t_fb)
        eval_s = per_eval / s_fb
        rows.append({"method": spec.label, "train_h": train_s / 3600, "eval_h": eval_s / 3600,
                     "seeds": len(preset.seeds), "total_h": len(preset.seeds) * (train_s + eval_s) / 3600})
    teacher_eval_h = per_eval / t_fb / 3600
    rows.append({"method": f"teacher ({cfg.teacher.kind} {cfg.teacher.arch}) evaluation", "train_h": 0.0, "eval_h": teacher_eval_h,
                 "seeds": 1, "total_h": teacher_eval_h})
    info = {"device": str(device), "batch": batch, "student_fwd_bwd": s_fb, "student_fwd": s_f,
            "teacher_fwd_bwd": t_fb, "teacher_fwd": t_f, "n_train": n_train, "n_eval": n, "aa_n": aa_n}
    return rows, info
