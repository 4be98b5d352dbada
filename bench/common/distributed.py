"""torchrun / DDP plumbing: which rank this process is, the process group, and collectives.

``torchrun --nproc-per-node N -m bench run ...`` starts N copies of the command; each reads RANK,
LOCAL_RANK and WORLD_SIZE from the environment torchrun sets. Outside torchrun every function here
is the single-process identity (rank 0 of 1), so the rest of the code needs no branch.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def backend(device: torch.device) -> str:
    """The process group's backend: NCCL when every rank on this node has a GPU of its own, gloo on
    CPU and when ranks share a GPU (NCCL refuses two ranks on one device); $BENCH_DIST_BACKEND overrides."""
    if os.environ.get("BENCH_DIST_BACKEND"):
        return os.environ["BENCH_DIST_BACKEND"]
    if device.type != "cuda":
        return "gloo"
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))
    return "nccl" if local_ranks <= torch.cuda.device_count() else "gloo"


def init(device: torch.device) -> torch.device:
    """Join torchrun's process group (``backend``) and return this rank's device: GPU LOCAL_RANK, or
    LOCAL_RANK modulo the GPUs when there are more ranks than GPUs."""
    if world_size() == 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % max(torch.cuda.device_count(), 1))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # long timeout: rank 0 may train a teacher while the others wait at a barrier
        dist.init_process_group(backend(device), timeout=timedelta(hours=12))
    return device


def barrier() -> None:
    if active():
        dist.barrier()


def eval_shard() -> tuple[int, int] | None:
    """This rank's share of an evaluation's batches under torchrun, else None (all of them)."""
    return (rank(), world_size()) if world_size() > 1 else None


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@dataclass
class Shard:
    """This rank's rows of a global training batch. Every rank draws the global batch's randomness
    (order, augmentation, attack start, memory-bank negatives) from the same generator state, so the
    ranks stay in step and together see exactly the batch a single process would."""
    x: torch.Tensor            # the global batch (all ranks), for draws made over the whole batch
    idx: torch.Tensor          # global indices into the training set
    y: torch.Tensor            # global labels
    part: slice                # this rank's rows
    sizes: tuple[int, ...]     # rows per rank

    @classmethod
    def of(cls, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> "Shard":
        n, w, r = len(idx), dist.get_world_size(), dist.get_rank()
        sizes = tuple(n // w + (1 if i < n % w else 0) for i in range(w))
        start = sum(sizes[:r])
        return cls(x, idx, y, slice(start, start + sizes[r]), sizes)

    @property
    def weight(self) -> float:
        """Scale of this rank's mean loss so that averaging gradients gives the global batch mean."""
        return len(self.sizes) * (self.part.stop - self.part.start) / sum(self.sizes)


class _Gather(torch.autograd.Function):
    """all_gather with a gradient: each rank gets back the sum over ranks of the gradients of its rows."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, sizes: tuple[int, ...]):
        ctx.sizes, ctx.rank = sizes, dist.get_rank()
        width = max(sizes)
        padded = torch.zeros((width, *t.shape[1:]), dtype=t.dtype, device=t.device)
        padded[:len(t)] = t
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([p[:s] for p, s in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[:ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None


def gather_rows(t: torch.Tensor, shard: Shard | None) -> torch.Tensor:
    """Every rank's rows of ``t`` in global-batch order (differentiable); ``t`` itself without a shard."""
    return t if shard is None else _Gather.apply(t, shard.sizes)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if active():
        t = t.clone()
        dist.all_reduce(t)
    return t


def broadcast_state(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (the start of training; BN statistics after an epoch)."""
    if not active():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def sync_batchnorm(model: torch.nn.Module, on: bool) -> torch.nn.Module:
    """A copy of ``model`` with SyncBatchNorm layers (statistics over the global batch) when ``on`` and
    several ranks train it, else ``model`` itself (PyTorch converts in place; the copy leaves ``model``
    as it was, with the same state_dict names)."""
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model)) if on and active() else model


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (batch-norm running statistics) on every rank, in one collective: what stock DDP
    (``broadcast_buffers=True``) does before each forward of the model it wraps. Called at the start of
    every training step, so an eval-mode attack on rank 1 sees the statistics one process would have,
    not statistics drifting from its own rows since the last epoch."""
    if not active():
        return
    # num_batches_tracked (integer) is left alone: every rank runs the same number of train-mode forwards
    bufs = [b for b in module.buffers() if b.is_floating_point()]
    if not bufs:
        return
    flat = torch.cat([b.reshape(-1) for b in bufs])
    dist.broadcast(flat, src=0)
    offset = 0
    for b in bufs:
        b.copy_(flat[offset:offset + b.numel()].view_as(b))
        offset += b.numel()


def average_gradients(params: list[torch.Tensor]) -> None:
    """Average gradients over ranks in one all-reduce (what DDP's reducer does, after backward).

    DistributedDataParallel itself needs every forward to go through its wrapper; here the inner
    maximisation runs the student many times per step (gradients w.r.t. the input only) and methods
    call ``features``/``head`` directly, so the one collective DDP would issue is issued here."""
    if not active():
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    # one flag per parameter rides along: a gradient that is None on every rank stays None (as in one
    # process, where the optimiser then skips the parameter: no weight decay, no momentum step). The
    # flags are read back only when this rank lacks a gradient: no host sync in the usual step.
    local = [p.grad is not None for p in params]
    like = {"dtype": grads[0].dtype, "device": grads[0].device}
    has = torch.ones(len(params), **like) if all(local) else torch.tensor(local, dtype=like["dtype"]).to(like["device"])
    flat = torch.cat([*(g.reshape(-1) for g in grads), has])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset, anywhere = 0, local if all(local) else [v > 0 for v in flat[-len(params):].tolist()]
    for p, g, used in zip(params, grads, anywhere):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p) if used else None
        offset += n
