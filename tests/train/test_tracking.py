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
