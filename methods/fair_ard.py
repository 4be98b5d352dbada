"""Fair-ARD: ARD whose samples are weighted per class by how long the student resists the attack on that class.

Read from the official repository NISP-official/Fair-ARD @910c8cd (``Fair-ARD.py``; the shared re-weighting
is ``methods._fair``, whose docstring cites the lines of the kappa statistic and the weights):

* inner maximisation (``AttackPGD.forward``, lines 60-78): ARD's, CE(S(x'), y) summed, uniform start (not
  clipped to [0, 1] before the first forward there, at once in the suite), 10 steps of 2/255 at eps 8/255, the
  student in ``train()`` mode (``net.train()``, line 128); kappa is counted there from the same train-mode
  forwards (``FairReweight.count_kappa``).
* outer loss (lines 136-148), ``KL_loss = nn.KLDivLoss()`` applied per sample on 1-D vectors, i.e. the mean over
  the C classes; with the script's defaults t 30, alpha 1::

      alpha t^2 (1/B) sum_i w[y_i] KL_i(T(x)/t || S(x')/t) / C  +  (1 - alpha) (1/B) sum_i w[y_i] CE(S(x_i), y_i)

  the teacher at the clean x in ``eval()``. Option ``scale`` multiplies the KL term (1/C = the code's
  per-sample 'mean': ``scale=0.1`` on CIFAR-10), as in ``bench.methods.ard``.
* forwards per step (lines 133-137): the attack's, S(x') (train), T(x), then S(x) in train mode every step for
  the CE term at weight 0 -- its batch-norm update is what option ``clean_pass`` keeps (official only).
* weights: ``methods._fair`` -- all ones in epoch 0, then from the previous epoch's per-class mean kappa,
  beta = ``--beta`` 2.0 (line 25); the guard ``if epoch >= 0`` (line 143) is always true.
* schedule: 200 epochs, SGD lr 0.1, momentum 0.9, weight decay 2e-4, **nesterov** (line 160; the original ARD
  has none), batch 128. ``--lr_schedule 100 150``, but ``adjust_learning_rate`` (lines 30-34) multiplies the
  *initial* lr each time (``main`` never updates ``lr``), so the script runs 0.1 until epoch 100 and 0.01 from
  there to the end (the "decay" at 150 re-sets 0.01), as ARD's main.py, from which it is inherited: milestones
  (100,) here, the declared 100/150 as ``paper_train``.
* data: the script hard-codes CIFAR-10 (line 46); there is no CIFAR-100 recipe (the paper's CIFAR-100, SVHN and
  Tiny-ImageNet runs are not in the code). On CIFAR-100 the official protocol applies the CIFAR-10 recipe, says so
  on the row, and keeps the script's arithmetic: the per-sample mean over C = 100 classes (``scale=0.01``).
* checkpoint: every epoch is saved (lines 151-155), none is selected, and ``eval.py`` evaluates whichever path
  it is given: the checkpoint the paper reports is not recorded; the recipe takes the last epoch.
* the per-class kappa mean divides by the true per-class counts, the code by len(trainset)/C (the same on
  balanced CIFAR-10; see ``methods._fair``).

A known defect of the family, not implemented here: ``Fair-MTARD.py:144`` distils the *adversarial* teacher's
output at the adversarial x' into the student's clean output (``teacher_adv_logits`` where MTARD's natural term
uses the natural teacher at the clean x, ``teacher_nat_logits``, which is computed at line 134 and never used),
so any Fair-MTARD number from that script comes from the defective natural term.
"""
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from bench.attacks import ce_loss
from bench.methods import register
from bench.methods._fair import FairReweight
from bench.methods.ard import ARD
from bench.methods.base import PaperTeacher, Recipe, kl_div

_CITATION = ("Yue, Mou, Wang, Zhao, Revisiting Adversarial Robustness Distillation from the Perspective of "
             "Robust Fairness, NeurIPS 2023")
_REPO = "NISP-official/Fair-ARD@910c8cd"


@register
class FairARD(FairReweight, ARD):
    name = "fair-ard"
    citation = _CITATION
    summary = ("ARD with each sample's terms x w[y], w = clamp(norm((1/(Kbar+1e-5))^beta), 5/6, 5/2), Kbar = the "
               "class's mean number of attack iterates classified correctly in the previous epoch")
    schedule = ("200 epochs, SGD 0.1 (momentum 0.9, nesterov), decay /10 at 100 (declared 100 and 150; the code's "
                "second decay has no effect), wd 2e-4, batch 128; official KL = batchmean/C (scale=1/C); CIFAR-10 script only")
    official: ClassVar[Recipe] = Recipe(
        repo=_REPO,
        train={"epochs": 200, "lr": 0.1, "milestones": (100,), "weight_decay": 2e-4, "batch_size": 128,
               "schedule": "step", "nesterov": True},
        attack={"eps": 8 / 255, "step_ratio": 0.25, "steps": 10},
        options={"cifar10": "scale=0.1", "cifar100": "scale=0.01"},
        datasets=("cifar10",),
        teachers={"cifar10": PaperTeacher("WRN-34-10 from the authors' download link (its training not stated)",
                                          "WRN-34-10", False, "Fair-ARD.py:19; README:54")},
        official_options="clean_pass=true", checkpoint="last",
        sources={"epochs": "Fair-ARD.py:16,162", "lr": "Fair-ARD.py:13,160", "weight_decay": "Fair-ARD.py:160",
                 "nesterov": "Fair-ARD.py:160 (nesterov=True)", "batch_size": "Fair-ARD.py:47",
                 "milestones": "Fair-ARD.py:14,30-34,164 (adjust_learning_rate restarts from the initial lr: one "
                               "decay, at 100)",
                 "schedule": "Fair-ARD.py:30-34", "eps": "Fair-ARD.py:100", "step_ratio": "Fair-ARD.py:102 (2/255)",
                 "steps": "Fair-ARD.py:101",
                 "checkpoint": "Fair-ARD.py:151-155 (every epoch saved, none selected; the paper's checkpoint is "
                               "not recorded)",
                 "precision": "Fair-ARD.py (fp32 throughout)",
                 "input_norm": "Fair-ARD.py:37-41 (ToTensor, no Normalize)",
                 "options": "Fair-ARD.py:137 (basic_net(inputs) every step, weight 0 at alpha 1)",
                 "magnitude": "Fair-ARD.py:141 (KLDivLoss() per sample on 1-D vectors: the mean over the C classes, 1/10 on CIFAR-10 and, by the same arithmetic, 1/100 on CIFAR-100)",
                 "datasets": "Fair-ARD.py:46 hard-codes CIFAR-10: no CIFAR-100 script"})
    paper_train: ClassVar[dict] = {**official.train, "milestones": (100, 150)}

    @dataclass(frozen=True)
    class Options(ARD.Options):
        beta: float = 2.0         # w ~ (1/Kbar)^beta (official --beta 2.0)
        kappa_eps: float = 1e-5   # Kbar + kappa_eps in the weights (Fair-ARD.py:120)

    def inner_objective(self, batch, x_adv):
        logits = batch.student(x_adv)
        self.count_kappa(batch, logits)
        return ce_loss(logits, batch.y)

    def losses(self, batch, x_adv):
        o = self.options
        w = self.sample_weights(batch)
        kl = kl_div(batch.student(x_adv), batch.teacher_logits, o.t, reduction="none")
        terms = {"kd_adv": o.scale * o.alpha * o.t ** 2 * (w * kl).mean()}
        if o.alpha < 1:
            ce = F.cross_entropy(batch.student(batch.x), batch.y, reduction="none")
            terms["ce"] = (1 - o.alpha) * (w * ce).mean()
        elif o.clean_pass:
            with torch.no_grad():
                batch.student(batch.x)
        return terms
