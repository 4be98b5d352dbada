"""The dry run's training cost: one step counted as the run counts it, without running it (issue 22), and
FLOPs turned into seconds at the rate of the network that spends them."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bench.config.schema import AttackConfig, DataConfig, EvalConfig, RunConfig, SanityConfig, TrainConfig
from bench.data.splits import select_classes
from bench.models import build_model
from bench.runs import estimate
from bench.train.loop import FLOPS_KEY, adversarial_examples, train_model
from bench.methods import METHODS, parse_method
from bench.methods.base import Batch, Context

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def small(digits):
    data = select_classes(digits, [0, 1, 2], "digits@0-2")
    return replace(data, x_train=data.x_train[:64], y_train=data.y_train[:64])


# ard: the teacher on clean inputs; adaad: the teacher's input gradient in every attack step; gacd: heads
# and an in-batch contrast; crd: a memory bank that needs real labels (counted on the CPU instead of meta)
@pytest.mark.parametrize("label", ["ard", "adaad", "gacd", "crd", "trades"])
def test_the_dry_runs_count_is_the_runs_own_first_step_count(small, tmp_path, label):
    cfg = RunConfig(train=TrainConfig(epochs=1, batch_size=32), attack=AttackConfig(eps=0.2, steps=3))
    spec = parse_method(label)
    torch.manual_seed(0)
    student, teacher = build_model(cfg.student_arch, 3, 1), build_model(cfg.teacher.arch, 3, 1)
    ctx = Context(num_classes=3, n_train=64, train_labels=small.y_train, student_dim=student.feature_dim,
                  teacher_dim=teacher.feature_dim, device=CPU, epochs=1, build_student=lambda: build_model(
                      cfg.student_arch, 3, 1))
    history = train_model(student, spec.build(ctx), small, cfg.train, cfg.attack,
                          teacher if spec.cls.needs_teacher else None, tmp_path, CPU)
    counted, where = estimate.step_flops(label, cfg, 1, 8, 3, 64)
    assert where.startswith("cpu" if label == "crd" else "meta")
    assert counted == history[0][FLOPS_KEY] > 0


def test_attack_steps_are_extrapolated_exactly():
    cfg = RunConfig(train=TrainConfig(batch_size=8))
    spec = parse_method("adaad")
    counts = [estimate._count_step(spec, replace(cfg, attack=AttackConfig(steps=k)), 1, 8, 10, 100,
                                   estimate.META, None) for k in (1, 2, 7)]
    assert estimate.count_step(spec, replace(cfg, attack=AttackConfig(steps=7)), 1, 8, 10, 100) == counts[2]
    assert counts[2] - counts[1] == 5 * (counts[1] - counts[0]) > 0  # every attack step costs the same


def test_each_part_of_a_step_runs_at_its_networks_rate(monkeypatch):
    """Student 1 GFLOP/s, teacher 4 GFLOP/s forward-backward and 8 forward: a teacher that spends most of
    a step's FLOPs (AdaAD's attack) makes the step cheaper than the student's rate alone would say."""
    rates = {"cnn-narrow": estimate.Throughput(fwd_bwd=100.0, fwd=200.0, fwd_bwd_flops=1e7, fwd_flops=5e6, batch=2),
             "cnn-wide": estimate.Throughput(fwd_bwd=40.0, fwd=80.0, fwd_bwd_flops=1e8, fwd_flops=1e8, batch=2)}
    monkeypatch.setattr(estimate, "measure", lambda arch, *a, **k: rates[arch])
    cfg = RunConfig(attack=AttackConfig(steps=10))
    shape = (1, 8, 10)
    flops = 2e9  # per image
    plain = estimate.train_step_seconds(parse_method("pgd-at"), cfg, flops, shape, CPU, 2)
    assert plain == pytest.approx(flops / 1e9)  # no teacher: all at the student's rate
    ard = estimate.train_step_seconds(parse_method("ard"), cfg, flops, shape, CPU, 2)
    assert ard == pytest.approx(1e8 / 8e9 + (flops - 1e8) / 1e9)  # one clean teacher forward
    adaad = estimate.train_step_seconds(parse_method("adaad"), cfg, flops, shape, CPU, 2)
    teacher = 1e8 / 8e9 + 10 * 1e8 / 4e9
    assert adaad == pytest.approx(teacher + (flops - 1e8 - 10 * 1e8) / 1e9) and adaad < plain


@pytest.mark.parametrize("label", [n for n in METHODS.names() if METHODS.get(n).inner is not None])
def test_through_teacher_says_what_the_attack_does(label):
    """The cost model charges a teacher forward-backward per attack step exactly where the method declares
    InnerMax.through_teacher; the declaration is checked against what the attack feeds the teacher."""
    spec = parse_method(label)
    cfg = RunConfig(attack=AttackConfig(eps=0.2, steps=2))
    torch.manual_seed(0)
    student, teacher = build_model(cfg.student_arch, 3, 1), build_model(cfg.teacher.arch, 3, 1).eval()
    ctx = Context(num_classes=3, n_train=8, train_labels=torch.arange(8) % 3, student_dim=student.feature_dim,
                  teacher_dim=teacher.feature_dim, device=CPU, epochs=1,
                  build_student=lambda: build_model(cfg.student_arch, 3, 1))
    method = spec.build(ctx)
    roles = {role: build_model(cfg.teacher.arch, 3, 1).eval() for role in spec.cls.teachers}
    batch = Batch(torch.rand(8, 1, 8, 8), torch.arange(8) % 3, torch.arange(8), student,
                  teacher if spec.cls.needs_teacher else None, 0, generator=torch.Generator(), teachers=roles)
    grads: list[bool] = []
    hook = teacher.register_forward_pre_hook(lambda module, args: grads.append(args[0].requires_grad))
    try:
        adversarial_examples(method, batch, cfg.attack)
    finally:
        hook.remove()
    assert any(grads) == spec.cls.inner.through_teacher


def test_a_class_subset_is_costed_on_its_own_images(digits):
    """digits@0-4 trains on half the digits: the estimate used to cost the whole set (twice the run)."""
    train, test, channels, size, classes = estimate.data_shape(DataConfig(name="digits@0-4"))
    real = select_classes(digits, [0, 1, 2, 3, 4], "digits@0-4")
    assert abs(train - len(real.y_train)) <= 2 and abs(test - len(real.y_test)) <= 2
    assert (channels, size, classes) == (1, 8, 5)
    assert estimate.data_shape(DataConfig(name="cifar10@0,3", train_limit=1000, image_size=16)) == (200, 2000, 3, 16, 2)


def test_the_evaluations_passes_follow_its_config():
    n = 100
    bare = EvalConfig(attacks=("clean", "pgd20"), curve_eps=(), sanity=SanityConfig(enabled=False))
    assert estimate.eval_passes(bare, n, 0, False, (1, 8, 8)) == (20 * n, n)
    assert estimate.eval_passes(bare, n, 2, True, (1, 8, 8)) == (20 * n + 3 * 20 * n, n)  # probes, structure
    sane = replace(bare, sanity=SanityConfig(n=50))
    assert estimate.eval_passes(sane, n, 0, False, (1, 8, 8))[0] == 20 * n + 50 * (20 + 100 * 3 + 1)
    corrupted = replace(bare, attacks=("clean", "corruptions"), corruptions_n=40, corruptions=("contrast", "fog"))
    assert estimate.eval_passes(corrupted, n, 0, False, (3, 32, 32)) == (0, n + 40 * 2 * 5)


@pytest.mark.parametrize("hours,text", [(0.0001, "<1 s"), (0.01, "36 s"), (0.05, "3 min"), (0.5, "30 min"),
                                        (2.345, "2.3 h")])
def test_durations_read_at_every_scale(hours, text):
    assert estimate._duration(hours) == text  # 0.01 h printed as "0.01 h" hid a 36 s job
