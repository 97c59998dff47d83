"""Across-run statistics against values worked out by hand (docs/method.md#metrics)."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from rlnorm import stats

FAST = {"n_resamples": 500}


@pytest.mark.parametrize(
    ("values", "message"),
    [([], "values is empty"), ([[1.0, 2.0]], "must be 1-D"), ([1.0, np.nan], "non-finite")],
)
def test_as_sample_rejects_bad_input(values, message):
    with pytest.raises(ValueError, match=message):
        stats.as_sample(values)


def test_cvar_is_worst_run_below_20_runs():
    # ceil(0.05 * 3) = 1: the minimum
    assert stats.cvar([5.0, 1.0, 3.0]) == 1.0
    assert stats.cvar([7.0]) == 7.0


def test_cvar_tail_size():
    # 40 runs: ceil(2) = 2 worst, (1 + 2) / 2
    assert stats.cvar(np.arange(1.0, 41.0)) == 1.5
    # 60 runs: 0.05 * 60 is 3.0000000000000004 in floats, still 3 worst: (0 + 1 + 2) / 3
    assert stats.cvar(np.arange(60.0)) == 1.0
    # alpha 1 is the mean
    assert stats.cvar([1.0, 2.0, 6.0], alpha=1.0) == 3.0
    with pytest.raises(ValueError, match="alpha must be in \\(0, 1\\], got 1.5"):
        stats.cvar([1.0], alpha=1.5)


def test_sample_std_uses_ddof_1():
    # mean 5; squared deviations 9+1+1+1+0+0+4+16 = 32; 32 / 7
    assert stats.sample_std([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]) == pytest.approx(math.sqrt(32 / 7))
    assert math.isnan(stats.sample_std([3.0]))


def test_iqr():
    # 25th percentile at position 1 -> 2, 75th at position 3 -> 4
    assert stats.iqr([5.0, 1.0, 4.0, 2.0, 3.0]) == 2.0
    assert stats.iqr([3.0]) == 0.0


def test_iqm_trims_a_quarter_each_side():
    # 8 values, 2 trimmed each side: (3 + 4 + 100 + 200) / 4
    assert stats.iqm([1.0, 2.0, 3.0, 4.0, 100.0, 200.0, 300.0, 400.0]) == 76.75
    assert stats.iqm([5.0]) == 5.0


def test_bootstrap_ci_contains_estimate():
    # mean (1 + 4 + 2 + 8 + 5 + 7) / 6 = 4.5, inside an interval within the data's range
    estimate = stats.mean_ci([1.0, 4.0, 2.0, 8.0, 5.0, 7.0], rng=3, **FAST)
    assert estimate.value == 4.5
    assert 1.0 <= estimate.low < estimate.value < estimate.high <= 8.0


def test_bootstrap_ci_is_reproducible_with_same_seed():
    values = np.random.default_rng(5).normal(size=20)
    first = stats.iqm_ci(values, rng=3, **FAST)
    assert first == stats.iqm_ci(values, rng=3, **FAST)
    assert first == stats.iqm_ci(values, rng=np.random.default_rng(3), **FAST)
    assert first != stats.iqm_ci(values, rng=4, **FAST)


def test_bootstrap_ci_matches_normal_theory_for_large_sample():
    # The 95 % CI of a mean of 400 draws of N(0, 1) has half-width about 1.96 / sqrt(400) = 0.098.
    values = np.random.default_rng(0).normal(size=400)
    estimate = stats.mean_ci(values, rng=0, n_resamples=2000)
    assert (estimate.high - estimate.low) / 2 == pytest.approx(0.098, rel=0.15)
    assert estimate.low < np.mean(values) < estimate.high


def test_ci_shrinks_with_more_runs():
    rng = np.random.default_rng(1)
    small, large = rng.normal(size=10), rng.normal(size=1000)
    narrow, wide = stats.iqm_ci(large, rng=0, **FAST), stats.iqm_ci(small, rng=0, **FAST)
    assert narrow.high - narrow.low < (wide.high - wide.low) / 3


def test_single_run_has_no_interval():
    estimate = stats.iqm_ci([3.0], rng=0, **FAST)
    assert estimate.value == 3.0
    assert math.isnan(estimate.low) and math.isnan(estimate.high)


def test_bootstrap_ci_rejects_bad_arguments():
    with pytest.raises(ValueError, match="samples is empty"):
        stats.bootstrap_ci([], np.mean)
    with pytest.raises(ValueError, match="confidence must be in \\(0, 1\\), got 95"):
        stats.mean_ci([1.0, 2.0], confidence=95)
    with pytest.raises(ValueError, match="n_resamples must be at least 1, got 0"):
        stats.mean_ci([1.0, 2.0], n_resamples=0)
    with pytest.raises(ValueError, match="samples\\[0\\] is empty"):
        stats.mean_ci([])


def test_stratified_ci_resamples_within_tasks():
    # Each task is constant, so resampling within tasks always gives the pooled mean (0*3 + 10*3) / 6 = 5;
    # resampling the six runs together would not.
    estimate = stats.stratified_ci([[0.0, 0.0, 0.0], [10.0, 10.0, 10.0]], "mean", rng=0, **FAST)
    assert (estimate.value, estimate.low, estimate.high) == pytest.approx((5.0, 5.0, 5.0))


def test_stratified_iqm_pools_runs():
    # pooled [1..8], 2 trimmed each side: (3 + 4 + 5 + 6) / 4
    estimate = stats.stratified_ci([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], "iqm", rng=0, **FAST)
    assert estimate.value == 4.5
    assert estimate.low <= 4.5 <= estimate.high
    with pytest.raises(ValueError, match="aggregate must be one of \\['iqm', 'mean'\\], got 'median'"):
        stats.stratified_ci([[1.0, 2.0]], "median")


def test_probability_of_improvement_counts_ties_half():
    x, y = [1.0, 2.0, 3.0], [2.0, 2.0, 0.0]
    # x=1 beats 0: 1; x=2 ties twice, beats 0: 2; x=3 beats all: 3; total 6 of 9 pairs
    estimate = stats.probability_of_improvement(x, y, rng=0, **FAST)
    assert estimate.value == pytest.approx(2 / 3)
    assert estimate.value == pytest.approx(sps.mannwhitneyu(x, y).statistic / 9)
    assert 0.0 <= estimate.low <= estimate.value <= estimate.high <= 1.0


def test_probability_of_improvement_edge_cases():
    same = [1.0, 5.0, 2.0]
    assert stats.probability_of_improvement(same, same, rng=0, **FAST).value == 0.5
    assert stats.probability_of_improvement([4.0, 5.0], [1.0, 2.0, 3.0], rng=0, **FAST).value == 1.0
    single = stats.probability_of_improvement([2.0], [1.0], rng=0, **FAST)
    assert single.value == 1.0 and math.isnan(single.low) and math.isnan(single.high)


def test_stratified_probability_of_improvement_averages_tasks():
    # task 1: 2/3 (test above); task 2: every x above every y, 1; mean 5/6
    estimate = stats.stratified_probability_of_improvement(
        [[1.0, 2.0, 3.0], [5.0, 6.0]], [[2.0, 2.0, 0.0], [1.0, 2.0]], rng=0, **FAST
    )
    assert estimate.value == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="as many tasks, got 2 and 1"):
        stats.stratified_probability_of_improvement([[1.0], [2.0]], [[1.0]])


def test_brown_forsythe_by_hand():
    # deviations from medians: x [1, 0, 1] (mean 2/3), y [2, 0, 8] (mean 10/3), grand mean 2
    # between SS 3 (4/3)^2 * 2 = 32/3 on 1 df; within SS 2/3 + 104/3 = 106/3 on 4 df; F = 128/106
    result = stats.brown_forsythe([1.0, 2.0, 3.0], [0.0, 2.0, 10.0])
    assert result.statistic == pytest.approx(128 / 106)
    assert result.pvalue == pytest.approx(sps.f.sf(128 / 106, 1, 4))


def test_brown_forsythe_edge_cases():
    assert stats.brown_forsythe([1.0, 1.0], [5.0, 5.0, 5.0]) == stats.HypothesisTestResult(0.0, 1.0)
    with pytest.raises(ValueError, match="y has a single value; the Brown-Forsythe test needs at least 2"):
        stats.brown_forsythe([1.0, 2.0], [3.0])


def test_mann_whitney_exact():
    # x entirely below y: U = 0; only 1 of C(6, 3) = 20 splits is as extreme in each direction
    x, y = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]
    assert stats.mann_whitney(x, y) == stats.HypothesisTestResult(0.0, pytest.approx(0.1))
    assert stats.mann_whitney(x, y, "less").pvalue == pytest.approx(0.05)
    assert stats.mann_whitney(x, y, "greater").pvalue == pytest.approx(1.0)
    with pytest.raises(ValueError, match="alternative must be one of"):
        stats.mann_whitney(x, y, "bigger")


def test_permutation_test_means_exact():
    # mean difference (6 - 15) / 3 = -3; of the 20 splits only {1,2,3} and {4,5,6} reach |3|
    x, y = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]
    result = stats.permutation_test_means(x, y, rng=0)
    assert result.statistic == pytest.approx(-3.0)
    assert result.pvalue == pytest.approx(0.1)
    assert stats.permutation_test_means(x, y, "less", rng=0).pvalue == pytest.approx(0.05)


def test_permutation_test_means_reproducible_when_sampled():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=15), rng.normal(0.5, size=15)
    first = stats.permutation_test_means(x, y, n_resamples=300, rng=7)
    assert first == stats.permutation_test_means(x, y, n_resamples=300, rng=7)


def test_holm_adjust_known_values():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    np.testing.assert_allclose(stats.holm_adjust([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    # capped at 1: 0.6*2 = 1.2 -> 1, then max(1, 0.7)
    np.testing.assert_allclose(stats.holm_adjust([0.6, 0.7]), [1.0, 1.0])
    np.testing.assert_allclose(stats.holm_adjust([0.3, 0.9]), [0.6, 0.9])
    assert stats.holm_adjust([]).size == 0


@pytest.mark.parametrize("pvalues", [[0.1, 1.2], [np.nan], [-0.1]])
def test_holm_adjust_rejects_invalid_pvalues(pvalues):
    with pytest.raises(ValueError, match="p-values must be in \\[0, 1\\]"):
        stats.holm_adjust(pvalues)


def test_stratified_permutation_pvalue():
    low, high = [np.arange(5.0)] * 2, [np.arange(5.0) + 10] * 2
    # Only the observed labelling and its mirror are as extreme as it: p ~ 2 / C(10, 5)^2 ~ 0.
    assert stats.stratified_permutation_pvalue(low, high, rng=0) < 0.01
    assert stats.stratified_permutation_pvalue(low, low, rng=0) == 1.0
