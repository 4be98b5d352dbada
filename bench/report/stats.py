"""Statistics over seeds and images (scipy): intervals, differences of methods, Holm's correction.

- ``interval``: mean and the 95 % Student-t confidence interval of the mean, clipped to the
  quantity's range (accuracies cannot leave [0, 1]).
- ``seeds_images_difference``, the test of two methods on an accuracy: runs of the same seeds
  evaluated on the same N test images give an S x N matrix of per-image differences (1 where only
  a got the image right, -1 where only b did). Seeds and images are both samples -- another
  training run gives other models, another test set other images -- so the variance of the mean
  difference has a part from each: the paired t's over seeds, MS_seed / (S N), and what sampling
  the images adds, max(0, MS_image - MS_resid) / (S N) (the matrix's two-way ANOVA). The critical
  value is Cochran and Cox's: the parts' t quantiles (S - 1 and N - 1 df) weighted by the parts.
  With no image effect beyond chance it is the paired t over seeds. Simulated nulls
  (``benchmarks/image_tests_null.py``) keep it at or below alpha where the other forms tried did
  not: with Satterthwaite's df, the conservative (MS_seed + MS_image) / (S N) rejects up to 7 %
  at alpha = 5 % where seeds vary by 5 points, the unbiased (MS_seed + MS_image - MS_resid) / (S N)
  up to 8 % (MS_seed has S - 1 = 2 df).
- ``paired_difference``: where per-image flags are missing, the paired t over seeds
  (``scipy.stats.ttest_rel``, two-sided) with the 95 % interval of the mean paired difference;
  Welch's (``ttest_ind(equal_var=False)``) where the seeds do not pair up; the result says which.
  Accuracies on ``n`` images are tested on their integer counts (round(acc n)), so float32's k/n
  rounding is no spread. It holds the test images fixed: a difference on these images.
- Neither gives a p-value without a spread to test against: a difference identical on every seed
  (and no image effect) has p = nan and ``note`` "no spread", never p = 0.
- ``holm``: Holm's step-down adjustment of p-values for the comparisons in one table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NAN = float("nan")
LEVEL = 0.95        # the confidence level of every interval the reports print and draw
# Stored metrics are float32: a spread within a few float32 steps of the values is rounding.
ROUNDING = 4 * float(np.finfo(np.float32).eps)
NO_SPREAD = "no spread"
SEEDS_IMAGES = "seeds×images t"


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int


def interval(values, bounds: tuple[float, float] | None = None, level: float = LEVEL) -> Interval:
    """Mean and Student-t interval of the mean (nans dropped; no interval for n < 2)."""
    from scipy import stats

    values = [float(v) for v in values if not math.isnan(v)]
    n = len(values)
    if n == 0:
        return Interval(NAN, NAN, NAN, 0)
    mean = sum(values) / n
    if n < 2:
        return Interval(mean, NAN, NAN, n)
    sem = stats.sem(values)
    low, high = (mean, mean) if sem == 0 else stats.t.interval(level, n - 1, loc=mean, scale=sem)
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Interval(mean, float(low), float(high), n)


@dataclass(frozen=True)
class Difference:
    diff: float
    low: float
    high: float
    p: float
    n: int              # seeds
    test: str           # SEEDS_IMAGES, "paired t" or "Welch t"
    note: str = ""      # why p is nan although the test ran: NO_SPREAD


def _square_sums(d: np.ndarray) -> tuple[int, int, int, int]:
    """(total, A, B, C) of an integer S x N matrix: the seeds', images' and total sums of squares
    times S N, as integers (A = S sum(row^2) - total^2, B = N sum(col^2) - total^2,
    C = S N sum(d^2) - total^2), so that a tie between mean squares is exact, not float rounding."""
    d = np.asarray(d, dtype=np.int64)
    s, n = d.shape
    total, rows, cols = int(d.sum()), d.sum(axis=1), d.sum(axis=0)
    square = total * total
    return (total, s * int((rows * rows).sum()) - square, n * int((cols * cols).sum()) - square,
            s * n * int((d * d).sum()) - square)


def seed_image_anova(d: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, MS_seed, MS_image, MS_resid): two-way ANOVA of an integer seeds x images matrix."""
    s, n = np.shape(d)
    total, a, b, c = _square_sums(d)
    return (total / (s * n), a / (s * n * (s - 1)), b / (s * n * (n - 1)),
            (c - a - b) / (s * n * (s - 1) * (n - 1)))


def seeds_images_difference(d: np.ndarray, level: float = LEVEL) -> Difference:
    """Mean of the seeds x images difference matrix ``d`` (integers, one row per paired seed), its
    two-sided test and interval (module docstring): p is the level at which the Cochran-Cox
    critical value equals |mean| / se, the interval mean -/+ that value at 1 - level times se."""
    from scipy.special import stdtrit   # t quantiles, without scipy.stats' per-call overhead

    d = np.asarray(d)
    s, n = d.shape
    if s < 2 or n < 2:
        return Difference(float(d.mean()) if d.size else NAN, NAN, NAN, NAN, s, SEEDS_IMAGES)
    total, a, b, c = _square_sums(d)
    cells = s * n
    # MS_seed / (S N), and max(0, MS_image - MS_resid) / (S N), whose numerator is S B + A - C
    parts = [(a / (cells * (s - 1)) / cells, s - 1),
             (max(s * b + a - c, 0) / (cells * (s - 1) * (n - 1)) / cells, n - 1)]
    var, mean = sum(w for w, _ in parts), total / cells
    if var == 0:   # seeds alike and no image effect beyond chance: nothing to test against
        return Difference(mean, NAN, NAN, NAN, s, SEEDS_IMAGES, NO_SPREAD)

    def critical(alpha: float) -> float:   # the upper alpha/2 point, weighted over the parts
        return sum(-w * float(stdtrit(df, alpha / 2)) for w, df in parts) / var

    se = math.sqrt(var)
    p = _cochran_cox_p(abs(mean) / se, parts, critical)
    half = critical(1 - level) * se
    return Difference(mean, max(mean - half, -1.0), min(mean + half, 1.0), p, s, SEEDS_IMAGES)


def _cochran_cox_p(t: float, parts: list[tuple[float, int]], critical) -> float:
    """The alpha at which ``critical(alpha)`` equals t. It lies between the parts' own t-test
    p-values (the critical value is a weighted mean of their quantiles): a bracketed root."""
    from scipy.optimize import brentq
    from scipy.special import stdtr

    ends = sorted(float(2 * stdtr(df, -t)) for w, df in parts if w > 0)
    low, high = max(ends[0], np.finfo(float).tiny), ends[-1]
    if low >= high:   # one part alone: its own t test (below double precision: the smallest double)
        return max(high, low)
    # where rounding puts an end on the root's side, that end is the answer
    if critical(high) >= t:
        return high
    if critical(low) <= t:
        return low
    return float(brentq(lambda x: critical(x) - t, low, high, xtol=1e-300, rtol=1e-10))


def _as_counts(values: dict[int, float], n: int | None) -> dict[int, int] | None:
    """{seed: round(v n)} where every value is a count out of ``n`` (float32 k/n within rounding),
    else None: a mean over several evaluations (corruptions) is no count and stays as it is."""
    if not n:
        return None
    counts = {s: round(v * n) for s, v in values.items()}
    return counts if all(abs(v * n - counts[s]) <= 1e-3 for s, v in values.items()) else None


def _no_spread(d: list[float], scale: float) -> bool:
    return max(d) - min(d) <= ROUNDING * max(scale, 1e-30)


def paired_difference(a: dict[int, float], b: dict[int, float], level: float = LEVEL,
                      n: int | None = None) -> Difference:
    """a - b over seeds ({seed: value}); paired where every seed of one is a seed of the other.
    With ``n`` (the values are accuracies on n images) the test runs on the integer counts."""
    a = {s: v for s, v in a.items() if not math.isnan(v)}
    b = {s: v for s, v in b.items() if not math.isnan(v)}
    if not a or not b:
        return Difference(NAN, NAN, NAN, NAN, 0, "-")
    ka, kb = _as_counts(a, n), _as_counts(b, n)
    unit = 1.0
    if ka is not None and kb is not None:
        a, b, unit = ka, kb, 1.0 / n
    if set(a) == set(b):
        return _paired_t(a, b, unit, level)
    return _welch_t(a, b, unit, level)


def _paired_t(a: dict, b: dict, unit: float, level: float) -> Difference:
    from scipy import stats

    seeds = sorted(a)
    x, y = [a[s] for s in seeds], [b[s] for s in seeds]
    diff = (sum(x) / len(x) - sum(y) / len(y)) * unit
    d = [u - v for u, v in zip(x, y)]
    if len(seeds) < 2:
        return Difference(diff, NAN, NAN, NAN, len(seeds), "paired t")
    if _no_spread(d, max(abs(v) for v in x + y)):  # the same difference on every seed: no test
        return Difference(diff, NAN, NAN, NAN, len(seeds), "paired t", NO_SPREAD)
    res = stats.ttest_rel(x, y)
    ci = res.confidence_interval(level)
    return Difference(diff, float(ci.low) * unit, float(ci.high) * unit, float(res.pvalue),
                      len(seeds), "paired t")


def _welch_t(a: dict, b: dict, unit: float, level: float) -> Difference:
    from scipy import stats

    x, y = list(a.values()), list(b.values())
    diff = (sum(x) / len(x) - sum(y) / len(y)) * unit
    k = min(len(x), len(y))
    if k < 2:
        return Difference(diff, NAN, NAN, NAN, k, "Welch t")
    scale = max(abs(v) for v in x + y)
    if _no_spread(x, scale) and _no_spread(y, scale):
        return Difference(diff, NAN, NAN, NAN, k, "Welch t", NO_SPREAD)
    res = stats.ttest_ind(x, y, equal_var=False)
    ci = res.confidence_interval(level)
    return Difference(diff, float(ci.low) * unit, float(ci.high) * unit, float(res.pvalue), k,
                      "Welch t")


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values (nans stay nan and do not count as comparisons)."""
    idx = sorted((i for i, p in enumerate(pvalues) if not math.isnan(p)), key=lambda i: pvalues[i])
    m = len(idx)
    out = [NAN] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out
