"""Fair-ARD's per-class re-weighting, shared by ``fair-ard``, ``fair-rslad`` and ``fair-iad`` (a helper module:
its name starts with ``_``, so the registry does not import it; the methods import it).

Read from NISP-official/Fair-ARD @910c8cd (``Fair-ARD.py``, ``Fair-RSLAD.py``, ``Fair-IAD.py``, ``Fair-MTARD.py``):

* kappa (``AttackPGD.forward`` Fair-ARD.py:60-78, Fair-IAD.py:76-94; ``rslad_inner_loss`` Fair-RSLAD.py:55-63):
  kappa_i = #{k in 0..K-1 : argmax S(x_k)_i = y_i}, counted from the very forward the attack's gradient is
  taken at, before each step (x_0 the random start; the final iterate x_K is not counted), first index on
  ties, with the student in the attack's batch-norm mode (train for Fair-ARD/IAD, eval for Fair-RSLAD).
  Here ``count_kappa`` runs inside the method's ``inner_objective``, which the harness evaluates exactly once
  at each of x_0 .. x_{K-1}, in order, and adds to ``batch.cache["kappa"]``.
* per epoch (Fair-ARD.py:129,134-135,166): ``Kappa_total[y_i] += kappa_i`` over the epoch, then
  ``Kbar = Kappa_total / (len(trainset) / C)``. Here ``losses`` adds each sample's kappa and a count of one
  into per-class sums in ``self.state`` and ``end_epoch`` divides by the **true per-class counts** (summed
  over ranks with ``end.reduce``): on balanced CIFAR-10 that is the code's 5,000; on unbalanced data (digits,
  a validation split carved from the training set) the code's len/C would not be a class's mean.
* weights (``weight_assign``, Fair-ARD.py:116-125): r = (1 / (Kbar + 1e-5))^beta, r <- r C / sum(r),
  w = clamp(r, 5/6, 5/2); the bounds are hard-coded and nothing is renormalised after the clamp.
  ``Fair-RSLAD.py:95-104`` has no +1e-5 (a class with Kbar 0 gets inf x C/inf = NaN, so its samples' loss is
  NaN); option ``kappa_eps`` (default 1e-5) gives it, ``kappa_eps=0`` is that script's literal form.
* timeline (Fair-ARD.py:161-167): the weights are all ones for the first epoch; epoch e trains with the weights
  computed from epoch e-1's kappa only (no average over epochs); the accumulators restart every epoch.
* a class with no sample in the epoch (possible only on a subset): the code would divide 0 by len/C and give it
  Kbar 0, i.e. the largest weight, which shrinks every other class's r through the normalisation. Here it is
  left out: the normalisation runs over the classes seen (C' of them, r C' / sum r) and the unseen class keeps
  its previous weight (1 at first). On full CIFAR epochs every class is seen and this is the code's rule.
* use: each sample's loss terms are multiplied by w[y_i] and then averaged over the batch (1/B).
"""
from __future__ import annotations

import torch

WEIGHT_MIN, WEIGHT_MAX = 5 / 6, 5 / 2   # Fair-ARD.py:124 (hard-coded in all four scripts)


def class_weights(kbar: torch.Tensor, beta: float, eps: float = 1e-5) -> torch.Tensor:
    """``weight_assign``: clamp((1/(Kbar + eps))^beta * C / sum_c (1/(Kbar_c + eps))^beta, 5/6, 5/2), C = len(kbar)."""
    r = (1.0 / (kbar + eps)) ** beta
    r = r * (len(kbar) / torch.sum(r))
    return torch.clamp(r, min=WEIGHT_MIN, max=WEIGHT_MAX)


def correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 where the prediction (first index on ties, as ``max(1)[1]``) is the label, else 0 (int64, no graph)."""
    return (logits.detach().argmax(1) == y).long()


class FairReweight:
    """Mixin for a Fair-* method (before the base method in the bases): ``Options.beta`` and ``Options.kappa_eps``;
    ``count_kappa`` in ``inner_objective``, ``sample_weights`` once in ``losses``; ``end_epoch`` updates the weights.

    ``self.state``: ``weights`` (C,) float, the weights this epoch trains with; ``kappa_sum`` and ``count`` (C,)
    int64, this epoch's per-class sums of kappa and of samples on this rank."""

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        c, dev = ctx.num_classes, ctx.device
        self.state.update(weights=torch.ones(c, device=dev), kappa_sum=torch.zeros(c, dtype=torch.long, device=dev),
                          count=torch.zeros(c, dtype=torch.long, device=dev))

    def count_kappa(self, batch, logits: torch.Tensor) -> None:
        """Add one to kappa_i where the student classifies iterate x_k correctly (call once per iterate)."""
        hit = correct(logits, batch.y)
        batch.cache["kappa"] = hit if "kappa" not in batch.cache else batch.cache["kappa"] + hit

    def sample_weights(self, batch) -> torch.Tensor:
        """w[y_i] for this batch (the weights of the previous epoch), after adding the batch's kappa to this epoch's
        per-class sums. A batch whose attack did not run (no kappa) adds nothing to the statistics."""
        kappa = batch.cache.get("kappa")
        if kappa is not None:
            self.state["kappa_sum"].index_add_(0, batch.y, kappa.to(self.state["kappa_sum"].dtype))
            self.state["count"].index_add_(0, batch.y, torch.ones_like(batch.y, dtype=self.state["count"].dtype))
        return self.state["weights"][batch.y]

    def end_epoch(self, end) -> None:
        sums, counts = end.reduce(self.state["kappa_sum"]), end.reduce(self.state["count"])
        seen = counts > 0
        weights = self.state["weights"].clone()
        if bool(seen.any()):  # one host read per epoch
            kbar = sums[seen].float() / counts[seen].float()
            weights[seen] = class_weights(kbar, self.options.beta, self.options.kappa_eps).to(weights.dtype)
        self.state["weights"] = weights
        self.state["kappa_sum"] = torch.zeros_like(self.state["kappa_sum"])
        self.state["count"] = torch.zeros_like(self.state["count"])

    def facts(self):
        return {**super().facts(), "fair_class_weights": [round(float(w), 4) for w in self.state["weights"]]}
