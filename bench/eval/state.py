"""An evaluation's resumable per-batch state: one small JSON file per (attack, batch) in a state
folder, each batch's own random stream, round-robin shards, and the white-box attack loop that
reads and fills it. A killed evaluation resumes with the very same numbers."""
from __future__ import annotations

import json
import shutil
import time
import zlib
from pathlib import Path
from typing import Callable, TypeVar

import torch
from torch import nn
from tqdm import tqdm

from bench.attacks.ascent import AttackSpec, attack_accuracy
from bench.common import distributed
from bench.common.io import atomic_write_json
from bench.common.log import log

EVAL_STATE = "eval-state"   # beside a record: the per-batch results of an unfinished evaluation
T = TypeVar("T")


def evaluate_and_keep(folder: Path | None, key: str, passes: Callable[[Path | None, tuple | None], dict],
                      keep: Callable[[dict], T]) -> T:
    """The one sequence every evaluation that writes a record follows. ``passes(state, shard)`` evaluates
    into the state folder ``folder/EVAL_STATE/key`` (``shard``: only that share of the batches).
    Under torchrun every rank first attacks its share; then rank 0 runs the whole pass (it finds those
    batches done: the merge), ``keep`` turns the result into what is written and returned, and the
    state goes (the record now holds every number). Every rank returns rank 0's value."""
    state = folder / EVAL_STATE / key if folder is not None else None
    shard = distributed.eval_shard()
    if shard is not None and state is not None:
        passes(state, shard)
        distributed.barrier()
    out = None
    if distributed.is_main():
        out = keep(passes(state, None))
        if folder is not None:
            shutil.rmtree(folder / EVAL_STATE, ignore_errors=True)
    return distributed.broadcast_object(out)


class EvalState:
    """Per-batch results on disk (one small JSON file per attack and batch), or nowhere."""

    def __init__(self, folder: Path | None):
        self.folder = Path(folder) if folder is not None else None

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str):
        if self.folder is None or not self._path(key).exists():
            return None
        try:
            return json.loads(self._path(key).read_text())
        except ValueError:  # cannot happen with atomic writes; recompute rather than trust it
            return None

    def put(self, key: str, value) -> None:
        if self.folder is not None:
            atomic_write_json(self._path(key), value)


def state_key(name: str, norm: str) -> str:
    """An attack's name in the state folder and its random streams: L-inf keeps the plain name (state
    written before L2 existed stays valid), another norm is another attack."""
    return name if norm == "Linf" else f"{name}-{norm}"


def batch_generator(seed: int, name: str, index: int) -> torch.Generator:
    """The random stream of one (attack, batch): the same wherever an evaluation is resumed."""
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}/{name}/{index}".encode()))


class Progress:
    """A tqdm bar (images/s) on a terminal; one log line per attack otherwise (cluster jobs)."""

    def __init__(self, desc: str, name: str, total: int):
        self.label, self.total, self.t0 = f"{desc}{name}", total, time.perf_counter()
        self.bar = tqdm(total=total, desc=self.label, unit="img", leave=False, disable=None, mininterval=1.0)

    def update(self, n: int) -> None:
        self.bar.update(n)

    def close(self, acc: float | None) -> float:
        self.bar.close()
        seconds = time.perf_counter() - self.t0
        if self.bar.disable and seconds >= 2.0:
            shown = f"{100 * acc:.1f} %" if acc is not None else "done"
            log(f"{self.label}: {shown} on {self.total} images, {seconds:.1f} s "
                 f"({self.total / max(seconds, 1e-9):.0f} img/s)")
        return seconds


def mine(index: int, shard: tuple[int, int] | None) -> bool:
    """Whether batch ``index`` belongs to ``shard`` = (i, k): batches are dealt round-robin."""
    return shard is None or index % shard[1] == shard[0]


class _Keyed:
    """The ``bench.attacks.ascent.BatchCache`` of one attack: its batches' entries in an EvalState."""

    def __init__(self, state: EvalState, key: str, device):
        self.state, self.key, self.device = state, key, device

    def get(self, index: int):
        stored = self.state.get(f"{self.key}-{index:05d}")
        return None if stored is None else torch.tensor(stored, dtype=torch.bool, device=self.device)

    def put(self, index: int, correct: torch.Tensor) -> None:
        self.state.put(f"{self.key}-{index:05d}", correct.tolist())


def attack_flags(model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec, eps: float,
                 batch_size: int, seed: int, key: str, state: EvalState, desc: str = "",
                 shard: tuple[int, int] | None = None, norm: str = "Linf") -> torch.Tensor:
    """Per-image correctness (bool) under a white-box attack, batch by batch, resumable. With
    ``shard``, only that shard's batches are attacked (and returned)."""
    progress = Progress(desc, key, len(x))
    out = attack_accuracy(model, x, y, spec, eps, batch_size, lambda index: batch_generator(seed, key, index), norm,
                          select=lambda index: mine(index, shard), cache=_Keyed(state, key, y.device),
                          on_batch=progress.update)
    progress.close(float(out.float().mean()) if len(out) else None)
    return out
