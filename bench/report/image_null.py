"""Simulated ablations: how often each test of two methods rejects (tests/report/test_stats.py,
benchmarks/image_tests_null.py).

Two methods, S seeds each, evaluated on the same N test images. Whether seed s of method m gets
image i right is a Bernoulli draw with

    logit P = theta_m + u_i + v_mi + w_ms

- u_i, the image's difficulty, shared by the methods (sd ``difficulty_sd``): most images are easy
  or hard for both, so few are discordant, as in the committed runs;
- v_mi, the method's own preference for the image (sd ``image_sd``);
- w_ms, the seed's shift of the method's whole accuracy, its sd set so that a seed moves the
  expected accuracy by ``seed_points`` (sd, accuracy units);
- the Bernoulli draw itself: two seeds of one method disagree on some images, and a seed's
  accuracy on N images varies by that alone as well.

Every replicate draws new images and new seeds, as another test set and another training run
would. Under a null the two methods have the same theta and the same spreads, so the same expected
accuracy over images and seeds; ``difference`` moves method a's expected accuracy by that much.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.optimize import brentq
from scipy.special import bdtr, expit, stdtr

from bench.eval.per_image import differences
from bench.report.stats import paired_difference, seed_image_anova, seeds_images_difference

ALPHA = 0.05
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(60)   # E[f(z)], z ~ N(0, 1), unsampled
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


@dataclass(frozen=True)
class Scenario:
    name: str
    accuracy: float            # method b's expected accuracy
    seeds: int
    image_sd: float            # sd of v (logit units)
    seed_points: float         # sd of a seed's expected accuracy from w (0.025: 2.5 points)
    images: int = 226          # the digits preset's test images
    difficulty_sd: float = 5.0
    difference: float = 0.0    # method a's expected accuracy minus b's


def _theta(accuracy: float, sd: float) -> float:
    """theta with E[expit(theta + sd z)] = accuracy."""
    return brentq(lambda t: float(_WEIGHTS @ expit(t + sd * _NODES)) - accuracy, -40.0, 40.0)


@lru_cache(maxsize=None)
def seed_logit_sd(accuracy: float, points: float, image_sd: float, difficulty_sd: float) -> float:
    """The sd of w that moves the expected accuracy by ``points`` (sd over seeds)."""
    if points <= 0:
        return 0.0
    fixed = float(np.hypot(difficulty_sd, image_sd))

    def spread(w: float) -> float:
        theta = _theta(accuracy, float(np.hypot(fixed, w)))
        logits = theta + w * _NODES[:, None] + fixed * _NODES[None, :]
        per_seed = (_WEIGHTS[None, :] * expit(logits)).sum(axis=1)
        return float(np.sqrt(_WEIGHTS @ (per_seed - _WEIGHTS @ per_seed) ** 2)) - points
    return brentq(spread, 1e-6, 20.0)


def draw(sc: Scenario, reps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(a, b): boolean flags of shape (reps, seeds, images)."""
    w_sd = seed_logit_sd(sc.accuracy, sc.seed_points, sc.image_sd, sc.difficulty_sd)
    total = float(np.sqrt(sc.difficulty_sd ** 2 + sc.image_sd ** 2 + w_sd ** 2))
    shape = (reps, sc.seeds, sc.images)
    u = rng.normal(0.0, sc.difficulty_sd, (reps, 1, sc.images))
    out = []
    for acc in (sc.accuracy + sc.difference, sc.accuracy):
        v = rng.normal(0.0, sc.image_sd, (reps, 1, sc.images))
        w = rng.normal(0.0, w_sd, (reps, sc.seeds, 1))
        out.append(rng.random(shape) < expit(_theta(acc, total) + u + v + w))
    return out[0], out[1]


def seeds_images_p(a: np.ndarray, b: np.ndarray) -> float:
    """The report's test (``bench.report.stats.seeds_images_difference``) on one replicate."""
    return seeds_images_difference(differences(list(zip(a, b)))).p


def paired_counts_p(a: np.ndarray, b: np.ndarray) -> float:
    """The report's test where per-image flags are missing: the paired t over seeds on counts."""
    return paired_difference({s: float(x) for s, x in enumerate(a.mean(1))},
                             {s: float(y) for s, y in enumerate(b.mean(1))}, n=a.shape[1]).p


def _two_sided_binomial(k: int, total: int) -> float:
    """Exact two-sided binomial test at 1/2 (``scipy.stats.binomtest``'s, symmetric case)."""
    return 1.0 if total == 0 else float(min(1.0, 2 * bdtr(min(k, total - k), total, 0.5)))


def pooled_mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    """The test the report used before issue 33 (retracted): every seed's discordant images summed
    and tested as independent draws."""
    d = differences(list(zip(a, b)))
    return _two_sided_binomial(int((d > 0).sum()), int((d != 0).sum()))


def image_sign_p(a: np.ndarray, b: np.ndarray) -> float:
    """Exact sign test over images of each image's difference summed over the seeds: images as the
    unit, the trained models fixed; not used (a test of these models, not of the methods)."""
    per_image = differences(list(zip(a, b))).sum(axis=0)
    return _two_sided_binomial(int((per_image > 0).sum()), int((per_image != 0).sum()))


def _satterthwaite_p(a: np.ndarray, b: np.ndarray, resid: float) -> float:
    """The seeds x images t with the variance (MS_seed + MS_image + resid MS_resid) / (S N) at
    Satterthwaite's df: forms the report did not take (resid 0: the conservative sum; -1: the
    unbiased one), for they reject above alpha where the seeds vary much (MS_seed has S - 1 df)."""
    d = differences(list(zip(a, b)))
    s, n = d.shape
    mean, ms_s, ms_i, ms_e = seed_image_anova(d)
    parts = [(ms_s, s - 1), (ms_i, n - 1), (resid * ms_e, (s - 1) * (n - 1))]
    var = sum(m for m, _ in parts)
    if var <= 0:
        return float("nan")
    df = var ** 2 / sum(m ** 2 / k for m, k in parts)
    return float(2 * stdtr(df, -abs(mean) / np.sqrt(var / (s * n))))


TESTS = {   # name (12 characters at most: the script's columns): p of one replicate
    "seeds×images": seeds_images_p,
    "paired t": paired_counts_p,
    "pooled McN.": pooled_mcnemar_p,
    "image sign": image_sign_p,
    "MSs+MSi Sat.": lambda a, b: _satterthwaite_p(a, b, 0.0),
    "unbiased Sat": lambda a, b: _satterthwaite_p(a, b, -1.0),
}


def rejection_rates(sc: Scenario, reps: int, seed: int = 0, tests=None, alpha: float = ALPHA
                    ) -> dict[str, float]:
    """{test: share of ``reps`` replicates with p < alpha}; a replicate without a p-value (no
    spread) counts as no rejection: the report stars nothing there."""
    tests = TESTS if tests is None else tests
    a, b = draw(sc, reps, np.random.default_rng(seed))
    return {name: float(np.mean([fn(x, y) < alpha for x, y in zip(a, b)]))
            for name, fn in tests.items()}


def describe(sc: Scenario, reps: int = 500, seed: int = 0) -> dict[str, float]:
    """A scenario in the terms of the committed runs: the accuracies, method b's sd over seeds (the
    Bernoulli draw included), the share of (seed, image) cells the two methods disagree on."""
    a, b = draw(sc, reps, np.random.default_rng(seed))
    return {"acc_a": float(a.mean()), "acc_b": float(b.mean()),
            "seed_sd": float(b.mean(axis=2).std(axis=1, ddof=1).mean()),
            "discordant": float((a != b).mean())}


def monte_carlo_se(rate: float, reps: int) -> float:
    return float(np.sqrt(rate * (1 - rate) / reps))
