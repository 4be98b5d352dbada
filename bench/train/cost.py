"""Counting a training step's FLOPs with torch.utils.flop_counter, under torch.autograd.grad as well.

FlopCounterMode's per-module breakdown registers backward hooks on every module, and those hooks stop
``torch.autograd.grad`` on a leaf (every attack's input gradient) with "A leaf node was passed to
_will_engine_execute_node". The total needs no breakdown: this counter keeps the library's formulas and
dispatch and attributes everything to one global count.
"""
from __future__ import annotations

from torch.utils.flop_counter import FlopCounterMode


class _Global:
    """Stands in for FlopCounterMode's module tracker: no hooks, one parent."""
    parents = ("Global",)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class StepFlops(FlopCounterMode):
    """``with StepFlops() as c: ...`` then ``c.get_total_flops()``: matmul and convolution FLOPs (forward
    and backward, as torch.utils.flop_counter counts them) of everything run inside."""

    def __init__(self):
        super().__init__(display=False)
        self.mod_tracker = _Global()
