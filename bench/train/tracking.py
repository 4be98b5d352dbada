"""Experiment tracking: TensorBoard event files and/or Weights & Biases runs, kept apart from a run's identity.

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

``--wandb PROJECT`` logs the same fields to Weights & Biases (the ``wandb`` extra): one W&B run per
bench run, named by its run id and grouped by run-set, the epochs' rows under the same tags at the epoch
as step, the final metrics in the run's summary and the hyper-parameters as its config. Its id is
derived from the project, run-set and run id, so a resumed process continues the same W&B run.

Hyper-parameters are written as the hparams plugin's session start/end summaries in the run's own
folder (not ``SummaryWriter.add_hparams``, which writes a timestamped subfolder); no experiment
summary is written, so the plugin takes the union of every run's hyper-parameters as its columns.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from bench.common import distributed

EVENTS = "events.out.tfevents."
FINAL = ".final"               # suffix of the event file holding a run's final metrics and hparams
INSTALL = "pip install tensorboard (or bench's extra: pip install -e '.[tensorboard]')"
WANDB_INSTALL = "pip install wandb (or bench's extra: pip install -e '.[wandb]')"
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
    for tag, value in row_scalars(row).items():
        writer.add_scalar(tag, value, int(row["epoch"]))


def _has(logdir: Path, suffix: str = "") -> bool:
    return logdir.is_dir() and any(p.name.startswith(EVENTS) and p.name.endswith(suffix) for p in logdir.iterdir())


def row_scalars(row: dict) -> dict[str, float]:
    """A log row as {tag: value}: what either tracker writes for one epoch."""
    return {tag: float(value) for key, value in row.items() if (tag := row_tag(key)) is not None}


class WandbTracker(Tracker):
    """One Weights & Biases run per bench run, with TensorBoardTracker's fields."""

    def __init__(self, project: str, runset: str, run_id: str):
        self.project, self.runset, self.run_id = project, runset, run_id
        self.logdir = None
        self._run = None

    @property
    def wandb_id(self) -> str:
        """Stable across processes (a resumed run continues its W&B run); W&B allows at most 64 chars."""
        return hashlib.sha256(f"{self.project}/{self.runset}/{self.run_id}".encode()).hexdigest()[:32]

    def _open(self):
        import wandb

        if self._run is None:
            self._run = wandb.init(project=self.project, group=self.runset, name=self.run_id, id=self.wandb_id,
                                   resume="allow", reinit=True)
        return self._run

    def epoch(self, row: dict) -> None:
        self._open().log(row_scalars(row), step=int(row["epoch"]))

    def final(self, record, history: list[dict] | None = None) -> None:
        run = self._open()
        run.config.update(run_hparams(record), allow_val_change=True)
        run.summary.update(final_metrics(record))
        self.close()

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


class Trackers(Tracker):
    """Several trackers as one (TensorBoard and W&B side by side)."""

    def __init__(self, trackers: list[Tracker]):
        self.trackers = trackers
        self.logdir = next((t.logdir for t in trackers if t.logdir is not None), None)

    def epoch(self, row: dict) -> None:
        for t in self.trackers:
            t.epoch(row)

    def final(self, record, history: list[dict] | None = None) -> None:
        for t in self.trackers:
            t.final(record, history)

    def close(self) -> None:
        for t in self.trackers:
            t.close()


class Tracking:
    """Where a run-set's trackers write: TensorBoard under ``root/RUN_ID`` and/or the W&B ``project``,
    or nowhere (both None). Under torchrun only rank 0 writes."""

    def __init__(self, root: Path | None = None, wandb: str | None = None, runset: str = ""):
        self.root = Path(root) if root is not None else None
        self.wandb, self.runset = wandb, runset

    def open(self, run_id: str) -> Tracker:
        if not distributed.is_main():
            return NO_TRACKING
        trackers = ([TensorBoardTracker(self.root / run_id)] if self.root is not None else []) + \
                   ([WandbTracker(self.wandb, self.runset, run_id)] if self.wandb else [])
        return NO_TRACKING if not trackers else trackers[0] if len(trackers) == 1 else Trackers(trackers)

    def facts(self, run_id: str) -> dict:
        """What the run's record says about its tracking (where its event files are, its W&B run)."""
        out = {"tensorboard": str(self.root / run_id)} if self.root is not None else {}
        if self.wandb:
            out["wandb"] = f"{self.wandb}/{WandbTracker(self.wandb, self.runset, run_id).wandb_id}"
        return out

    def log_finished(self, record, history: list[dict]) -> None:
        """A run trained elsewhere or earlier (a teacher, a run trained without tracking): its epochs,
        then its final metrics."""
        tracker = self.open(record.run_id)
        for row in history:
            tracker.epoch(row)
        tracker.final(record, history)

    def backfill(self, record, history: list[dict] | None = None) -> None:
        """Log a reused run only where its TensorBoard folder lacks it: its epochs if it holds no event
        file, its final metrics if it holds no final file. (W&B is not read back: a reused run is logged
        to W&B only where TensorBoard is off.)"""
        history = record.history if history is None else history
        if self.root is None:
            if self.wandb and distributed.is_main():
                self.log_finished(record, history)
            return
        tracker = self.open(record.run_id)
        if _has(self.root / record.run_id, FINAL):
            return
        if not _has(self.root / record.run_id):
            self.log_finished(record, history)
        else:
            tracker.final(record, history)


def tracking_for(root: Path | str | None, runset: str, wandb: str | None = None) -> Tracking:
    """``--tensorboard DIR`` and ``--wandb PROJECT`` for a run-set; a missing package: one line and no
    tracking of that kind (tracking changes no number, so the run goes on)."""
    if root is not None and not _importable("torch.utils.tensorboard", "tensorboard", INSTALL):
        root = None
    if wandb and not _importable("wandb", "wandb", WANDB_INSTALL):
        wandb = None
    return Tracking(Path(root) / runset if root is not None else None, wandb, runset)


def _importable(module: str, flag: str, install: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        if distributed.is_main():
            print(f"bench: --{flag} needs the {flag} package: {install}; this run goes on without it",
                  file=sys.stderr, flush=True)
        return False
    return True
