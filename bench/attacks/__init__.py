"""Attacks as pure functions on pixels in [0, 1]: the threat model's geometry (``threat``) and the one
ascent loop with its objectives and batching (``ascent``). Training's inner maximisation (every method)
and evaluation both call them; a plug-in method imports what it needs from here."""
from bench.attacks.ascent import (
                                  AA_NAME,
                                  ATTACKS,
                                  AttackSpec,
                                  adversarial,
                                  attack_accuracy,
                                  batched,
                                  ce_loss,
                                  margin_loss,
                                  pgd_ascent,
                                  predict,
                                  whitebox_attack,
)
from bench.attacks.threat import (
                                  NORM_LABELS,
                                  NORMS,
                                  check_eps,
                                  eps_cap,
                                  project_l2,
                                  random_start,
)

__all__ = ["AA_NAME", "ATTACKS", "AttackSpec", "adversarial", "attack_accuracy", "batched", "ce_loss", "margin_loss",
           "pgd_ascent", "predict", "whitebox_attack", "NORM_LABELS", "NORMS", "check_eps", "eps_cap", "project_l2",
           "random_start"]
