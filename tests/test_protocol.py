"""Issue 9: the CIFAR protocol against the official code, typed teachers, code-aware reuse,
dataset-default eps, machine-proof regression bands, statistics, sanity flags, resumable evaluation."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench import presets as catalogue
from bench.cli import main
from bench.config import EvalConfig, FileTeacher, SanityConfig, TrainedTeacher, ZooTeacher, parse_teacher, teacher_from_dict
from bench.presets import all_presets, official_train, official_variant
from bench.models.base import BenchModel
from methods import Batch, Context, parse_method


# --- 1. teachers keep their own schedule -----------------------------------------------------------

def lrs(train_cfg, epochs=None):
    from bench.train import make_optimizer
    opt, sched = make_optimizer([nn.Parameter(torch.zeros(1))], train_cfg)
    out = []
    for _ in range(epochs or train_cfg.epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cifar10_presets_share_one_teacher_with_a_decaying_schedule():
    presets = all_presets()
    trained = {n: p.config.teacher for n, p in presets.items()
               if n.startswith("cifar10") and isinstance(p.config.teacher, TrainedTeacher)}
    assert {"cifar10", "cifar10-ard", "cifar10-rslad", "cifar10-crd", "cifar10-trades"} <= set(trained)
    assert len(set(trained.values())) == 1  # every CIFAR-10 preset trains the same teacher
    teacher = next(iter(trained.values()))
    assert teacher.train == official_train("trades", "cifar10")  # TRADES' own schedule, not the students'
    assert lrs(teacher.train)[-1] < lrs(teacher.train)[0]      # its lr really decays
    for name in ("cifar10", "cifar10-rslad", "cifar10-crd"):
        assert presets[name].config.train != teacher.train


def test_teacher_id_does_not_depend_on_the_student_schedule(capsys, tmp_path):
    base = ["run", "--methods", "natural", "--teacher-epochs", "1", "--n", "20", "--attacks", "clean",
            "--transfer", "none", "--no-structure", "--no-sanity", "--seeds", "0",
            "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")]
    assert main(base + ["--epochs", "1", "--name", "a"]) == 0
    assert "training teacher" in capsys.readouterr().err
    assert main(base + ["--epochs", "2", "--name", "b"]) == 0
    assert "training teacher" not in capsys.readouterr().err  # the cached teacher serves both


# --- 2. official loss magnitudes, reductions included -----------------------------------------------

class Linear(BenchModel):
    def __init__(self, c, seed):
        super().__init__(in_channels=1)
        g = torch.Generator().manual_seed(seed)
        self.lin = nn.Linear(12, c)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(c, 12, generator=g))
        self.feature_dim, self.num_classes = 12, c

    def features(self, x):
        return x.flatten(1)

    def head(self, f):
        return self.lin(f)


def official_loss(name, dataset, s, t, x, x_adv, y):
    """The official scripts' outer losses, with their reductions (nn.KLDivLoss() means B x C)."""
    kl_mean = nn.KLDivLoss()  # reduction='mean' -- the official default
    if name == "ard":
        return 900 * kl_mean(F.log_softmax(s(x_adv) / 30, 1), F.softmax(t(x) / 30, 1))
    if name == "rslad":
        def kl(a, b):  # the scripts' p_T (log(p_T + 1e-5) - log p_S) without the 1e-5, a constant shift
            return -F.log_softmax(a, 1) * F.softmax(b, 1) + F.log_softmax(b, 1) * F.softmax(b, 1)
        factor = 10 if dataset == "cifar100" else 1
        return factor * (5 / 6 * torch.mean(kl(s(x_adv), t(x))) + 1 / 6 * torch.mean(kl(s(x), t(x))))
    if name == "adaad":
        if dataset == "cifar10":
            return kl_mean(F.log_softmax(s(x_adv), 1), F.softmax(t(x_adv), 1))
        return torch.sum(nn.KLDivLoss(reduction="none")(F.log_softmax(s(x_adv), 1), F.softmax(t(x_adv), 1))) / len(x)
    if name == "iad":  # IAD-I before the introspection: (1/B) sum of KLDivLoss(reduce=False)
        return torch.sum(nn.KLDivLoss(reduction="none")(F.log_softmax(s(x_adv), 1), F.softmax(t(x), 1))) / len(x)
    if name == "trades":  # KLDivLoss(size_average=False) / batch_size
        kl = nn.KLDivLoss(reduction="sum")(F.log_softmax(s(x_adv), 1), F.softmax(s(x), 1)) / len(x)
        return F.cross_entropy(s(x), y) + 6 * kl
    raise AssertionError(name)


@pytest.mark.parametrize("dataset,classes", [("cifar10", 10), ("cifar100", 100)])
@pytest.mark.parametrize("name", ["ard", "rslad", "adaad", "iad", "trades"])
def test_official_variants_reproduce_the_official_loss(name, dataset, classes):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 3, 4, generator=g)
    x_adv = (x + 0.03 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    y = torch.randint(0, classes, (8,), generator=g)
    s, t = Linear(classes, 1), Linear(classes, 2).eval()
    ctx = Context(num_classes=classes, n_train=8, train_labels=y, student_dim=12, teacher_dim=12,
                  device=torch.device("cpu"), epochs=200)
    method = parse_method(official_variant(name, dataset)).build(ctx)
    ours = sum(method.losses(Batch(x, y, torch.arange(8), s, t, epoch=0), x_adv).values())
    assert float(ours.detach()) == pytest.approx(float(official_loss(name, dataset, s, t, x, x_adv, y)), rel=1e-4)


def test_paper_presets_run_every_method_at_its_official_magnitude():
    for preset in catalogue.PAPER_PRESETS.values():
        dataset = preset.config.data.name
        assert preset.methods == tuple(official_variant(m, dataset) for m in catalogue.PAPER_METHODS)
    assert "ard:scale=0.1" in catalogue.PAPER_PRESETS["cifar10-resnet18"].methods
    assert "ard:scale=0.01" in catalogue.PAPER_PRESETS["cifar100-resnet18"].methods
    assert "adaad" in catalogue.PAPER_PRESETS["cifar100-resnet18"].methods  # batchmean there already


# --- 3. schedules as the official scripts run them ---------------------------------------------------

def ard_script_lrs(epochs=200, base=0.1, schedule=(100, 150), factor=0.1):
    """ARD's / IAD-I's main loop: adjust_learning_rate(optimizer, epoch, lr) with lr always the base."""
    current, out = base, []
    for epoch in range(epochs):
        lr = base
        if epoch in schedule:
            lr *= factor
            current = lr
        out.append(current)
    return out


def trades_script_lrs(epochs=76, base=0.1):
    out = []
    for epoch in range(1, epochs + 1):
        lr = base
        if epoch >= 75:
            lr = base * 0.1
        if epoch >= 90:
            lr = base * 0.01
        out.append(lr)
    return out


@pytest.mark.parametrize("name,script", [("ard", ard_script_lrs), ("iad", ard_script_lrs),
                                         ("trades", trades_script_lrs)])
def test_code_schedules_give_the_scripts_learning_rates(name, script):
    assert lrs(official_train(name, "cifar10")) == pytest.approx(script())


def test_paper_form_and_per_dataset_schedules():
    assert official_train("ard", "cifar10", "paper").milestones == (100, 150)
    assert official_train("ard", "cifar100").batch_size == 256 and official_train("ard", "cifar10").batch_size == 128
    assert catalogue.PAPER_PRESETS["cifar100-resnet18"].config.train.batch_size == 256
    assert "cifar10-ard-paper" in all_presets() and "cifar10-rslad-paper" not in all_presets()


# --- 4. teachers are typed ---------------------------------------------------------------------------

def test_teacher_strings_are_parsed_once_into_types():
    from bench.teacher import describe

    zoo = parse_teacher("robustbench:Zhang2019Theoretically", TrainedTeacher())
    assert isinstance(zoo, ZooTeacher) and zoo.name == "Zhang2019Theoretically"
    info = describe(zoo, "cifar10")
    assert info.method == "trades" and info.reported["clean"] == 84.92 and info.reported["aa"] == 53.08
    assert describe(ZooTeacher("Chen2021LTD_WRN34_10"), "cifar100").reported["aa"] == 30.59
    f = parse_teacher("/some/t.pt", TrainedTeacher(), method="trades")
    assert isinstance(f, FileTeacher) and describe(f, "digits").method == "trades"
    assert parse_teacher(None, zoo) == zoo and parse_teacher("train", zoo) == TrainedTeacher()
    assert parse_teacher(None, TrainedTeacher(), epochs=3).train.epochs == 3
    for t in (zoo, f, TrainedTeacher(seed=None)):
        assert teacher_from_dict(json.loads(json.dumps(asdict(t)))) == t


def test_zoo_teacher_row_is_labelled_and_looked_up_by_its_real_method():
    from bench.report import _groups, published_table, accuracy_columns
    from bench.results import RunRecord
    from bench.teacher import describe

    info = describe(ZooTeacher("Zhang2019Theoretically"), "cifar10")
    rec = RunRecord(run_id="t", role="teacher", method=info.method, method_name=info.method, options={}, note="",
                    dataset="cifar10", arch="wrn-34-10", teacher_id="robustbench-Zhang2019Theoretically", seed=0,
                    config={}, metrics={"clean": 0.85, "aa": 0.53}, curve={}, attack_settings={}, timings={},
                    teacher=asdict(info))
    groups = _groups([rec], [])
    assert list(groups) == ["teacher (trades, wrn-34-10; RobustBench Zhang2019Theoretically)"]
    table, _ = published_table(groups, accuracy_columns([rec]))
    assert table["Clean published"][0] == "84.92" and table["AutoAttack published"][0] == "53.08"


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


# --- 5. the code is part of a number's identity ------------------------------------------------------

def test_digest_follows_every_line(tmp_path):
    from bench.provenance import files_digest, train_digest
    from methods import METHODS

    f = tmp_path / "m.py"
    f.write_text("x = 1\n")
    first = files_digest((str(f),))
    f.write_text("x = 2\n")
    files_digest.cache_clear()
    assert files_digest((str(f),)) != first
    assert train_digest(METHODS.get("ard")) != train_digest(METHODS.get("rslad"))  # the method's own file counts


def test_runs_are_reused_only_with_the_same_code(capsys, tmp_path, monkeypatch):
    import bench.runner

    argv = ["run", "--methods", "natural", "--epochs", "1", "--teacher-epochs", "1", "--n", "20",
            "--attacks", "clean,fgsm", "--transfer", "none", "--no-structure", "--no-sanity", "--seeds", "0",
            "--name", "c", "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")]
    assert main(argv) == 0
    capsys.readouterr()
    from bench.io import load_checkpoint
    state = load_checkpoint(next((tmp_path / "r" / "c").glob("natural-*/checkpoint.pt")))
    assert isinstance(state["generator"], torch.Tensor)  # the run's device generator: a resumed run draws on
    assert main(argv) == 0
    assert "reusing finished run" in capsys.readouterr().err
    monkeypatch.setattr(bench.runner, "train_digest", lambda cls: "edited000000")  # a method file changed
    assert main(argv) == 0
    assert "reusing finished run" not in capsys.readouterr().err
    runs = json.loads((tmp_path / "p" / "c" / "runs.json").read_text())
    assert next(r for r in runs if r["role"] == "student")["code"]["train"] == "edited000000"
    assert "Code identity" in (tmp_path / "p" / "c" / "README.md").read_text()
    monkeypatch.setattr(bench.runner, "eval_digest", lambda: "evaledit0000")  # evaluation code changed
    assert main(argv) == 0
    assert "reusing finished run" not in capsys.readouterr().err


# --- 6. the default eps comes from the data set -------------------------------------------------------

def test_default_eps_per_dataset(capsys, tmp_path, trained_digits_model):
    from bench.data import default_eps

    assert default_eps("cifar10") == default_eps("stl10") == default_eps("folder:/x") == 8 / 255
    assert default_eps("digits@0-4") == 0.2
    torch.save(trained_digits_model.state_dict(), tmp_path / "m.pt")
    assert main(["eval", "--weights", str(tmp_path / "m.pt"), "--arch", "cnn-narrow", "--dataset", "digits",
                 "--n", "20", "--attacks", "clean,fgsm", "--no-sanity", "--out", str(tmp_path / "e")]) == 0
    assert "eps 0.2 (the default for digits)" in capsys.readouterr().err
    assert json.loads((tmp_path / "e" / "record.json").read_text())["config"]["eps"] == 0.2
    assert main(["eval", "--weights", "robustbench:Zhang2019Theoretically", "--dataset", "cifar10"]) == 2
    assert "not found: put it at" in capsys.readouterr().err


# --- 7. regression bands that hold on another machine ----------------------------------------------

def test_bands_keep_false_alarms_rare_and_catch_real_drops():
    from bench.regress import bands, compare

    rng = np.random.default_rng(0)
    rows, metrics, n = 5, 7, 3
    sds = rng.uniform(0.005, 0.10, size=(rows, metrics))
    means = rng.uniform(0.2, 0.9, size=(rows, metrics))

    def draw(shift=None):
        return {f"r{i}": {f"m{j}": list(rng.normal(means[i, j] - (shift if (i, j) == (0, 0) and shift else 0),
                                                   sds[i, j], n)) for j in range(metrics)} for i in range(rows)}
    false_alarms = sum(any(r["verdict"] != "ok" for r in compare({"values": draw()}, draw())) for _ in range(120))
    assert false_alarms / 120 <= 0.05  # unchanged code, new trajectories: the whole check rarely fails
    caught = sum(any(r["verdict"] == "DROP" and (r["row"], r["metric"]) == ("r0", "m0")
                     for r in compare({"values": draw()}, draw(shift=8 * max(sds[0, 0], 0.05))))
                 for _ in range(50))
    assert caught >= 45  # a drop of several seed sds is still caught
    one = bands({"t": {"m": [0.8, 0.8, 0.8]}})[("t", "m")]
    assert one.lowest == pytest.approx(0.78)  # no spread anywhere: the 2-point floor


# --- 8. statistics --------------------------------------------------------------------------------

def test_holm_and_paired_differences():
    from bench.stats import holm, paired_difference

    got = holm([0.01, 0.04, 0.03, float("nan")])
    assert got[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(got[3])
    a, b = {0: 0.50, 1: 0.60, 2: 0.70}, {0: 0.48, 1: 0.575, 2: 0.69}
    paired = paired_difference(a, b)
    assert paired.test == "paired t" and paired.low <= paired.diff <= paired.high
    welch = paired_difference(a, {5: 0.48, 6: 0.575, 7: 0.69})
    assert welch.test == "Welch t" and paired.p < welch.p  # pairing removes the shared seed effect


# --- 9. sanity flags --------------------------------------------------------------------------------

class Quantised(nn.Module):
    """Input quantisation: a non-differentiable preprocessing that masks gradients."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 4) / 4)


def test_masked_gradients_are_flagged(trained_digits_model, digits):
    from bench.evaluation import evaluate

    cfg = EvalConfig(eps=0.1, attacks=("clean", "fgsm", "pgd20"), n=100,
                     sanity=SanityConfig(n=100, strong_steps=20, strong_restarts=1))
    masked = evaluate(Quantised(trained_digits_model).eval(), digits.x_test, digits.y_test, cfg, 10)["sanity"]
    assert "zero_gradients" in masked["flags"] and masked["checks"]["zero_gradients"]["value"] > 0.9
    plain = evaluate(trained_digits_model, digits.x_test, digits.y_test, cfg, 10)["sanity"]
    assert "zero_gradients" not in plain["flags"] and "large_eps" not in plain["flags"]
    assert set(plain["checks"]) == {"iterative_weaker", "large_eps", "not_converged", "zero_gradients",
                                    "nondeterministic"}


def test_default_run_students_are_not_flagged():
    """The committed default report (reports/digits, made by `python -m bench run`) has no flags."""
    from pathlib import Path

    runs = json.loads((Path(__file__).parent.parent / "reports" / "digits" / "runs.json").read_text())
    students = [r for r in runs if r["role"] == "student"]
    assert students and all(r["sanity"]["checks"] for r in students)
    assert [r["method"] for r in students if r["sanity"]["flags"]] == []


# --- 10. an evaluation killed with SIGKILL resumes with identical numbers ---------------------------

def test_killed_evaluation_resumes_identically(tmp_path, trained_digits_model):
    torch.save(trained_digits_model.state_dict(), tmp_path / "m.pt")

    def cmd(out):
        return [sys.executable, "-m", "bench", "eval", "--weights", str(tmp_path / "m.pt"), "--arch",
                "cnn-narrow", "--dataset", "digits", "--n", "8", "--attacks", "clean,pgd20,aa", "--eps", "0.05",
                "--batch-size", "4", "--no-sanity", "--out", str(tmp_path / out)]
    assert subprocess.run(cmd("whole"), capture_output=True).returncode == 0
    proc = subprocess.Popen(cmd("killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "eval-state"  # eval-state/<key of the settings and weights>/
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        first = next(state.glob("*/aa-00000.json"), None)
        if first is not None and "apgd-ce" in first.read_text():
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the evaluation ended before it could be killed during AutoAttack"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "record.json").exists()
    assert subprocess.run(cmd("killed"), capture_output=True).returncode == 0
    whole = json.loads((tmp_path / "whole" / "record.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "record.json").read_text())
    assert resumed["metrics"] == whole["metrics"]
    assert not (tmp_path / "killed" / "eval-state").exists()  # the finished record replaced the state


def test_logged_lr_is_the_rate_each_epoch_trained_at(tmp_path, digits):
    """The per-epoch log (and TensorBoard's train/lr) holds the lr of that epoch, not the next one's."""
    from bench.config import AttackConfig, TrainConfig
    from bench.data import select_classes
    from bench.models import build_model
    from bench.train import train_model

    small = select_classes(digits, [0, 1], "digits@0-1")
    torch.manual_seed(0)
    student = build_model("cnn-narrow", 2, 1)
    spec = parse_method("natural")
    ctx = Context(num_classes=2, n_train=len(small.y_train), train_labels=small.y_train, student_dim=student.feature_dim,
                  teacher_dim=None, device=torch.device("cpu"), epochs=2)
    cfg = TrainConfig(epochs=2, batch_size=128, lr=0.05, schedule="step", milestones=(1,), gamma=0.1)
    history = train_model(student, spec.build(ctx), small, cfg, AttackConfig(), None, tmp_path, torch.device("cpu"))
    assert [row["lr"] for row in history] == pytest.approx([0.05, 0.005])
    assert [row["lr"] for row in history] == pytest.approx(lrs(cfg))
