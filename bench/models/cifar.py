"""CIFAR-size architectures used by the robust-distillation literature.

Parameter names follow the classic public implementations so that published checkpoints load
with ``strict=True``:

* ``resnet18``        -- CIFAR ResNet-18 (ARD / RSLAD / IAD / AdaAD, autoattack example):
                         ``conv1, bn1, layer1..layer4, linear``; blocks ``conv1, bn1, conv2, bn2, shortcut``.
* ``preact-resnet18`` -- PreAct ResNet-18 (fast-adversarial-training / RobustBench):
                         ``conv1, layer1..layer4, bn, linear``; blocks ``bn1, conv1, bn2, conv2[, shortcut]``.
* ``mobilenetv2``     -- CIFAR MobileNetV2 (kuangliu style): ``conv1, bn1, layers, conv2, bn2, linear``.
* ``wrn-34-10`` / ``wrn-28-10`` -- TRADES / RobustBench WideResNet (without ``sub_block1``):
                         ``conv1, block1..block3 (.layer), bn1, fc``.

All pool with a global average pool (``adaptive_avg_pool2d(x, 1)``), which equals the classic fixed-size pooling at
32x32 and also accepts larger inputs (e.g. 96x96 STL-10 images).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.base import BenchModel, global_avg_pool
from bench.models.registry import register_arch


def _pool(x: torch.Tensor) -> torch.Tensor:
    return global_avg_pool(x)


# --------------------------------------------------------------------------------------------
# ResNet-18 (post-activation, CIFAR stem)
# --------------------------------------------------------------------------------------------

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(BenchModel):
    def __init__(self, num_blocks: Sequence[int], num_classes: int = 10, in_channels: int = 3,
                 mean=None, std=None, base: int = 64):
        super().__init__(mean, std, in_channels)
        self.num_classes = num_classes
        self.feature_dim = 8 * base
        self.in_planes = base
        self.conv1 = nn.Conv2d(in_channels, base, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.layer1 = self._make_layer(base, num_blocks[0], 1)
        self.layer2 = self._make_layer(2 * base, num_blocks[1], 2)
        self.layer3 = self._make_layer(4 * base, num_blocks[2], 2)
        self.layer4 = self._make_layer(8 * base, num_blocks[3], 2)
        self.linear = nn.Linear(8 * base, num_classes)

    def _make_layer(self, planes: int, n: int, stride: int) -> nn.Sequential:
        blocks = []
        for s in [stride] + [1] * (n - 1):
            blocks.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return _pool(out)

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear(f)


@register_arch("resnet18", leaderboard="ResNet-18", smoke="resnet18-tiny")
def resnet18(num_classes: int, in_channels: int = 3, mean=None, std=None) -> BenchModel:
    """CIFAR ResNet-18, the student of ARD, RSLAD, IAD and AdaAD (about 11.2M parameters)."""
    return ResNet([2, 2, 2, 2], num_classes, in_channels, mean, std)


@register_arch("resnet18-tiny", published_as="resnet18")
def resnet18_tiny(num_classes: int, in_channels: int = 3, mean=None, std=None) -> BenchModel:
    """ResNet-18 at 1/8 width (base 8): the same code path for smoke runs on a CPU."""
    return ResNet([2, 2, 2, 2], num_classes, in_channels, mean, std, base=8)


# --------------------------------------------------------------------------------------------
# PreAct ResNet-18
# --------------------------------------------------------------------------------------------

class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class PreActResNet(BenchModel):
    def __init__(self, num_blocks: Sequence[int], num_classes: int = 10, in_channels: int = 3,
                 mean=None, std=None):
        super().__init__(mean, std, in_channels)
        self.num_classes = num_classes
        self.feature_dim = 512
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.layer1 = self._make_layer(64, num_blocks[0], 1)
        self.layer2 = self._make_layer(128, num_blocks[1], 2)
        self.layer3 = self._make_layer(256, num_blocks[2], 2)
        self.layer4 = self._make_layer(512, num_blocks[3], 2)
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def _make_layer(self, planes: int, n: int, stride: int) -> nn.Sequential:
        blocks = []
        for s in [stride] + [1] * (n - 1):
            blocks.append(PreActBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return _pool(F.relu(self.bn(out)))

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear(f)


@register_arch("preact-resnet18", leaderboard="PreActResNet-18", smoke="resnet18-tiny")
def preact_resnet18(num_classes: int, in_channels: int = 3, mean=None, std=None) -> BenchModel:
    """PreAct ResNet-18 as in fast-adversarial-training and RobustBench (about 11.2M parameters)."""
    return PreActResNet([2, 2, 2, 2], num_classes, in_channels, mean, std)


# --------------------------------------------------------------------------------------------
# MobileNetV2 (CIFAR variant: stride-1 stem, second stage at stride 1)
# --------------------------------------------------------------------------------------------

class InvertedResidual(nn.Module):
    """expand (1x1) + depthwise (3x3) + project (1x1)."""

    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int):
        super().__init__()
        self.stride = stride
        planes = expansion * in_planes
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, groups=planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride == 1 and in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, bias=False),
                nn.BatchNorm2d(out_planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 1:
            out = out + self.shortcut(x)
        return out


class MobileNetV2(BenchModel):
    # (expansion, out_planes, num_blocks, stride)
    cfg = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 10, in_channels: int = 3, mean=None, std=None, divisor: int = 1):
        super().__init__(mean, std, in_channels)
        self.num_classes = num_classes
        self.feature_dim = 1280 // divisor
        self.conv1 = nn.Conv2d(in_channels, 32 // divisor, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32 // divisor)
        blocks = []
        in_planes = 32 // divisor
        for expansion, out_planes, n, stride in self.cfg:
            for s in [stride] + [1] * (n - 1):
                blocks.append(InvertedResidual(in_planes, out_planes // divisor, expansion, s))
                in_planes = out_planes // divisor
        self.layers = nn.Sequential(*blocks)
        self.conv2 = nn.Conv2d(320 // divisor, self.feature_dim, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(self.feature_dim)
        self.linear = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layers(out)
        out = F.relu(self.bn2(self.conv2(out)))
        return _pool(out)

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear(f)


@register_arch("mobilenetv2", leaderboard="MobileNetV2", smoke="mobilenetv2-tiny")
def mobilenetv2(num_classes: int, in_channels: int = 3, mean=None, std=None) -> BenchModel:
    """CIFAR MobileNetV2, kuangliu style (about 2.3M parameters)."""
    return MobileNetV2(num_classes, in_channels, mean, std)


@register_arch("mobilenetv2-tiny", published_as="mobilenetv2")
def mobilenetv2_tiny(num_classes: int, in_channels: int = 3, mean=None, std=None) -> BenchModel:
    """MobileNetV2 at 1/8 width: the same code path for smoke runs on a CPU."""
    return MobileNetV2(num_classes, in_channels, mean, std, divisor=8)


# --------------------------------------------------------------------------------------------
# WideResNet (TRADES / RobustBench naming, no sub_block1)
# --------------------------------------------------------------------------------------------

class WideBasicBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = None
        if not self.equal_in_out:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu1(self.bn1(x))
        # when the shape changes, the shortcut taps the pre-activated input (as in TRADES)
        skip = x if self.convShortcut is None else self.convShortcut(act)
        out = self.relu2(self.bn2(self.conv1(act)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return self.conv2(out) + skip


class NetworkBlock(nn.Module):
    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0):
        super().__init__()
        self.layer = nn.Sequential(*[
            WideBasicBlock(in_planes if i == 0 else out_planes, out_planes,
                           stride if i == 0 else 1, drop_rate)
            for i in range(n)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(BenchModel):
    def __init__(self, depth: int = 34, widen_factor: int = 10, num_classes: int = 10,
                 in_channels: int = 3, mean=None, std=None, drop_rate: float = 0.0):
        super().__init__(mean, std, in_channels)
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.num_classes = num_classes
        self.feature_dim = widths[3]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1, drop_rate)
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2, drop_rate)
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU()
        self.fc = nn.Linear(widths[3], num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        out = self.block3(self.block2(self.block1(out)))
        return _pool(self.relu(self.bn1(out)))

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f)


@register_arch("wrn-34-10", leaderboard="WideResNet-34-10", smoke="wrn-10-1")
def wrn_34_10(num_classes: int, in_channels: int = 3, mean=None, std=None) -> BenchModel:
    """WideResNet-34-10, the TRADES / RobustBench teacher (about 46.2M parameters)."""
    return WideResNet(34, 10, num_classes, in_channels, mean, std)


@register_arch("wrn-28-10", leaderboard="WideResNet-28-10", smoke="wrn-10-1")
def wrn_28_10(num_classes: int, in_channels: int = 3, mean=None, std=None) -> BenchModel:
    """WideResNet-28-10, TRADES / RobustBench naming (about 36.5M parameters)."""
    return WideResNet(28, 10, num_classes, in_channels, mean, std)


@register_arch("wrn-34-20", leaderboard="WideResNet-34-20", smoke="wrn-10-1")
def wrn_34_20(num_classes: int, in_channels: int = 3, mean=None, std=None) -> BenchModel:
    """WideResNet-34-20 (185M parameters), the width of RobustBench's Chen2021LTD_WRN34_20, AdaAD's CIFAR-10
    teacher; a zoo teacher is RobustBench's own network, this one sizes the cost model."""
    return WideResNet(34, 20, num_classes, in_channels, mean, std)


@register_arch("wrn-70-16", leaderboard="WideResNet-70-16", smoke="wrn-10-1")
def wrn_70_16(num_classes: int, in_channels: int = 3, mean=None, std=None) -> BenchModel:
    """WideResNet-70-16 (267M parameters) in TRADES' form: the depth and width of RobustBench's
    Gowal2020Uncovering (DeepMind's variant, with Swish), RSLAD's CIFAR-100 teacher; the zoo loads
    RobustBench's own network, this one sizes the cost model."""
    return WideResNet(70, 16, num_classes, in_channels, mean, std)


@register_arch("wrn-10-1")
def wrn_10_1(num_classes: int, in_channels: int = 3, mean=None, std=None) -> BenchModel:
    """WideResNet depth 10, width 1: the WRN code path for smoke runs on a CPU."""
    return WideResNet(10, 1, num_classes, in_channels, mean, std)
