"""The threat model's default radius per data set and norm (pixels in [0, 1])."""
from __future__ import annotations

from bench.common.errors import BenchError

# The threat model's radius each data set is usually evaluated at (pixels in [0, 1]), per norm.
# L-inf: 8/255 for natural images (CIFAR, STL-10, folders of photos), the suite's measured default for
# 8x8 digits. L2: 0.5 on CIFAR-10/100, RobustBench's L2 threat model, and on the other natural-image sets
# (at 32x32x3; larger images scale it by sqrt(d / 3072), e.g. about 3 at 224x224 as the Madry lab's
# ImageNet L2 models use). Digits: measured (benchmarks/l2_eps.py: cnn-narrow, digits@0-4, 20 epochs, PGD-20 in
# the L2 ball, seed 0): at 0.5 a natural student keeps 51 % against 89 % for an L2 PGD-AT student; at 1.0 the natural
# student falls to 0.4 % and PGD-AT keeps 44 % (98 % clean); at 1.5 PGD-AT training collapses to chance.
# So 1.0, as the L-inf 0.2 was chosen. (Scaling CIFAR's pair by sqrt(d) would give 0.46: 0.5 / (8/255
# sqrt(3072)) = 0.29 of the L-inf ball's reach 0.2 sqrt(64) = 1.6, where natural students keep half.)
DEFAULT_EPS = {"Linf": {"digits": 0.2, "cifar10": 8 / 255, "cifar100": 8 / 255, "stl10": 8 / 255, "folder": 8 / 255},
               "L2": {"digits": 1.0, "cifar10": 0.5, "cifar100": 0.5, "stl10": 0.5, "folder": 0.5}}
FALLBACK_EPS = {"Linf": 8 / 255, "L2": 0.5}  # a data set without its own entry: the natural-image value


def default_eps(name: str, norm: str = "Linf") -> float:
    """The default evaluation eps for a data-set name (``digits@0-4`` -> digits, ``folder:PATH`` -> folder)
    under the ``norm`` threat model."""
    if norm not in DEFAULT_EPS:
        raise BenchError(f"unknown norm {norm!r}; known: {', '.join(DEFAULT_EPS)}")
    base = name.partition("@")[0].partition(":")[0]
    return DEFAULT_EPS[norm].get(base, FALLBACK_EPS[norm])
