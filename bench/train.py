"""The training loop: one loop for every method, which only sums the method's loss terms."""
from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from bench import distributed
from bench.attacks import ATTACKS, attack_accuracy, check_eps, pgd_ascent, random_start
from bench.config import AttackConfig, EvalConfig, TrainConfig
from bench.data import ImageData, augment, to_float
from bench.errors import BenchError
from bench.io import atomic_save, load_checkpoint
from bench.tracking import NO_TRACKING, Tracker
from methods.base import Batch, Method


def make_optimizer(params, cfg: TrainConfig):
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    else:
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.gamma)
    return opt, sched


def adversarial_examples(method: Method, batch: Batch, cfg: AttackConfig) -> torch.Tensor:
    """Run the method's declared inner maximisation with the suite's eps/step/steps."""
    inner = method.inner
    student = batch.student
    student.train(inner.student_mode == "train")
    x_init = None
    if batch.shard is not None:  # the global batch's random start (one draw, as in one process), our rows
        x_init = random_start(batch.shard.x, cfg.eps, inner.start, norm=cfg.norm)[batch.shard.part]
    try:
        return pgd_ascent(lambda xa: method.inner_objective(batch, xa), batch.x, cfg.eps,
                          cfg.step_ratio * cfg.eps, cfg.steps, inner.start, x_init=x_init, norm=cfg.norm)
    finally:
        student.train(True)


def validation_accuracy(model: nn.Module, val: tuple[torch.Tensor, torch.Tensor], eps: float,
                        norm: str = "Linf", batch_size: int = EvalConfig.batch_size) -> float:
    """PGD-20 accuracy on the held-out validation split (the checkpoint criterion; never the test set),
    in batches of the evaluation's default size, all drawing on one random stream (seed 0)."""
    was_training = model.training
    model.eval()
    x, y = to_float(val[0]), val[1]
    g = torch.Generator().manual_seed(0)
    acc = float(attack_accuracy(model, x, y, ATTACKS.get("pgd20"), eps, batch_size, lambda _: g, norm).float().mean())
    model.train(was_training)
    return acc


def train_model(student: nn.Module, method: Method, data: ImageData, train_cfg: TrainConfig,
                attack_cfg: AttackConfig, teacher: nn.Module | None, run_dir: Path,
                device: torch.device, bf16: bool = False, desc: str = "train",
                val: tuple[torch.Tensor, torch.Tensor] | None = None, tracker: Tracker = NO_TRACKING) -> list[dict]:
    """Train ``student`` in place; a checkpoint per epoch in run_dir makes the run resumable.

    With ``val`` (uint8 images, labels) the weights of the epoch with the best validation PGD-20
    accuracy are kept (checkpoint policy best-val); otherwise the last epoch's. ``tracker``
    (``bench.tracking``) gets each trained epoch's log row.
    Returns the per-epoch log (also written to run_dir/log.jsonl).

    Under torchrun every rank runs this with the same seed: each takes its rows of every global
    batch (``bench.distributed.Shard``), gradients are averaged over ranks after backward, and only
    rank 0 writes checkpoints and the log. The global batch and the learning rate are the config's.
    """
    check_eps(attack_cfg.eps, attack_cfg.norm, data.x_train[0].numel())  # before any epoch
    extra = method.modules()
    if extra is not None:
        extra.to(device)
    params = list(student.parameters()) + (list(extra.parameters()) if extra is not None else [])
    ddp = distributed.active()
    main = distributed.is_main()
    distributed.broadcast_state(student)
    if extra is not None:
        distributed.broadcast_state(extra)
    opt, sched = make_optimizer(params, train_cfg)
    if teacher is not None:
        teacher.eval()
    ckpt_path, log_path = run_dir / "checkpoint.pt", run_dir / "log.jsonl"
    history: list[dict] = []
    start_epoch = 0
    best: dict = {"score": -1.0, "epoch": 0, "state": None}
    if distributed.broadcast_object(ckpt_path.exists() if main else None):  # resume where the last run stopped
        # (under torchrun rank 0 decides, and every rank reads rank 0's checkpoint: one shared folder)
        state = load_checkpoint(ckpt_path)
        student.load_state_dict(state["student"])
        if extra is not None:
            extra.load_state_dict(state["extra"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        if torch.cuda.is_available() and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        start_epoch = int(state["epoch"]) + 1
        history = json.loads(state["history"])
        best = state.get("best", best)

    n = len(data.y_train)
    bs = train_cfg.batch_size
    steps_per_epoch = math.ceil(n / bs)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if bf16 and device.type == "cuda"
                else contextlib.nullcontext())
    for epoch in range(start_epoch, train_cfg.epochs):
        student.train()
        perm = torch.randperm(n).to(device)
        # Running sums stay on the device (float64, as Python floats would be): reading them forces a
        # GPU sync, so the bar reads them at most once a second and the log once an epoch.
        sums: dict[str, torch.Tensor] = {}
        seen, t0, shown = 0, time.perf_counter(), 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"{desc} {epoch + 1}/{train_cfg.epochs}", leave=False,
                   mininterval=1.0, disable=None)
        for i in bar:
            idx = perm[i * bs:(i + 1) * bs]
            x = to_float(augment(data.x_train[idx], data.pad, data.flip)).contiguous(
                memory_format=torch.channels_last)
            y, shard = data.y_train[idx], None
            if ddp:  # every rank drew the global batch; it trains on its own rows
                shard = distributed.Shard.of(x, y, idx)
                x, y, idx = x[shard.part], y[shard.part], idx[shard.part]
            batch = Batch(x, y, idx, student, teacher, epoch, shard=shard)
            with autocast:
                x_adv = adversarial_examples(method, batch, attack_cfg) if method.inner else None
                terms = method.losses(batch, x_adv)
                loss = sum(terms.values())
            opt.zero_grad(set_to_none=True)
            (loss * shard.weight if ddp else loss).backward()
            distributed.average_gradients(params)
            opt.step()
            seen += len(idx)
            for k, v in (*terms.items(), ("loss", loss)):
                sums[k] = sums.get(k, 0.0) + v.detach().double() * len(idx)
            now = time.perf_counter()
            if not bar.disable and now - shown >= 1.0:
                shown = now
                bar.set_postfix({k: f"{float(v) / seen:.3f}" for k, v in sums.items()} |
                                {"img/s": f"{seen / (now - t0):.0f}"})
        epoch_lr = opt.param_groups[0]["lr"]  # the rate this epoch trained at (before the step)
        sched.step()
        if ddp:  # the log holds the global batch's means; batch-norm statistics are rank 0's (as DDP)
            sums = {k: distributed.all_reduce_sum(v) for k, v in sums.items()}
            seen = int(distributed.all_reduce_sum(torch.tensor(float(seen), device=device)))
            distributed.broadcast_state(student)
            if extra is not None:
                distributed.broadcast_state(extra)
        sums = {k: float(v) for k, v in sums.items()}
        if not all(math.isfinite(v) for v in sums.values()):
            raise BenchError(f"{desc}: training diverged, loss is not finite at epoch {epoch + 1} "
                             f"({', '.join(f'{k} {v / seen:.3g}' for k, v in sums.items())}); lower --lr")
        elapsed = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "lr": epoch_lr, "seconds": round(elapsed, 3),
               "images_per_s": round(seen / elapsed, 1), **{k: v / seen for k, v in sums.items()}}
        if val is not None:
            row["val_pgd20"] = validation_accuracy(student, val, attack_cfg.eps, attack_cfg.norm)
            if row["val_pgd20"] > best["score"]:
                best = {"score": row["val_pgd20"], "epoch": epoch + 1,
                        "state": {k: v.detach().clone() for k, v in student.state_dict().items()}}
        history.append(row)
        if not main:
            continue
        if bar.disable:  # no terminal (a cluster job's log): one line per epoch instead of a bar
            print(f"{desc} epoch {epoch + 1}/{train_cfg.epochs}: " + ", ".join(
                f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "seconds")), file=sys.stderr, flush=True)
        tracker.epoch(row)  # before the checkpoint: an epoch trained again after a kill replaces its events
        atomic_save({"student": student.state_dict(),
                     "extra": extra.state_dict() if extra is not None else {},
                     "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "rng": torch.get_rng_state(),
                     "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                     "epoch": epoch, "history": json.dumps(history),
                     "best": best}, ckpt_path)
        with open(log_path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
    if val is not None and best["state"] is not None:
        student.load_state_dict(best["state"])
    student.eval()
    return history
