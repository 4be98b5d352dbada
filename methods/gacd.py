"""GACD, re-implemented from the paper's description (Bai et al., arXiv 2009.09922, 2020).

Only the abstract is public; no code exists. What the abstract states: robustness moves from a
robust teacher to the student through *features*, by a contrastive objective tied to a lower bound
on mutual information, with the *teacher as anchor*, and samples the teacher gets wrong are
discounted ("sample reweighted estimation"). Everything below that the abstract does not fix is a
named option; the defaults are our reconstruction, not the paper's:

  embeddings  linear head + L2 norm on pooled penultimate features of S and T (T's backbone frozen,
              its head trained); positive pair (T embedding of x, S embedding of x')
  estimator   infonce: in-batch InfoNCE with class-aware negatives (default) | nce: CRD's NCE with a
              memory bank of S embeddings. The default differs from CRD's NCE because NCE with a
              teacher anchor leaves only the positive term depending on x', and then the contrastive
              attack is weak and the student barely robust (measured; see the GACD ablation).
  anchor      teacher: T's embedding is the query, S's embeddings the candidates (default) |
              symmetric: also S as query against T's embeddings, as CRD does
  attack      contrastive: PGD ascends the same (unweighted) contrastive loss (default) | ce
  reweight    teacher-prob: w_i = p_T(y_i|x_i) (default) | teacher-correct: 1[argmax T(x_i) = y_i]
              | teacher-prob-pow: p_T(y_i|x_i)^pow | none; weights normalised to mean 1 in the batch
  loss        CE(S(x'), y) + beta L_contrastive + alpha t^2 KL(S(x')/t || T(x)/t)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks import ce_loss
from bench.common.distributed import all_reduce_sum, gather_rows
from bench.methods import register
from bench.methods._contrast import (
    Embed,
    MemoryBank,
    info_nce,
    info_nce_at,
    nce_loss,
    other_class_mask,
)
from bench.methods.base import InnerMax, Method, Recipe, kl_div


def teacher_weights(teacher_logits: torch.Tensor, y: torch.Tensor, mode: str, power: float,
                    shard=None) -> torch.Tensor:
    """Per-sample reliability weights of the teacher, normalised to mean 1 over the batch (the global
    batch under torchrun; all-zero stays zero)."""
    if mode == "none":
        return torch.ones(len(y), device=y.device)
    p_true = F.softmax(teacher_logits, 1).gather(1, y[:, None]).squeeze(1)
    w = {"teacher-prob": p_true, "teacher-correct": (teacher_logits.argmax(1) == y).float(),
         "teacher-prob-pow": p_true.pow(power)}[mode]
    if shard is None:
        return w / w.mean().clamp_min(1e-12)

    total = all_reduce_sum(torch.stack([w.sum(), torch.full((), float(len(w)), device=w.device)]))
    return w / (total[0] / total[1]).clamp_min(1e-12)


@register
class GACD(Method):
    name = "gacd"
    citation = ("Bai et al., Feature Distillation With Guided Adversarial Contrastive Learning, "
                "arXiv 2009.09922, 2020 (re-implemented from the paper's description)")
    summary = "CE(S(x'),y) + beta w-weighted contrastive(T(x) anchor, S(x')) [+ alpha KL]"
    needs_teacher = True
    inner = InnerMax("contrastive loss of S(x') against the T(x) anchor (option attack=ce: CE(S(x'), y))",
                     start="uniform", student_mode="train", teacher_at="x (clean)")
    note = "re-implemented from the paper's description"
    schedule = "not published (abstract only); uses the suite's schedule"
    # no official code: the official protocol runs the reconstruction's default, the common config
    official: ClassVar[Recipe] = Recipe(repo="none: the paper's abstract only (shared/reference/methods.md)",
                                        code=False)

    @dataclass(frozen=True)
    class Options:
        estimator: Literal["infonce", "nce"] = "infonce"   # contrastive MI lower bound
        anchor: Literal["teacher", "symmetric"] = "teacher"
        attack: Literal["contrastive", "ce"] = "contrastive"  # what the inner maximisation ascends
        reweight: Literal["teacher-prob", "teacher-correct", "teacher-prob-pow", "none"] = "teacher-prob"
        power: float = 0.1        # exponent for reweight=teacher-prob-pow
        beta: float = 0.8         # contrastive weight (CRD's)
        alpha: float = 1.0        # logit term weight; 0 turns it off
        t: float = 1.0            # logit term temperature
        feat_dim: int = 128       # embedding size
        k: int = 4096             # NCE negatives (capped by what the dataset allows)
        tau: float = 0.1          # contrastive temperature
        momentum: float = 0.5     # NCE memory-bank momentum

    gradient_sites: ClassVar[dict[str, str]] = {
        "teacher_head": "flow: the teacher's embedding v_t in the loss (T's backbone frozen, its "
                        "head trained)"}

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        o = options
        heads = {"embed_s": Embed(ctx.student_dim, o.feat_dim), "embed_t": Embed(ctx.teacher_dim, o.feat_dim)}
        if o.estimator == "nce":
            for side in ("bank_s", "bank_t"):
                heads[side] = MemoryBank(ctx.n_train, o.feat_dim, ctx.train_labels, o.k, o.tau, o.momentum)
        self.heads = nn.ModuleDict(heads)

    def modules(self):
        return self.heads

    def facts(self):
        return {"effective_k": self.heads["bank_s"].k} if "bank_s" in self.heads else {}

    def _contrastive(self, batch, v_s: torch.Tensor, v_t: torch.Tensor) -> torch.Tensor:
        """Per-sample contrastive loss between teacher anchors v_t and student embeddings v_s."""
        o, h = self.options, self.heads
        if o.estimator == "infonce":
            if batch.shard is not None:  # under torchrun the negatives are the whole global batch's
                return self._infonce_sharded(batch, v_s, v_t)
            mask = other_class_mask(batch.y)
            loss = info_nce(v_t, v_s, o.tau, mask)
            if o.anchor == "symmetric":
                loss = loss + info_nce(v_s, v_t, o.tau, mask)
            return loss
        if "negatives" not in batch.cache:  # one draw per batch, shared by the attack and the loss
            neg = h["bank_s"].negatives(batch.idx, batch.shard, batch.generator)
            batch.cache["negatives"] = {side: h[side].bank[neg] for side in ("bank_s", "bank_t")}
        neg_keys = batch.cache["negatives"]
        p = h["bank_s"].scores(v_t, torch.cat([v_s[:, None], neg_keys["bank_s"]], 1), batch.shard)
        loss = nce_loss(p[:, 0], p[:, 1:], self.ctx.n_train)
        if o.anchor == "symmetric":
            p = h["bank_t"].scores(v_s, torch.cat([v_t[:, None], neg_keys["bank_t"]], 1), batch.shard)
            loss = loss + nce_loss(p[:, 0], p[:, 1:], self.ctx.n_train)
        return loss

    def _infonce_sharded(self, batch, v_s: torch.Tensor, v_t: torch.Tensor) -> torch.Tensor:
        """In-batch InfoNCE over the global batch: this rank's anchors against every rank's keys."""

        o, shard = self.options, batch.shard
        own = torch.arange(shard.part.start, shard.part.stop, device=v_s.device)
        keep = other_class_mask(shard.y)[shard.part]
        keep[torch.arange(len(own)), own] = True   # the positive
        loss = info_nce_at(v_t, gather_rows(v_s, shard), o.tau, own, keep)
        if o.anchor == "symmetric":
            loss = loss + info_nce_at(v_s, gather_rows(v_t, shard), o.tau, own, keep)
        return loss

    def inner_objective(self, batch, x_adv):
        if self.options.attack == "ce":
            return ce_loss(batch.student(x_adv), batch.y)
        if "v_t" not in batch.cache:
            with torch.no_grad():
                batch.cache["v_t"] = self.heads["embed_t"](batch.teacher_features)
        v_s = self.heads["embed_s"](batch.student.features(x_adv))
        return self._contrastive(batch, v_s, batch.cache["v_t"]).sum()

    def losses(self, batch, x_adv):
        o = self.options
        f_s = batch.student.features(x_adv)
        logits = batch.student.head(f_s)
        v_s = self.heads["embed_s"](f_s)
        v_t = self.flow(self.heads["embed_t"](batch.teacher_features), "teacher_head")
        w = teacher_weights(batch.teacher_logits, batch.y, o.reweight, o.power, batch.shard)
        terms = {"ce_adv": F.cross_entropy(logits, batch.y),
                 "contrast": o.beta * (w * self._contrastive(batch, v_s, v_t)).mean()}
        if o.alpha > 0:
            terms["kd_adv"] = o.alpha * o.t ** 2 * kl_div(logits, batch.teacher_logits, o.t)
        if o.estimator == "nce":
            self.heads["bank_s"].update(batch.idx, v_s, batch.shard)
            self.heads["bank_t"].update(batch.idx, v_t, batch.shard)
        return terms
