"""Statistics of the report (bench/report/stats.py): Holm's correction, paired and Welch differences."""
import math

import pytest


def test_holm_and_paired_differences():
    from bench.report.stats import holm, paired_difference

    got = holm([0.01, 0.04, 0.03, float("nan")])
    assert got[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(got[3])
    a, b = {0: 0.50, 1: 0.60, 2: 0.70}, {0: 0.48, 1: 0.575, 2: 0.69}
    paired = paired_difference(a, b)
    assert paired.test == "paired t" and paired.low <= paired.diff <= paired.high
    welch = paired_difference(a, {5: 0.48, 6: 0.575, 7: 0.69})
    assert welch.test == "Welch t" and paired.p < welch.p  # pairing removes the shared seed effect
