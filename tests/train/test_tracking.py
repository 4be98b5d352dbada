"""Issue 11, tracking: TensorBoard event files per run (--tensorboard DIR), read back with TensorBoard's
own event reader; resumption logs each epoch once; without the package, one line and the run goes on."""
import json
import sys

import pytest

# tensorboard is in the test extra (pip install -e ".[test]"): CI runs these, never skips them
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata

from bench.cli.main import main
from bench.train import tracking

TINY = ["--methods", "ard", "--teacher-epochs", "1", "--seeds", "0", "--attacks", "clean,fgsm", "--n", "40",
        "--transfer", "none", "--no-structure", "--no-sanity", "--no-report", "--name", "tb"]


def _read(logdir):
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    start = metadata.parse_session_start_info_plugin_data(
        acc.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content)
    hparams = {k: v.string_value or v.number_value for k, v in start.hparams.items()}
    return scalars, hparams


def _records(results):
    return {p.parent.name: json.loads(p.read_text()) for p in (results / "tb").glob("*/record.json")}


@pytest.mark.slow
def test_event_files_per_run_and_resumption_logs_each_epoch_once(tmp_path, monkeypatch, capsys):
    res, tb = tmp_path / "results", tmp_path / "tb"
    argv = ["run", *TINY, "--epochs", "3", "--checkpoint", "best-val", "--results", str(res), "--tensorboard", str(tb)]
    real_epoch = tracking.TensorBoardTracker.epoch

    def killed_after_logging_epoch_2(self, row):  # killed after the events were written, before the checkpoint
        real_epoch(self, row)
        if self.logdir.name.startswith("ard-") and row["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(tracking.TensorBoardTracker, "epoch", killed_after_logging_epoch_2)
    assert main(argv) == 130
    monkeypatch.setattr(tracking.TensorBoardTracker, "epoch", real_epoch)
    assert main(argv) == 0  # resumes at epoch 2, which it trains (and logs) again
    capsys.readouterr()

    records = _records(res)
    assert sorted(p.name for p in (tb / "tb").iterdir()) == sorted(records)  # one folder per run, teacher included
    student = next(r for r in records.values() if r["role"] == "student")
    assert student["extra"]["tensorboard"] == str(tb / "tb" / student["run_id"])
    scalars, hparams = _read(tb / "tb" / student["run_id"])
    history = student["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    for key, tag in (("kd_adv", "loss/kd_adv"), ("loss", "loss/total"), ("lr", "train/lr"),
                     ("images_per_s", "train/images_per_s"), ("val_pgd20", "val/pgd20")):
        assert [s for s, _ in scalars[tag]] == [1, 2, 3], tag  # epoch 2 once, not twice
        assert [v for _, v in scalars[tag]] == pytest.approx([row[key] for row in history], rel=1e-6), tag
    for name, value in student["metrics"].items():  # final metrics, at the last epoch
        assert scalars[f"metrics/{name}"] == [(3, pytest.approx(value))]
    assert hparams == {"role": "student", "method": "ard", "options": "alpha=1.0,clean_pass=False,scale=1.0,t=30.0", "seed": 0,
                       "arch": "cnn-narrow", "eps": pytest.approx(0.2), "train_eps": pytest.approx(0.2),
                       "teacher": student["teacher_id"], "epochs": 3, "lr": pytest.approx(0.05), "batch": 64}

    # other evaluation settings: re-evaluated without training; its final metrics replace the earlier ones
    assert main([*argv, "--n", "20"]) == 0
    capsys.readouterr()
    again = _records(res)[student["run_id"]]
    assert again["attack_settings"]["clean"]["n"] == 20 and again["history"] == history
    scalars, _ = _read(tb / "tb" / student["run_id"])
    assert scalars["metrics/clean"] == [(3, pytest.approx(again["metrics"]["clean"]))]
    assert [s for s, _ in scalars["loss/total"]] == [1, 2, 3]

    teacher = next(r for r in _records(res).values() if r["role"] == "teacher")  # re-evaluated too
    scalars, hparams = _read(tb / "tb" / teacher["run_id"])  # its own schedule: one epoch
    assert [s for s, _ in scalars["loss/ce_adv"]] == [1] and hparams["epochs"] == 1 and hparams["role"] == "teacher"
    assert scalars["metrics/clean"] == [(1, pytest.approx(teacher["metrics"]["clean"]))]


@pytest.mark.slow
def test_without_the_package_one_line_then_same_run_ids_and_backfill(tmp_path, monkeypatch, capsys):
    res, tb = tmp_path / "results", tmp_path / "tb"
    argv = ["run", *TINY, "--epochs", "2", "--results", str(res), "--tensorboard", str(tb)]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    assert main(argv) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "tensorboard" in line.lower()]
    assert len(lines) == 1 and "pip install tensorboard" in lines[0] and "[tensorboard]" in lines[0]
    assert not tb.exists()
    untracked = _records(res)
    assert all("tensorboard" not in r["extra"] for r in untracked.values())

    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard")
    assert main(argv) == 0  # with the package: the same run ids, so every run is reused ...
    assert capsys.readouterr().err.count("reusing finished run") == 1
    assert _records(res) == untracked
    for run_id, rec in untracked.items():  # ... and what their records hold is logged
        scalars, hparams = _read(tb / "tb" / run_id)
        logged = {t: [v for _, v in e] for t, e in scalars.items() if t.startswith("metrics/")}
        assert logged == {f"metrics/{k}": [pytest.approx(v)] for k, v in rec["metrics"].items()}
        assert hparams["seed"] == rec["seed"] and hparams["role"] == rec["role"]
    student = next(r for r in untracked.values() if r["role"] == "student")
    scalars = _read(tb / "tb" / student["run_id"])[0]
    assert scalars["loss/total"] == [(row["epoch"], pytest.approx(row["loss"])) for row in student["history"]]
    teacher = next(r for r in untracked.values() if r["role"] == "teacher")
    assert [s for s, _ in _read(tb / "tb" / teacher["run_id"])[0]["loss/ce_adv"]] == [1]  # from its cache

    files = sorted(p.name for p in (tb / "tb").rglob("events.out.tfevents.*"))
    assert main(argv) == 0  # logged once: a third run adds no event file
    assert sorted(p.name for p in (tb / "tb").rglob("events.out.tfevents.*")) == files


def test_no_tracking_by_default():
    assert tracking.tracking_for(None, "x").open("run") is tracking.NO_TRACKING
    assert tracking.row_tag("epoch") is None and tracking.row_tag("val_pgd20") == "val/pgd20"
    assert tracking.row_tag("ce_adv") == "loss/ce_adv" and tracking.row_tag("loss") == "loss/total"


def test_flag_on_run_and_paper_off_by_default():
    from bench.cli.parser import build_parser
    parser = build_parser()
    assert parser.parse_args(["run"]).tensorboard is None
    assert parser.parse_args(["run", "--tensorboard", "tb"]).tensorboard == "tb"
    assert parser.parse_args(["paper", "cifar10-resnet18", "--tensorboard", "tb"]).tensorboard == "tb"


class _FakeWandb:
    """What a W&B run receives, recorded (the wandb package is an optional extra, and it would reach
    the network): init's arguments, each log call, the config and the summary."""

    def __init__(self):
        self.runs = []

    def init(self, **kwargs):
        run = _FakeRun(kwargs)
        self.runs.append(run)
        return run


class _FakeRun:
    def __init__(self, kwargs):
        self.kwargs, self.logged, self.config, self.summary, self.finished = kwargs, [], _Config(), {}, 0

    def log(self, data, step):
        self.logged.append((step, dict(data)))

    def finish(self):
        self.finished += 1


class _Config(dict):
    def update(self, values, allow_val_change=False):
        super().update(values)


def _student_record():
    from types import SimpleNamespace
    cfg = {"train": {"epochs": 2, "lr": 0.05, "batch_size": 64}, "eval": {"eps": 0.2}, "attack": {"eps": 0.2}}
    return SimpleNamespace(run_id="ard-123", role="student", method="ard", options={"t": 30.0}, seed=1, arch="cnn",
                           teacher_id="t-1", config=cfg, metrics={"clean": 0.9, "pgd20": 0.5},
                           transfer={"rslad": {"metrics": {"pgd20": 0.6}}}, history=[])


def test_wandb_gets_the_fields_tensorboard_gets(monkeypatch):
    """--wandb PROJECT: one W&B run per bench run (named by its run id, grouped by run-set, a stable id
    so a resumed process continues it), each epoch's row under TensorBoard's tags at the epoch as step,
    the final metrics in its summary and the hyper-parameters as its config."""
    fake = _FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    rows = [{"epoch": 1, "lr": 0.05, "seconds": 1.0, "images_per_s": 100.0, "kd_adv": 2.0, "loss": 2.0,
             "val_pgd20": 0.3}, {"epoch": 2, "lr": 0.005, "seconds": 1.0, "images_per_s": 110.0, "kd_adv": 1.0,
                                 "loss": 1.0, "val_pgd20": 0.4}]
    track = tracking.tracking_for(None, "rs", "proj")
    tracker = track.open("ard-123")
    for row in rows:
        tracker.epoch(row)
    rec = _student_record()
    tracker.final(rec)
    (run,) = fake.runs
    assert run.kwargs["project"] == "proj" and run.kwargs["group"] == "rs" and run.kwargs["name"] == "ard-123"
    assert run.kwargs["id"] == tracking.tracking_for(None, "rs", "proj").open("ard-123").wandb_id  # stable
    assert run.logged == [(r["epoch"], tracking.row_scalars(r)) for r in rows]
    assert run.logged[0][1] == {"train/lr": 0.05, "train/epoch_seconds": 1.0, "train/images_per_s": 100.0,
                                "loss/kd_adv": 2.0, "loss/total": 2.0, "val/pgd20": 0.3}
    assert run.summary == tracking.final_metrics(rec) and run.summary["transfer/rslad/pgd20"] == 0.6
    assert run.config == tracking.run_hparams(rec) and run.finished == 1
    assert track.facts("ard-123") == {"wandb": f"proj/{run.kwargs['id']}"}


def test_tensorboard_and_wandb_together_and_wandb_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", _FakeWandb())
    both = tracking.tracking_for(tmp_path, "rs", "proj").open("r")
    assert isinstance(both, tracking.Trackers)
    assert [type(t) for t in both.trackers] == [tracking.TensorBoardTracker, tracking.WandbTracker]
    monkeypatch.setitem(sys.modules, "wandb", None)   # as if wandb were not installed
    only_tb = tracking.tracking_for(tmp_path, "rs", "proj")
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "pip install wandb" in line and "[wandb]" in line and only_tb.wandb is None
    assert isinstance(only_tb.open("r"), tracking.TensorBoardTracker)


def test_wandb_flag_reaches_every_job_of_a_grid():
    from bench.cli.parser import build_parser
    from bench.runs.executors import make_grid
    parser = build_parser()
    assert parser.parse_args(["run"]).wandb is None
    assert parser.parse_args(["run", "--wandb", "proj"]).wandb == "proj"
    job = type("J", (), {"seeds": (0, 1), "methods": ("ard",), "runset": "rs"})()
    grid = make_grid(tmp := __import__("pathlib").Path("j.yaml"), job, tmp, tmp, None, "proj")
    assert all(cmd[cmd.index("--wandb") + 1] == "proj" for _, _, cmd in grid.runs)
