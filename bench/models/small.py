"""Small CNNs sized for the embedded 8x8 digits (they accept any input size)."""
from __future__ import annotations

from torch import nn

from bench.models.base import BenchModel, GlobalAvgPool
from bench.models.registry import register_arch


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class SmallCNN(BenchModel):
    """conv-conv-pool-conv, global average pooling, linear head."""

    def __init__(self, widths: tuple[int, int, int], num_classes: int, in_channels: int = 1,
                 mean=None, std=None):
        super().__init__(mean, std, in_channels)
        c1, c2, c3 = widths
        self.body = nn.Sequential(_conv_bn(in_channels, c1), _conv_bn(c1, c2), nn.MaxPool2d(2),
                                  _conv_bn(c2, c3), GlobalAvgPool())
        self.linear = nn.Linear(c3, num_classes)
        self.feature_dim, self.num_classes = c3, num_classes

    def features(self, x):
        return self.body(self.normalize(x))

    def head(self, f):
        return self.linear(f)


@register_arch("cnn-wide")
def cnn_wide(num_classes: int, in_channels: int = 1, mean=None, std=None) -> SmallCNN:
    """Teacher-sized digits CNN, widths 32-64-64 (about 57k parameters at 1 input channel)."""
    return SmallCNN((32, 64, 64), num_classes, in_channels, mean, std)


@register_arch("cnn-narrow")
def cnn_narrow(num_classes: int, in_channels: int = 1, mean=None, std=None) -> SmallCNN:
    """Student-sized digits CNN, widths 16-32-32 (about 14k parameters at 1 input channel)."""
    return SmallCNN((16, 32, 32), num_classes, in_channels, mean, std)
