"""CRD: contrastive representation distillation with NCE against two memory banks."""
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bench.methods import register
from bench.methods._contrast import Embed, MemoryBank, nce_loss
from bench.methods._repdistiller import REPDISTILLER
from bench.methods.base import Method, Recipe


@register
class CRD(Method):
    name = "crd"
    citation = "Tian et al., Contrastive Representation Distillation, ICLR 2020"
    summary = "CE(S(x), y) + beta (NCE_student-anchor + NCE_teacher-anchor), class-aware negatives"
    needs_teacher = True
    schedule = "240 epochs, SGD 0.05, decay at 150/180/210, wd 5e-4, batch 64"
    official: ClassVar[Recipe] = REPDISTILLER

    @dataclass(frozen=True)
    class Options:
        beta: float = 0.8         # weight of the contrastive term
        feat_dim: int = 128       # embedding size
        k: int = 16384            # negatives per sample (capped by what the dataset allows)
        tau: float = 0.07         # temperature
        momentum: float = 0.5     # memory-bank momentum

    gradient_sites: ClassVar[dict[str, str]] = {
        "teacher_head": "flow: the teacher's embedding v_t (RepDistiller trains embed_t with "
                        "embed_s)"}

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        o = options
        self.heads = nn.ModuleDict({
            "embed_s": Embed(ctx.student_dim, o.feat_dim), "embed_t": Embed(ctx.teacher_dim, o.feat_dim),
            "bank_s": MemoryBank(ctx.n_train, o.feat_dim, ctx.train_labels, o.k, o.tau, o.momentum),
            "bank_t": MemoryBank(ctx.n_train, o.feat_dim, ctx.train_labels, o.k, o.tau, o.momentum)})

    def modules(self):
        return self.heads

    def facts(self):
        return {"effective_k": self.heads["bank_s"].k} if "bank_s" in self.heads else {}

    def losses(self, batch, x_adv):
        h, idx = self.heads, batch.idx
        f_s = batch.student.features(batch.x)
        v_s = h["embed_s"](f_s)
        v_t = self.flow(h["embed_t"](batch.teacher_features), "teacher_head")
        # Positive and negatives both come from the banks (index 0 is the sample itself).
        keys_idx = torch.cat([idx[:, None], h["bank_s"].negatives(idx, batch.shard, batch.generator)], 1)
        p_s = h["bank_t"].scores(v_s, h["bank_t"].bank[keys_idx], batch.shard)   # student anchor, teacher bank
        p_t = h["bank_s"].scores(v_t, h["bank_s"].bank[keys_idx], batch.shard)   # teacher anchor, student bank
        n = self.ctx.n_train
        nce = nce_loss(p_s[:, 0], p_s[:, 1:], n).mean() + nce_loss(p_t[:, 0], p_t[:, 1:], n).mean()
        h["bank_s"].update(idx, v_s, batch.shard)
        h["bank_t"].update(idx, v_t, batch.shard)
        return {"ce": F.cross_entropy(batch.student.head(f_s), batch.y), "nce": self.options.beta * nce}
