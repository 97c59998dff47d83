"""Across-run statistics against values worked out by hand (docs/method.md#metrics)."""

import itertools
import math
from unittest import mock

import numpy as np
import pytest
from scipy import stats as sps

from rlnorm.analysis import stats

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
    # between SS 3 (4/3)^2 * 2 = 32/3 on 1 df; within SS 2/3 + 104/3 = 106/3 on 4 df; F = t^2 = 128/106
    effect, result = stats.stratified_brown_forsythe([[1.0, 2.0, 3.0]], [[0.0, 2.0, 10.0]])
    assert result.statistic == pytest.approx(-np.sqrt(128 / 106)) and effect.value == pytest.approx(2 / 3 - 10 / 3)
    assert result.pvalue == pytest.approx(sps.f.sf(128 / 106, 1, 4))
    # Stratified: a task's own level drops out, so adding 100 to a second copy leaves t as one task on twice
    # the runs, with one degree of freedom fewer.
    _, pooled = stats.stratified_brown_forsythe([[1.0, 2.0, 3.0], [101.0, 102.0, 103.0]],
                                                [[0.0, 2.0, 10.0], [100.0, 102.0, 110.0]])
    residual = 2 * 106 / 3 / 9
    assert pooled.statistic == pytest.approx(-(8 / 3) / np.sqrt(residual * (1 / 6 + 1 / 6)))


def test_brown_forsythe_edge_cases():
    assert stats.stratified_brown_forsythe([[1.0, 1.0]], [[5.0, 5.0, 5.0]])[1] == stats.HypothesisTestResult(0.0, 1.0)
    with pytest.raises(ValueError, match="at least 2 runs per group, got 2 and 1"):
        stats.stratified_brown_forsythe([[1.0, 2.0]], [[3.0]])


def test_brown_forsythe_on_constant_and_near_constant_deviations():
    # An even group's deviations can be all but equal: against a flat group nothing bounds t ...
    assert stats.stratified_brown_forsythe([[0.0, 0.0, 0.0]], [[-1.0, -1.001, 1.0, 1.001]])[1].pvalue < 1e-6
    # ... but exactly equal ones (tied returns) leave no error to test against: no evidence, not p = 0.
    assert stats.stratified_brown_forsythe([[0.0, 0.0, 0.0]], [[-1.0, -1.0, 1.0, 1.0]])[1] == \
        stats.HypothesisTestResult(0.0, 1.0)


def test_spread_needs_its_three_tests_on_the_same_side():
    wide, narrow = [0.0, 1.0, 3.0, 6.0, 10.0, 15.0, 21.0], [0.0, 0.1, 0.3, 0.6, 1.0, 1.5, 2.1]
    result = stats.spread_test([wide], [narrow]).combined
    brown = stats.stratified_brown_forsythe([wide], [narrow])[1]
    rank = stats.exact_mann_whitney(stats.median_deviations(wide, True), stats.median_deviations(narrow, True))
    permutation = stats.permutation_spread_test([wide], [narrow])
    assert permutation.statistic > 0 and rank.statistic > 6 * 6 / 2
    assert result.statistic == brown.statistic > 0
    assert result.pvalue == max(brown.pvalue, rank.pvalue, permutation.pvalue) == permutation.pvalue < 0.05
    # Brown-Forsythe sees X spread more (one far run), the ranks see Y's deviations larger: no decision.
    x, y = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 100.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert stats.stratified_brown_forsythe([x], [y])[1].statistic > 0
    assert stats.exact_mann_whitney(stats.median_deviations(x, True), stats.median_deviations(y, True)).statistic < 18
    assert stats.spread_test([x], [y]).combined.pvalue == 1.0
    # 3 runs a side leave 2 deviations each to rank: 2 / C(4, 2) = 1/3 at best, whatever Brown-Forsythe gives
    # (its own floor there, one group flat and the other's deviations [1, 0, 1], is t = 2 on 4 df).
    assert stats.smallest_spread_pvalue([(3, 3)]) == pytest.approx(1 / 3)
    _, flat = stats.stratified_brown_forsythe([[0.0, 0.0, 0.0]], [[-1.0, 0.0, 1.0]])
    assert flat.pvalue == pytest.approx(2 * sps.t.sf(2.0, 4)) and flat.pvalue < 1 / 3
    rng = np.random.default_rng(0)
    searched = min(stats.spread_test([rng.normal(size=3) * s], [rng.normal(size=3)]).combined.pvalue
                   for s in rng.choice([1e-3, 1.0, 1e3], size=1000))
    assert searched >= stats.smallest_spread_pvalue([(3, 3)]) - 1e-12


def test_the_permutation_spread_test_counts_every_split_or_samples_them_validly():
    x, y = [0.0, 1.0, 5.0], [2.0, 2.5, 3.0]
    # By hand: each of the C(6, 3) = 20 splits' mean |deviation from median| of X minus Y's.
    values = np.array(x + y)
    null = []
    for split in itertools.combinations(range(6), 3):
        a, b = values[list(split)], np.delete(values, list(split))
        null.append(np.mean(np.abs(a - np.median(a))) - np.mean(np.abs(b - np.median(b))))
    observed = np.mean(np.abs(np.array(x) - 1.0)) - np.mean(np.abs(np.array(y) - 2.5))
    tails = min(np.mean(np.array(null) >= observed - 1e-12), np.mean(np.array(null) <= observed + 1e-12))
    result = stats.permutation_spread_test([x], [y])
    assert result.exact and result.statistic == pytest.approx(observed)
    assert result.pvalue == pytest.approx(min(1.0, 2 * tails))
    # Too many splits to count: drawn from a fixed generator, so the same data give the same p-value.
    rng = np.random.default_rng(0)
    wide, narrow = [rng.normal(size=12) * 3 for _ in range(2)], [rng.normal(size=12) for _ in range(2)]
    assert stats.permutation_count([(12, 12)] * 2) > stats.EXACT_PERMUTATIONS
    sampled = stats.permutation_spread_test(wide, narrow)
    assert not sampled.exact and sampled.pvalue == stats.permutation_spread_test(wide, narrow).pvalue
    assert sampled.statistic > 0 and 2 / (stats.PERMUTATION_RESAMPLES + 1) <= sampled.pvalue < 0.01
    # Every run tied: no spread to tell apart.
    assert stats.permutation_spread_test([[500.0] * 4], [[500.0] * 5]).pvalue == 1.0


def test_the_pooled_permutation_spread_test_splits_each_task_apart():
    x_tasks, y_tasks = [[0.0, 1.0, 5.0, 6.0], [10.0, 14.0, 11.0]], [[2.0, 2.5, 3.0], [12.0, 12.5, 12.2, 13.0]]

    def mean_deviation(values):
        return np.mean(np.abs(values - np.median(values)))

    # By hand: both tasks' splits crossed, each task's difference weighted by n_x n_y / (n_x + n_y).
    per_task = []
    for x, y in zip(x_tasks, y_tasks, strict=True):
        values = np.array(x + y)
        per_task.append([mean_deviation(values[list(split)]) - mean_deviation(np.delete(values, list(split)))
                         for split in itertools.combinations(range(values.size), len(x))])
    weights = np.array([12 / 7, 12 / 7]) / (24 / 7)
    null = (weights[0] * np.array(per_task[0])[:, None] + weights[1] * np.array(per_task[1])[None, :]).ravel()
    observed = sum(w * (mean_deviation(np.array(x)) - mean_deviation(np.array(y)))
                   for w, x, y in zip(weights, x_tasks, y_tasks, strict=True))
    tails = min(np.mean(null >= observed - 1e-12), np.mean(null <= observed + 1e-12))
    exact = stats.permutation_spread_test(x_tasks, y_tasks)
    assert exact.exact and exact.statistic == pytest.approx(observed) and exact.pvalue == pytest.approx(2 * tails)
    # The same test with its splits drawn lands within 5 standard errors of the count (seeded: a fixed result).
    with mock.patch.object(stats, "EXACT_PERMUTATIONS", 0):
        drawn = stats.permutation_spread_test(x_tasks, y_tasks)
    error = 2 * math.sqrt(exact.pvalue / 2 / stats.PERMUTATION_RESAMPLES)
    assert not drawn.exact and abs(drawn.pvalue - exact.pvalue) < 5 * error


def test_the_spread_tests_smallest_p_is_the_drawn_permutations_floor_where_ranks_go_lower():
    # Two tasks of 10 against 10: 184,756^2 splits, so they are drawn; the rank part could reach 8.5e-10.
    sizes = [(10, 10)] * 2
    assert not stats.spread_splits_are_counted(sizes) and stats.spread_splits_are_counted(sizes[:1])
    assert stats.smallest_rank_test_pvalue([(9, 9)] * 2) < 1e-9
    assert stats.smallest_spread_pvalue(sizes) == 2 / (stats.PERMUTATION_RESAMPLES + 1)
    # Complete separation of the spreads reaches it.
    narrow, wide = np.linspace(-1, 1, 10), 100 * np.linspace(-1, 1, 10)
    result = stats.spread_test([wide, wide], [narrow, narrow])
    assert not result.permutation.exact and result.combined.pvalue == stats.smallest_spread_pvalue(sizes)


def test_the_spread_test_keeps_its_level_on_capped_runs_of_one_distribution():
    # Half the runs at a cap, as CartPole's 500, both groups alike (6 runs each). Brown-Forsythe and the rank
    # test on the deviations together rejected 23 of these 1,000 draws at the 0.01 level, 2.3 times it (the
    # rank test alone, at 10 runs a side, 8 times: docs/levels.py). The permutation test is exact here, and
    # the three together reject none (seeded: the count is fixed; a valid test expects 10).
    rng = np.random.default_rng(7)
    rejections = 0
    for _ in range(1000):
        x, y = (np.minimum(rng.normal(1.0, 0.05, size=6), 1.0) for _ in range(2))
        rejections += stats.spread_test([x], [y]).combined.pvalue < 0.01
    assert rejections < 10


def test_near_ties_from_rounding_are_ties_so_normalizing_does_not_move_the_spread_test():
    assert stats.merge_near_ties([0.3, 0.1 + 0.2, 0.5, 0.1]).tolist() == [0.3, 0.3, 0.5, 0.1]
    ten = np.linspace(-20, 20, 10)
    x, y = 400 + 5 * ten, 400 + ten
    raw = stats.spread_test([x], [y]).combined
    for scaled in ((x - 23.7) / (475 - 23.7), (y - 23.7) / (475 - 23.7)), (x / 500, y / 500):
        assert stats.spread_test([scaled[0]], [scaled[1]]).combined.pvalue == pytest.approx(raw.pvalue, rel=1e-9)


def test_median_deviations_drop_the_one_the_median_fixes():
    assert stats.median_deviations([1.0, 2.0, 4.0]).tolist() == [1.0, 0.0, 2.0]
    assert stats.median_deviations([1.0, 2.0, 4.0], drop_structural=True).tolist() == [1.0, 2.0]
    assert stats.median_deviations([1.0, 2.0, 4.0, 8.0], drop_structural=True).tolist() == [2.0, 1.0, 5.0]


def test_mann_whitney_exact():
    # x entirely below y: U = 0; only 1 of C(6, 3) = 20 splits is as extreme in each direction
    x, y = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]
    assert stats.exact_mann_whitney(x, y) == stats.HypothesisTestResult(0.0, pytest.approx(0.1))
    assert stats.exact_mann_whitney(x, y, "less").pvalue == pytest.approx(0.05)
    assert stats.exact_mann_whitney(x, y, "greater").pvalue == pytest.approx(1.0)
    with pytest.raises(ValueError, match="alternative must be one of"):
        stats.exact_mann_whitney(x, y, "bigger")


def test_mean_difference_test_is_exact_for_one_task_and_normal_when_pooled():
    # mean difference (6 - 15) / 3 = -3; of the 20 splits only {1,2,3} and {4,5,6} reach |3|
    x, y = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]
    result, method = stats.mean_difference_test([x], [y])
    assert (result.statistic, method) == (pytest.approx(-3.0), "permutation of means, exact")
    assert result.pvalue == pytest.approx(0.1)
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=9), rng.normal(0.4, size=8)
    # Two-sided as |difference| at least the observed one (scipy's own two-sided doubles the smaller tail).
    exhaustive = sps.permutation_test((a, b), lambda u, v, axis: abs(u.mean(axis) - v.mean(axis)), vectorized=True,
                                      n_resamples=np.inf, alternative="greater")
    assert stats.mean_difference_test([a], [b])[0].pvalue == pytest.approx(exhaustive.pvalue, rel=1e-9)
    # Pooled: the standardized differences of two tasks summed, against its exact permutation variance.
    pooled, method = stats.mean_difference_test([x, x], [y, y])
    one = (2.0 - 5.0) / np.sqrt(np.var([1, 2, 3, 4, 5, 6], ddof=1) * (1 / 3 + 1 / 3))
    assert method.endswith("normal approximation") and pooled.statistic == pytest.approx(2 * one / np.sqrt(2))
    assert stats.mean_difference_test([[1.0, 1.0], x], [[1.0, 1.0], y])[0].statistic == pytest.approx(one)


def test_noninferiority_reads_the_margin_and_stays_finite_at_complete_separation():
    x, y = np.arange(10.0) + 100, np.arange(10.0)
    interval, result = stats.noninferiority_test([x], [y], 0.35)
    # Complete separation: DeLong's variance is 0, Hanley and McNeil's at the margin holds, t on 18 df.
    floor = (0.35 * 0.65 + 9 * (0.35 / 1.65 - 0.35**2) + 9 * (2 * 0.35**2 / 1.35 - 0.35**2)) / 100
    assert result.statistic == pytest.approx(0.65 / np.sqrt(floor))
    assert result.pvalue == pytest.approx(2 * sps.t.sf(0.65 / np.sqrt(floor), 18))
    assert result.pvalue == pytest.approx(stats.smallest_noninferiority_pvalue([(10, 10)], 0.35))
    assert interval.value == 1.0 and interval.low > 0.35
    interval, result = stats.noninferiority_test([y], [x], 0.35)
    assert interval.high < 0.35 and result.statistic < 0 and result.pvalue < 0.05
    # Below the margin P(X > Y) can move only 0.35, not 0.65: that side's floor is far higher.
    assert result.pvalue == pytest.approx(stats.smallest_noninferiority_pvalue([(10, 10)], 0.35, "less"))
    assert result.pvalue == pytest.approx(2 * sps.t.sf(0.35 / np.sqrt(floor), 18)) and result.pvalue > 0.01
    equal = stats.noninferiority_test([x], [x], 0.35)[1]
    assert 0.05 < equal.pvalue < 0.5  # at P = 1/2, ten runs a side do not show P > 0.35
    with pytest.raises(ValueError, match="margin must be in"):
        stats.noninferiority_test([x], [y], 1.5)


def test_noninferiority_holds_its_level_at_the_margin_where_a_z_test_on_delong_did_not():
    # Normal runs with P(X > Y) exactly 0.35, 7 a side, one-sided at 0.0011 (0.05 over 46 Holm entries),
    # a level the test can reach there (its smallest one-sided p is 5e-4). A z test on DeLong's variance alone
    # rejected about 3 times as often as the level; this one must not exceed it.
    rng = np.random.default_rng(5)
    shift = np.sqrt(2) * sps.norm.ppf(0.35)
    assert stats.smallest_noninferiority_pvalue([(7, 7)], 0.35) / 2 < 0.0011
    draws = [stats.noninferiority_test([rng.normal(shift, size=7)], [rng.normal(size=7)], 0.35)[1]
             for _ in range(8000)]
    rejected = np.mean([r.pvalue / 2 < 0.0011 and r.statistic > 0 for r in draws])
    assert rejected <= 0.0011
    assert stats.smallest_noninferiority_pvalue([(2, 2)], 0.35) > 0.05  # 2 vs 2 can never show it


def test_trend_probability_and_holm_in_place():
    groups = [np.array([3.0, 4.0]), np.array([1.0, 2.0]), np.array([0.0, 0.5])]
    assert stats.trend_probability([groups], rng=0).value == 0.0
    assert stats.trend_probability([groups[::-1]], rng=0).value == 1.0
    # Pooled, tasks weigh by their pairs of runs, as the stratified J does: 300 rising pairs and 12 falling.
    rising, falling = [np.arange(10.0) + 10 * i for i in range(3)], [np.array([9.0, 10.0]) - 4 * i for i in range(3)]
    assert stats.trend_probability([rising, falling], rng=0).value == pytest.approx(300 / 312)
    assert stats.jonckheere_terpstra([rising, falling], "two-sided").statistic > 312 / 2
    assert stats.holm_adjust_at([0.01, 0.02, 0.5], 1, 0.001) == pytest.approx(0.003)


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


# Exact rank tests --------------------------------------------------------------------------------------

def _u(x: np.ndarray, y: np.ndarray) -> float:
    return (x[:, None] > y[None]).sum() + 0.5 * (x[:, None] == y[None]).sum()


def _enumerated_pvalue(tasks: list[tuple[np.ndarray, np.ndarray]], alternative: str) -> float:
    """Every relabelling of every task, counted: the definition the exact test must match."""
    per_task = []
    for x, y in tasks:
        pooled, n_x = np.concatenate([x, y]), len(x)
        labellings = itertools.combinations(range(len(pooled)), n_x)
        per_task.append([_u(pooled[list(c)], np.delete(pooled, list(c))) / (len(x) * len(y)) for c in labellings])
    observed = np.mean([_u(x, y) / (len(x) * len(y)) for x, y in tasks])
    means = np.array([np.mean(combo) for combo in itertools.product(*per_task)])
    if alternative == "greater":
        return float(np.mean(means >= observed - 1e-12))
    if alternative == "less":
        return float(np.mean(means <= observed + 1e-12))
    return float(np.mean(np.abs(means - 0.5) >= abs(observed - 0.5) - 1e-12))


def test_stratified_rank_test_of_unequal_sizes_agrees_with_its_normal_limit_and_falls_back_to_it():
    # Sizes whose common scale is 4 x 90,720: still exact (the shift-and-add convolution over each task's
    # 2 n_x n_y + 1 values), and with 70+ runs close to the normal limit of the same statistic.
    generator = np.random.default_rng(1)
    sizes = [(9, 10), (10, 8), (7, 10), (9, 9)]
    xs = [generator.normal(0.3, size=n_x) for n_x, _ in sizes]
    ys = [generator.normal(size=n_y) for _, n_y in sizes]
    exact = stats.stratified_rank_test(xs, ys)
    normal = stats._stratified_rank_test_normal(xs, ys, "two-sided")
    assert exact.exact and not normal.exact and exact.statistic == pytest.approx(normal.statistic)
    assert 0.01 < exact.pvalue < 0.5 and exact.pvalue == pytest.approx(normal.pvalue, rel=0.1)
    # Five tasks of sizes up to 10 can need 7.9 million values: then the normal approximation, said so.
    wide = [(7, 7), (8, 9), (5, 10), (9, 9), (10, 10)]
    xs = [generator.normal(size=n_x) for n_x, _ in wide]
    ys = [generator.normal(size=n_y) for _, n_y in wide]
    assert stats.stratified_rank_test(xs, ys) == stats._stratified_rank_test_normal(xs, ys, "two-sided")


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_exact_mann_whitney_counts_every_relabelling_ties_included(alternative):
    generator = np.random.default_rng(0)
    for _ in range(4):
        # Few distinct values: many ties, as returns stuck at a floor or a ceiling give.
        x, y = generator.integers(0, 4, 6).astype(float), generator.integers(0, 4, 7).astype(float)
        result = stats.exact_mann_whitney(x, y, alternative)
        assert result.pvalue == pytest.approx(_enumerated_pvalue([(x, y)], alternative), abs=1e-12)
        assert result.statistic == _u(x, y)


def test_exact_mann_whitney_matches_scipys_exact_test_without_ties():
    generator = np.random.default_rng(1)
    x, y = generator.normal(size=10), generator.normal(size=10) + 1.0
    expected = sps.mannwhitneyu(x, y, method="exact").pvalue
    assert stats.exact_mann_whitney(x, y).pvalue == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_stratified_rank_test_is_the_exact_distribution_over_relabellings_within_tasks(alternative):
    generator = np.random.default_rng(2)
    # Unequal sizes across tasks: the tasks' statistics live on different grids.
    tasks = [(generator.integers(0, 3, 4).astype(float), generator.integers(0, 3, 4).astype(float)),
             (generator.normal(size=3) + 0.5, generator.normal(size=5))]
    result = stats.stratified_rank_test([x for x, _ in tasks], [y for _, y in tasks], alternative)
    assert result.pvalue == pytest.approx(_enumerated_pvalue(tasks, alternative), abs=1e-12)
    assert result.statistic == pytest.approx(np.mean([_u(x, y) / (len(x) * len(y)) for x, y in tasks]))


def test_smallest_attainable_rank_test_pvalue():
    assert stats.smallest_rank_test_pvalue([(5, 5)]) == pytest.approx(2 / 252)  # 0.0079: 5 vs 5 seeds
    assert stats.smallest_rank_test_pvalue([(10, 10)]) == pytest.approx(2 / 184_756)
    assert stats.smallest_rank_test_pvalue([(5, 5), (5, 5)], "greater") == pytest.approx(1 / 252**2)
    separated = stats.exact_mann_whitney(np.arange(5.0) + 10, np.arange(5.0))
    assert separated.pvalue == pytest.approx(stats.smallest_rank_test_pvalue([(5, 5)]))


def _enumerated_trend_pvalue(groups: list[np.ndarray], alternative: str) -> float:
    pooled, sizes = np.concatenate(groups), [len(g) for g in groups]
    statistics = []
    for labels in set(itertools.permutations(np.repeat(np.arange(len(groups)), sizes))):
        labels = np.array(labels)
        statistics.append(stats.jonckheere_statistic([pooled[labels == i] for i in range(len(groups))]))
    statistics, observed = np.array(statistics), stats.jonckheere_statistic(groups)
    if alternative == "greater":
        return float(np.mean(statistics >= observed - 1e-9))
    if alternative == "less":
        return float(np.mean(statistics <= observed + 1e-9))
    centre = sum(sizes[i] * sizes[j] for i in range(3) for j in range(i + 1, 3)) / 2
    return float(np.mean(np.abs(statistics - centre) >= abs(observed - centre) - 1e-9))


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_jonckheere_terpstra_is_exact_ties_included(alternative):
    # Returns at a floor and a ceiling tie: -500 x 3 and 500 x 3 among 8 runs.
    groups = [np.array([-500.0, 120.0, 500.0]), np.array([-500.0, 500.0, 300.0]), np.array([-500.0, 500.0])]
    result = stats.jonckheere_terpstra([groups], alternative)
    assert result.pvalue == pytest.approx(_enumerated_trend_pvalue(groups, alternative), abs=1e-12)


def test_jonckheere_terpstra_pools_tasks_by_convolution_and_finds_a_clear_trend():
    generator = np.random.default_rng(3)
    rising = [[generator.normal(size=10) + shift for shift in (0.0, 1.0, 2.0)] for _ in range(2)]
    result = stats.jonckheere_terpstra(rising, "greater")
    assert result.pvalue < 1e-6 and stats.jonckheere_terpstra(rising, "less").pvalue > 0.99
    # the null distribution of one task is symmetric about half the number of cross-group pairs
    distribution = stats.jonckheere_null_distribution(rising[0])
    np.testing.assert_allclose(distribution, distribution[::-1], atol=1e-15)


# Return variance for bimodal returns -------------------------------------------------------------------

def test_failure_rate_counts_runs_below_the_threshold_with_a_wilson_interval():
    rate = stats.failure_rate(stats.normalized_scores([-500, -480, 450, 500, 500], -500.0, 500.0))
    assert rate.value == 0.4  # scores 0, 0.02, 0.95, 1, 1: two below 0.5
    # Wilson's interval for 2 of 5 (worked out by hand: centre (k + z^2/2) / (n + z^2), z = 1.96)
    z = 1.959963984540054
    centre, half = (2 + z**2 / 2) / (5 + z**2), z / (5 + z**2) * math.sqrt(2 * 3 / 5 + z**2 / 4)
    assert (rate.low, rate.high) == pytest.approx((centre - half, centre + half), rel=1e-9)
    assert stats.failure_rate([1.0, 1.0]).low == 0.0  # no failure: the interval still has width
    assert stats.failure_rate([1.0, 1.0]).high > 0.5


def test_failure_rate_test_is_barnards_exact_test_and_uninformative_when_all_runs_agree():
    x, y = [0.0] * 8 + [1.0] * 2, [1.0] * 10
    result = stats.failure_rate_test(x, y)
    expected = sps.barnard_exact([[8, 0], [2, 10]]).pvalue
    assert result.statistic == pytest.approx(0.8) and result.pvalue == pytest.approx(expected)
    assert stats.failure_rate_test([1.0] * 5, [1.0] * 5).pvalue == 1.0


def test_inter_percentile_range_spans_the_central_ninety_percent():
    assert stats.inter_percentile_range(np.arange(11.0)) == pytest.approx(9.0)  # 9.5 - 0.5
    assert stats.inter_percentile_range(np.arange(11.0), coverage=0.5) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="coverage must be in"):
        stats.inter_percentile_range([1.0, 2.0], coverage=1.0)


def test_paired_log_ratio_effect_is_on_the_side_of_the_signed_rank_statistic():
    # 21 repeats barely faster, 19 much slower: the median ratio (0.99) says faster, the signed ranks say slower.
    ratios = np.array([0.99] * 21 + list(np.linspace(1.5, 3.0, 19)))
    result = stats.paired_log_ratio_test(ratios, np.ones(40))
    assert np.median(ratios) < 1 < result.statistic
    assert sps.wilcoxon(np.log(ratios), alternative="greater").pvalue < 0.01
    logs = np.log(ratios)
    walsh = [(logs[i] + logs[j]) / 2 for i in range(40) for j in range(i, 40)]
    assert result.statistic == pytest.approx(np.exp(np.median(walsh)))


def test_paired_log_ratio_test_reaches_only_two_over_two_to_the_n_with_n_pairs():
    slower = stats.paired_log_ratio_test([1.1, 1.2, 1.05, 1.3, 1.15], [1.0] * 5)
    assert slower.statistic > 1 and slower.pvalue == pytest.approx(2 / 32)
    twelve = stats.paired_log_ratio_test(np.linspace(1.05, 1.3, 12), np.ones(12), "greater")
    assert twelve.pvalue == pytest.approx(1 / 4096)
