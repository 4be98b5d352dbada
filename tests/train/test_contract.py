"""Issue 21: the method contract extended once -- further teachers by role, further trainable networks with
their own optimiser and schedule, method state with per-step and epoch-end updates (checkpointed, resumed),
the lr schedule's scale handed to the method, and SWA with batch-norm re-estimation as a harness feature."""
from __future__ import annotations

import textwrap
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from bench.cli.main import main
from bench.common.errors import BenchError
from bench.config import files as configfile
from bench.config.schema import AttackConfig, RunConfig, TrainConfig
from bench.data.splits import select_classes
from bench.models import build_model
from bench.runs.identity import student_run_id
from bench.records.record import RECORD, RunRecord
from bench.train.loop import train_model
from bench.train.teacher import prepare_model
from bench.train.tracking import NO_TRACKING, Tracker
from bench.methods import METHODS, parse_method
from bench.methods.base import Context, EpochEnd, Method, Network, kl_div

CPU = torch.device("cpu")

# A user's method (a plug-in file, nothing in bench/ touched): a peer network with its own lr, a natural
# teacher by role, per-class state gathered each step and turned into temperatures at each epoch's end.
USER = '''
import torch
import torch.nn.functional as F

import bench
from bench.methods.base import Method, Network, kl_div


@bench.register_method
class Mutual(Method):
    name = "user-mutual"
    citation = "a test method using the extended contract"
    summary = "CE + a peer + per-class temperatures towards a natural teacher"
    needs_teacher = True
    teachers = {"natural": "a naturally trained teacher, at x"}

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        self.peer = Network(ctx.build_student(), train={"lr": 0.01})
        self.state = {"class_loss": torch.zeros(ctx.num_classes, device=ctx.device),
                      "temps": torch.ones(ctx.num_classes, device=ctx.device), "epochs_seen": 0}

    def networks(self):
        return {"peer": self.peer}

    def losses(self, batch, x_adv):
        s, p = batch.student(batch.x), self.peer.module(batch.x)
        with torch.no_grad():
            nat = batch.teachers["natural"](batch.x)
        ce = F.cross_entropy(s, batch.y, reduction="none")
        self.state["class_loss"].index_add_(0, batch.y, ce.detach())
        t = self.state["temps"][batch.y][:, None]
        return {"ce": ce.mean(), "peer_ce": F.cross_entropy(p, batch.y),
                "kd_nat": kl_div(s / t, nat / t), "kd_peer": kl_div(s, p.detach())}

    def end_epoch(self, end):
        total = end.reduce(self.state["class_loss"])
        self.state["temps"] = 1 + total / total.sum()
        self.state["class_loss"] = torch.zeros_like(total)
        self.state["epochs_seen"] += 1

    def facts(self):
        return {"temps": self.state["temps"].tolist(), "epochs_seen": self.state["epochs_seen"]}
'''

TINY = {"train.epochs": 2, "teacher.train.epochs": 1, "natural_teacher.train.epochs": 1, "attack.steps": 1,
        "data.train_limit": 128, "eval.attacks": ["clean", "fgsm"], "eval.curve_eps": [], "eval.n": 64,
        "eval.sanity.enabled": False, "probe.targets": [], "structure": False}


@pytest.fixture
def registry(monkeypatch):
    from bench import methods
    monkeypatch.setattr(METHODS, "_items", dict(METHODS._items))
    monkeypatch.setattr(methods, "_LOADED", {})
    return METHODS


def test_a_plugin_method_with_a_peer_state_and_a_natural_teacher_runs_from_the_cli(tmp_path, capsys, registry):
    user = tmp_path / "mutual.py"
    user.write_text(textwrap.dedent(USER))
    res, rep = tmp_path / "results", tmp_path / "reports"
    dotted = [f"{k}={configfile._scalar(v)}" for k, v in TINY.items()]
    code = main(["run", "--methods-from", str(user), "--methods", "user-mutual", "--seeds", "0", "--name", "u",
                 "--results", str(res), "--reports", str(rep), *dotted])
    assert code == 0, capsys.readouterr().err
    (run_dir,) = [p.parent for p in (res / "u").glob(f"user-mutual-*/{RECORD}")]
    rec = RunRecord.load(run_dir / RECORD)
    # the epoch-end hook ran once per epoch and its state moved
    assert rec.extra["epochs_seen"] == 2
    assert rec.extra["teachers"]["natural"]["label"] == "natural, cnn-wide"
    assert rec.extra["temps"] != [1.0] * 5
    # the natural teacher was trained here as its config says (a teacher of its own, cached)
    assert len(list((res / "teachers").glob("natural-cnn-wide-*/model.pt"))) == 1
    # the peer had its own optimiser at its own lr, and is in the checkpoint with the method's state
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    opt, _ = ckpt["network_optimizers"]["peer"]
    assert opt["param_groups"][0]["initial_lr"] == 0.01
    assert ckpt["optimizer"]["param_groups"][0]["initial_lr"] == 0.05
    assert set(ckpt["networks"]["peer"]) == set(ckpt["student"])
    assert ckpt["method_state"]["epochs_seen"] == 2
    # the natural teacher is part of this method's run id, and of no other's
    cfg = configfile.config_of(rec.config)
    spec, other = parse_method("user-mutual"), parse_method("ard")
    changed = replace(cfg, natural_teacher=replace(cfg.natural_teacher, seed=3))
    assert student_run_id(spec, cfg, "t", {"natural": "a"}) != student_run_id(spec, cfg, "t", {"natural": "b"})
    assert student_run_id(other, cfg, "t") == student_run_id(other, changed, "t")


# --- train_model directly: resumption, lr scale, SWA -----------------------------------------------------

class Recorder(Method):
    """A peer, per-step and per-epoch state; records the lr scales it is handed."""
    name = "recorder"
    citation = summary = "-"

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        self.peer = Network(ctx.build_student())
        self.state = {"steps": torch.zeros((), dtype=torch.long), "acc": torch.zeros(ctx.num_classes),
                      "per_epoch": torch.zeros(0), "step_scales": [], "end_scales": []}

    def networks(self):
        return {"peer": self.peer}

    def losses(self, batch, x_adv):
        s, p = batch.student(batch.x), self.peer.module(batch.x)
        self.state["steps"] += 1
        self.state["acc"].index_add_(0, batch.y, (s.argmax(1) == batch.y).float())
        if not self.state["step_scales"] or self.state["step_scales"][-1] != batch.lr_scale:
            self.state["step_scales"] = [*self.state["step_scales"], batch.lr_scale]
        w = 1 + self.state["per_epoch"][-1] if len(self.state["per_epoch"]) else 1.0
        return {"ce": w * F.cross_entropy(s, batch.y), "peer": F.cross_entropy(p, batch.y) + kl_div(s, p)}

    def end_epoch(self, end: EpochEnd):
        acc = end.reduce(self.state["acc"])
        self.state["per_epoch"] = torch.cat([self.state["per_epoch"], acc.mean()[None] / 100])
        self.state["acc"] = torch.zeros_like(acc)
        self.state["end_scales"] = [*self.state["end_scales"], end.lr_scale]


@pytest.fixture(scope="module")
def small(digits):
    data = select_classes(digits, [0, 1, 2], "digits@0-2")
    return replace(data, x_train=data.x_train[:96], y_train=data.y_train[:96])


def _train(small, folder, cfg: TrainConfig, tracker=None, method_cls=Recorder, selection=None):
    torch.manual_seed(0)
    student = prepare_model(build_model("cnn-narrow", 3, 1), CPU)
    ctx = Context(num_classes=3, n_train=len(small.y_train), train_labels=small.y_train,
                  student_dim=student.feature_dim, teacher_dim=None, device=CPU, epochs=cfg.epochs,
                  build_student=lambda: prepare_model(build_model("cnn-narrow", 3, 1), CPU))
    method = method_cls(method_cls.Options(), ctx)
    history = train_model(student, method, small, cfg, AttackConfig(eps=0.2, steps=1), None, folder, CPU,
                          tracker=tracker or NO_TRACKING, selection=selection)
    return student, method, history


STEP = TrainConfig(epochs=3, batch_size=32, schedule="step", milestones=(1, 2), lr=0.05)


def test_the_method_sees_this_epochs_lr_scale_per_step_and_the_next_epochs_at_its_end(small, tmp_path):
    _, method, _ = _train(small, tmp_path, STEP)
    assert method.state["step_scales"] == pytest.approx([1.0, 0.1, 0.01])
    assert method.state["end_scales"] == pytest.approx([0.1, 0.01, 0.01])
    assert int(method.state["steps"]) == 3 * 3 and len(method.state["per_epoch"]) == 3


@pytest.mark.parametrize("swa", [None, 1])
def test_a_killed_run_resumes_its_peer_method_state_and_average_identically(small, tmp_path, kill_at, swa):
    cfg = replace(STEP, swa_start=swa)
    whole, m_whole, h_whole = _train(small, tmp_path / "whole", cfg)
    with pytest.raises(KeyboardInterrupt):
        _train(small, tmp_path / "killed", cfg, tracker=kill_at(3))   # killed after epoch 2's checkpoint
    resumed, m_res, h_res = _train(small, tmp_path / "killed", cfg)
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    for (k, a), b in zip(m_whole.peer.module.state_dict().items(), m_res.peer.module.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(m_whole.state["per_epoch"], m_res.state["per_epoch"])
    assert m_whole.state["end_scales"] == m_res.state["end_scales"] and int(m_res.state["steps"]) == 9
    assert [r["loss"] for r in h_whole] == [r["loss"] for r in h_res]
    if swa is not None:
        assert [r["swa_snapshots"] for r in h_res] == [0, 1, 2]


class Snapshots(Tracker):
    """Each epoch's raw student weights, read from the checkpoint the loop wrote after the epoch before."""

    def __init__(self, path):
        super().__init__()
        self.path, self.states = path, []

    def epoch(self, row):
        if row["epoch"] > 1:
            self.states.append(torch.load(self.path, weights_only=True)["student"])


def test_swa_is_the_mean_of_the_end_of_epoch_weights_with_batch_norm_re_estimated(small, tmp_path):
    cfg = replace(STEP, epochs=4, milestones=(), schedule="cosine", swa_start=1)
    snaps = Snapshots(tmp_path / "checkpoint.pt")
    model, _, history = _train(small, tmp_path, cfg, tracker=snaps)
    snaps.states.append(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["student"])  # epoch 4's
    assert len(snaps.states) == 4
    averaged = snaps.states[1:]          # the ends of 0-based epochs 1, 2, 3
    for name, p in model.named_parameters():
        mean = sum(s[name] for s in averaged) / len(averaged)
        assert torch.allclose(p, mean, atol=1e-6), name
        assert not torch.allclose(p, averaged[-1][name]), name   # not the last epoch's weights
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns
    for bn in bns:   # re-estimated from scratch on the training images after the last snapshot: 3 batches
        assert int(bn.num_batches_tracked) == 3
    raw_bn = {k: v for k, v in snaps.states[-1].items() if k.endswith("running_mean")}
    assert any(not torch.allclose(model.state_dict()[k], v) for k, v in raw_bn.items())
    assert [r["swa_snapshots"] for r in history] == [0, 1, 2, 3]


def test_swa_start_outside_the_run_is_one_line(small, tmp_path):
    with pytest.raises(BenchError, match="swa_start=5 is not an epoch"):
        _train(small, tmp_path, replace(STEP, swa_start=5))


def test_the_official_limit_keeps_swa_inside_a_capped_run():
    from bench.config.protocol import apply_limit
    from bench.config.schema import Limit
    cfg = RunConfig(train=TrainConfig(epochs=300, swa_start=214, milestones=(214, 259, 284), schedule="step"),
                    limit=Limit(epochs=2))
    assert (apply_limit(cfg).train.swa_start, apply_limit(cfg).train.milestones) == (1, ())
