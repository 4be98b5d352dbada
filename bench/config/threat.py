"""The threat model's default radius per data set and norm (pixels in [0, 1])."""
from __future__ import annotations

from bench.common.errors import BenchError
from bench.data.sources import NATURAL_EPS, dataset_entry

# The threat model's radius each data set is usually evaluated at (pixels in [0, 1]), per norm, held by
# the data set's registry entry (bench.data.sources.DataSet.eps). Why these values:
# L-inf: 8/255 for natural images (CIFAR, STL-10, folders of photos), the suite's measured default for
# 8x8 digits. L2: 0.5 on CIFAR-10/100, RobustBench's L2 threat model, and on the other natural-image sets
# (at 32x32x3; larger images scale it by sqrt(d / 3072), e.g. about 3 at 224x224 as the Madry lab's
# ImageNet L2 models use). Digits: measured (benchmarks/l2_eps.py: cnn-narrow, digits@0-4, 20 epochs, PGD-20 in
# the L2 ball, seed 0): at 0.5 a natural student keeps 51 % against 89 % for an L2 PGD-AT student; at 1.0 the natural
# student falls to 0.4 % and PGD-AT keeps 44 % (98 % clean); at 1.5 PGD-AT training collapses to chance.
# So 1.0, as the L-inf 0.2 was chosen. (Scaling CIFAR's pair by sqrt(d) would give 0.46: 0.5 / (8/255
# sqrt(3072)) = 0.29 of the L-inf ball's reach 0.2 sqrt(64) = 1.6, where natural students keep half.)
NORMS = ("Linf", "L2")


def default_eps(name: str, norm: str = "Linf") -> float:
    """The default evaluation eps for a data-set name (``digits@0-4`` -> digits, ``folder:PATH`` -> a
    folder of natural images) under the ``norm`` threat model: its registry entry's (``DataSet.eps``)."""
    if norm not in NORMS:
        raise BenchError(f"unknown norm {norm!r}; known: {', '.join(NORMS)}")
    try:
        return dataset_entry(name).eps[norm]
    except BenchError:  # a name no entry holds (refused where it is loaded): the natural-image radius
        return NATURAL_EPS[norm]
