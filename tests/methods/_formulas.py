"""What the formula tests of tests/methods share: a tiny network with fixed weights, and the official
scripts' arithmetic per sample, written with plain Python and ``math`` (independent of the suite's code)."""
import copy
import math

import torch
from torch import nn

from bench.models.base import BenchModel

D_IN = 12   # 3 x 2 x 2 inputs


class Tiny(BenchModel):
    """A linear-tanh network; with ``bn`` a BatchNorm1d on its features (train and eval outputs differ, running
    statistics count forwards). ``seen`` holds every forward's input, in order."""

    def __init__(self, dim: int, classes: int, seed: int, scale: float = 1.0, bn: bool = False):
        super().__init__(in_channels=3)
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(D_IN, dim, generator=g) * 0.5)
        self.bn = nn.BatchNorm1d(dim) if bn else None
        self.linear = nn.Linear(dim, classes)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(classes, dim, generator=g) * scale)
            self.linear.bias.copy_(torch.randn(classes, generator=g) * 0.1)
        self.feature_dim, self.num_classes = dim, classes
        self.seen: list[torch.Tensor] = []

    def features(self, x):
        self.seen.append(x)
        h = self.normalize(x).flatten(1) @ self.w
        return torch.tanh(self.bn(h) if self.bn is not None else h)

    def head(self, f):
        return self.linear(f)


def softmax(row, t=1.0):
    z = [v / t for v in row]
    m = max(z)
    e = [math.exp(v - m) for v in z]
    return [v / sum(e) for v in e]


def kl_row(target_row, student_row, t=1.0):
    """KL(softmax(target/t) || softmax(student/t)) for one sample, summed over classes."""
    p, q = softmax(target_row, t), softmax(student_row, t)
    return sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q) if a > 0)


def ce_row(row, y):
    return -math.log(softmax(row)[y])


def rows(t):
    return t.detach().tolist()


def train_forwards(student, inputs):
    """The running statistics after train-mode forwards of ``inputs``, in order, on a copy of ``student``."""
    twin = copy.deepcopy(student).train()
    with torch.no_grad():
        for x in inputs:
            twin(x)
    return twin.bn.running_mean.clone(), twin.bn.running_var.clone()


def same_running_stats(student, expected):
    return all(torch.allclose(a, b, rtol=1e-6, atol=1e-7)
               for a, b in zip((student.bn.running_mean, student.bn.running_var), expected))
