import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from bench.cli import main
from bench.models import build_model


def fails_cleanly(capsys, argv, pattern):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert pattern in lines[0], lines[0]


@pytest.mark.parametrize("argv,pattern", [
    (["run", "--methods", "gacd,nosuch"], "unknown method 'nosuch'; known: "),
    (["run", "--methods", "gacd:colour=red"], "known: estimator"),
    (["run", "--dataset", "mnist", "--methods", "kd"], "unknown dataset 'mnist'; known:"),
    (["run", "--student-arch", "vgg", "--methods", "kd"], "unknown architecture 'vgg'; known:"),
    (["run", "--attacks", "clean,deepfool"], "unknown attack 'deepfool'; known:"),
    (["run", "--eps", "0"], "outside (0, 0.5]"),
    (["run", "--eps", "-1"], "outside (0, 0.5]"),
    (["run", "--eps", "2"], "outside (0, 0.5]"),
    (["run", "--eps", "abc"], "not a number"),
    (["run", "--epochs", "0"], "--epochs 0 is outside"),
    (["run", "--n", "0"], "--n 0 is outside"),
    (["run", "--teacher", "/nonexistent.pt"], "does not exist"),
    (["run", "--methods", "kd", "--device", "tpu"], "unknown or unavailable device 'tpu'"),
    (["run", "--methods", "kd", "--device", "xla"], "unknown or unavailable device 'xla'"),   # was a traceback
    (["run", "--methods", "kd", "--device", "meta"], "unknown or unavailable device 'meta'"),  # was a traceback
    (["run", "--seed", "1", "--seeds", "0,1"], "give --seed or --seeds/--n-seeds, not both"),
    (["frobnicate"], "invalid choice"),
    ([], "choose a command: run, eval, report, regress, export, paper, list, status"),
])
def test_bad_input_one_line_exit_2(capsys, argv, pattern):
    fails_cleanly(capsys, argv, pattern)


def test_bad_checkpoints(capsys, tmp_path):
    base = ["eval", "--arch", "cnn-narrow", "--dataset", "digits", "--n", "10", "--attacks", "clean"]
    fails_cleanly(capsys, base + ["--checkpoint", str(tmp_path / "missing.pt")], "does not exist")
    html = tmp_path / "page.pt"
    html.write_text("<!DOCTYPE html><html><body>Sign in to Google Drive</body></html>")
    fails_cleanly(capsys, base + ["--checkpoint", str(html)], "not a readable PyTorch weights file")
    good = tmp_path / "good.pt"
    torch.save(build_model("cnn-narrow", 10, 1).state_dict(), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    fails_cleanly(capsys, base + ["--checkpoint", str(truncated)], "not a readable PyTorch weights file")
    other = tmp_path / "other.pt"
    torch.save(build_model("cnn-wide", 10, 1).state_dict(), other)
    fails_cleanly(capsys, base + ["--checkpoint", str(other)], "does not fit architecture cnn-narrow")
    fails_cleanly(capsys, base + ["--checkpoint", str(good), "--n", "5000"], "exceeds the 450 test images")


def test_missing_offline_data(capsys, tmp_path):
    torch.save(build_model("resnet18", 10).state_dict(), tmp_path / "r.pt")
    fails_cleanly(capsys, ["eval", "--checkpoint", str(tmp_path / "r.pt"), "--arch", "resnet18",
                           "--dataset", "cifar10", "--data-dir", str(tmp_path)], "cifar-10-python.tar.gz")


def test_missing_robustbench_teacher(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_ROBUSTBENCH_DIR", str(tmp_path))
    fails_cleanly(capsys, ["run", "--methods", "kd", "--teacher", "robustbench:Zhang2019Theoreticaly",
                           "--dataset", "cifar10"], "known (")
    fails_cleanly(capsys, ["run", "--methods", "kd", "--teacher", "robustbench:Zhang2019Theoretically",
                           "--dataset", "cifar10",
                           "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")],
                  str(tmp_path / "cifar10" / "Linf" / "Zhang2019Theoretically.pt"))


def test_module_entry_point_has_no_traceback():
    out = subprocess.run([sys.executable, "-m", "bench", "run", "--methods", "nosuch"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("bench: error: unknown method 'nosuch'")


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("gacd", "ard", "crd", "trades", "pgd-at", "kd", "natural", "digits", "folder:PATH",
                 "resnet18", "wrn-34-10", "pgd20", "AutoAttack", "Goldblum", "re-implemented"):
        assert word in out


def test_end_to_end_run_report_and_eval(capsys, tmp_path):
    res, rep = tmp_path / "results", tmp_path / "reports"
    argv = ["run", "--methods", "gacd,ard,crd", "--epochs", "1", "--teacher-epochs", "1", "--n", "60",
            "--aa-n", "8", "--seeds", "0,1", "--name", "e2e", "--results", str(res), "--reports", str(rep)]
    assert main(argv) == 0
    out = rep / "e2e"
    for name in ("README.md", "table.csv", "table.tex", "summary.csv", "runs.csv", "runs.json",
                 "accuracy_per_attack.png", "robustness_curve.png", "training_curves.png", "transfer.csv",
                 "structure.csv", "correlation_heatmaps.png", "cka.png"):
        assert (out / name).stat().st_size > 0, name
    table = pd.read_csv(out / "table.csv")
    assert list(table.columns) == ["Method", "Clean", "FGSM", "PGD-20", "CW∞", "AutoAttack", "Train time (s, median)",
                                   "n", "Sanity"]
    assert table["Method"].tolist()[0].startswith("teacher (pgd-at")
    assert any("re-implemented from the paper's description" in m for m in table["Method"])
    assert table["n"].tolist() == [1, 2, 2, 2]  # one teacher; two seeds per student
    assert all(cell.count("[") == 1 for cell in table["PGD-20"][1:])  # mean [95 % interval]
    assert set(pd.read_csv(out / "runs.csv")["seed"]) == {0, 1}  # per-seed values kept
    assert "\\begin{tabular}" in (out / "table.tex").read_text()
    transfer = pd.read_csv(out / "transfer.csv")
    assert list(transfer.columns) == ["Method", "digits@5-9 Clean", "digits@5-9 PGD-20", "n"]
    assert len(transfer) == 4  # the teacher gets the same probe
    structure = pd.read_csv(out / "structure.csv")
    assert len(structure) == 3 and "CKA adv" in structure.columns
    readme = (out / "README.md").read_text()
    assert "## Transfer to other tasks" in readme and "## Structural knowledge" in readme
    runs = json.loads((out / "runs.json").read_text())
    assert {r["method"] for r in runs} == {"pgd-at", "gacd", "ard", "crd"}
    for r in runs:
        assert r["seed"] in (0, 1) and r["config"]["eval"]["n"] == 60 and r["versions"]["torch"]
        assert r["attack_settings"]["aa"]["n"] == 8 and r["attack_settings"]["pgd20"]["steps"] == 20
        assert all(0 <= v <= 1 for v in r["metrics"].values())
    capsys.readouterr()

    # a second run reuses every finished run, and gives the same numbers
    assert main(argv) == 0
    assert capsys.readouterr().err.count("reusing finished run") == 6
    assert json.loads((out / "runs.json").read_text()) == runs

    # report rebuilds from results/ alone
    (out / "table.csv").unlink()
    assert main(["report", "e2e", "--results", str(res), "--reports", str(rep)]) == 0
    assert pd.read_csv(out / "table.csv").equals(table)

    # eval of a student checkpoint written by the run (the state_dict sits under "student")
    ckpt = next(res.glob("e2e/ard-*/checkpoint.pt"))
    assert main(["eval", "--checkpoint", str(ckpt), "--arch", "cnn-narrow", "--dataset", "digits@0-4",
                 "--n", "30", "--attacks", "clean,fgsm,pgd20", "--out", str(tmp_path / "ev")]) == 0
    record = json.loads((tmp_path / "ev" / "record.json").read_text())
    assert set(record["metrics"]) == {"clean", "fgsm", "pgd20"} and record["settings"]["n"] == 30

    # RobustBench export knows its data sets: a digits student gets one clear line
    capsys.readouterr()
    assert main(["export", str(ckpt.parent), "--robustbench", "--out", str(tmp_path / "x")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_same_seed_same_numbers_on_cpu(capsys, tmp_path):
    def run(folder):
        argv = ["run", "--methods", "pgd-at,gacd:estimator=nce", "--epochs", "1", "--teacher-epochs", "1",
                "--n", "40", "--attacks", "clean,pgd20,aa", "--aa-n", "3", "--name", "det", "--device", "cpu",
                "--results", str(tmp_path / folder), "--reports", str(tmp_path / folder / "reports")]
        assert main(argv) == 0
        records = [json.loads(p.read_text()) for p in (tmp_path / folder / "det").glob("*/record.json")]
        return {(r["role"], r["method"]): (r["metrics"], r["curve"], [h["loss"] for h in r["history"]])
                for r in records}
    first, second = run("a"), run("b")
    capsys.readouterr()
    assert set(first) == {("teacher", "pgd-at"), ("student", "pgd-at"), ("student", "gacd:estimator=nce")}
    assert first == second


def test_best_validation_checkpoint_policy(capsys, tmp_path):
    argv = ["run", "--methods", "pgd-at", "--epochs", "3", "--teacher-epochs", "1", "--n", "40",
            "--attacks", "clean,pgd20", "--checkpoint", "best-val", "--transfer", "none", "--seeds", "0",
            "--name", "bv", "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")]
    assert main(argv) == 0
    rec = next(json.loads(p.read_text()) for p in (tmp_path / "r" / "bv").glob("pgd-at-*/record.json"))
    vals = [h["val_pgd20"] for h in rec["history"]]
    chosen = rec["extra"]["checkpoint"]
    assert chosen["policy"] == "best-val" and chosen["val_pgd20"] == max(vals)
    assert chosen["epoch"] == 1 + vals.index(max(vals)) and chosen["val_n"] == 68
    assert "validation split of the training data" in (tmp_path / "p" / "bv" / "README.md").read_text()


def test_carve_validation_is_stratified_and_disjoint(digits):
    from bench.data import carve_validation
    train, (xv, yv) = carve_validation(digits, 0.1)
    assert len(train.y_train) + len(yv) == len(digits.y_train)
    assert torch.bincount(yv, minlength=10).min() >= 12
    assert torch.equal(train.x_test, digits.x_test)  # the test split is untouched


def test_run_seed_is_the_seed_it_says(capsys):
    """`run --seed 3` used to be accepted and ignored (the preset's seeds ran)."""
    assert main(["run", "--methods", "kd", "--seed", "3", "--dry-run"]) == 0
    jobs = [line for line in capsys.readouterr().out.splitlines() if "--no-report" in line and "--only-teacher" not in line]
    assert len(jobs) == 1 and "--seeds 3 " in jobs[0] + " " and "--seed 3" not in jobs[0].replace("--seeds", "")
