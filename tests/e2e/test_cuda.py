"""The CUDA subset (`python -m pytest -m cuda`, skipped without a GPU): what only a GPU run can break.
bf16 and fp32 training steps, torch.compile, AutoAttack, a killed evaluation's resumption, the device
generator in a checkpoint, two local jobs sharing a GPU, and torchrun with two ranks on one GPU (gloo:
NCCL refuses two ranks on one device, so the NCCL path needs a machine with two GPUs).

``BENCH_CUDA_TESTS_DEVICE=cpu`` runs the same bodies on the CPU: the device rehearsal
(benchmarks/device/run.sh --smoke) does, so that a GPU window is never spent on a broken test.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import bench
from bench.config.schema import AttackConfig, TrainConfig
from bench.data.splits import select_classes
from bench.models import build_model
from bench.train.loop import train_model
from bench.train.teacher import prepare_model
from bench.methods import parse_method
from bench.methods.base import Context

ROOT = Path(__file__).resolve().parents[2]
DEVICE = torch.device(os.environ.get("BENCH_CUDA_TESTS_DEVICE", "cuda"))
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(),
                                 reason="needs CUDA (python -m pytest -m cuda on the device machine)")]
TINY = ["--epochs", "1", "--teacher-epochs", "1", "--attacks", "clean,pgd20", "--n-images", "64", "--no-sanity",
        "--transfer", "none", "--no-structure"]


@pytest.fixture(scope="module")
def small(digits):
    return select_classes(digits, [0, 1, 2], "digits@0-2")


def _bench(*argv, env=None, runner=("-m", "bench")):
    return subprocess.run([sys.executable, *runner, *argv], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def _train(small, method, folder, precision="fp32", epochs=1, seed=0, tracker=None, compile=False, limit=96):
    data = replace(small, x_train=small.x_train[:limit], y_train=small.y_train[:limit]).to(DEVICE)
    torch.manual_seed(0)
    student = prepare_model(build_model("cnn-narrow", 3, 1), DEVICE)
    teacher = prepare_model(build_model("cnn-narrow", 3, 1), DEVICE).eval().requires_grad_(False)
    spec = parse_method(method)
    ctx = Context(3, len(data.y_train), data.y_train, student.feature_dim, teacher.feature_dim, DEVICE, epochs,
                  seed=seed)
    kwargs = {"tracker": tracker} if tracker is not None else {}
    history = train_model(student, spec.build(ctx), data, TrainConfig(epochs=epochs, batch_size=32),
                          AttackConfig(eps=0.2, steps=2), teacher if spec.cls.needs_teacher else None, folder,
                          DEVICE, precision, seed=seed, compile=compile, **kwargs)
    return student, history


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_steps_in_fp32_and_bf16(small, precision, tmp_path):
    """An ARD epoch trains (finite losses, weights moved) in both precisions; bf16's weights differ from
    fp32's (autocast was on) but stay close to them after one epoch."""
    start = prepare_model(build_model("cnn-narrow", 3, 1), DEVICE).state_dict()
    student, history = _train(small, "ard", tmp_path / precision, precision)
    assert all(torch.isfinite(torch.tensor(v)) for row in history for k, v in row.items() if k != "epoch")
    assert not torch.equal(student.state_dict()["linear.weight"], start["linear.weight"])
    if precision == "bf16":
        fp32, _ = _train(small, "ard", tmp_path / "fp32", "fp32")
        a, b = student.state_dict()["linear.weight"], fp32.state_dict()["linear.weight"]
        assert not torch.equal(a, b)
        assert torch.allclose(a, b, atol=0.05), (a - b).abs().max()


def test_autoattack_runs_on_the_device_as_on_the_cpu(trained_digits_model):
    """AutoAttack standard on 20 images on the device: within two images of the same attack on the CPU,
    and never above clean accuracy."""
    import copy

    kwargs = {"dataset": "digits", "attacks": ["clean", "aa"], "n": 20, "eps": 0.1, "sanity": False}
    here = bench.evaluate(copy.deepcopy(trained_digits_model).to(DEVICE), device=DEVICE, **kwargs).metrics
    cpu = bench.evaluate(copy.deepcopy(trained_digits_model), device="cpu", **kwargs).metrics
    assert here["aa"] <= here["clean"]
    assert abs(here["aa"] - cpu["aa"]) <= 2 / 20, (here, cpu)


def test_killed_evaluation_resumes_identically_on_the_device(tmp_path, trained_digits_model, kill_during_autoattack):
    torch.save(trained_digits_model.state_dict(), tmp_path / "m.pt")

    def cmd(out):
        return [sys.executable, "-m", "bench", "eval", "--weights", str(tmp_path / "m.pt"), "--arch", "cnn-narrow",
                "--dataset", "digits", "--n", "8", "--attacks", "clean,pgd20,aa", "--eps", "0.05", "--batch-size",
                "4", "--no-sanity", "--device", DEVICE.type, "--out", str(tmp_path / out)]
    assert subprocess.run(cmd("whole"), capture_output=True, cwd=ROOT).returncode == 0
    kill_during_autoattack(cmd("killed"), tmp_path / "killed", cwd=ROOT)
    assert subprocess.run(cmd("killed"), capture_output=True, cwd=ROOT).returncode == 0
    whole = json.loads((tmp_path / "whole" / "record.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "record.json").read_text())
    assert resumed["metrics"] == whole["metrics"]


def test_device_generator_survives_a_checkpoint(small, tmp_path, kill_at):
    """The run's generator lives on the device and its state is in each epoch's checkpoint: a run killed
    after epoch 1 and resumed ends where the uninterrupted run ends (up to cuDNN's float order), and
    another seed does not."""
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    whole, _ = _train(small, "gacd:estimator=nce", tmp_path / "whole", epochs=3, limit=64)
    with pytest.raises(KeyboardInterrupt):
        _train(small, "gacd:estimator=nce", tmp_path / "killed", epochs=3, limit=64, tracker=kill_at(2))
    assert isinstance(torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["generator"], torch.Tensor)
    resumed, history = _train(small, "gacd:estimator=nce", tmp_path / "killed", epochs=3, limit=64)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    other, _ = _train(small, "gacd:estimator=nce", tmp_path / "seed1", epochs=3, limit=64, seed=1)
    w, r, o = (m.state_dict()["linear.weight"] for m in (whole, resumed, other))
    assert (w - r).abs().max() < 1e-4 < (w - o).abs().max()


@pytest.mark.skipif(DEVICE.type != "cuda", reason="--jobs-per-gpu needs a GPU")
def test_two_local_jobs_share_one_gpu(tmp_path):
    out = _bench("run", "--methods", "kd", "--seeds", "0,1", *TINY, "--executor", "local", "--jobs-per-gpu", "2",
                 "--name", "j", "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p"))
    assert out.returncode == 0, out.stderr[-3000:]
    runs = json.loads((tmp_path / "p" / "j" / "runs.json").read_text())
    students = [r for r in runs if r["role"] == "student"]
    assert sorted(r["seed"] for r in students) == [0, 1]
    assert all(r["extra"]["step"]["device"].startswith("cuda") for r in students)


def test_torchrun_two_ranks_on_one_device(tmp_path):
    """Two ranks on one GPU join a gloo group (bench.common.distributed.backend) and train one run."""
    out = _bench("run", "--methods", "crd", "--seeds", "0", *TINY, "--device", DEVICE.type, "--name", "d",
                 "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "p"),
                 runner=("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "bench"))
    assert out.returncode == 0, out.stderr[-3000:]
    runs = json.loads((tmp_path / "p" / "d" / "runs.json").read_text())
    student = next(r for r in runs if r["role"] == "student")
    assert student["extra"]["distributed"]["world_size"] == 2
    assert student["extra"]["distributed"]["backend"] == "gloo"
    assert student["extra"]["step"]["device"].startswith(DEVICE.type)


# last: the slowest on a GPU (compilation), so that a time limit costs it alone
def test_compile_trains_one_method_like_eager(small, tmp_path):
    """torch.compile of the student's and teacher's features: the same state-dict keys and, in fp32,
    the eager weights up to the compiled kernels' float order."""
    eager, _ = _train(small, "kd", tmp_path / "eager")
    compiled, _ = _train(small, "kd", tmp_path / "compiled", compile=True)
    assert list(compiled.state_dict()) == list(eager.state_dict())
    for k, v in eager.state_dict().items():
        assert torch.allclose(compiled.state_dict()[k].float(), v.float(), atol=1e-3), k
