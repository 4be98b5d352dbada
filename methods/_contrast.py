"""Contrastive pieces shared by CRD and GACD: embedding heads, a memory bank, NCE and InfoNCE.

Formulas follow CRD (Tian et al., ICLR 2020; HobbitLong/RepDistiller), restated:
  score(q, k) = exp(<q, k> / tau) / Z, with Z fixed from the first batch (mean score x n_data);
  NCE per sample = -log(P_pos / (P_pos + K Pn)) - sum_k log(K Pn / (P_neg_k + K Pn)), Pn = 1/n_data.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.common.distributed import all_reduce_sum, gather_rows

NCE_EPS = 1e-7


class Embed(nn.Module):
    """Linear projection followed by L2 normalisation."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(f), dim=1)


def nce_loss(p_pos: torch.Tensor, p_neg: torch.Tensor, n_data: int) -> torch.Tensor:
    """CRD's NCE loss per sample. p_pos: (B,), p_neg: (B, K), both already divided by Z."""
    k_pn = p_neg.shape[1] / n_data
    log_d1 = torch.log(p_pos / (p_pos + k_pn + NCE_EPS))
    log_d0 = torch.log(k_pn / (p_neg + k_pn + NCE_EPS))
    return -(log_d1 + log_d0.sum(1))


def info_nce(query: torch.Tensor, keys: torch.Tensor, tau: float,
             negatives: torch.Tensor | None = None) -> torch.Tensor:
    """In-batch InfoNCE per sample: key i is query i's positive, the other keys its negatives.

    ``negatives`` (B, B) bool says which off-diagonal keys count as negatives (class-aware);
    the diagonal is always kept.
    """
    logits = query @ keys.t() / tau
    if negatives is not None:
        keep = negatives | torch.eye(len(query), dtype=torch.bool, device=query.device)
        logits = logits.masked_fill(~keep, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(query), device=query.device), reduction="none")


def info_nce_at(query: torch.Tensor, keys: torch.Tensor, tau: float, targets: torch.Tensor,
                keep: torch.Tensor) -> torch.Tensor:
    """InfoNCE per query where query i's positive is ``keys[targets[i]]`` and ``keep`` (B, N) says
    which keys take part (the positive included): queries of one rank against a global batch."""
    logits = (query @ keys.t() / tau).masked_fill(~keep, float("-inf"))
    return F.cross_entropy(logits, targets, reduction="none")


def other_class_mask(y: torch.Tensor) -> torch.Tensor:
    return y[:, None] != y[None, :]


class MemoryBank(nn.Module):
    """One bank of L2-normalised embeddings (one row per training sample), momentum-updated,
    with CRD's class-aware negative sampling and a normaliser Z fixed at the first batch."""

    def __init__(self, n_data: int, dim: int, labels: torch.Tensor, k: int, tau: float,
                 momentum: float):
        super().__init__()
        self.n_data, self.tau, self.momentum = n_data, tau, momentum
        stdv = 1.0 / math.sqrt(dim / 3)
        # normalised in float64, rounded once: a float32 norm's last bit depends on the CPU's vector width
        # and the torch release (its reduction order), which moved CRD's pinned gradients by 1e-6
        init = torch.rand(n_data, dim).double().mul_(2 * stdv).add_(-stdv)
        self.register_buffer("bank", F.normalize(init, dim=1).to(torch.get_default_dtype()))
        self.register_buffer("z", torch.tensor(-1.0))
        self._z_fixed = False
        labels = labels.detach().cpu()
        order = torch.argsort(labels, stable=True)
        counts = torch.bincount(labels)
        self.register_buffer("sorted_idx", order)
        self.register_buffer("class_start", torch.cumsum(counts, 0) - counts)
        self.register_buffer("class_count", counts)
        self.register_buffer("labels", labels)
        # RepDistiller draws each sample's K negatives without replacement from the other classes
        # (np.random.choice(..., replace=False) when K <= the pool); K is capped at the smallest pool,
        # so every draw here is without replacement.
        self.k = int(min(k, n_data - int(counts.max())))

    def negatives(self, idx: torch.Tensor, shard=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, K) indices of distinct samples from classes other than each sample's own, uniformly
        without replacement (the K smallest of uniform keys over the pool), drawn from ``generator``
        (the run's device stream; None: the device's global one). Under torchrun (``shard``) every rank
        draws for the global batch, as one process would, and keeps its rows, so the ranks' random
        streams stay equal. Everything stays on the device (no host sync)."""
        if shard is not None:
            return self.negatives(shard.idx, generator=generator)[shard.part]
        y = self.labels[idx]
        start, count = self.class_start[y], self.class_count[y]
        keys = torch.rand(len(idx), self.n_data, generator=generator, device=idx.device)
        pos = torch.arange(self.n_data, device=idx.device)
        own = (pos >= start[:, None]) & (pos < (start + count)[:, None])  # the sample's class block
        keys = keys.masked_fill(own, 2.0)  # above every uniform key: never among the K smallest
        return self.sorted_idx[keys.topk(self.k, dim=1, largest=False).indices]

    def scores(self, query: torch.Tensor, keys: torch.Tensor, shard=None) -> torch.Tensor:
        """exp(<query, key>/tau)/Z for keys (B, K+1, d); fixes Z on the first call (from the whole
        global batch under torchrun, so every rank fixes the same Z)."""
        out = torch.exp(torch.bmm(keys, query.unsqueeze(2)).squeeze(2) / self.tau)
        # Z is read back once per module (one host sync, then never again in the step); a resumed run's
        # loaded Z is found fixed on that first read.
        if not self._z_fixed and self.z < 0:
            if shard is None:
                self.z.fill_(float(out.detach().mean()) * self.n_data)
            else:

                total = all_reduce_sum(torch.stack([out.detach().sum().double(),
                                                    torch.tensor(out.numel(), dtype=torch.double, device=out.device)]))
                self.z.fill_(float(total[0] / total[1]) * self.n_data)
        self._z_fixed = True
        return out / self.z

    @torch.no_grad()
    def update(self, idx: torch.Tensor, emb: torch.Tensor, shard=None) -> None:
        """Momentum update of the rows ``idx``; under torchrun with every rank's rows (all-gathered),
        so the banks stay identical across ranks."""
        if shard is not None:

            idx, emb = shard.idx, gather_rows(emb.detach(), shard)
        mixed = self.bank[idx] * self.momentum + emb.detach() * (1 - self.momentum)
        self.bank[idx] = F.normalize(mixed, dim=1)
