"""Issue 12 item 2: the training step built for the device -- one seeded generator on the device for every
draw, no host syncs per step, precision and torch.compile as recorded options, and the layout-keeping
pooling that keeps channels_last backward passes on their fast path."""
from __future__ import annotations

import contextlib
import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from bench.cli.main import main
from bench.common.precision import autocast, resolve_precision
from bench.config.schema import AttackConfig, TrainConfig
from bench.data.splits import select_classes
from bench.models import build_model
from bench.models.base import global_avg_pool
from bench.train.loop import compiled, frozen, train_model
from bench.train.teacher import prepare_model
from bench.train.tracking import NO_TRACKING
from bench.methods import METHODS, parse_method
from bench.methods.base import Context

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def small(digits):
    return select_classes(digits, [0, 1, 2], "digits@0-2")


def _train(small, method: str, tmp_path, epochs=1, batch_size=32, seed=0, tracker=None, limit=None,
           around=None):
    """Train a cnn-narrow student with ``method`` on ``small`` (its first ``limit`` images); ``around`` is
    entered for train_model alone (not the model and method construction)."""
    data = small if limit is None else replace(small, x_train=small.x_train[:limit], y_train=small.y_train[:limit])
    torch.manual_seed(0)
    student = prepare_model(build_model("cnn-narrow", 3, 1), CPU)
    teacher = prepare_model(build_model("cnn-narrow", 3, 1), CPU).eval().requires_grad_(False)
    spec = parse_method(method)
    ctx = Context(num_classes=3, n_train=len(data.y_train), train_labels=data.y_train, student_dim=student.feature_dim,
                  teacher_dim=teacher.feature_dim, device=CPU, epochs=epochs, seed=seed,
                  build_student=lambda: prepare_model(build_model("cnn-narrow", 3, 1), CPU))
    m = spec.build(ctx)
    teachers = {role: prepare_model(build_model("cnn-narrow", 3, 1), CPU).eval().requires_grad_(False)
                for role in spec.cls.teachers}
    with around if around is not None else contextlib.nullcontext():
        history = train_model(student, m, data, TrainConfig(epochs=epochs, batch_size=batch_size),
                              AttackConfig(eps=0.2, steps=2), teacher if spec.cls.needs_teacher else None, tmp_path,
                              CPU, seed=seed, tracker=tracker or NO_TRACKING, teachers=teachers)
    return student, history


# --- the pooling: same numbers, the input's layout in backward ------------------------------------

@pytest.mark.parametrize("channels_last", [False, True])
def test_global_avg_pool_is_adaptive_avg_pool_bit_for_bit(channels_last):
    x = torch.randn(6, 5, 4, 3)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = torch.flatten(F.adaptive_avg_pool2d(a, 1), 1), global_avg_pool(b)
    g = torch.randn_like(ya)
    ga, = torch.autograd.grad(ya, a, g)
    gb, = torch.autograd.grad(yb, b, g)
    assert torch.equal(ya, yb) and torch.equal(ga, gb)
    with torch.no_grad():  # inference takes the plain reduction
        assert torch.equal(global_avg_pool(b), ya)
    # the stock backward is a broadcast NCHW view, which sends the ReLU backward before it to a slow path
    assert gb.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


# --- frozen parameters during the attack -------------------------------------------------------------

def test_frozen_attack_gives_the_same_input_gradient_and_restores():
    torch.manual_seed(0)
    model = prepare_model(build_model("cnn-narrow", 3, 1), CPU).train()
    x = torch.rand(8, 1, 8, 8, requires_grad=True)
    free, = torch.autograd.grad(model(x).sum(), x)
    with frozen(model, None):
        assert not any(p.requires_grad for p in model.parameters())
        still, = torch.autograd.grad(model(x).sum(), x)
    assert torch.equal(free, still)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(RuntimeError), frozen(model):
        raise RuntimeError("an attack that fails")
    assert all(p.requires_grad for p in model.parameters())


# --- one generator on the device ----------------------------------------------------------------------

RANDOM_OPS = {"rand", "randn", "randint", "randperm", "uniform_", "normal_", "bernoulli", "bernoulli_",
              "random_", "exponential_", "multinomial", "rand_like", "randn_like", "randint_like"}
# A value read back to the host: .item()/float()/bool() of a device tensor, data-dependent shapes.
SYNC_OPS = {"_local_scalar_dense", "nonzero", "is_nonzero", "masked_select", "unique", "_unique2", "equal",
            "item", "nonzero_static"}


class _Watch(TorchDispatchMode):
    """Counts host syncs and random draws, with the generator each draw used."""

    def __init__(self):
        super().__init__()
        self.syncs: list[str] = []
        self.draws: list[tuple[str, object]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in SYNC_OPS:
            self.syncs.append(name)
        if name in RANDOM_OPS:
            self.draws.append((name, kwargs.get("generator")))
        return func(*args, **kwargs)


STEP_METHODS = [m for m in METHODS.names() if m != "natural"] + ["gacd:estimator=nce"]


@pytest.mark.parametrize("method", STEP_METHODS)
def test_every_draw_is_the_runs_generator_and_no_step_reads_back(small, method, tmp_path):
    """Every random number in the loop comes from one seeded generator on the data's device (none from a
    global stream, none copied over), and the host-sync count does not grow with the number of steps: the
    per-epoch reads (the log's sums) and a method's one-off first-step read (Z of an NCE bank) are all."""
    def watched(n_images, folder):
        watch = _Watch()
        _train(small, method, tmp_path / folder, batch_size=16, limit=n_images, around=watch)
        return watch
    short, long = watched(32, "short"), watched(96, "long")  # 2 and 6 steps
    assert len(long.syncs) == len(short.syncs), (method, short.syncs, long.syncs)
    generators = {id(g) for _, g in long.draws}
    assert long.draws and None not in {g for _, g in long.draws}, long.draws[:5]
    assert len(generators) == 1 and long.draws[0][1].device == CPU


# the stateful methods of issue 21 too: per-step weights (mtard), epoch-end class weights and temperatures
# (fair-ard, absld), a peer with its own optimiser (peeraid)
@pytest.mark.parametrize("method", ["gacd:estimator=nce", "trades", "mtard", "fair-ard", "absld", "peeraid"])
def test_a_killed_run_resumes_to_the_same_weights(small, method, tmp_path, kill_at):
    """The generator's state is in each checkpoint: a run killed after epoch 1 and resumed draws what the
    uninterrupted run drew (the old checkpoint held the global CPU stream only)."""
    whole, _ = _train(small, method, tmp_path / "whole", epochs=3, limit=64)
    with pytest.raises(KeyboardInterrupt):
        _train(small, method, tmp_path / "killed", epochs=3, limit=64, tracker=kill_at(2))
    resumed, history = _train(small, method, tmp_path / "killed", epochs=3, limit=64)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    other, _ = _train(small, method, tmp_path / "seed1", epochs=3, limit=64, seed=1)
    assert not torch.equal(other.state_dict()["linear.weight"], whole.state_dict()["linear.weight"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (runs on the device machine)")
@pytest.mark.parametrize("method", ["ard", "gacd", "crd", "trades"])
def test_cuda_step_has_no_host_sync(small, method, tmp_path):
    """On CUDA, after the first step (one-off reads such as CRD's Z), no step synchronises with the host."""
    import bench.train.loop
    from bench.attacks.ascent import pgd_ascent  # noqa: F401  (imported before the sync check)

    dev = torch.device("cuda")
    data = small.to(dev)
    torch.manual_seed(0)
    student = prepare_model(build_model("cnn-narrow", 3, 1), dev)
    teacher = prepare_model(build_model("cnn-narrow", 3, 1), dev).eval().requires_grad_(False)
    spec = parse_method(method)
    ctx = Context(3, len(data.y_train), data.y_train, student.feature_dim, teacher.feature_dim, dev, 2)
    m = spec.build(ctx)
    steps = {"n": 0}
    real_losses = m.losses

    def losses(batch, x_adv):  # from the second step on, any synchronising CUDA call raises
        steps["n"] += 1
        torch.cuda.set_sync_debug_mode("error" if steps["n"] >= 2 else "default")
        return real_losses(batch, x_adv)
    m.losses = losses
    real_step = bench.train.loop._Loop.epoch

    def epoch(self, e):  # the per-epoch reads (log, checkpoint) are outside the steps
        try:
            real_step(self, e)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    bench.train.loop._Loop.epoch = epoch
    try:
        train_model(student, m, data, TrainConfig(epochs=1, batch_size=32), AttackConfig(eps=0.2, steps=2),
                    teacher if spec.cls.needs_teacher else None, tmp_path, dev)
    finally:
        bench.train.loop._Loop.epoch = real_step
        torch.cuda.set_sync_debug_mode("default")
    assert steps["n"] >= 3


# --- precision and compile: options that are recorded -------------------------------------------------

def test_precision_resolves_per_device():
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    from bench.common.errors import BenchError
    with pytest.raises(BenchError, match="auto, bf16, fp32"):
        resolve_precision("fp16", CPU)
    with autocast("bf16", CPU):
        assert torch.nn.Linear(4, 4)(torch.ones(2, 4)).dtype == torch.bfloat16
    with autocast("fp32", CPU):
        assert torch.nn.Linear(4, 4)(torch.ones(2, 4)).dtype == torch.float32


def test_compiled_keeps_the_state_dict_and_restores_the_method():
    model = build_model("cnn-narrow", 3, 1)
    keys = list(model.state_dict())
    with compiled(model, None):
        assert "features" in vars(model) and list(model.state_dict()) == keys
    assert "features" not in vars(model)


@pytest.mark.slow
def test_run_records_precision_and_rejects_both_flags(tmp_path, capsys):
    argv = ["run", "--methods", "pgd-at", "--epochs", "1", "--teacher-epochs", "1", "--n", "20", "--attacks",
            "clean", "--transfer", "none", "--no-structure", "--no-sanity", "--seeds", "0", "--name", "p",
            "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p")]
    assert main([*argv, "--bf16", "--eval-precision", "bf16"]) == 0
    rec = next(json.loads(p.read_text()) for p in (tmp_path / "r" / "p").glob("pgd-at-*/record.json"))
    assert rec["extra"]["step"] == {"device": "cpu", "precision": "bf16", "compile": False}
    assert rec["config"]["precision"] == "bf16" and rec["attack_settings"]["precision"] == "bf16"
    meta = next(json.loads(p.read_text()) for p in (tmp_path / "r" / "teachers").glob("*/meta.json"))
    assert meta["step"]["precision"] == "bf16"
    capsys.readouterr()
    assert main([*argv, "--bf16", "--fp32"]) == 2
    assert "not allowed with argument --bf16" in capsys.readouterr().err
    assert main([*argv, "--fp32", "--print-config"]) == 0
    assert "precision: fp32" in capsys.readouterr().out


def test_evaluate_runs_models_channels_last_and_keeps_what_cannot_be():
    """bench.evaluate (and `bench eval`) move a model to channels_last as bench's own models run; a model
    with 5-D weights (a 3-D convolution) cannot be, and is evaluated as it is."""
    import bench

    conv2d = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(5))
    conv2d(torch.rand(2, 1, 8, 8))
    assert bench.evaluate(conv2d, dataset="digits@0-4", attacks=["clean"], sanity=False).metrics["clean"] >= 0
    assert conv2d[0].weight.is_contiguous(memory_format=torch.channels_last)

    class Volume(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = torch.nn.Conv3d(1, 2, 1), torch.nn.Linear(128, 5)

        def forward(self, x):
            return self.head(self.conv(x[:, None]).flatten(1))
    assert bench.evaluate(Volume(), dataset="digits@0-4", attacks=["clean"], sanity=False).metrics["clean"] >= 0
