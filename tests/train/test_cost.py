"""Training cost per image: the loop counts its first step's FLOPs (torch.utils.flop_counter) and the
record carries them. A linear student gives a count that can be written down by hand."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from bench.config.schema import AttackConfig, TrainConfig
from bench.data.splits import select_classes
from bench.train.cost import StepFlops
from bench.train.loop import FLOPS_KEY, train_model
from bench.methods import parse_method
from bench.methods.base import Context

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def small(digits):
    data = select_classes(digits, [0, 1, 2], "digits@0-2")
    return replace(data, x_train=data.x_train[:64], y_train=data.y_train[:64])


@pytest.mark.parametrize("steps", [1, 3])
def test_a_pgd_at_step_on_a_linear_student_counts_what_is_written_by_hand(small, tmp_path, steps):
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))  # 8x8 grey digits, 3 classes
    ctx = Context(num_classes=3, n_train=64, train_labels=small.y_train, student_dim=3, teacher_dim=None,
                  device=CPU, epochs=2)
    history = train_model(student, parse_method("pgd-at").build(ctx), small, TrainConfig(epochs=2, batch_size=32),
                          AttackConfig(eps=0.2, steps=steps), None, tmp_path, CPU)
    # each attack step: forward (2*64*3 per image) and the input's gradient (2*64*3); the update: forward
    # and the weight's gradient (the adversarial input needs none); a bias adds no matmul FLOPs
    assert history[0][FLOPS_KEY] == 4 * 64 * 3 * (steps + 1)
    assert FLOPS_KEY not in history[1]  # counted once


def test_the_counter_works_under_autograd_grad_where_the_librarys_module_hooks_fail():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    x = torch.rand(5, 1, 8, 8, requires_grad=True)
    with StepFlops() as counter:
        (g,) = torch.autograd.grad(net(x).sum(), x)
    conv, lin = 2 * 5 * 4 * 6 * 6 * 9, 2 * 5 * 144 * 2
    assert g.shape == x.shape and counter.get_total_flops() == 2 * (conv + lin)  # forward and input gradient
