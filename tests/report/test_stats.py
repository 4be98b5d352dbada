"""Statistics of the report (bench/report/stats.py): Holm's correction, the paired and Welch
differences over seeds, the ablation's seeds x images test and its error rate under simulated
nulls (bench/report/image_null.py)."""
import math

import numpy as np
import pytest

# The committed gacd-ablation report's clean accuracies (float32, k/226): CRD one image better than
# GACD on each seed (224 - 223, 226 - 225, 225 - 224), which the old table starred at Holm p = 2e-9.
CRD_CLEAN = {0: 0.991150438785553, 1: 1.0, 2: 0.9955752491950989}
GACD_CLEAN = {0: 0.9867256879806519, 1: 0.9955752491950989, 2: 0.991150438785553}


def test_holm_and_paired_differences():
    from bench.report.stats import holm, paired_difference

    got = holm([0.01, 0.04, 0.03, float("nan")])
    assert got[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(got[3])
    a, b = {0: 0.50, 1: 0.60, 2: 0.70}, {0: 0.48, 1: 0.575, 2: 0.69}
    paired = paired_difference(a, b)
    assert paired.test == "paired t" and paired.low <= paired.diff <= paired.high
    welch = paired_difference(a, {5: 0.48, 6: 0.575, 7: 0.69})
    assert welch.test == "Welch t" and paired.p < welch.p  # pairing removes the shared seed effect


def test_one_image_differences_in_float32_have_no_spread_and_no_p_value():
    from bench.report.stats import NO_SPREAD, paired_difference

    for n in (None, 226):   # float32 rounding alone, and the integer counts
        d = paired_difference(CRD_CLEAN, GACD_CLEAN, n=n)
        assert d.diff == pytest.approx(1 / 226, abs=1e-7)
        assert math.isnan(d.p) and d.note == NO_SPREAD and math.isnan(d.low) and math.isnan(d.high)
    same = paired_difference(GACD_CLEAN, GACD_CLEAN)
    assert same.diff == 0 and math.isnan(same.p) and same.note == NO_SPREAD   # never p = 0
    # counts 1, 1 and 2 images apart: a spread, so a test, on the counts
    a = {0: 224 / 226, 1: 226 / 226, 2: 226 / 226}
    counted = paired_difference(a, GACD_CLEAN, n=226)
    assert counted.note == "" and 0.05 < counted.p < 1 and counted.diff == pytest.approx(4 / 678)
    # a mean over several evaluations is not a count: left as it is
    x, y = {0: 0.5001, 1: 0.6}, {0: 0.5, 1: 0.55}
    assert paired_difference(x, y, n=226).p == pytest.approx(paired_difference(x, y).p)


def test_the_seeds_images_test_is_the_paired_t_when_images_add_nothing():
    from scipy import stats

    from bench.report.stats import SEEDS_IMAGES, seed_image_anova, seeds_images_difference

    d = np.zeros((4, 40), dtype=int)   # images only a got right: 3, 0, 5 and 1, others each seed
    for s, images in enumerate([[0, 1, 2], [], [3, 4, 5, 6, 7], [8]]):
        d[s, images] = 1
    _, _, ms_image, ms_resid = seed_image_anova(d)
    assert ms_image <= ms_resid        # no image favoured beyond chance: the image part drops out
    got = seeds_images_difference(d)
    ref = stats.ttest_rel(d.mean(axis=1), np.zeros(4))
    ci = ref.confidence_interval()
    assert got.test == SEEDS_IMAGES and got.diff == pytest.approx(d.mean())
    assert got.p == pytest.approx(ref.pvalue)
    assert (got.low, got.high) == pytest.approx((ci.low, ci.high))


def test_the_seeds_images_test_adds_what_sampling_the_images_adds():
    from scipy import stats

    from bench.report.stats import NO_SPREAD, seed_image_anova, seeds_images_difference

    rng = np.random.default_rng(0)
    favoured = rng.random(226) < 0.3   # images method a tends to get right and b not, every seed
    a = (rng.random((3, 226)) < 0.6) | favoured
    b = rng.random((3, 226)) < 0.6
    d = a.astype(int) - b
    got = seeds_images_difference(d)
    mean, ms_seed, ms_image, ms_resid = seed_image_anova(d)
    w_seed, w_image = ms_seed / d.size, (ms_image - ms_resid) / d.size
    assert w_image > 0
    se = math.sqrt(w_seed + w_image)

    def critical(alpha):   # Cochran and Cox's: the parts' t quantiles, weighted by the parts
        q_seed, q_image = stats.t.isf(alpha / 2, 2), stats.t.isf(alpha / 2, 225)
        return (w_seed * q_seed + w_image * q_image) / (w_seed + w_image)
    assert critical(got.p) == pytest.approx(abs(mean) / se, rel=1e-6)
    assert got.high - got.diff == pytest.approx(critical(0.05) * se)
    # the seed part is the paired t's variance over seeds; the image part is what it leaves out
    assert w_seed == pytest.approx(np.var(d.mean(axis=1), ddof=1) / 3)
    # identical flags: no p-value, not p = 0
    assert seeds_images_difference(np.zeros((3, 226), dtype=int)).note == NO_SPREAD


@pytest.mark.parametrize("accuracy, seeds, image_sd, points", [
    (0.7, 3, 1.2, 0.025),   # (iii) image preferences and seeds 2.5 points apart (sd)
    (0.5, 3, 1.2, 0.05),    # (iv) seeds 5 points apart: where Satterthwaite's df would fail
    (0.7, 5, 1.2, 0.0),     # (i) image preferences alone, five seeds
])
def test_under_simulated_nulls_the_method_test_keeps_its_alpha_and_the_pooled_mcnemar_does_not(
        accuracy, seeds, image_sd, points):
    """Equal expected accuracy (benchmarks/image_tests_null.py runs every null): the report's test
    rejects at most alpha + 3 Monte Carlo se; the pooled McNemar test it replaced does not keep
    that bound, so the bound is one a test can fail."""
    from bench.report.image_null import ALPHA, TESTS, Scenario, monte_carlo_se, rejection_rates

    reps = 4000
    tests = {k: TESTS[k] for k in ("seeds×images", "pooled McN.")}
    sc = Scenario("null", accuracy, seeds, image_sd, points)
    rates = rejection_rates(sc, reps, seed=1, tests=tests)
    bound = ALPHA + 3 * monte_carlo_se(ALPHA, reps)
    assert rates["seeds×images"] <= bound
    assert rates["pooled McN."] > bound


def test_the_method_test_finds_a_ten_point_difference_with_five_seeds():
    from bench.report.image_null import TESTS, Scenario, rejection_rates

    sc = Scenario("+10", 0.7, 5, 1.2, 0.025, difference=0.10)
    assert rejection_rates(sc, 300, seed=2, tests={"t": TESTS["seeds×images"]})["t"] > 0.8


def _runs(method: str, clean: dict[int, float]):
    from bench.records.record import RunRecord

    return [RunRecord(run_id=f"{method}-{s}", role="student", method=method, method_name=method,
                      options={}, note="", dataset="digits@0-4", arch="cnn-narrow", teacher_id="t0",
                      seed=s, config={}, metrics={"clean": v}, curve={},
                      attack_settings={"clean": {"n": 226}}, timings={})
            for s, v in clean.items()]


def test_the_ablation_no_longer_stars_crds_one_image_per_seed():
    """The committed gacd-ablation report's "+0.4 [+0.4, +0.4] *s" CRD clean cell: from the
    accuracies alone, and from per-image flags with 4 images only CRD got right, 1 only GACD."""
    import torch

    from bench.eval import per_image
    from bench.report.aggregate import Column, ablation_table

    groups = {"gacd": _runs("gacd", GACD_CLEAN), "crd": _runs("crd", CRD_CLEAN)}
    col = Column("Clean", ("metrics", "clean"))
    row = ablation_table(groups, "gacd", [col]).iloc[0]
    assert row["Δ Clean"] == "+0.4" and row["p Clean (Holm)"] == "no spread"
    wrong = {"gacd": {0: [0, 1, 2], 1: [0], 2: [0, 3]}, "crd": {0: [5, 2], 1: [], 2: [0]}}
    stored = {}
    for method, recs in groups.items():
        for r in recs:
            flags = torch.ones(226, dtype=torch.bool)
            flags[wrong[method][r.seed]] = False
            stored[r.run_id] = per_image.store({"clean": flags}, torch.zeros(226, dtype=torch.long))
    row = ablation_table(groups, "gacd", [col], per_image=lambda r: stored[r.run_id]).iloc[0]
    assert not row["Δ Clean"].endswith("*") and row["p Clean (Holm)"].endswith("s×i")
    assert float(row["p Clean (Holm)"].split()[0]) > 0.05
