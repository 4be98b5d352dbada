"""Checks that flag an unreliable robustness number, for every evaluated model.

Each check is documented where it comes from (AutoAttack's ``checks.py``, Croce and Hein 2020;
Carlini et al. 2019, "On Evaluating Adversarial Robustness", section 5 and its checklist) and
returns its measured value, its threshold and whether it fired. Thresholds live in
``bench.config.schema.SanityConfig`` and are recorded with the result.

- ``iterative_weaker``: an iterative attack must be at least as strong as a single step; PGD-20
  accuracy above FGSM accuracy (+ margin) points to masked or obfuscated gradients (Carlini 5.3).
- ``blackbox_stronger``: Square (a black-box attack) should find almost nothing after the white-box
  attacks; the fraction of images it still breaks after APGD-CE, APGD-T and FAB-T (AutoAttack's
  ``check_square_sr``, there with a 0.2 % margin) means the gradients mislead the white-box attacks.
- ``large_eps``: at a large radius (``large_eps_factor`` x eps, at most half the box's diameter in the
  threat model's norm: 0.5 for L-inf, 0.5 sqrt(d) for L2, ``bench.attacks.threat.eps_cap``) PGD-20 must
  reach almost 0 % accuracy; a model that stays accurate where the image can be nearly erased is not
  being attacked properly (Carlini 5.2, "unbounded attacks should reach 100 % success").
- ``not_converged``: PGD with many more steps and restarts must not break markedly more images than
  the evaluation's own attacks did together (PGD-20, CW and AutoAttack where they ran: an image
  counts as robust only if it survived every one of them); if it does, the reported robust accuracy
  has not converged and is optimistic (Carlini 5.4, "increase iterations and restarts"). PGD-20
  alone is often a few points above AutoAttack; that gap is why AutoAttack is reported, and is not
  a flag.
- ``zero_gradients``: images whose input gradient of the loss is exactly zero cannot be attacked by
  gradients (AutoAttack's ``check_zero_gradients``: quantisation, saturated softmax).
- ``nondeterministic``: two eval-mode passes on the same images must agree (AutoAttack's
  ``check_randomized``); a randomised defence needs EOT attacks (AutoAttack version "rand").
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks.ascent import ATTACKS, AttackSpec, batched
from bench.attacks.threat import eps_cap
from bench.common.log import log
from bench.config.schema import EvalConfig
from bench.eval.per_image import survived_all
from bench.eval.state import attack_flags, state_key


def _check(value: float | None, threshold: float, fired: bool, what: str) -> dict:
    return {"value": value, "threshold": threshold, "flagged": bool(fired), "what": what}


def _skipped(threshold: float, what: str, why: str) -> dict:
    """A check whose answer the evaluation's numbers already decide: not run, not flagged, and why."""
    return {"value": None, "threshold": threshold, "flagged": False, "what": what, "skipped": why}


def square_found(aa_after: dict) -> float | None:
    """Robust accuracy after the white-box attacks minus after Square (AutoAttack's ``check_square_sr``
    compares the same two numbers); None when Square did not run after at least two others."""
    if "square" not in aa_after or len(aa_after) <= 2:
        return None
    return min(v for k, v in aa_after.items() if k != "square") - aa_after["square"]


def zero_gradient_fraction(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    def zero(_, xb, yb):
        xb = xb.clone().requires_grad_(True)
        with torch.enable_grad():
            grad, = torch.autograd.grad(F.cross_entropy(model(xb), yb, reduction="sum"), xb)
        return grad.flatten(1).abs().sum(1) == 0
    return int(batched(zero, x, y, batch_size=batch_size).sum()) / max(len(x), 1) if len(x) else 0.0


@torch.no_grad()
def max_logit_difference(model: nn.Module, x: torch.Tensor) -> tuple[float, bool]:
    a, b = model(x), model(x)
    return float((a - b).abs().max()) if len(x) else 0.0, bool((a.argmax(1) != b.argmax(1)).any())


def sanity_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: EvalConfig, flags: dict,
                  aa_after: dict, aa_warnings: list, seed: int, state, desc: str = "",
                  keep: dict | None = None) -> dict:
    """Run every check that the evaluated attacks allow; {"checks": {...}, "flags": [...], ...}.
    ``keep``: where given, the per-image flags of each check's attack at the evaluation's eps are
    put there (``sanity-pgd100x3``: the convergence check's), so that the worst case counts them
    too; the large-eps check's attack, at another eps, is not."""
    s, eps = cfg.sanity, cfg.eps
    m = len(x) if s.n is None else min(s.n, len(x))
    xs, ys = x[:m], y[:m]
    checks = {}
    if "fgsm" in flags and "pgd20" in flags:
        gap = float(flags["pgd20"].float().mean() - flags["fgsm"].float().mean())
        checks["iterative_weaker"] = _check(gap, s.iterative_margin, gap > s.iterative_margin,
                                            "PGD-20 accuracy minus FGSM accuracy")
    found = square_found(aa_after)
    if found is not None:
        checks["blackbox_stronger"] = _check(found, s.blackbox_margin, found > s.blackbox_margin,
                                             "fraction of images Square breaks after the white-box attacks")
    seconds: dict[str, float] = {}
    attacked = {name: float(f.float().mean()) for name, f in flags.items() if name != "clean" and len(f)}
    strongest = min(attacked.items(), key=lambda kv: kv[1]) if attacked else None
    big = min(s.large_eps_factor * eps, eps_cap(cfg.norm, math.prod(x.shape[1:])))
    what = f"PGD-20 accuracy at {cfg.norm} eps {big:.4g}"
    if strongest is not None and strongest[1] <= s.decided_at:
        checks["large_eps"] = _skipped(s.large_eps_max_acc, what, f"{strongest[0]} already leaves "
                                       f"{100 * strongest[1]:.1f} % at eps {eps:.4g} (<= {100 * s.decided_at:g} %)")
    else:
        t0 = time.perf_counter()
        log(f"{desc}sanity: PGD-20 at {big:.4g} ({s.large_eps_factor:g} x eps) on {m} images")
        acc_big = float(attack_flags(model, xs, ys, ATTACKS.get("pgd20"), big, cfg.batch_size, seed,
                                     state_key(f"sanity-eps{big:.6g}", cfg.norm), state, desc, norm=cfg.norm
                                     ).float().mean())
        checks["large_eps"] = _check(acc_big, s.large_eps_max_acc, acc_big > s.large_eps_max_acc, what)
        seconds["large_eps"] = round(time.perf_counter() - t0, 3)
    if any(name != "clean" for name in flags):
        strong = AttackSpec(f"pgd{s.strong_steps}x{s.strong_restarts}", "ce", s.strong_steps, 0.25, "uniform",
                            s.strong_restarts)
        # what every attack left (AutoAttack may cover only the first aa_n images): the per-image store's
        base = survived_all(flags, [name for name in flags if name != "clean"], m)
        left = float(base.float().mean())
        what = (f"fraction of images {strong.name} breaks that survived every attack of the evaluation "
                f"({', '.join(n for n in flags if n != 'clean')})")
        if left <= s.convergence_margin:  # it cannot break more than is left: the check cannot fire
            checks["not_converged"] = _skipped(s.convergence_margin, what, f"every attack together leaves "
                                               f"{100 * left:.1f} % of the {m} images: nothing to break")
        else:
            t0 = time.perf_counter()
            log(f"{desc}sanity: {strong.name} on {m} images ({100 * left:.1f} % survived every attack)")
            survive = attack_flags(model, xs, ys, strong, eps, cfg.batch_size, seed,
                                   state_key(f"sanity-{strong.name}", cfg.norm), state, desc, norm=cfg.norm)
            if keep is not None:
                keep[f"sanity-{strong.name}"] = survive
            drop = float(left - (base & survive).float().mean())
            checks["not_converged"] = _check(drop, s.convergence_margin, drop > s.convergence_margin, what)
            seconds["not_converged"] = round(time.perf_counter() - t0, 3)
    zero = zero_gradient_fraction(model, xs, ys, cfg.batch_size)
    checks["zero_gradients"] = _check(zero, s.zero_grad_max, zero > s.zero_grad_max,
                                      "fraction of images with an all-zero input gradient")
    diff, flips = max_logit_difference(model, xs[:cfg.batch_size])
    checks["nondeterministic"] = _check(diff, s.determinism_tol, diff > s.determinism_tol or flips,
                                        "largest |logit difference| between two eval-mode passes")
    return {"checks": checks, "flags": [k for k, c in checks.items() if c["flagged"]], "n": m,
            "autoattack_warnings": list(aa_warnings), "seconds": seconds,
            "skipped": {k: c["skipped"] for k, c in checks.items() if c.get("skipped")}}
