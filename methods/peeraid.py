"""PeerAiD: no pre-trained teacher; a peer of the student's architecture, trained jointly on the student's own
adversarial examples, tutors the student.

Read from the official repository jaewonalive/PeerAiD @cd12e92 (``main.py``, ``attack_function.py``,
``configs/*.json``, ``README.md``; the code of ``225c167``, the first release, is the same):

* networks (main.py:158-164, 219-220): the peer is built as the student (same architecture in every released
  command), from its own random initialisation, and has its own SGD (momentum 0.9, the run's lr, weight decay
  and schedule; no nesterov). Here ``networks()`` returns it as ``{"peer": Network(ctx.build_student())}``,
  built once; the harness optimises and checkpoints it. There is no teacher (``needs_teacher = False``).
* inner maximisation (``LinfPeerAttack.perturb``, attack_function.py:65-84, called at main.py:352): the
  *student* is attacked, in ``eval()`` mode; the reference is the peer's clean logits P(x), computed once per
  batch in ``eval()`` mode under ``no_grad`` (main.py:346-348; the peer is put back in ``train()`` at :350);
  it ascends sum_i KL(softmax(P(x_i)) || softmax(S(x'_i))) at t 1 (``KLDivLoss(reduce=False)`` then
  ``torch.sum``); start x + 0.001 N(0, 1) (not clipped to [0, 1] before the first forward there, at once
  in the suite); 10 steps (``--k_train``) of 2/255 at eps 8/255 (main.py:131,134).
* outer loss (main.py:355-404), one backward of the sum, then both optimisers step; x' detached::

      L_peer    = g1 CE(P(x'), y) + g2 tr^2 KLDivLoss()(log_softmax(P(x')/tr), softmax(S(x')/tr))
      L_student = l1 CE(S(x'), y) + l2 T^2 KLDivLoss()(log_softmax(S(x')/T), softmax(sg[P(x')]/T))
                                  + l3 T^2 KLDivLoss()(log_softmax(S(x')/T), softmax(S(x)/T))

  all networks in ``train()`` mode. Terms here: ``peer_ce`` (g1), ``peer_kl`` (g2), ``student_ce`` (l1; left out
  at 0), ``student_kl_peer`` (l2), ``student_kl_self`` (l3). Gradient routing as the code's:
  - the S(x') in ``peer_kl`` (``student_logit_target``, main.py:361) is NOT detached and ``KLDivLoss``
    differentiates its target, so the student also receives g2 tr^2 KL(S || P)/C;
  - only the peer logits of ``student_kl_peer`` are detached (``peer_outputs.detach_()``, :371-372), so the
    peer gets nothing from L_student;
  - the S(x) of ``student_kl_self`` (``logit_nat``, :387) is NOT detached (a two-sided, TRADES-like gradient).
* forwards per step, in the code's order (batch-norm running statistics): P(x') train, S(x') train (the peer
  KL's target), S(x') train again on the same x' (:376, a separate graph, equal values; option
  ``second_forward=false`` reuses the first, official keeps it), S(x) train. The student's statistics move three
  times a step, the peer's once.
* reduction: ``nn.KLDivLoss()`` keeps 'mean' = batchmean / C: option ``scale`` multiplies the three KL terms
  (``scale=0.1`` on CIFAR-10; ``scale=0.01:gamma2=1`` on CIFAR-100, whose command sets ``--gamma2 1``), not the CE
  terms. With SGD and weight decay the magnitude is not neutral.
* hyper-parameters (README.md:31,39, the commands that "reproduce Table 1"; the argparse defaults at
  main.py:31,66-71 are overridden): T 5, tr 1, g1 1, g2 0.1 (CIFAR-10) / 1 (CIFAR-100), l1 0, l2 1, l3 1. The
  TinyImageNet command (T 1, g2 100, l1 0.035, l2 35, l3 20, 200 epochs) has no recipe here.
* schedule (configs/PeerAiD_resnet18_cifar10.json, main.py:840-852, 889-895): 300 epochs, lr 0.1 for both
  networks, weight decay 2e-4, batch 128; ``adjust_learning_rate`` at the start of 0-based epoch e sets
  lr = base x 0.1^#{d in [214, 259, 284] : e >= d}, recomputed from the base each epoch -- which is MultiStepLR
  with milestones 214/259/284 (one epoch earlier than RSLAD's "after 215").
* SWA (``--swa_s``, every command; main.py:110-111, 427-432, utils/SWA.py): from the end of 0-based epoch 214
  (the first decay) the equal-weight mean of the end-of-epoch student parameters, batch-norm statistics
  re-estimated on the augmented clean training images after each snapshot: the harness's SWA with
  ``swa_start: 214``. One difference: PeerAiD's ``bn_update`` weights each batch by its size (momentum
  b/(n+b)), torch's ``update_bn`` weights every batch equally (momentum None: cumulative mean over batches);
  only the epoch's last, smaller batch (80 of 50,000 / 128) is weighted differently.
* checkpoint: every epoch the student and (from 214) the SWA student are tested on the full test set with
  PGD-10 and the best of each by that accuracy is kept (main.py:680-709, 786-815); both are then evaluated. The
  code does not say which of the two Table 1 reports; the recipe reports the SWA-best (``best-test-pgd10`` on the
  average), the likelier one since every command turns SWA on, and keeps the plain student's best beside it
  (``also_keep: plain-best``), evaluated and reported under that name.
* published numbers: the CIFAR-10/100 values of Table 1 were not reachable; the poster in the repository
  (assets/PeerAiD_poster_cvpr24.pdf) gives TinyImageNet only: ResNet-18 clean 55.19, AA 21.67; WRN-34-10
  clean 58.07, AA 24.82.
"""
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from bench.common.errors import BenchError
from bench.methods import register
from bench.methods.base import InnerMax, Method, Network, Recipe, kl_div

_PEER_CLEAN = "peeraid_peer_clean"   # batch.cache key: P(x), the peer's eval-mode clean logits


@register
class PeerAiD(Method):
    name = "peeraid"
    citation = ("Jung, Jang, Song, Lee, PeerAiD: Improving Adversarial Distillation from a Specialized Peer Tutor, "
                "CVPR 2024")
    summary = ("peer P (student's architecture, trained jointly): g1 CE(P(x'), y) + g2 tr^2 KL(S(x') || P(x')); "
               "student: l1 CE(S(x'), y) + l2 T^2 KL(sg P(x') || S(x')) + l3 T^2 KL(S(x) || S(x')); "
               "x' maximises KL(P(x) || S(x'))")
    needs_teacher = False
    inner = InnerMax("sum KL(P(x) || S(x')), P = the peer in eval mode", start="normal", student_mode="eval",
                     teacher_at="- (the peer at x (clean, eval) for the attack; at x' (train) in the loss)")
    schedule = ("300 epochs, SGD 0.1 (momentum 0.9) for student and peer, decay /10 at 214, 259 and 284, wd 2e-4, "
                "batch 128, SWA from epoch 214; official KL = batchmean/C (scale=1/C)")
    official: ClassVar[Recipe] = Recipe(
        repo="jaewonalive/PeerAiD@cd12e92",
        train={"epochs": 300, "lr": 0.1, "milestones": (214, 259, 284), "weight_decay": 2e-4, "batch_size": 128,
               "schedule": "step", "swa_start": 214, "also_keep": ("plain-best",)},
        attack={"eps": 8 / 255, "step_ratio": 0.25, "steps": 10},
        options={"cifar10": "scale=0.1", "cifar100": "scale=0.01:gamma2=1"},
        checkpoint="best-test-pgd10",
        sources={"epochs": "configs/PeerAiD_resnet18_cifar10.json:1 (epochs 300); main.py:88",
                 "lr": "configs/PeerAiD_resnet18_cifar10.json:1 (lr_student = lr_peer = 0.1); main.py:219-220",
                 "weight_decay": "configs/PeerAiD_resnet18_cifar10.json:1 (0.0002); main.py:219-220",
                 "batch_size": "configs/PeerAiD_resnet18_cifar10.json:1 (128); main.py:147",
                 "milestones": "configs/PeerAiD_resnet18_cifar10.json:1 ([214, 259, 284]); main.py:840-852,893-895 "
                               "(lr = base x 0.1^#{d <= e} at the start of 0-based epoch e: MultiStepLR 214/259/284)",
                 "schedule": "main.py:840-852", "eps": "main.py:131", "step_ratio": "main.py:134 (2/255)",
                 "steps": "README.md:31 (--k_train 10)",
                 "swa_start": "main.py:110-111 (swa_s_start = the first decay epoch, 214), :427-432 (average and "
                              "bn_update after every epoch >= 214); README.md:31 (--swa_s)",
                 "checkpoint": "main.py:680-709 (student best by test PGD-10), :786-815 (SWA student best by test "
                               "PGD-10); which one Table 1 reports is not stated",
                 "precision": "main.py (fp32 throughout)",
                 "input_norm": "datasets/datasets.py:16-24 (ToTensor, no Normalize)",
                 "magnitude": "README.md:31,39 (--temperature 5 --re_kd_temperature 1 --gamma1 1 --gamma2 0.1 / 1 "
                            "--lamb1 0 --lamb2 1 --lamb3 1); main.py:363,394-397 (nn.KLDivLoss() 'mean')",
                 "also_keep": "main.py:680-709 (the plain student's best test PGD-10, kept beside the SWA best; both evaluated with AutoAttack)"})

    @dataclass(frozen=True)
    class Options:
        t: float = 5.0        # T, temperature of the student's KL terms (--temperature 5)
        tau_r: float = 1.0    # tr, temperature of the peer's KL term (--re_kd_temperature 1)
        gamma1: float = 1.0   # peer CE (--gamma1 1)
        gamma2: float = 0.1   # peer KL (--gamma2 0.1 on CIFAR-10, 1 on CIFAR-100)
        lambda1: float = 0.0  # student CE (--lamb1 0)
        lambda2: float = 1.0  # student KL to the peer (--lamb2 1)
        lambda3: float = 1.0  # student KL to its own clean output (--lamb3 1)
        scale: float = 1.0    # multiplies the KL terms; 1/C = the official nn.KLDivLoss() magnitude
        # the student's second train-mode forward on x' (main.py:376): a separate graph with the values of the
        # first, one more batch-norm update; false reuses the peer KL's S(x')
        second_forward: bool = True

    gradient_sites: ClassVar[dict[str, str]] = {
        "peer_kl_target": "flow: S(x'), the peer KL's target (main.py:361: KLDivLoss "
                          "differentiates it)",
        "peer_logits": "stop: P(x') in the student's KL to the peer (main.py:371-372, "
                       "peer_outputs.detach_())",
        "self_target": "flow: S(x), the student's self KL's target (main.py:387: not detached)"}

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        # built with the method, from the run's seeded global stream (as the student was), not in the loop
        self._peer = Network(ctx.build_student()) if ctx.build_student is not None else None

    def networks(self):
        if self._peer is None:
            raise BenchError("peeraid trains a peer of the student's architecture: its Context needs "
                             "build_student (a run's context has it; a teacher's training does not)")
        return {"peer": self._peer}

    @property
    def peer(self) -> torch.nn.Module:
        return self.networks()["peer"].module

    def peer_clean_logits(self, batch) -> torch.Tensor:
        """P(x): the peer's clean logits in eval mode, without a graph, once per batch; the peer back in train."""
        if _PEER_CLEAN not in batch.cache:
            peer = self.peer
            peer.eval()
            with torch.no_grad():
                batch.cache[_PEER_CLEAN] = peer(batch.x)
            peer.train()
        return batch.cache[_PEER_CLEAN]

    def inner_objective(self, batch, x_adv):
        return kl_div(batch.student(x_adv), self.peer_clean_logits(batch), reduction="sum")

    def losses(self, batch, x_adv):
        o = self.options
        peer_adv = self.peer(x_adv)                 # P(x'), train mode
        student_target = batch.student(x_adv)       # S(x'), train mode, not detached
        terms = {"peer_ce": o.gamma1 * F.cross_entropy(peer_adv, batch.y),
                 "peer_kl": o.scale * o.gamma2 * o.tau_r ** 2
                 * kl_div(peer_adv, self.flow(student_target, "peer_kl_target"), o.tau_r)}
        student_adv = batch.student(x_adv) if o.second_forward else student_target
        student_nat = batch.student(batch.x)        # S(x), train mode, not detached
        if o.lambda1:
            terms["student_ce"] = o.lambda1 * F.cross_entropy(student_adv, batch.y)
        peer_kl = kl_div(student_adv, self.stop(peer_adv, "peer_logits"), o.t)
        terms["student_kl_peer"] = o.scale * o.lambda2 * o.t ** 2 * peer_kl
        self_kl = kl_div(student_adv, self.flow(student_nat, "self_target"), o.t)
        terms["student_kl_self"] = o.scale * o.lambda3 * o.t ** 2 * self_kl
        return terms
