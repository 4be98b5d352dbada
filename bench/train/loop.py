"""The training loop: one loop for every method, which only sums the method's loss terms."""
from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn
from tqdm import tqdm

from bench.attacks.ascent import pgd_ascent
from bench.attacks.threat import check_eps, random_start
from bench.common import distributed
from bench.common.errors import BenchError
from bench.common.io import atomic_save, load_checkpoint
from bench.common.log import log
from bench.common.precision import autocast, ieee_fp32, resolve_precision
from bench.config.schema import FLOPS_KEY, AttackConfig, TrainConfig
from bench.data.images import HostImages, ImageData, augment, to_float
from bench.train.cost import StepFlops
from bench.train.selection import Selection, also_key, fair_score
from bench.train.tracking import NO_TRACKING, Tracker
from bench.methods.base import Batch, EpochEnd, Method

LAST = "last.pt"   # a best-* policy's run keeps the last epoch's weights here (model.pt: the selected ones)


def make_optimizer(params, cfg: TrainConfig):
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                          nesterov=cfg.nesterov)
    if cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    else:
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.gamma)
    return opt, sched


@contextlib.contextmanager
def frozen(*modules: nn.Module | None):
    """Parameters of ``modules`` out of autograd while the attack takes input gradients: the backward then
    skips what only weight gradients need (the input gradient is the same, bit for bit)."""
    params = [p for m in modules if m is not None for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@contextlib.contextmanager
def compiled(*models: nn.Module | None):
    """``torch.compile`` of each model's ``features`` (its forward is ``head(features(x))``) for the
    duration; the state_dict keeps its names and the plain method comes back afterwards."""
    models = [m for m in models if m is not None and "features" not in vars(m)]
    for m in models:
        m.features = torch.compile(m.features)
    try:
        yield
    finally:
        for m in models:
            del m.features


def adversarial_examples(method: Method, batch: Batch, cfg: AttackConfig) -> torch.Tensor:
    """Run the method's declared inner maximisation with the suite's eps/step/steps, its random start
    drawn from the batch's generator (the run's stream on the device)."""
    inner = method.inner
    student = batch.student
    student.train(inner.student_mode == "train")
    eps, step = method.attack_radius(cfg.eps, cfg.step_ratio * cfg.eps)
    x_init = None
    if batch.shard is not None:  # the global batch's random start (one draw, as in one process), our rows
        x_init = random_start(batch.shard.x, eps, inner.start, batch.generator, norm=cfg.norm)[batch.shard.part]
    try:
        with frozen(student, method.modules(), *(n.module for n in method.networks().values())):
            return pgd_ascent(lambda xa: method.inner_objective(batch, xa), batch.x, eps, step, cfg.steps,
                              inner.start, batch.generator, x_init=x_init, norm=cfg.norm)
    finally:
        student.train(True)


def train_model(student: nn.Module, method: Method, data: ImageData, train_cfg: TrainConfig,
                attack_cfg: AttackConfig, teacher: nn.Module | None, run_dir: Path,
                device: torch.device, precision: str = "fp32", desc: str = "train",
                selection: Selection | None = None, tracker: Tracker = NO_TRACKING,
                seed: int = 0, compile: bool = False, teachers: dict[str, nn.Module] | None = None) -> list[dict]:
    """Train ``student`` in place; a checkpoint per epoch in run_dir makes the run resumable.

    With a ``selection`` (``bench.train.selection``: a best-* policy and its images) each epoch is scored
    (the log's ``selection.key`` column), the last epoch's weights are written to run_dir/LAST and the
    student ends with the best epoch's (the first best); otherwise with the last epoch's. ``tracker``
    (``bench.train.tracking``) gets each trained epoch's log row.
    Returns the per-epoch log (also written to run_dir/log.jsonl).

    The method's further ``teachers`` (by role) reach it in every batch; its further networks
    (``Method.networks``) train with their own optimisers and schedules from the same backward; its
    ``state`` and ``end_epoch`` hook are kept and called here and checkpointed with the rest. With
    ``train_cfg.swa_start`` the run's model is the stochastic weight average from that epoch on
    (torch.optim.swa_utils: equal-weight mean of the end-of-epoch weights, batch-norm statistics
    re-estimated on the training images, augmented, after each snapshot); the selection scores it.

    The step is built for the device: batch order, augmentation, attack starts and the methods' own draws
    come from one generator on ``device`` seeded with ``seed`` (no per-step host-to-device copies; the
    same seed gives the same numbers on one device); ``precision`` (resolved by ``resolve_precision``)
    "bf16" runs the attack and the loss under bf16 autocast; ``compile`` wraps the student's and the
    teacher's ``features`` in ``torch.compile``; the teacher's clean outputs are computed once per batch
    (``bench.methods.base.Batch``); nothing in the step reads a device value back to the host (on a terminal
    the progress bar does, at most once a second).

    Under torchrun every rank runs this with the same seed: each takes its rows of every global
    batch (``bench.common.distributed.Shard``), gradients are averaged over ranks after backward, and only
    rank 0 writes checkpoints and the log. The global batch and the learning rate are the config's.
    """
    check_eps(attack_cfg.eps, attack_cfg.norm, data.x_train[0].numel())  # before any epoch
    if train_cfg.swa_start is not None and not 0 <= train_cfg.swa_start < train_cfg.epochs:
        raise BenchError(f"{desc}: train.swa_start={train_cfg.swa_start} is not an epoch of the run "
                         f"(0-based, below {train_cfg.epochs})")
    precision = resolve_precision(precision, device)
    loop = _make_loop(student, method, data, train_cfg, attack_cfg, teacher, run_dir, device, precision, desc,
                      selection, tracker, seed, teachers)
    _resume(loop, desc)
    # fp32 on CUDA: IEEE fp32 for the backward passes too (autocast covers only the forward)
    exact = ieee_fp32() if precision == "fp32" and torch.device(device).type == "cuda" else contextlib.nullcontext()
    with compiled(student, teacher) if compile else contextlib.nullcontext(), exact:
        for epoch in range(loop.start_epoch, train_cfg.epochs):
            loop.epoch(epoch)
    _finish(loop, student, selection, run_dir)
    return loop.history


def _make_loop(student, method, data, train_cfg, attack_cfg, teacher, run_dir, device, precision, desc, selection,
               tracker, seed, teachers) -> "_Loop":
    """The loop before its first epoch: every network on the device and equal across ranks, the
    optimisers and schedules, the teachers in eval mode, the run's generator seeded."""
    extra = method.modules()
    if extra is not None:
        extra.to(device)
    params = list(student.parameters()) + (list(extra.parameters()) if extra is not None else [])
    networks = {name: net.module.to(device) for name, net in method.networks().items()}
    for module in (student, extra, *networks.values()):
        if module is not None:
            distributed.broadcast_state(module)
    opt, sched = make_optimizer(params, train_cfg)
    # a further network: its own optimiser and schedule (the run's, with the fields it changes)
    net_opts = {name: make_optimizer(net.module.parameters(), replace(train_cfg, **net.train))
                for name, net in method.networks().items()}
    for t in (teacher, *(teachers or {}).values()):
        if t is not None:
            t.eval()
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    loop = _Loop(student, method, extra, params, opt, sched, data, train_cfg, attack_cfg, teacher, device,
                 precision, generator, run_dir, desc, selection, tracker)
    loop.teachers, loop.networks, loop.net_opts = dict(teachers or {}), networks, net_opts
    loop.all_params = params + [p for m in networks.values() for p in m.parameters()]
    loop.swa = AveragedModel(student) if train_cfg.swa_start is not None else None
    return loop


def _resume(loop: "_Loop", desc: str) -> None:
    """Continue where the last run stopped (under torchrun rank 0 decides, and every rank reads rank
    0's checkpoint: one shared folder); a damaged checkpoint means training from the first epoch."""
    if not distributed.broadcast_object(loop.ckpt_path.exists() if distributed.is_main() else None):
        return
    try:
        state = load_checkpoint(loop.ckpt_path)
    except BenchError:  # truncated by a full disk or a copy: training from the start derives it again
        log(f"{loop.ckpt_path} is damaged: training {desc} from the first epoch again")
        return
    loop.resume(state)


def _finish(loop: "_Loop", student: nn.Module, selection, run_dir: Path) -> None:
    """The run's model in ``student`` (the SWA average, or the selected epoch's weights) and the
    further checkpoints on disk."""
    main = distributed.is_main()
    if loop.swa is not None and loop.swa.n_averaged > 0:  # the average is the run's model
        student.load_state_dict(loop.swa.module.state_dict())
    if selection is not None and main:   # further checkpoints a script keeps: evaluated beside the best
        for name, kept in loop.also.items():
            if kept["state"] is not None:
                atomic_save(kept["state"], run_dir / f"{name}.pt")
    if selection is not None and loop.best["state"] is not None:
        if main:  # the last epoch's weights stay on disk: the report evaluates them beside the best
            atomic_save(student.state_dict(), run_dir / LAST)
        student.load_state_dict(loop.best["state"])
    student.eval()


class _Loop:
    """``train_model``'s state between epochs (what a checkpoint holds) and one epoch of training."""

    def __init__(self, student, method, extra, params, opt, sched, data, train_cfg, attack_cfg, teacher, device,
                 precision, generator, run_dir, desc, selection, tracker):
        self.student, self.method, self.extra, self.params, self.opt, self.sched = (
            student, method, extra, params, opt, sched)
        self.data, self.train_cfg, self.attack_cfg, self.teacher, self.device = (
            data, train_cfg, attack_cfg, teacher, device)
        self.precision, self.generator, self.desc, self.selection, self.tracker = (
            precision, generator, desc, selection, tracker)
        self.ckpt_path, self.log_path = run_dir / "checkpoint.pt", run_dir / "log.jsonl"
        self.history: list[dict] = []
        self.start_epoch = 0
        self.best: dict = {"score": -1.0, "epoch": 0, "state": None}
        self.also: dict[str, dict] = {}   # further kept checkpoints (Selection.also), as ``best``
        self.teachers: dict[str, nn.Module] = {}
        self.networks: dict[str, nn.Module] = {}
        self.net_opts: dict[str, tuple] = {}
        self.all_params = params
        self.swa: AveragedModel | None = None

    def state(self, epoch: int) -> dict:
        """What a checkpoint holds after ``epoch``."""
        return {"student": self.student.state_dict(),
                "extra": self.extra.state_dict() if self.extra is not None else {},
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "networks": {k: m.state_dict() for k, m in self.networks.items()},
                "network_optimizers": {k: (o.state_dict(), s.state_dict()) for k, (o, s) in self.net_opts.items()},
                "method_state": self.method.state_dict(),
                "swa": self.swa.state_dict() if self.swa is not None else {},
                "generator": self.generator.get_state(), "epoch": epoch,
                "history": json.dumps(self.history), "best": self.best, "also": self.also}

    def resume(self, state: dict) -> None:
        self.student.load_state_dict(state["student"])
        if self.extra is not None:
            self.extra.load_state_dict(state["extra"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        for k, m in self.networks.items():
            m.load_state_dict(state["networks"][k])
            o, s = self.net_opts[k]
            o.load_state_dict(state["network_optimizers"][k][0])
            s.load_state_dict(state["network_optimizers"][k][1])
        self.method.load_state_dict(state.get("method_state", {}))
        if self.swa is not None:
            self.swa.load_state_dict(state["swa"])
        self.generator.set_state(state["generator"])
        self.start_epoch = int(state["epoch"]) + 1
        self.history = json.loads(state["history"])
        self.best = state.get("best", self.best)
        self.also = state.get("also", self.also)

    def epoch(self, epoch: int) -> None:
        """Train one epoch, then log it, track it and checkpoint it (rank 0)."""
        cfg = self.train_cfg
        self.student.train()
        for m in self.networks.values():
            m.train()
        lr_scale = self.opt.param_groups[0]["lr"] / cfg.lr
        n, bs = len(self.data.y_train), cfg.batch_size
        perm = torch.randperm(n, generator=self.generator, device=self.device)
        # images in host memory are indexed on the host: the order is read back once an epoch, not every step
        order = perm.cpu() if isinstance(self.data.x_train, HostImages) else perm
        # Running sums stay on the device (float64, as Python floats would be): reading them forces a
        # GPU sync, so the bar reads them at most once a second and the log once an epoch.
        sums: dict[str, torch.Tensor] = {}
        seen, t0, shown = 0, time.perf_counter(), 0.0
        step_flops = None
        bar = tqdm(range(math.ceil(n / bs)), desc=f"{self.desc} {epoch + 1}/{cfg.epochs}", leave=False,
                   mininterval=1.0, disable=None)
        for i in bar:
            batch = self._batch(perm[i * bs:(i + 1) * bs], order[i * bs:(i + 1) * bs], epoch, lr_scale)
            # the run's first step is counted (torch.utils.flop_counter); counting changes no number
            terms, loss, flops = self._step(batch, count=epoch == 0 and i == 0)
            step_flops = flops if flops is not None else step_flops
            seen += len(batch.idx)
            for k, v in (*terms.items(), ("loss", loss)):
                sums[k] = sums.get(k, 0.0) + v.detach().double() * len(batch.idx)
            now = time.perf_counter()
            if not bar.disable and now - shown >= 1.0:
                shown = now
                bar.set_postfix({k: f"{float(v) / seen:.3f}" for k, v in sums.items()} |
                                {"img/s": f"{seen / (now - t0):.0f}"})
        epoch_lr = self.opt.param_groups[0]["lr"]  # the rate this epoch trained at (before the step)
        sums, seen, model = self._end_epoch(epoch, sums, seen)
        row = self._row(epoch, epoch_lr, sums, seen, t0, step_flops)
        if self.selection is not None and self.selection.scores_epoch(epoch + 1):
            self._score(epoch, model, row)
        self.history.append(row)
        if distributed.is_main():
            self._write(epoch, row, one_line=bar.disable)

    def _batch(self, idx: torch.Tensor, rows: torch.Tensor, epoch: int, lr_scale: float) -> Batch:
        """The step's batch: the images ``rows`` augmented; under torchrun every rank drew the global
        batch and trains on its own rows."""
        data = self.data
        x = to_float(augment(data.x_train[rows], data.pad, data.flip, self.generator)).contiguous(
            memory_format=torch.channels_last)
        y, shard = data.y_train[idx], None
        if distributed.active():
            shard = distributed.Shard.of(x, y, idx)
            distributed.broadcast_buffers(self.student)  # rank 0's batch-norm statistics, as DDP before a forward
            x, y, idx = x[shard.part], y[shard.part], idx[shard.part]
        return Batch(x, y, idx, self.student, self.teacher, epoch, shard=shard, generator=self.generator,
                     teachers=self.teachers, lr_scale=lr_scale)

    def _step(self, batch: Batch, count: bool) -> tuple[dict, torch.Tensor, float | None]:
        """One optimisation step: the method's attack and loss terms, backward, gradients averaged over
        ranks, every optimiser stepped. (terms, their sum, FLOPs per image where ``count``)."""
        method = self.method
        counter = StepFlops() if count else contextlib.nullcontext()
        with counter:
            with autocast(self.precision, self.device):
                x_adv = adversarial_examples(method, batch, self.attack_cfg) if method.inner else None
                terms = method.losses(batch, x_adv)
                loss = sum(terms.values())
            opts = [self.opt, *(o for o, _ in self.net_opts.values())]
            for o in opts:
                o.zero_grad(set_to_none=True)
            (loss * batch.shard.weight if batch.shard is not None else loss).backward()
        flops = counter.get_total_flops() / len(batch.idx) if isinstance(counter, StepFlops) else None
        distributed.average_gradients(self.all_params)
        for o in opts:
            o.step()
        return terms, loss, flops

    def _end_epoch(self, epoch: int, sums: dict, seen: int) -> tuple[dict, int, nn.Module]:
        """Schedules stepped, the method's epoch-end hook, ranks made equal, the SWA snapshot; the
        global sums and count, and the model the epoch is scored on."""
        cfg, method = self.train_cfg, self.method
        self.sched.step()
        for _, s in self.net_opts.values():
            s.step()
        method.end_epoch(EpochEnd(epoch, self.opt.param_groups[0]["lr"] / cfg.lr, distributed.all_reduce_sum))
        if distributed.active():  # the log holds the global batch's means; batch-norm statistics are rank 0's
            sums = {k: distributed.all_reduce_sum(v) for k, v in sums.items()}
            seen = int(distributed.all_reduce_sum(torch.tensor(float(seen), device=self.device)))
            for module in (self.student, self.extra, *self.networks.values()):
                if module is not None:
                    distributed.broadcast_state(module)
            method.load_state_dict(distributed.broadcast_object(method.state_dict() if distributed.is_main() else None))
        model = self.student
        if self.swa is not None and epoch >= cfg.swa_start:
            self.swa.update_parameters(self.student)
            update_bn(self._bn_batches(), self.swa.module)
            model = self.swa.module
        return sums, seen, model

    def _row(self, epoch: int, lr: float, sums: dict, seen: int, t0: float, step_flops: float | None) -> dict:
        """The epoch's log row (bench.config.schema.LOG_COLUMNS and the loss terms); a loss that is not
        finite ends the run in one line."""
        sums = {k: float(v) for k, v in sums.items()}
        if not all(math.isfinite(v) for v in sums.values()):
            raise BenchError(f"{self.desc}: training diverged, loss is not finite at epoch {epoch + 1} "
                             f"({', '.join(f'{k} {v / seen:.3g}' for k, v in sums.items())}); lower --lr")
        elapsed = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "lr": lr, "seconds": round(elapsed, 3),
               "images_per_s": round(seen / elapsed, 1), **{k: v / seen for k, v in sums.items()}}
        if step_flops is not None:
            row[FLOPS_KEY] = float(step_flops)
        if self.swa is not None:
            row["swa_snapshots"] = int(self.swa.n_averaged)
        return row

    def _write(self, epoch: int, row: dict, one_line: bool) -> None:
        """Rank 0: the row to the tracker, the checkpoint, the log file (and stderr without a terminal)."""
        if one_line:  # no terminal (a cluster job's log): one line per epoch instead of a bar
            print(f"{self.desc} epoch {epoch + 1}/{self.train_cfg.epochs}: " + ", ".join(
                f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "seconds")), file=sys.stderr, flush=True)
        self.tracker.epoch(row)  # before the checkpoint: an epoch trained again after a kill replaces its events
        atomic_save(self.state(epoch), self.ckpt_path)
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(row) + "\n")

    def _score(self, epoch: int, model: nn.Module, row: dict) -> None:
        """The selection's scores of this epoch into ``row``, each kept checkpoint updated on a strict gain
        (the first best stays). Under SWA the policy's candidates are the averages, from ``swa_start``."""
        sel, eps, norm = self.selection, self.attack_cfg.eps, self.attack_cfg.norm
        if self.swa is None or epoch >= self.train_cfg.swa_start:
            ok = sel.correct(model, eps, norm)
            row[sel.key] = float(ok.float().mean())
            self._keep("best", row[sel.key], epoch, model)
            if "fair-best" in sel.also:
                row[also_key("fair-best", sel.key)] = fair_score(ok, sel.y)
                self._keep("fair-best", row[also_key("fair-best", sel.key)], epoch, model)
        if "plain-best" in sel.also:
            plain = row.get(sel.key) if self.swa is None else sel.score(self.student, eps, norm)
            row[also_key("plain-best", sel.key)] = plain
            self._keep("plain-best", plain, epoch, self.student)

    def _keep(self, name: str, score: float, epoch: int, model: nn.Module) -> None:
        kept = self.best if name == "best" else self.also.setdefault(name, {"score": -1.0, "epoch": 0, "state": None})
        if score > kept["score"]:
            kept.update(score=score, epoch=epoch + 1,
                        state={k: v.detach().clone() for k, v in model.state_dict().items()})

    def _bn_batches(self):
        """The training images, augmented and in the run's stream's order, batch by batch: what the
        average's batch-norm statistics are re-estimated on (as PeerAiD's bn_update runs its train loader)."""
        data, bs = self.data, self.train_cfg.batch_size
        n = len(data.y_train)
        perm = torch.randperm(n, generator=self.generator, device=self.device)
        order = perm.cpu() if isinstance(data.x_train, HostImages) else perm
        for i in range(math.ceil(n / bs)):
            yield to_float(augment(data.x_train[order[i * bs:(i + 1) * bs]], data.pad, data.flip,
                                   self.generator)).contiguous(memory_format=torch.channels_last)
