"""Whole runs through `python -m bench` (CLI): a trained teacher is cached whatever the students'
schedule, a file teacher keeps its method through a run and its report, finished runs are reused only with
the same code, `eval` takes the data set's default eps, and an evaluation killed with SIGKILL resumes with
identical numbers. (Component tests of the same issue moved to tests/config/test_presets.py,
tests/train/test_teacher.py, tests/train/test_schedule.py, tests/common/test_provenance.py,
tests/eval/test_sanity.py, tests/report/test_stats.py and tests/regress/test_regress_bands.py.)"""
import json
import subprocess
import sys

import torch

from bench.cli.main import main

# --- teachers keep their own schedule: the cached teacher serves every student schedule -----------

def test_teacher_id_does_not_depend_on_the_student_schedule(capsys, tmp_path):
    base = ["run", "--methods", "natural", "--teacher-epochs", "1", "--n", "20", "--attacks", "clean",
            "--transfer", "none", "--no-structure", "--no-sanity", "--seeds", "0",
            "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")]
    assert main(base + ["--epochs", "1", "--name", "a"]) == 0
    assert "training teacher" in capsys.readouterr().err
    assert main(base + ["--epochs", "2", "--name", "b"]) == 0
    assert "training teacher" not in capsys.readouterr().err  # the cached teacher serves both


# --- a file teacher keeps its method --------------------------------------------------------------

def test_file_teacher_keeps_its_method(capsys, tmp_path):
    from bench.models import build_model

    torch.save(build_model("cnn-wide", 5, 1).state_dict(), tmp_path / "t.pt")
    assert main(["run", "--methods", "kd", "--teacher", str(tmp_path / "t.pt"), "--teacher-method", "trades",
                 "--epochs", "1", "--n", "20", "--attacks", "clean", "--transfer", "none", "--no-structure",
                 "--no-sanity", "--seeds", "0", "--name", "f", "--results", str(tmp_path / "r"),
                 "--reports", str(tmp_path / "p")]) == 0
    runs = json.loads((tmp_path / "p" / "f" / "runs.json").read_text())
    teacher = next(r for r in runs if r["role"] == "teacher")
    assert teacher["method"] == "trades" and teacher["teacher"]["kind"] == "file"
    assert f"teacher (trades, cnn-wide; {tmp_path / 't.pt'})" in (tmp_path / "p" / "f" / "README.md").read_text()


# --- the code is part of a number's identity ------------------------------------------------------

def test_runs_are_reused_only_with_the_same_code(capsys, tmp_path, monkeypatch):
    import bench.runs.identity
    import bench.runs.orchestrate

    argv = ["run", "--methods", "natural", "--epochs", "1", "--teacher-epochs", "1", "--n", "20",
            "--attacks", "clean,fgsm", "--transfer", "none", "--no-structure", "--no-sanity", "--seeds", "0",
            "--name", "c", "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")]
    assert main(argv) == 0
    capsys.readouterr()
    from bench.common.io import load_checkpoint
    state = load_checkpoint(next((tmp_path / "r" / "c").glob("natural-*/checkpoint.pt")))
    assert isinstance(state["generator"], torch.Tensor)  # the run's device generator: a resumed run draws on
    assert main(argv) == 0
    assert "reusing finished run" in capsys.readouterr().err
    for module in (bench.runs.identity, bench.runs.orchestrate):  # the run's id, and the digest its record keeps
        monkeypatch.setattr(module, "train_digest", lambda cls: "edited000000")  # a method file changed
    assert main(argv) == 0
    assert "reusing finished run" not in capsys.readouterr().err
    runs = json.loads((tmp_path / "p" / "c" / "runs.json").read_text())
    assert next(r for r in runs if r["role"] == "student")["code"]["train"] == "edited000000"
    assert "Code identity" in (tmp_path / "p" / "c" / "README.md").read_text()
    for module in (bench.runs.identity, bench.runs.orchestrate):  # the evaluation key, and the record's digest
        monkeypatch.setattr(module, "eval_digest", lambda: "evaledit0000")  # evaluation code changed
    assert main(argv) == 0
    assert "reusing finished run" not in capsys.readouterr().err


# --- the default eps comes from the data set ------------------------------------------------------

def test_default_eps_per_dataset(capsys, tmp_path, trained_digits_model):
    from bench.config.threat import default_eps
    assert default_eps("cifar10") == default_eps("stl10") == default_eps("folder:/x") == 8 / 255
    assert default_eps("digits@0-4") == 0.2
    torch.save(trained_digits_model.state_dict(), tmp_path / "m.pt")
    assert main(["eval", "--weights", str(tmp_path / "m.pt"), "--arch", "cnn-narrow", "--dataset", "digits",
                 "--n", "20", "--attacks", "clean,fgsm", "--no-sanity", "--out", str(tmp_path / "e")]) == 0
    assert "eps 0.2 (the default for digits)" in capsys.readouterr().err
    assert json.loads((tmp_path / "e" / "record.json").read_text())["config"]["eps"] == 0.2
    assert main(["eval", "--weights", "robustbench:Zhang2019Theoretically", "--dataset", "cifar10"]) == 2
    assert "not found: put it at" in capsys.readouterr().err


# --- an evaluation killed with SIGKILL resumes with identical numbers -----------------------------

def test_killed_evaluation_resumes_identically(tmp_path, trained_digits_model, kill_during_autoattack):
    torch.save(trained_digits_model.state_dict(), tmp_path / "m.pt")

    def cmd(out):
        return [sys.executable, "-m", "bench", "eval", "--weights", str(tmp_path / "m.pt"), "--arch",
                "cnn-narrow", "--dataset", "digits", "--n", "8", "--attacks", "clean,pgd20,aa", "--eps", "0.05",
                "--batch-size", "4", "--no-sanity", "--out", str(tmp_path / out)]
    assert subprocess.run(cmd("whole"), capture_output=True).returncode == 0
    kill_during_autoattack(cmd("killed"), tmp_path / "killed")  # eval-state/<key of the settings and weights>/
    assert not (tmp_path / "killed" / "record.json").exists()
    assert subprocess.run(cmd("killed"), capture_output=True).returncode == 0
    whole = json.loads((tmp_path / "whole" / "record.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "record.json").read_text())
    assert resumed["metrics"] == whole["metrics"]
    assert not (tmp_path / "killed" / "eval-state").exists()  # the finished record replaced the state
