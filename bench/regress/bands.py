"""The regression check's statistics: is a check of a few seeds consistent with a baseline of many?

The unit is a seed: one seed trains one teacher and every student, so a seed is one vector of every
(row, metric) value, and seeds are independent of each other. Everything a band needs comes from the
baseline alone; the check's own values are only scored, never used to widen their band.

For each comparison k = (row, metric), from the baseline's B seeds: the mean m_k, the row's own seed sd
s_k, and the sd of that metric pooled over the rows alike (the robust rows together, the others
together) p_k. The sd used is moderated (Smyth 2004: half the weight on the row's own estimate, half on
its rows' pooled one), never below SD_FLOOR::

    sigma_k = max(SD_FLOOR, sqrt((s_k^2 + p_k^2) / 2))

Tests, each one-sided with its own share of the family's false-alarm rate:

* the check's mean of n seeds: z_k = (mean_k - m_k) / (sigma_k sqrt(1/B + 1/n)), both sides (a robust
  accuracy far *above* its band is the usual sign of a broken attack);
* every check seed on its own against a one-seed prediction bound, the low side (a collapsed seed
  fails even when the others pull the mean back): u_kj = (x_kj - m_k) / (sigma_k sqrt(1 + 1/B)).

Test t fails when its normal tail probability is below ``level * weight_t`` (a weighted Bonferroni split,
SHARES). ``level`` is not FAMILY_ALPHA itself: it is calibrated by simulation (``calibrate``) so that
the chance of *any* false alarm in a check of unchanged code is FAMILY_ALPHA, over the metrics'
correlations (a seed's metrics move together), the estimated sds, the floor and both sides. The
simulation draws seed vectors from a normal distribution with the baseline's means, sds and
correlations, the correlations shrunk towards none (Ledoit and Wolf 2004; B seeds cannot estimate
correlations among many metrics). Where the update measured the check's seeds too, the level is also
found on every split of those real seed vectors into a baseline and a check (``split_level``: no model
at all), and the lower of the two is used. benchmarks/regress_null.py measures the rate under both
and under independent metrics.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SD_FLOOR = 0.005      # half a point: about one image of the regress preset's 226
FAMILY_ALPHA = 0.05   # chance of any false alarm in one check of unchanged code
POWER = 0.8           # the power at which each band states its detectable change
FOCUS_METRICS = ("pgd20", "aa")
ROBUST_ROW = 0.2      # a row whose baseline PGD-20 mean is at least this is robust
# shares of the family's rate: a drop of a robust row's PGD-20 or AutoAttack (the numbers a release is
# judged by), a rise of the same, any change of every other comparison (half each side), one seed below
# its prediction bound
SHARES = {"focus-drop": 0.70, "focus-rise": 0.05, "other": 0.15, "seed": 0.10}
# the metrics each check seed is tested on by itself: a collapsed seed (diverged training, catastrophic
# overfitting) falls far below on these. A few, so that each one-seed bound sits at a moderate quantile:
# every bound more pushes them all further into the tails, where seeds are less normal than the
# simulation assumes (clean accuracy above all: at its ceiling, one ARD seed in 20 loses 7 images)
SEED_METRICS = ("pgd20", "aa")
DRAWS, SIM_SEED = 20000, 0


@dataclass(frozen=True)
class Design:
    """The comparisons of a baseline and the tests made on them, as arrays (shared by the check and the
    simulation, so that the calibration calibrates exactly the check)."""
    keys: tuple[tuple[str, str], ...]   # (row, metric) per comparison
    group: np.ndarray                   # (K,) comparisons whose sds are pooled share a group
    focus: np.ndarray                   # (K,) bool
    comp: np.ndarray                    # (T,) the comparison each test is on
    side: np.ndarray                    # (T,) -1: the low side, +1: the high side
    seed: np.ndarray                    # (T,) the check seed's index for a one-seed test, -1 for the mean
    weight: np.ndarray                  # (T,) the test's share of the family's rate (they sum to 1)
    n_check: int


def robust_rows(values: dict[str, dict[str, list[float]]]) -> set[str]:
    """The rows whose baseline PGD-20 mean is at least ROBUST_ROW."""
    return {row for row, m in values.items() if m.get("pgd20") and float(np.mean(m["pgd20"])) >= ROBUST_ROW}


def design(values: dict[str, dict[str, list[float]]], n_check: int, shares: dict = SHARES,
           seed_metrics: tuple[str, ...] = SEED_METRICS) -> Design:
    """Every (row, metric) of ``values`` (the baseline's per-seed values) and its tests for a check of
    ``n_check`` seeds, each test with its share of the rate."""
    keys = tuple((row, metric) for row, metrics in values.items() for metric in metrics)
    robust = robust_rows(values)
    pools = {}
    group = np.array([pools.setdefault((metric, row in robust), len(pools)) for row, metric in keys])
    focus = np.array([row in robust and metric in FOCUS_METRICS for row, metric in keys])
    tests = []   # (comparison, side, seed, share name)
    for k, (_, metric) in enumerate(keys):
        kind = "focus" if focus[k] else "other"
        tests += [(k, -1, -1, f"{kind}-drop" if focus[k] else "other"),
                  (k, +1, -1, f"{kind}-rise" if focus[k] else "other")]
        if metric in seed_metrics:
            tests += [(k, -1, j, "seed") for j in range(n_check)]
    counts = {name: sum(t[3] == name for t in tests) for name in shares}
    used = sum(shares[name] for name, c in counts.items() if c)
    weight = np.array([shares[t[3]] / counts[t[3]] / used for t in tests])
    comp, side, seed = (np.array([t[i] for t in tests]) for i in range(3))
    return Design(keys, group, focus, comp, side, seed, weight, n_check)


def sigma(base: np.ndarray, group: np.ndarray) -> np.ndarray:
    """The moderated seed sd of every comparison from baseline values ``base`` (..., B, K)."""
    var = base.var(axis=-2, ddof=1)
    pooled = np.zeros_like(var)
    for g in np.unique(group):
        members = group == g
        pooled[..., members] = var[..., members].mean(axis=-1, keepdims=True)
    return np.maximum(SD_FLOOR, np.sqrt((var + pooled) / 2))


def dof(b: int, group: np.ndarray) -> np.ndarray:
    """(K,) degrees of freedom of each comparison's sigma: the row's own B - 1, and as many again where
    its sd is moderated with other rows' (the prior's weight, as in Smyth's moderated t)."""
    sizes = np.bincount(group)[group]
    return np.where(sizes > 1, 2 * (b - 1), b - 1).astype(float)


def _t_sf(z: np.ndarray, df: np.ndarray) -> np.ndarray:
    from scipy.special import stdtr
    return stdtr(df, -z)


def tails(base: np.ndarray, check: np.ndarray, d: Design) -> np.ndarray:
    """Each test's one-sided tail probability (..., T) for baseline values (..., B, K) and check values
    (..., n, K)."""
    b = base.shape[-2]
    mean, sd = base.mean(axis=-2), sigma(base, d.group)
    z_mean = (check.mean(axis=-2) - mean) / (sd * math.sqrt(1 / b + 1 / check.shape[-2]))
    z_seed = (check - mean[..., None, :]) / (sd[..., None, :] * math.sqrt(1 + 1 / b))
    one = d.seed >= 0
    z = np.empty(base.shape[:-2] + d.comp.shape)
    z[..., ~one] = z_mean[..., d.comp[~one]]
    z[..., one] = z_seed[..., d.seed[one], d.comp[one]]
    return _t_sf(d.side * z, dof(b, d.group)[d.comp])


def _shrunk_correlation(base: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrinkage of the correlation of the columns of ``base`` (B, K) that vary."""
    from sklearn.covariance import LedoitWolf

    sd = base.std(axis=0, ddof=1)
    moving = sd > 0
    corr = np.eye(base.shape[1])
    if moving.sum() > 1:
        z = (base[:, moving] - base[:, moving].mean(axis=0)) / sd[moving]
        cov = LedoitWolf().fit(z).covariance_
        scale = np.sqrt(np.diag(cov))
        corr[np.ix_(moving, moving)] = cov / np.outer(scale, scale)
    return corr


def simulate(base: np.ndarray, d: Design, draws: int, rng: np.random.Generator,
             corr: np.ndarray | None = None, chunk: int = 2000) -> np.ndarray:
    """min over tests of tail / weight, for ``draws`` checks of unchanged code: baseline and check seeds
    drawn from a normal with ``base``'s means, sds and ``corr`` (default the shrunk correlation)."""
    b, k = base.shape
    corr = _shrunk_correlation(base) if corr is None else corr
    root = np.linalg.cholesky(corr + 1e-9 * np.eye(k)) * base.std(axis=0, ddof=1)
    out = []
    for start in range(0, draws, chunk):
        m = min(chunk, draws - start)
        seeds = base.mean(axis=0) + rng.standard_normal((m, b + d.n_check, k)) @ root.T
        out.append((tails(seeds[:, :b], seeds[:, b:], d) / d.weight).min(axis=-1))
    return np.concatenate(out)


def calibrate(base: np.ndarray, d: Design, family_alpha: float = FAMILY_ALPHA, draws: int = DRAWS,
              seed: int = SIM_SEED) -> float:
    """The level at which a check of unchanged code raises any alarm with probability ``family_alpha``
    (simulated)."""
    stat = simulate(base, d, draws, np.random.default_rng(seed))
    return float(np.quantile(stat, family_alpha))


def split_level(every: np.ndarray, d: Design, family_alpha: float = FAMILY_ALPHA,
                most: int = 5000, seed: int = SIM_SEED) -> float:
    """The level at which ``family_alpha`` of the splits of real seed vectors ``every`` (B + n, K) into
    a baseline of B and a check of n = d.n_check raise an alarm: every split where there are at most
    ``most`` (20 seeds into 16 + 4: 4,845), else ``most`` random ones. Under unchanged code the seeds
    are exchangeable, so each split is a real check of unchanged code: no model of the seeds' tails."""
    import itertools

    total, n = every.shape[0], d.n_check
    splits = list(itertools.combinations(range(total), n))
    if len(splits) > most:
        rng = np.random.default_rng(seed)
        splits = [tuple(rng.choice(total, n, replace=False)) for _ in range(most)]
    stat = []
    for start in range(0, len(splits), 500):
        part = np.array(splits[start:start + 500])
        keep = np.array([[j for j in range(total) if j not in row] for row in part])
        stat.append((tails(every[keep], every[part], d) / d.weight).min(axis=-1))
    return float(np.quantile(np.concatenate(stat), family_alpha))


def thresholds(level: float, d: Design, b: int) -> np.ndarray:
    """Each test's critical t for a baseline of ``b`` seeds: its tail is below level * weight beyond it."""
    from scipy.stats import t
    return t.isf(np.minimum(level * d.weight, 0.5), dof(b, d.group)[d.comp])


def detectable(base: np.ndarray, d: Design, level: float, power: float = POWER) -> np.ndarray:
    """(K, 2): the drop and the rise of each comparison's true mean that its mean test flags with
    probability ``power`` (at the baseline's sd; in the metric's units)."""
    from scipy.stats import norm

    crit = thresholds(level, d, base.shape[0])
    scale = sigma(base, d.group) * math.sqrt(1 / base.shape[0] + 1 / d.n_check)
    out = np.full((len(d.keys), 2), np.nan)
    for t in np.flatnonzero(d.seed < 0):
        out[d.comp[t], 0 if d.side[t] < 0 else 1] = (crit[t] + norm.ppf(power)) * scale[d.comp[t]]
    return out
