"""Checkpoint policies (``TrainConfig.checkpoint``): which epoch's weights the headline numbers are of.

* ``last``: the last epoch's;
* ``best-val``: the epoch with the best PGD-20 accuracy on a validation split carved from the training
  data (``bench.data.splits.carve_validation``), never the test set: the common protocol's selection;
* ``best-test-pgd10`` / ``best-test-pgd20``: the epoch with the best PGD-10 / PGD-20 accuracy on the test
  set, as some official scripts select (IAD's ``bestpoint``, AdaAD's ``best_PGD10_acc_model``). A number
  chosen on the test set is optimistic; it exists only to reproduce a published number under its own
  name, and the report shows the last epoch beside it.

The score of an epoch is logged in its row of the training log under ``Selection.key``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from bench.attacks.ascent import ATTACKS, attack_accuracy
from bench.config.schema import POLICIES, EvalConfig, selection_key  # noqa: F401  (re-exported)
from bench.data.images import to_float

@dataclass(frozen=True)
class Selection:
    """A best-* policy with the images it scores on (uint8 images, labels), the epochs it scores
    (``every`` before ``dense_from``, then each; None: each), the scoring attack's absolute ``step``
    (None: the attack's own) and the further checkpoints it keeps (``bench.config.schema.ALSO``)."""
    policy: str
    x: torch.Tensor
    y: torch.Tensor
    every: int | None = None
    dense_from: int | None = None
    step: float | None = None
    also: tuple[str, ...] = ()

    def scores_epoch(self, epoch: int) -> bool:
        """Whether the 1-based ``epoch`` is scored."""
        if self.every is None or (self.dense_from is not None and epoch >= self.dense_from):
            return True
        return epoch % self.every == 0

    @property
    def split(self) -> str:
        return POLICIES[self.policy][0]

    @property
    def attack(self) -> str:
        return POLICIES[self.policy][1]

    @property
    def key(self) -> str:
        """The training log's column: val_pgd20, test_pgd10, test_pgd20."""
        return selection_key(self.policy)

    def correct(self, model: nn.Module, eps: float, norm: str = "Linf",
                batch_size: int = EvalConfig.batch_size) -> torch.Tensor:
        """Per-image correctness of ``model`` in eval mode under the policy's attack, in batches of the
        evaluation's default size, all drawing on one random stream (seed 0)."""
        was_training = model.training
        model.eval()
        g = torch.Generator().manual_seed(0)
        spec = ATTACKS.get(self.attack)
        if self.step is not None:
            spec = replace(spec, step_ratio=self.step / eps)
        ok = attack_accuracy(model, to_float(self.x), self.y, spec, eps, batch_size, lambda _: g, norm)
        model.train(was_training)
        return ok

    def score(self, model: nn.Module, eps: float, norm: str = "Linf",
              batch_size: int = EvalConfig.batch_size) -> float:
        """The policy's attack accuracy of ``model``."""
        return float(self.correct(model, eps, norm, batch_size).float().mean())


def fair_score(correct: torch.Tensor, y: torch.Tensor) -> float:
    """Mean accuracy plus the worst class's (over the classes present), as ABSLD's fair selection."""
    per_class = [float(correct[y == c].float().mean()) for c in torch.unique(y).tolist()]
    return float(correct.float().mean()) + min(per_class)


def also_key(name: str, key: str) -> str:
    """The log column of a further checkpoint's score: plain_test_pgd10, fair_test_pgd20."""
    return f"{name.split('-')[0]}_{key}"
