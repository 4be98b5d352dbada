"""Statistics over seeds, from scipy.stats: intervals, paired tests, and Holm's correction.

- ``interval``: mean and the 95 % Student-t confidence interval of the mean, clipped to the
  quantity's range (accuracies cannot leave [0, 1]).
- ``paired_difference``: seeds share the initialisation across methods, so a method's difference
  from a reference is tested over seed pairs (``scipy.stats.ttest_rel``, two-sided) with the 95 %
  interval of the mean paired difference; where the seeds do not pair up, Welch's unequal-variance
  test (``ttest_ind(equal_var=False)``) instead, and the result says which.
- ``holm``: Holm's step-down adjustment of p-values for the comparisons in one table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

NAN = float("nan")
LEVEL = 0.95        # the confidence level of every interval the reports print and draw


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
    n: int
    test: str           # "paired t" or "Welch t"


def paired_difference(a: dict[int, float], b: dict[int, float], level: float = LEVEL) -> Difference:
    """a - b over seeds ({seed: value}); paired where every seed of one is a seed of the other."""
    from scipy import stats

    a = {s: v for s, v in a.items() if not math.isnan(v)}
    b = {s: v for s, v in b.items() if not math.isnan(v)}
    if not a or not b:
        return Difference(NAN, NAN, NAN, NAN, 0, "-")
    if set(a) == set(b):
        seeds = sorted(a)
        x, y = [a[s] for s in seeds], [b[s] for s in seeds]
        diff = sum(x) / len(x) - sum(y) / len(y)
        d = [u - v for u, v in zip(x, y)]
        if len(seeds) < 2:
            return Difference(diff, NAN, NAN, NAN, len(seeds), "paired t")
        if all(v == d[0] for v in d):  # no spread: the test is undefined, the difference exact
            return Difference(diff, diff, diff, 0.0 if diff != 0 else 1.0, len(seeds), "paired t")
        res = stats.ttest_rel(x, y)
        ci = res.confidence_interval(level)
        return Difference(diff, float(ci.low), float(ci.high), float(res.pvalue), len(seeds), "paired t")
    x, y = list(a.values()), list(b.values())
    diff = sum(x) / len(x) - sum(y) / len(y)
    if len(x) < 2 or len(y) < 2:
        return Difference(diff, NAN, NAN, NAN, min(len(x), len(y)), "Welch t")
    res = stats.ttest_ind(x, y, equal_var=False)
    ci = res.confidence_interval(level)
    return Difference(diff, float(ci.low), float(ci.high), float(res.pvalue), min(len(x), len(y)), "Welch t")


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
