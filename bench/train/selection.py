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

from dataclasses import dataclass

import torch
from torch import nn

from bench.attacks.ascent import ATTACKS, attack_accuracy
from bench.config.schema import EvalConfig
from bench.data.images import to_float

POLICIES = {"best-val": ("val", "pgd20"), "best-test-pgd10": ("test", "pgd10"), "best-test-pgd20": ("test", "pgd20")}


@dataclass(frozen=True)
class Selection:
    """A best-* policy with the images it scores each epoch on (uint8 images, labels)."""
    policy: str
    x: torch.Tensor
    y: torch.Tensor

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

    def score(self, model: nn.Module, eps: float, norm: str = "Linf",
              batch_size: int = EvalConfig.batch_size) -> float:
        """The policy's attack accuracy of ``model`` in eval mode, in batches of the evaluation's default
        size, all drawing on one random stream (seed 0)."""
        was_training = model.training
        model.eval()
        g = torch.Generator().manual_seed(0)
        acc = float(attack_accuracy(model, to_float(self.x), self.y, ATTACKS.get(self.attack), eps, batch_size,
                                    lambda _: g, norm).float().mean())
        model.train(was_training)
        return acc


def selection_key(policy: str) -> str | None:
    """The log column a policy selects on (None for ``last``)."""
    return "_".join(POLICIES[policy]) if policy in POLICIES else None
