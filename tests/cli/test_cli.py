import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from bench.cli.main import main
from bench.common.errors import BenchError
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
    ([], "choose a command: run, eval, report, regress, export, paper, list, status, job"),
])
def test_bad_input_one_line_exit_2(capsys, argv, pattern):
    fails_cleanly(capsys, argv, pattern)


def test_bad_checkpoints(capsys, tmp_path):
    base = ["eval", "--arch", "cnn-narrow", "--dataset", "digits", "--n", "10", "--attacks", "clean"]
    fails_cleanly(capsys, base + ["--weights", str(tmp_path / "missing.pt")], "does not exist")
    html = tmp_path / "page.pt"
    html.write_text("<!DOCTYPE html><html><body>Sign in to Google Drive</body></html>")
    fails_cleanly(capsys, base + ["--weights", str(html)], "not a readable PyTorch weights file")
    good = tmp_path / "good.pt"
    torch.save(build_model("cnn-narrow", 10, 1).state_dict(), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    fails_cleanly(capsys, base + ["--weights", str(truncated)], "not a readable PyTorch weights file")
    other = tmp_path / "other.pt"
    torch.save(build_model("cnn-wide", 10, 1).state_dict(), other)
    fails_cleanly(capsys, base + ["--weights", str(other)], "does not fit architecture cnn-narrow")
    fails_cleanly(capsys, base + ["--weights", str(good), "--n", "5000"], "exceeds the 450 test images")


def test_missing_offline_data(capsys, tmp_path):
    torch.save(build_model("resnet18", 10).state_dict(), tmp_path / "r.pt")
    fails_cleanly(capsys, ["eval", "--weights", str(tmp_path / "r.pt"), "--arch", "resnet18",
                           "--dataset", "cifar10", "--data-dir", str(tmp_path)], "cifar-10-python.tar.gz")


def test_missing_robustbench_teacher(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_ROBUSTBENCH_DIR", str(tmp_path))
    fails_cleanly(capsys, ["run", "--methods", "kd", "--teacher", "robustbench:Zhang2019Theoreticaly",
                           "--dataset", "cifar10"], "known (")
    fails_cleanly(capsys, ["run", "--methods", "kd", "--teacher", "robustbench:Zhang2019Theoretically",
                           "--dataset", "cifar10",
                           "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")],
                  str(tmp_path / "cifar10" / "Linf" / "Zhang2019Theoretically.pt"))


@pytest.mark.slow
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


@pytest.mark.slow
def test_end_to_end_run_report_and_eval(capsys, tmp_path, quick_autoattack):
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
    # issue 33: the worst case is a column only where it differs from an attack's on some run; else said
    equal = "It equals AutoAttack on every run" in (out / "README.md").read_text()
    assert list(table.columns) == ["Method", "Clean", "FGSM", "PGD-20", "CW∞", "AutoAttack",
                                   *([] if equal else ["Worst case"]),
                                   "Corruptions", "AutoAttack worst class", "AutoAttack class std",
                                   "AutoAttack class std floor", "Train time (s, median)",
                                   "Train MFLOP/img/epoch", "n", "Sanity"]
    # issue 22: the worst case, the worst class, corruptions, the transfer of attacks, per-image results
    for name in ("per_class.csv", "corruptions.csv", "attack_transfer.csv", "per_class.png", "corruptions.png"):
        assert (out / name).stat().st_size > 0, name
    assert len(list((res / "e2e").glob("*/per_image.json"))) == 7  # every evaluated model, teacher included
    assert table["Method"].tolist()[0].startswith("teacher (pgd-at")
    assert any("re-implemented from the paper's description" in m for m in table["Method"])
    assert table["n"].tolist() == [1, 2, 2, 2]  # one teacher; two seeds per student
    cost = table["Train MFLOP/img/epoch"].astype(float).tolist()  # counted for the trained teacher too
    assert all(c > 0 for c in cost) and cost[0] > max(cost[1:])  # the wide teacher's PGD-AT step costs most
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
    from importlib.metadata import version
    assert f"bench {version('robust-kd-bench')}; training code" in readme   # the release beside the digests
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
    assert main(["eval", "--weights", str(ckpt), "--arch", "cnn-narrow", "--dataset", "digits@0-4",
                 "--n", "30", "--attacks", "clean,fgsm,pgd20", "--out", str(tmp_path / "ev")]) == 0
    record = json.loads((tmp_path / "ev" / "record.json").read_text())
    assert set(record["metrics"]) == {"clean", "fgsm", "pgd20", "worst"} and record["settings"]["n"] == 30
    assert (tmp_path / "ev" / "per_image.json").stat().st_size > 0  # per-image results beside the record

    # RobustBench export knows its data sets: a digits student gets one clear line
    capsys.readouterr()
    assert main(["export", str(ckpt.parent), "--robustbench", "--out", str(tmp_path / "x")]) == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.slow
def test_same_seed_same_numbers_on_cpu(capsys, tmp_path, quick_autoattack):
    def run(folder):
        argv = ["run", "--methods", "pgd-at,gacd:estimator=nce", "--epochs", "1", "--teacher-epochs", "1",
                "--n", "40", "--attacks", "clean,pgd20,aa", "--aa-n", "3", "--name", "det", "--device", "cpu",
                "--seeds", "0", "--transfer", "none", "--no-structure", "--no-sanity",  # what is compared, only
                "--results", str(tmp_path / folder), "--reports", str(tmp_path / folder / "reports")]
        assert main(argv) == 0
        records = [json.loads(p.read_text()) for p in (tmp_path / folder / "det").glob("*/record.json")]
        return {(r["role"], r["method"]): (r["metrics"], r["curve"], [h["loss"] for h in r["history"]])
                for r in records}
    first, second = run("a"), run("b")
    capsys.readouterr()
    assert set(first) == {("teacher", "pgd-at"), ("student", "pgd-at"), ("student", "gacd:estimator=nce")}
    assert first == second


@pytest.mark.slow
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
    from bench.data.splits import carve_validation
    train, (xv, yv) = carve_validation(digits, 0.1)
    assert len(train.y_train) + len(yv) == len(digits.y_train)
    assert torch.bincount(yv, minlength=10).min() >= 12
    assert torch.equal(train.x_test, digits.x_test)  # the test split is untouched


@pytest.mark.slow
def test_run_seed_is_the_seed_it_says(capsys):
    """`run --seed 3` used to be accepted and ignored (the preset's seeds ran)."""
    assert main(["run", "--methods", "kd", "--seed", "3", "--dry-run"]) == 0
    jobs = [line for line in capsys.readouterr().out.splitlines() if "python -m bench job" in line and "--method" in line]
    assert len(jobs) == 1 and jobs[0].endswith("--method kd --seed 3")


# --- issue 11 item 5 / issue 12 item 1: the thin CLI and what a new user trips over --------------

def _tiny_weights(path, seed):
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build_model("cnn-narrow", 10, 1).state_dict(), path)
    return path


def test_eval_checkpoint_flag_is_now_weights(capsys):
    fails_cleanly(capsys, ["eval", "--checkpoint", "m.pt", "--arch", "cnn-narrow", "--dataset", "digits"],
                  "eval --checkpoint is now --weights")


def test_eval_default_out_is_unique_per_model_and_stable_per_file(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = _tiny_weights(tmp_path / "alice" / "model.pt", 0), _tiny_weights(tmp_path / "bob" / "model.pt", 1)
    common = ["--arch", "cnn-narrow", "--dataset", "digits", "--n", "10", "--attacks", "clean", "--no-sanity"]
    written = []
    for path in (a, b, a):
        assert main(["eval", "--weights", str(path), *common]) == 0
        written.append(next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("written:")))
    assert written[0] == written[2] != written[1]  # the same file resumes in, and rewrites, its own folder
    folders = sorted(p.name for p in (tmp_path / "reports" / "eval").iterdir())
    assert len(folders) == 2 and all(f.startswith("model-") for f in folders)  # two students, two folders
    records = {json.loads((tmp_path / "reports" / "eval" / f / "record.json").read_text())["source"]["weights"]
               for f in folders}
    assert records == {str(a), str(b)}


def test_eval_runs_the_curve_only_when_asked_and_says_how_many_images(capsys, tmp_path):
    weights = _tiny_weights(tmp_path / "m.pt", 0)
    common = ["eval", "--weights", str(weights), "--arch", "cnn-narrow", "--dataset", "digits", "--n", "12",
              "--eps", "0.1"]
    assert main([*common, "--attacks", "clean", "--out", str(tmp_path / "a")]) == 0
    rec = json.loads((tmp_path / "a" / "record.json").read_text())
    assert rec["curve"] == {} and "curve" not in rec["settings"] and rec["config"]["curve_eps"] == []
    assert rec["sanity"] == {} and "pgd20" not in rec["timings"]  # clean accuracy alone: no attack at all
    common.append("--no-sanity")
    assert set(rec["metrics"]) == {"clean"} and rec["n"] == 12
    assert "12 test images of digits evaluated" in capsys.readouterr().out
    assert main([*common, "--attacks", "clean,curve", "--out", str(tmp_path / "b")]) == 0
    rec = json.loads((tmp_path / "b" / "record.json").read_text())
    assert list(rec["curve"]) == ["0.025", "0.05", "0.075", "0.1", "0.125", "0.15"]  # scaled from eps 0.1
    assert main([*common, "--attacks", "fgsm", "--curve", "--out", str(tmp_path / "c")]) == 0
    assert list(json.loads((tmp_path / "c" / "record.json").read_text())["curve"]) == list(rec["curve"])


def test_evaluate_model_takes_any_module_and_returns_json(tmp_path):
    from bench.eval.model import EvalResult, evaluate_model

    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))  # no features/head
    res = evaluate_model(plain, "digits", attacks=["clean", "pgd20"], eps=0.1, n=20, sanity=False, device="cpu")
    assert isinstance(res, EvalResult) and set(res.metrics) == {"clean", "pgd20"} and res.n == 20
    assert res.metrics["pgd20"] <= res.metrics["clean"] and res.curve == {} and res.out is None
    assert json.loads(json.dumps(res.to_dict()))["settings"]["pgd20"]["steps"] == 20
    with pytest.raises(BenchError, match="unknown evaluation option"):
        evaluate_model(plain, "digits", attacks=["clean"], n=5, colour="red")


@pytest.mark.parametrize("argv", [
    ["run", "--methods", "kd", "--device", "tpu"],
    ["eval", "--weights", "m.pt", "--arch", "cnn-narrow", "--dataset", "digits", "--device", "tpu"],
    ["paper", "cifar10-resnet18", "--device", "tpu"],
    ["paper", "cifar10-resnet18", "--executor", "local", "--device", "npu"],
])
def test_unknown_device_is_one_line_in_every_command(capsys, argv):
    fails_cleanly(capsys, argv, f"unknown or unavailable device '{argv[-1]}'")


def _subparsers(parser):
    import argparse
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def test_every_flag_has_help_that_states_its_default():
    import argparse

    from bench.cli.parser import build_parser
    undocumented = []
    for name, sub in _subparsers(build_parser()).choices.items():
        assert sub.format_help()  # renders (a stray % in a help text would raise here)
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            text = action.help or ""
            flag = action.option_strings[0] if action.option_strings else action.dest
            stated = "default" in text.lower() or (action.default not in (None, False) and str(action.default) in text)
            if not text or (action.option_strings and not stated):
                undocumented.append(f"{name} {flag}")
    assert undocumented == []


def test_no_command_message_lists_every_command(capsys):
    from bench.cli.commands import COMMANDS
    from bench.cli.parser import build_parser
    commands = list(_subparsers(build_parser()).choices)
    assert set(COMMANDS) == set(commands)
    code = main([])
    err = capsys.readouterr().err
    assert code == 2 and all(c in err for c in commands), err
