"""The regression check's statistics (bench/regress/bands.py), simulated on a design like the preset's:
five rows (four robust), 14 metrics each whose seed sds range from 0.5 to 6 points and move together
within a seed (a seed factor per row and one for the whole seed, as one seed trains the teacher and every
student), a 16-seed baseline and a 4-seed check. The world the checks are drawn from is not the model
the calibration assumes (its correlations are estimated from 16 seeds and shrunk)."""
import numpy as np
import pytest

from bench.regress import bands

ROWS, METRICS, B, N = ["teacher", "gacd", "ard", "pgd-at", "crd"], 14, 16, 4
NAMES = ["clean", "fgsm", "pgd20", "cw", "aa", "worst"] + [f"m{j}" for j in range(METRICS - 6)]


def _world(seed=0, tails=None):
    """(keys, draw): draw(n) gives n seed vectors; ``tails``: the metrics' own variation Student t with
    that many df (scaled to the same sd) instead of normal."""
    rng = np.random.default_rng(seed)
    means = {(r, m): (0.02 if r == "crd" and m != "clean" else rng.uniform(0.3, 0.9)) for r in ROWS for m in NAMES}
    sds = np.array([rng.uniform(0.005, 0.06) for _ in means])
    loading = rng.uniform(0.3, 0.9, size=len(means))   # how much of a metric's variance is its row's seed factor

    def draw(n, shift=None):
        common = rng.standard_normal((n, 1))
        per_row = np.repeat(rng.standard_normal((n, len(ROWS))), len(NAMES), axis=1)
        own = (rng.standard_t(tails, (n, len(means))) / np.sqrt(tails / (tails - 2)) if tails
               else rng.standard_normal((n, len(means))))
        z = np.sqrt(loading) * (0.5 * common + np.sqrt(0.75) * per_row) + np.sqrt(1 - loading) * own
        x = np.array(list(means.values())) + sds * z
        if shift:
            x[:, list(means).index(shift[0])] -= shift[1]
        return x
    return list(means), draw


def _values(keys, x):
    out = {}
    for k, (row, metric) in enumerate(keys):
        out.setdefault(row, {})[metric] = list(x[:, k])
    return out


def _alarm(base, check, d, level):
    return bool(((bands.tails(base, check, d) / d.weight) < level).any())


@pytest.mark.slow
def test_unchanged_code_raises_a_false_alarm_in_about_five_percent_of_checks():
    """Calibrated on each baseline, then scored on checks drawn from the world: the family-wise rate of
    false alarms is within Monte Carlo error of 5 % (the plain Bonferroni split gave about 0.1 %
    on the preset's data, the check-pooled bands of issue 19 let a collapsed seed pass)."""
    keys, draw = _world()
    alarms = trials = 0
    for _ in range(12):
        base = draw(B)
        d = bands.design(_values(keys, base), N)
        level = bands.calibrate(base, d, draws=4000)
        for _ in range(150):
            alarms += _alarm(base, draw(N), d, level)
            trials += 1
    rate = alarms / trials
    assert 0.02 <= rate <= 0.07, rate     # 1,800 checks: the binomial sd at 5 % is 0.5 points


@pytest.mark.slow
def test_a_drop_of_the_stated_size_is_caught_four_times_in_five():
    keys, draw = _world(1)
    hits = trials = 0
    k = keys.index(("ard", "pgd20"))
    for _ in range(8):
        base = draw(B)
        d = bands.design(_values(keys, base), N)
        assert d.focus[k]
        level = bands.calibrate(base, d, draws=4000)
        stated = bands.detectable(base, d, level)[k, 0]
        for _ in range(100):
            check = draw(N, shift=(("ard", "pgd20"), stated))
            t = bands.tails(base, check, d)
            hits += bool(((t / d.weight < level) & (d.comp == k) & (d.seed < 0) & (d.side < 0)).any())
            trials += 1
    assert hits / trials >= bands.POWER - 0.1, hits / trials   # stated conditionally on each baseline


def test_the_design_spends_most_of_the_rate_on_robust_drops_and_sums_to_one():
    keys, draw = _world(2)
    d = bands.design(_values(keys, draw(B)), N)
    assert d.weight.sum() == pytest.approx(1.0)
    focus_drop = (d.focus[d.comp]) & (d.side < 0) & (d.seed < 0)
    assert d.weight[focus_drop].sum() == pytest.approx(bands.SHARES["focus-drop"])
    assert focus_drop.sum() == 8                        # PGD-20 and AutoAttack of the four robust rows
    assert (d.seed >= 0).sum() == len(ROWS) * len(bands.SEED_METRICS) * N   # per row, metric, check seed


def test_sigma_is_moderated_towards_rows_alike_and_floored():
    base = np.array([[0.5, 0.7, 0.9], [0.52, 0.7, 0.9], [0.54, 0.7, 0.9]])
    group = np.array([0, 0, 1])
    sd = bands.sigma(base, group)
    assert sd[0] == pytest.approx(np.sqrt((0.02 ** 2 + 0.02 ** 2 / 2) / 2))   # own, and pooled with a flat row
    assert sd[2] == bands.SD_FLOOR                                             # no spread anywhere: the floor


@pytest.mark.slow
def test_the_split_level_keeps_the_rate_where_seeds_have_heavier_tails_than_normal():
    """Seeds whose own variation has heavy tails (Student t, 3 df): the simulated level assumes normal
    seeds and alarms too often; the lower of it and the level found on the splits of the 20 seeds the
    update measures (16 + 4, ``bands.split_level``), which the baseline stores, stays near 5 %."""
    keys, draw = _world(3, tails=5)
    rates = {"simulated": 0, "stored": 0}
    trials = 0
    for _ in range(10):
        seeds = draw(B + N)
        base = seeds[:B]
        d = bands.design(_values(keys, base), N)
        simulated = bands.calibrate(base, d, draws=3000)
        stored = min(simulated, bands.split_level(seeds, d, most=600))
        for _ in range(150):
            check = draw(N)
            rates["simulated"] += _alarm(base, check, d, simulated)
            rates["stored"] += _alarm(base, check, d, stored)
            trials += 1
    assert rates["stored"] / trials <= 0.075, rates
    assert rates["stored"] <= rates["simulated"]
