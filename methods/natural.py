"""Standard training: cross-entropy on clean inputs, no attack, no teacher."""
import torch.nn.functional as F

from bench.methods import register
from bench.methods.base import Method


@register
class Natural(Method):
    name = "natural"
    citation = "standard (non-robust) training"
    summary = "CE(S(x), y) on clean inputs"

    def losses(self, batch, x_adv):
        return {"ce": F.cross_entropy(batch.student(batch.x), batch.y)}
