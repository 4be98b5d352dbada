"""Experiment tracking: TensorBoard event files per run, kept apart from a run's identity.

A tracker gets one call per trained epoch (``epoch``, from ``bench.train.loop.train_model``) and one when
the run's evaluation is done (``final``, from ``bench.runs.orchestrate``). The default ``Tracker`` does nothing.
``--tensorboard DIR`` writes ``DIR/RUNSET/RUN_ID/`` (one folder per run, teacher rows included), so
``tensorboard --logdir DIR`` puts methods and seeds side by side. Where the files go is not part of
the config: tracking changes no number, so run ids and evaluation keys are the same without it.

Resumption: a process writes its epochs to its own event file, opened at its first epoch with
``purge_step`` = that epoch, so TensorBoard drops anything an interrupted process logged from that
epoch on (the epochs it is about to train again): each epoch shows once. The final metrics and the
hyper-parameters go to a file of their own (suffix ``.final``, which tells whether a run folder still
lacks them: ``Tracking.backfill`` logs a finished run trained without tracking), at the last epoch's
step and purging from it, so a re-evaluation (new evaluation settings or code) replaces them.

Hyper-parameters are written as the hparams plugin's session start/end summaries in the run's own
folder (not ``SummaryWriter.add_hparams``, which writes a timestamped subfolder); no experiment
summary is written, so the plugin takes the union of every run's hyper-parameters as its columns.
"""
from __future__ import annotations

import sys
from pathlib import Path

from bench.common import distributed

EVENTS = "events.out.tfevents."
FINAL = ".final"               # suffix of the event file holding a run's final metrics and hparams
INSTALL = "pip install tensorboard (or bench's extra: pip install -e '.[tensorboard]')"
ROW_TAGS = {"lr": "train/lr", "images_per_s": "train/images_per_s", "seconds": "train/epoch_seconds",
            "loss": "loss/total", "train_flops_per_image": "train/flops_per_image"}   # every other number of a log row is a loss term, "val_*" validation
NOT_LOGGED = ("epoch",)            # the step itself


class Tracker:
    """The interface, and the default: tracks nothing."""
    logdir: Path | None = None

    def epoch(self, row: dict) -> None:
        """One trained epoch's log row (``bench.train.loop``'s: epoch, lr, seconds, images_per_s, loss terms)."""

    def final(self, record, history: list[dict] | None = None) -> None:
        """The run's final metrics and hyper-parameters, from its record (``bench.records.record.RunRecord``);
        ``history``: its per-epoch log where the record does not hold it (a teacher's)."""

    def close(self) -> None:
        """Flush and close what is open."""


NO_TRACKING = Tracker()


def row_tag(key: str) -> str | None:
    """The TensorBoard tag of a log-row key, or None for keys that are not scalars to plot."""
    if key in NOT_LOGGED:
        return None
    if key.startswith("val_"):
        return f"val/{key[len('val_'):]}"
    return ROW_TAGS.get(key, f"loss/{key}")


def run_hparams(record) -> dict:
    """The hyper-parameters that tell runs apart: method and options, seed, schedule, threat model,
    architecture, teacher. A teacher row's schedule is its own (none for a zoo or file teacher)."""
    cfg = record.config
    train = cfg["train"] if record.role == "student" else cfg["teacher"].get("train")
    hp = {"role": record.role, "method": record.method,
          "options": ",".join(f"{k}={v}" for k, v in sorted(record.options.items())),
          "seed": record.seed, "arch": record.arch, "eps": cfg["eval"]["eps"], "train_eps": cfg["attack"]["eps"],
          "teacher": record.teacher_id or ""}
    if train:
        hp |= {"epochs": train["epochs"], "lr": train["lr"], "batch": train["batch_size"]}
    return hp


def final_metrics(record) -> dict[str, float]:
    """Every evaluated accuracy: the protocol's attacks, then each transfer target's."""
    out = {f"metrics/{k}": float(v) for k, v in record.metrics.items()}
    for target, t in record.transfer.items():
        out |= {f"transfer/{target}/{k}": float(v) for k, v in t["metrics"].items()}
    return out


class TensorBoardTracker(Tracker):
    """Event files in ``logdir`` through ``torch.utils.tensorboard.SummaryWriter``."""

    def __init__(self, logdir: Path):
        self.logdir = Path(logdir)
        self._writer = None

    def epoch(self, row: dict) -> None:
        from torch.utils.tensorboard import SummaryWriter

        if self._writer is None:  # this process's first epoch: hide what a killed one logged from here on
            self._writer = SummaryWriter(str(self.logdir), purge_step=int(row["epoch"]))
        _add_row(self._writer, row)
        self._writer.flush()  # once an epoch: a killed run keeps every epoch it logged

    def final(self, record, history: list[dict] | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.close()
        history = record.history if history is None else history
        step = int(history[-1]["epoch"]) if history else 0
        metrics = final_metrics(record)
        _, start, end = hparams(run_hparams(record), metrics)
        # at the last epoch's step, purging from it: a re-evaluation replaces the earlier final metrics
        # (and writes the last epoch's row again, which that purge removes too)
        with SummaryWriter(str(self.logdir), filename_suffix=FINAL, purge_step=step) as w:
            if history:
                _add_row(w, history[-1])
            for tag, value in metrics.items():
                w.add_scalar(tag, value, step)
            w.file_writer.add_summary(start, step)
            w.file_writer.add_summary(end, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _add_row(writer, row: dict) -> None:
    for key, value in row.items():
        tag = row_tag(key)
        if tag is not None:
            writer.add_scalar(tag, float(value), int(row["epoch"]))


def _has(logdir: Path, suffix: str = "") -> bool:
    return logdir.is_dir() and any(p.name.startswith(EVENTS) and p.name.endswith(suffix) for p in logdir.iterdir())


class Tracking:
    """Where a run-set's trackers write (``root/RUN_ID``), or nowhere (``root`` None). Under torchrun
    only rank 0 writes."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else None

    def open(self, run_id: str) -> Tracker:
        if self.root is None or not distributed.is_main():
            return NO_TRACKING
        return TensorBoardTracker(self.root / run_id)

    def facts(self, run_id: str) -> dict:
        """What the run's record says about its tracking (where its event files are)."""
        return {"tensorboard": str(self.root / run_id)} if self.root is not None else {}

    def log_finished(self, record, history: list[dict]) -> None:
        """A run trained elsewhere or earlier (a teacher, a run trained without tracking): its epochs,
        then its final metrics."""
        tracker = self.open(record.run_id)
        for row in history:
            tracker.epoch(row)
        tracker.final(record, history)

    def backfill(self, record, history: list[dict] | None = None) -> None:
        """Log a reused run only where its folder lacks it: its epochs if it holds no event file, its
        final metrics if it holds no final file."""
        tracker = self.open(record.run_id)
        if tracker.logdir is None or _has(tracker.logdir, FINAL):
            return
        history = record.history if history is None else history
        if not _has(tracker.logdir):
            self.log_finished(record, history)
        else:
            tracker.final(record, history)


def tracking_for(root: Path | str | None, runset: str) -> Tracking:
    """``--tensorboard DIR`` for a run-set; without the tensorboard package, one line and no tracking
    (tracking changes no number, so the run goes on)."""
    if root is None:
        return Tracking()
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (needs the tensorboard package)
    except ImportError:
        if distributed.is_main():
            print(f"bench: --tensorboard needs the tensorboard package: {INSTALL}; this run goes on without "
                  "tracking", file=sys.stderr, flush=True)
        return Tracking()
    return Tracking(Path(root) / runset)
