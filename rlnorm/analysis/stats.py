"""Statistics across runs: spread, tail risk, aggregates with bootstrap CIs, and tests between two groups.

Pure functions on numpy arrays (docs/method.md#metrics), in the style of rliable, built on scipy. A "group" is one
number per run (typically the final return of each seed); a "task" is one (algo, env) pair, and the
stratified functions resample runs within each task, as rliable does.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

Alternative = Literal["two-sided", "less", "greater"]
Aggregate = Literal["mean", "iqm"]
Rng = int | np.random.Generator | None

_ALTERNATIVES = ("two-sided", "less", "greater")
BOOTSTRAP_RESAMPLES = 10_000
"""Resamples of every bootstrap by default: with fewer, an interval's bounds move visibly with the seed (by up
to 14 % of the width at 2,000 resamples and 5 runs per group)."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with the bounds of its confidence interval (nan when no interval exists)."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class HypothesisTestResult:
    """The statistic of a test and its p-value (``exact`` False: from a normal approximation, or from sampled
    permutations)."""

    statistic: float
    pvalue: float
    exact: bool = True


def as_sample(values: ArrayLike, name: str = "values") -> np.ndarray:
    """
    Check that ``values`` is a non-empty, finite 1-D array and return it as floats.

    :param values: the numbers to check
    :param name: how the error message calls them
    :return: the values as a 1-D float array
    """
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty; at least one value is required")
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"{name} contains non-finite values ({array[~np.isfinite(array)][:3]}); all must be finite"
        )
    return array


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")


def cvar(values: ArrayLike, alpha: float = 0.05) -> float:
    """
    Conditional value at risk: the mean of the worst (lowest) ``alpha`` fraction of the values.

    The tail holds ``ceil(alpha * n)`` values (at least one), so with alpha = 0.05 and n <= 20 runs it is
    the worst run.

    :param values: one number per run (or per time step)
    :param alpha: fraction of the values in the tail, in (0, 1]
    :return: the mean of the lowest ``ceil(alpha * n)`` values
    """
    sample = as_sample(values)
    _check_alpha(alpha)
    # The tolerance keeps float products such as 0.05 * 60 = 3.0000000000000004 from adding a value.
    count = max(1, math.ceil(alpha * sample.size - 1e-9))
    return float(np.mean(np.sort(sample)[:count]))


def sample_std(values: ArrayLike) -> float:
    """
    Standard deviation across runs, with Bessel's correction (ddof=1).

    :param values: one number per run
    :return: the sample standard deviation; nan for a single run, whose spread is unknown
    """
    sample = as_sample(values)
    return float(np.std(sample, ddof=1)) if sample.size > 1 else math.nan


def iqr(values: ArrayLike) -> float:
    """
    Interquartile range across runs (75th minus 25th percentile, linear interpolation).

    :param values: one number per run
    :return: the interquartile range (0 for a single run)
    """
    return float(sps.iqr(as_sample(values)))


def iqm_along(values: np.ndarray, axis: int) -> np.ndarray:
    """
    Interquartile mean along one axis (vectorized, e.g. over bootstrap resamples).

    :param values: an array of runs
    :param axis: the axis of the runs
    :return: the interquartile means
    """
    return sps.trim_mean(values, 0.25, axis=axis)


def iqm(values: ArrayLike) -> float:
    """
    Interquartile mean: the mean of the middle 50 % of the values (25 % trimmed from each end).

    :param values: one number per run
    :return: the interquartile mean
    """
    return float(iqm_along(as_sample(values), axis=-1))


def bootstrap_ci(
    samples: Sequence[ArrayLike],
    statistic: Callable[..., np.ndarray],
    *,
    confidence: float = 0.95,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    rng: Rng = None,
) -> Estimate:
    """
    Percentile bootstrap confidence interval of a statistic of one or more independent samples.

    Each sample is resampled with replacement on its own (``scipy.stats.bootstrap``, unpaired), which is
    the stratified bootstrap when the samples are tasks.

    :param samples: 1-D samples, e.g. the final returns of each task, or of the two groups compared
    :param statistic: ``statistic(*samples, axis)`` computed along ``axis`` (vectorized over resamples)
    :param confidence: confidence level, in (0, 1)
    :param n_resamples: number of bootstrap resamples
    :param rng: seed or generator, for reproducible intervals
    :return: the statistic on the data with the interval bounds; the bounds are nan when a sample has a
        single value, since resampling one run cannot show how much the statistic varies
    """
    if len(samples) == 0:
        raise ValueError("samples is empty; at least one sample is required")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    arrays = [as_sample(sample, f"samples[{i}]") for i, sample in enumerate(samples)]
    value = float(statistic(*arrays, axis=-1))
    if min(array.size for array in arrays) < 2:
        return Estimate(value, math.nan, math.nan)
    result = sps.bootstrap(
        arrays,
        statistic,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        rng=rng,
    )
    interval = result.confidence_interval
    return Estimate(value, float(interval.low), float(interval.high))


_AGGREGATES: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "mean": lambda values, axis: np.mean(values, axis=axis),
    "iqm": iqm_along,
}


def stratified_ci(
    tasks: Sequence[ArrayLike],
    aggregate: Aggregate = "iqm",
    *,
    confidence: float = 0.95,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    rng: Rng = None,
) -> Estimate:
    """
    Mean or IQM over the runs of several tasks pooled, with a stratified percentile bootstrap CI.

    Runs are resampled within each task (rliable's stratified bootstrap). Returns of different
    environments live on different scales: normalize them per task before pooling.

    :param tasks: one 1-D array of per-run scores per task
    :param aggregate: "mean" or "iqm", computed over all runs of all tasks pooled
    :param confidence: confidence level, in (0, 1)
    :param n_resamples: number of bootstrap resamples
    :param rng: seed or generator, for reproducible intervals
    :return: the aggregate with its interval (nan bounds if a task has a single run)
    """
    if aggregate not in _AGGREGATES:
        raise ValueError(f"aggregate must be one of {sorted(_AGGREGATES)}, got {aggregate!r}")
    reduce = _AGGREGATES[aggregate]

    def pooled(*samples: np.ndarray, axis: int) -> np.ndarray:
        return reduce(np.concatenate(samples, axis=axis), axis)

    return bootstrap_ci(tasks, pooled, confidence=confidence, n_resamples=n_resamples, rng=rng)


def mean_ci(
    values: ArrayLike, *, confidence: float = 0.95, n_resamples: int = BOOTSTRAP_RESAMPLES, rng: Rng = None
) -> Estimate:
    """
    Mean across runs with a percentile bootstrap CI.

    :param values: one number per run
    :param confidence: confidence level, in (0, 1)
    :param n_resamples: number of bootstrap resamples
    :param rng: seed or generator, for reproducible intervals
    :return: the mean with its interval (nan bounds for a single run)
    """
    return stratified_ci([values], "mean", confidence=confidence, n_resamples=n_resamples, rng=rng)


def iqm_ci(
    values: ArrayLike, *, confidence: float = 0.95, n_resamples: int = BOOTSTRAP_RESAMPLES, rng: Rng = None
) -> Estimate:
    """
    Interquartile mean across runs with a percentile bootstrap CI.

    :param values: one number per run
    :param confidence: confidence level, in (0, 1)
    :param n_resamples: number of bootstrap resamples
    :param rng: seed or generator, for reproducible intervals
    :return: the IQM with its interval (nan bounds for a single run)
    """
    return stratified_ci([values], "iqm", confidence=confidence, n_resamples=n_resamples, rng=rng)


def probability_greater_along(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    """
    P(X > Y) = U / (n_x n_y), ties counting 1/2, along one axis (vectorized over the others).

    :param x: runs of X along ``axis``
    :param y: runs of Y along ``axis``
    :param axis: the axis of the runs
    :return: the probabilities
    """
    # Mann-Whitney U from ranks: U_x = (rank sum of x in the pooled sample) - n_x (n_x + 1) / 2, with
    # average ranks for ties, so a tie counts 1/2. Ranks keep memory linear in n for the resamples.
    x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    n_x, n_y = x.shape[-1], y.shape[-1]
    ranks = sps.rankdata(np.concatenate([x, y], axis=-1), axis=-1)
    u_x = ranks[..., :n_x].sum(axis=-1) - n_x * (n_x + 1) / 2
    return u_x / (n_x * n_y)


def stratified_probability_of_improvement(
    x_tasks: Sequence[ArrayLike],
    y_tasks: Sequence[ArrayLike],
    *,
    confidence: float = 0.95,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    rng: Rng = None,
) -> Estimate:
    """
    Average over tasks of P(X > Y), with a stratified percentile bootstrap CI (rliable's definition).

    Per task, P(X > Y) = U / (n_x n_y) with U the Mann-Whitney statistic of x: the fraction of (x, y)
    run pairs where x is higher, ties counting 1/2.

    :param x_tasks: per task, one score per run of the first group
    :param y_tasks: per task, one score per run of the second group, in the same task order
    :param confidence: confidence level, in (0, 1)
    :param n_resamples: number of bootstrap resamples
    :param rng: seed or generator, for reproducible intervals
    :return: the probability with its interval (nan bounds if any group of any task has a single run)
    """
    if len(x_tasks) != len(y_tasks):
        raise ValueError(
            f"x_tasks and y_tasks must have as many tasks, got {len(x_tasks)} and {len(y_tasks)}"
        )
    n_tasks = len(x_tasks)

    def mean_probability(*samples: np.ndarray, axis: int) -> np.ndarray:
        per_task = [
            probability_greater_along(x, y, axis)
            for x, y in zip(samples[:n_tasks], samples[n_tasks:], strict=True)
        ]
        return np.mean(per_task, axis=0)

    return bootstrap_ci(
        [*x_tasks, *y_tasks], mean_probability, confidence=confidence, n_resamples=n_resamples, rng=rng
    )


def probability_of_improvement(
    x: ArrayLike,
    y: ArrayLike,
    *,
    confidence: float = 0.95,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    rng: Rng = None,
) -> Estimate:
    """
    P(X > Y) = U / (n_x n_y) for one task, ties counting 1/2, with a percentile bootstrap CI.

    :param x: one score per run of the first group
    :param y: one score per run of the second group
    :param confidence: confidence level, in (0, 1)
    :param n_resamples: number of bootstrap resamples
    :param rng: seed or generator, for reproducible intervals
    :return: the probability with its interval (nan bounds if a group has a single run)
    """
    return stratified_probability_of_improvement(
        [x], [y], confidence=confidence, n_resamples=n_resamples, rng=rng
    )


def _check_alternative(alternative: str) -> None:
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}")


def median_deviations(values: ArrayLike, drop_structural: bool = False) -> np.ndarray:
    """
    :param values: one number per run of a group
    :param drop_structural: drop the smallest deviation, which the median fixes by construction (0 for an odd
        group, a copy of the next for an even one): a rank test on the rest is not held back by ties it made
    :return: each run's absolute deviation from the group's median
    """
    values = as_sample(values)
    deviations = np.abs(values - np.median(values))
    return np.delete(deviations, np.argmin(deviations)) if drop_structural else deviations


def merge_near_ties(values: ArrayLike, rtol: float = 1e-9) -> np.ndarray:
    """
    :param values: numbers computed from data, e.g. deviations from a median
    :param rtol: values closer than this times the largest magnitude are one value
    :return: the values, each run of near-equal ones (in sorted order) set to its smallest: deviations equal in
        exact arithmetic (runs placed symmetrically about the median) differ in their last bits once scores
        are normalized, and a rank test would count them as different
    """
    values = as_sample(values)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    gaps = np.diff(ordered) > rtol * float(np.max(np.abs(values)))
    groups = np.concatenate([[0], np.cumsum(gaps)])
    firsts = ordered[np.concatenate([[0], np.flatnonzero(gaps) + 1])]
    merged = np.empty_like(values)
    merged[order] = firsts[groups]
    return merged


def stratified_brown_forsythe(
    x_tasks: Sequence[ArrayLike], y_tasks: Sequence[ArrayLike], confidence: float = 0.95
) -> tuple[Estimate, HypothesisTestResult]:
    """
    Brown-Forsythe test of equal spread, stratified by task: a t test of the group effect in a least-squares
    fit of each run's absolute deviation from its group's median on task and group (for one task the pooled
    two-sample t, whose square is Levene's F centred on the median). Brown-Forsythe keeps its level on skewed
    data (Conover, Johnson and Johnson 1981), where a rank test on the deviations does not: they are not
    exchangeable, each group's centred on its own median.

    :param x_tasks: per task, one number per run of X, at least 2
    :param y_tasks: per task, one number per run of Y, in the same task order, at least 2
    :param confidence: level of the interval returned
    :return: X's mean absolute deviation minus Y's (within tasks) with its t interval, and the t statistic with
        its two-sided p-value; when the deviations are constant within each group (tied or capped returns,
        e.g. [500, 500, 500] against [480, 480, 500, 500]) the fit leaves no error to test against, and the
        result is t 0, p 1: no evidence this test can weigh
    """
    centred_d, centred_g = [], []
    for x, y in zip(x_tasks, y_tasks, strict=True):
        x, y = as_sample(x, "x"), as_sample(y, "y")
        if min(x.size, y.size) < 2:
            raise ValueError(f"the Brown-Forsythe test needs at least 2 runs per group, got {x.size} and {y.size}")
        d = np.concatenate([median_deviations(x), median_deviations(y)])
        g = np.concatenate([np.ones(x.size), np.zeros(y.size)])
        centred_d.append(d - d.mean())
        centred_g.append(g - g.mean())
    d, g = np.concatenate(centred_d), np.concatenate(centred_g)
    df = d.size - len(centred_d) - 1
    if df < 1:
        raise ValueError("the Brown-Forsythe test needs more runs than tasks + 1")
    effect = float(g @ d / (g @ g))
    residual_ss = float(np.sum((d - effect * g) ** 2))
    # Relative to the deviations' own size: centring leaves rounding residue where the fit is exact.
    if residual_ss <= 1e-20 * float(d @ d):
        return Estimate(effect, math.nan, math.nan), HypothesisTestResult(0.0, 1.0)
    error = math.sqrt(residual_ss / df / float(g @ g))
    t = effect / error
    half = float(sps.t.ppf(0.5 + confidence / 2, df)) * error
    return Estimate(effect, effect - half, effect + half), HypothesisTestResult(t, float(2 * sps.t.sf(abs(t), df)))


EXACT_PERMUTATIONS = 1_000_000
"""A permutation test counts every split of the runs into the two groups when there are at most this many: on
one task for the test of means (pooled, it uses its normal approximation), over all tasks together (the
product of their counts) for the spread test, which draws :data:`PERMUTATION_RESAMPLES` splits above it. 10
against 10 runs on one task: 184,756 splits."""
PERMUTATION_RESAMPLES = 100_000
"""Splits the spread test draws when there are too many to count: its smallest p-value is then 2 / 100,001."""
_SPLIT_CHUNK_VALUES = 2**22
"""Values per chunk when a task's splits are gathered: memory stays bounded however many runs a group has."""


def permutation_count(sizes: Sequence[tuple[int, int]]) -> int:
    """
    :param sizes: per task, (n_x, n_y)
    :return: the number of ways to split each task's runs into groups of these sizes, over all tasks
    """
    return math.prod(math.comb(n_x + n_y, n_x) for n_x, n_y in sizes)


def spread_splits_are_counted(sizes: Sequence[tuple[int, int]]) -> bool:
    """:return: whether :func:`permutation_spread_test` counts every split for these sizes (else it draws them)"""
    return permutation_count(sizes) <= EXACT_PERMUTATIONS


@functools.lru_cache(maxsize=4)
def _every_split(n: int, k: int) -> np.ndarray:
    """Each way to choose k of n runs, as a row of indices (read-only: the cache shares it)."""
    count = math.comb(n, k)
    chosen = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(n), k)), np.int16,
                         count * k).reshape(count, k)
    chosen.flags.writeable = False
    return chosen


def _mean_deviation(groups: np.ndarray) -> np.ndarray:
    """Per row: the mean absolute deviation from the row's median."""
    ordered = np.sort(groups, axis=-1)  # one sort gives the median: faster than np.median's partitions
    n = ordered.shape[-1]
    median = (ordered[..., (n - 1) // 2] + ordered[..., n // 2]) / 2
    return np.abs(ordered - median[..., None]).mean(axis=-1)


def _split_mean_deviation_differences(values: np.ndarray, n_x: int) -> np.ndarray:
    """For every split of ``values`` into n_x runs and the rest: X's mean absolute deviation minus Y's."""
    n = values.size
    small = min(n_x, n - n_x)  # choose the smaller group: fewer indices to hold
    chosen = _every_split(n, small)
    differences = np.empty(len(chosen))
    rows = max(1, _SPLIT_CHUNK_VALUES // n)
    for start in range(0, len(chosen), rows):
        picked = chosen[start : start + rows]
        in_picked = np.zeros((len(picked), n), dtype=bool)
        in_picked[np.arange(len(picked))[:, None], picked] = True
        rest = np.broadcast_to(values, in_picked.shape)[~in_picked].reshape(len(picked), n - small)
        spread_picked, spread_rest = _mean_deviation(values[picked]), _mean_deviation(rest)
        differences[start : start + len(picked)] = (
            spread_picked - spread_rest if small == n_x else spread_rest - spread_picked
        )
    return differences


def permutation_spread_test(x_tasks: Sequence[ArrayLike], y_tasks: Sequence[ArrayLike]) -> HypothesisTestResult:
    """
    Permutation test of equal spread: the difference of X's and Y's mean absolute deviations from their own
    medians (averaged over tasks with Brown-Forsythe's weights ``n_x n_y / (n_x + n_y)``) against its
    distribution over every split of each task's runs into groups of the same sizes. Exact under the null
    that X's and Y's runs come from one distribution, ties and caps included (CartPole's 500), where the
    tests on deviations are not (docs/method.md#metrics). Every split is counted when there are at most
    :data:`EXACT_PERMUTATIONS` over all tasks; otherwise :data:`PERMUTATION_RESAMPLES` are drawn from a
    generator of fixed seed (the same data give the same p-value), and the p-value ``(b + 1) / (N + 1)`` is
    still valid.

    :param x_tasks: per task, one number per run of X, at least 2
    :param y_tasks: per task, one number per run of Y, in the same task order, at least 2
    :return: the observed difference and its two-sided p-value (twice the smaller tail); ``exact`` False when
        the splits were drawn
    """
    tasks = [(as_sample(x, "x"), as_sample(y, "y")) for x, y in zip(x_tasks, y_tasks, strict=True)]
    sizes = [(x.size, y.size) for x, y in tasks]
    if any(min(size) < 2 for size in sizes):
        raise ValueError(f"the permutation spread test needs at least 2 runs per group, got sizes {sizes}")
    weights = np.array([n_x * n_y / (n_x + n_y) for n_x, n_y in sizes])
    weights = weights / weights.sum()
    observed = float(sum(w * (_mean_deviation(x) - _mean_deviation(y)) for w, (x, y) in zip(weights, tasks,
                                                                                               strict=True)))
    exact = spread_splits_are_counted(sizes)
    if exact:
        null = np.zeros(1)
        for w, (x, y) in zip(weights, tasks, strict=True):
            task_null = _split_mean_deviation_differences(np.concatenate([x, y]), x.size)
            null = (null[:, None] + w * task_null[None, :]).ravel()
    else:
        rng = np.random.default_rng(0)
        null = np.zeros(PERMUTATION_RESAMPLES)
        for w, (x, y) in zip(weights, tasks, strict=True):
            values = np.concatenate([x, y])
            shuffled = rng.permuted(np.broadcast_to(values, (PERMUTATION_RESAMPLES, values.size)), axis=1)
            null += w * (_mean_deviation(shuffled[:, : x.size]) - _mean_deviation(shuffled[:, x.size :]))
    # Splits equal to the observed one in exact arithmetic differ from it in their last bits.
    tolerance = 1e-9 * float(np.max(np.abs(null)))
    tails = np.array([np.sum(null >= observed - tolerance), np.sum(null <= observed + tolerance)], dtype=float)
    tails = tails / null.size if exact else (tails + 1) / (null.size + 1)
    return HypothesisTestResult(observed, float(min(1.0, 2 * tails.min())), exact)


@dataclass(frozen=True)
class SpreadTestResult:
    """:func:`spread_test`'s answer: the effect, the decision from its three parts, and the parts."""

    effect: Estimate
    """X's mean absolute deviation minus Y's, with Brown-Forsythe's t interval"""
    combined: HypothesisTestResult
    """Brown-Forsythe's t with the largest of the three p-values (1 when their sides differ); ``exact`` False
    when the rank part used its normal approximation or the permutation part drew its splits"""
    brown_forsythe: HypothesisTestResult
    rank: HypothesisTestResult
    permutation: HypothesisTestResult


def spread_test(
    x_tasks: Sequence[ArrayLike], y_tasks: Sequence[ArrayLike], confidence: float = 0.95
) -> SpreadTestResult:
    """
    Do X's runs spread more or less than Y's? Three tests must all find it, on the same side: the (stratified)
    Brown-Forsythe test, the exact (stratified) rank test on the absolute deviations from each group's median,
    its structural smallest dropped, and the permutation test of the mean absolute deviations
    (:func:`permutation_spread_test`); the p-value is the largest of the three (1 when their sides differ).
    The first two reject more often than their level where the deviations are not exchangeable
    (docs/levels.py: Brown-Forsythe at 4 runs a side, the rank test on skewed runs at 10, both on tied or
    capped runs); the permutation test tests one distribution, not one spread, so groups at different levels
    can sway it. Together they keep the level of the best one in each case; the permutation test keeps it
    exactly where X's and Y's runs come from one distribution.

    :param x_tasks: per task, one number per run of X, at least 2
    :param y_tasks: per task, one number per run of Y, in the same task order, at least 2
    :param confidence: level of the effect's interval
    :return: the effect, the combined decision and each part's
    """
    effect, brown = stratified_brown_forsythe(x_tasks, y_tasks, confidence)
    deviations = [(median_deviations(x, drop_structural=True), median_deviations(y, drop_structural=True))
                  for x, y in zip(x_tasks, y_tasks, strict=True)]
    tied = [merge_near_ties(np.concatenate([dx, dy])) for dx, dy in deviations]
    rank = stratified_rank_test([t[: dx.size] for t, (dx, _) in zip(tied, deviations, strict=True)],
                                [t[dx.size:] for t, (dx, _) in zip(tied, deviations, strict=True)])
    permutation = permutation_spread_test(x_tasks, y_tasks)
    sides = {np.sign(brown.statistic), np.sign(rank.statistic - 0.5), np.sign(permutation.statistic)}
    same_side = len(sides) == 1 and 0 not in sides
    pvalue = max(brown.pvalue, rank.pvalue, permutation.pvalue) if same_side else 1.0
    combined = HypothesisTestResult(brown.statistic, pvalue, rank.exact and permutation.exact)
    return SpreadTestResult(effect, combined, brown, rank, permutation)


def smallest_spread_pvalue(sizes: Sequence[tuple[int, int]]) -> float:
    """
    A lower bound on the smallest p-value :func:`spread_test` can give with these group sizes: its rank test's,
    on each group less its structural smallest deviation, or its permutation test's 2 / 100,001 where that one
    draws its splits and the rank test's floor lies lower. (Where the splits are counted, the rank test's floor
    is the larger; Brown-Forsythe's own, where both groups are odd, lies below it: 0.116 against 1/3 at 3 runs
    a side, 0.004 against 0.029 at 5.)

    :param sizes: per task, (n_x, n_y), each at least 2
    :return: the bound
    """
    rank = smallest_rank_test_pvalue([(n_x - 1, n_y - 1) for n_x, n_y in sizes])
    return rank if spread_splits_are_counted(sizes) else max(rank, 2 / (PERMUTATION_RESAMPLES + 1))


def holm_adjust(pvalues: ArrayLike) -> np.ndarray:
    """
    Holm-Bonferroni adjusted p-values for a family of comparisons.

    The i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) p_(j)), so adjusted
    values keep the order of the raw ones; reject where the adjusted p-value is below the level.

    :param pvalues: the raw p-values, each in [0, 1]; an empty family gives an empty array
    :return: the adjusted p-values, in the original order
    """
    raw = np.asarray(pvalues, dtype=float)
    if raw.ndim != 1:
        raise ValueError(f"pvalues must be 1-D, got an array of shape {raw.shape}")
    invalid = raw[~((raw >= 0) & (raw <= 1))]
    if invalid.size:
        raise ValueError(f"p-values must be in [0, 1], got {invalid[:3]}")
    order = np.argsort(raw, kind="stable")
    multipliers = raw.size - np.arange(raw.size)
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(multipliers * raw[order]))
    adjusted = np.empty_like(raw)
    adjusted[order] = adjusted_sorted
    return adjusted


# Exact rank tests ---------------------------------------------------------------------------------------
#
# Under the null hypothesis every assignment of a task's pooled runs to the two groups is equally likely, so
# the exact distribution of the Mann-Whitney U (ties included, through average ranks) follows from counting
# the subsets of the pooled ranks by their sum. Twice an average rank is an integer, so the counting is a
# dynamic programme over integer sums; a stratified statistic, the mean over tasks of U / (n_x n_y), has the
# convolution of the tasks' distributions as its exact distribution. No random numbers: the p-values cannot
# move with a seed.


def u_null_distribution(x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """
    Exact null distribution of the Mann-Whitney U of x, given the pooled values (ties keep their average ranks).

    :param x: one score per run of the first group
    :param y: one score per run of the second group
    :return: probabilities of 2U = 0, 1, ..., 2 n_x n_y (twice U, an integer even with ties)
    """
    x, y = as_sample(x, "x"), as_sample(y, "y")
    n_x = x.size
    doubled_ranks = np.rint(2 * sps.rankdata(np.concatenate([x, y]))).astype(int)
    total = int(doubled_ranks.sum())
    # ways[k, s]: the subsets of k of the runs seen so far whose doubled ranks sum to s (float: C(60, 30) and
    # beyond stay exact to 16 digits, which is all a p-value needs).
    ways = np.zeros((n_x + 1, total + 1))
    ways[0, 0] = 1.0
    for rank in doubled_ranks:
        ways[1:, rank:] += ways[:-1, : total + 1 - rank].copy()
    sums = ways[n_x]
    # 2U = (doubled rank sum of x) - n_x (n_x + 1)
    offset = n_x * (n_x + 1)
    distribution = sums[offset : offset + 2 * n_x * y.size + 1]
    return distribution / distribution.sum()


def _tail_pvalue(distribution: np.ndarray, observed: int, centre2: int, alternative: str) -> float:
    """:param distribution: probabilities of the integer statistic 0, 1, ...
    :param observed: the observed statistic
    :param centre2: twice the statistic's mean under the null
    :return: the p-value; two-sided counts outcomes at least as far from the mean as the observed one"""
    values = np.arange(distribution.size)
    if alternative == "greater":
        mass = distribution[values >= observed]
    elif alternative == "less":
        mass = distribution[values <= observed]
    else:
        mass = distribution[np.abs(2 * values - centre2) >= abs(2 * observed - centre2)]
    return float(min(1.0, mass.sum()))


def exact_mann_whitney(x: ArrayLike, y: ArrayLike, alternative: Alternative = "two-sided") -> HypothesisTestResult:
    """
    Mann-Whitney U test with the exact p-value, ties included (scipy's exact method assumes no ties and its
    normal approximation is conservative at a few seeds per group).

    :param x: one score per run of the first group
    :param y: one score per run of the second group
    :param alternative: "two-sided", "greater" (x tends higher) or "less"
    :return: U of x (pairs with x higher, ties 1/2) and its exact p-value (past :data:`EXACT_SCALE` values,
        some 1,450 runs a side, the normal approximation's: ``exact`` says which)
    """
    result = stratified_rank_test([x], [y], alternative)
    # U is a multiple of 1/2: undo the float rounding of the mean probability.
    u = round(2 * result.statistic * as_sample(x).size * as_sample(y).size) / 2
    return HypothesisTestResult(u, result.pvalue, result.exact)


def stratified_rank_test(
    x_tasks: Sequence[ArrayLike], y_tasks: Sequence[ArrayLike], alternative: Alternative = "two-sided"
) -> HypothesisTestResult:
    """
    Exact test of the mean over tasks of P(X > Y) against 1/2, group labels exchangeable within each task:
    the stratified Mann-Whitney test, with its exact null distribution (the convolution of the tasks').

    :param x_tasks: per task, one score per run of X
    :param y_tasks: per task, one score per run of Y, in the same task order
    :param alternative: "two-sided", "greater" (X tends higher) or "less"
    :return: the mean over tasks of P(X > Y) (for one task: U of x) and its exact p-value
    """
    _check_alternative(alternative)
    if len(x_tasks) != len(y_tasks) or not x_tasks:
        raise ValueError(f"x_tasks and y_tasks must be as many tasks, at least one; got {len(x_tasks)} and "
                         f"{len(y_tasks)}")
    sizes = [(as_sample(x).size, as_sample(y).size) for x, y in zip(x_tasks, y_tasks, strict=True)]
    # On a common integer scale: task t's 2U times scale / (2 n_x n_y), so the statistic's sum is an integer.
    scale = math.lcm(*(2 * n_x * n_y for n_x, n_y in sizes))
    if len(sizes) * scale > EXACT_SCALE:
        return _stratified_rank_test_normal(x_tasks, y_tasks, alternative)
    distribution, observed = np.ones(1), 0
    for (x, y), (n_x, n_y) in zip(zip(x_tasks, y_tasks, strict=True), sizes, strict=True):
        weight = scale // (2 * n_x * n_y)
        # Shift and add over the task's 2 n_x n_y + 1 values: a dense convolution would also multiply the
        # zeros between them, scale / 2 n_x n_y times as much work.
        task = u_null_distribution(x, y)
        convolved = np.zeros(distribution.size + scale)
        for value, probability in enumerate(task):
            if probability:
                convolved[value * weight: value * weight + distribution.size] += probability * distribution
        distribution = convolved
        observed += round(2 * probability_greater_along(as_sample(x), as_sample(y), axis=0) * n_x * n_y) * weight
    pvalue = _tail_pvalue(distribution, observed, len(sizes) * scale, alternative)
    return HypothesisTestResult(observed / (len(sizes) * scale), pvalue)


EXACT_SCALE = 2**22
"""Above this many values on the tasks' common scale (the least common multiple of their 2 n_x n_y, times the
tasks), e.g. five tasks of different odd sizes, the stratified rank test uses its normal approximation."""


def _stratified_rank_test_normal(
    x_tasks: Sequence[ArrayLike], y_tasks: Sequence[ArrayLike], alternative: Alternative
) -> HypothesisTestResult:
    """The stratified rank test's statistic referred to the normal distribution with its exact null mean (1/2)
    and variance (the tasks' tie-corrected U variances, each over (n_x n_y)^2, summed over the tasks squared)."""
    statistic, variance = 0.0, 0.0
    for x, y in zip(x_tasks, y_tasks, strict=True):
        x, y = as_sample(x), as_sample(y)
        n_x, n_y, pooled = x.size, y.size, np.concatenate([x, y])
        n = pooled.size
        ties = np.unique(pooled, return_counts=True)[1].astype(float)
        variance += (n + 1 - (ties**3 - ties).sum() / (n * (n - 1))) / (12 * n_x * n_y)
        statistic += probability_greater_along(x, y, axis=0)
    statistic, error = statistic / len(x_tasks), math.sqrt(variance) / len(x_tasks)
    if error == 0:
        return HypothesisTestResult(statistic, 1.0, exact=False)  # every value tied: no evidence either way
    z = (statistic - 0.5) / error
    pvalue = {"greater": sps.norm.sf(z), "less": sps.norm.cdf(z)}.get(alternative, 2 * sps.norm.sf(abs(z)))
    return HypothesisTestResult(float(statistic), float(min(1.0, pvalue)), exact=False)


def smallest_rank_test_pvalue(sizes: Sequence[tuple[int, int]], alternative: Alternative = "two-sided") -> float:
    """
    The smallest p-value an exact (stratified) rank test can give with these group sizes, reached when every
    run of one group beats every run of the other in every task (without ties).

    :param sizes: per task, (n_x, n_y)
    :param alternative: "two-sided" doubles the one-sided value
    :return: the smallest attainable p-value
    """
    one_sided = math.prod(1 / math.comb(n_x + n_y, n_x) for n_x, n_y in sizes)
    return min(1.0, one_sided * (2 if alternative == "two-sided" else 1))


def jonckheere_null_distribution(groups: Sequence[ArrayLike]) -> np.ndarray:
    """
    Exact null distribution of the Jonckheere-Terpstra statistic J = sum over ordered pairs of groups i < j of
    U(group j over group i), ties counting 1/2, when every assignment of the pooled values to groups of these
    sizes is equally likely.

    Counted by a dynamic programme over the pooled values in increasing order, one block of tied values at a
    time: placing a values of a block in each group j adds, for each, the values already placed in groups
    before j (all smaller), and 1/2 per tied pair across groups.

    :param groups: the groups in their hypothesized order, one score per run
    :return: probabilities of 2J = 0, 1, ..., 2 * (number of cross-group pairs)
    """
    arrays = [as_sample(group, f"groups[{i}]") for i, group in enumerate(groups)]
    sizes = tuple(array.size for array in arrays)
    n_pairs2 = 2 * sum(sizes[i] * sizes[j] for i in range(len(sizes)) for j in range(i + 1, len(sizes)))
    _, block_sizes = np.unique(np.concatenate(arrays), return_counts=True)
    # ways[placed per group] -> counts of assignments so far by 2J
    ways: dict[tuple[int, ...], np.ndarray] = {(0,) * len(sizes): _unit(n_pairs2 + 1)}
    for block in block_sizes:
        following: dict[tuple[int, ...], np.ndarray] = {}
        for placed, counts in ways.items():
            for split in _compositions(int(block), len(sizes)):
                after = tuple(p + a for p, a in zip(placed, split, strict=True))
                if any(a > n for a, n in zip(after, sizes, strict=True)):
                    continue
                # Assignments of the block's tied values to groups: a multinomial number of ways.
                multiplicity = math.factorial(int(block)) / math.prod(math.factorial(a) for a in split)
                below = np.cumsum((0, *placed[:-1]))  # values already placed in groups before each group
                gain2 = 2 * sum(a * b for a, b in zip(split, below, strict=True))
                gain2 += sum(split[i] * split[j] for i in range(len(split)) for j in range(i + 1, len(split)))
                shifted = np.zeros_like(counts)
                shifted[gain2:] = counts[: counts.size - gain2] * multiplicity
                following[after] = following.get(after, 0) + shifted
        ways = following
    distribution = ways[sizes]
    return distribution / distribution.sum()


def _unit(size: int) -> np.ndarray:
    unit = np.zeros(size)
    unit[0] = 1.0
    return unit


def _compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """Every way to write ``total`` as an ordered sum of ``parts`` non-negative integers."""
    if parts == 1:
        yield (total,)
        return
    for first in range(total + 1):
        for rest in _compositions(total - first, parts - 1):
            yield (first, *rest)


def jonckheere_statistic(groups: Sequence[ArrayLike]) -> float:
    """:param groups: the groups in their hypothesized order
    :return: J = sum over i < j of U(group j over group i), ties 1/2: large when scores rise along the order"""
    arrays = [as_sample(group) for group in groups]
    return float(sum(
        (arrays[j][:, None] > arrays[i][None, :]).sum() + 0.5 * (arrays[j][:, None] == arrays[i][None, :]).sum()
        for i in range(len(arrays)) for j in range(i + 1, len(arrays))
    ))


def jonckheere_terpstra(
    tasks: Sequence[Sequence[ArrayLike]], alternative: Alternative = "greater"
) -> HypothesisTestResult:
    """
    Exact (stratified) Jonckheere-Terpstra test of a monotone trend across ordered groups, e.g. the final
    return against the noise dose (ghost batches 1, 4, 16): the sum over tasks of J against its exact null
    distribution, the convolution of the tasks' (labels exchangeable within each task only).

    :param tasks: per task, the groups in their hypothesized order, one score per run
    :param alternative: "greater" (scores rise along the order), "less" (they fall) or "two-sided"
    :return: the summed J and its exact p-value
    """
    _check_alternative(alternative)
    if not tasks or any(len(groups) < 2 for groups in tasks):
        raise ValueError("the trend test needs at least one task with at least 2 ordered groups")
    distribution, observed2, pairs2 = np.ones(1), 0, 0
    for groups in tasks:
        distribution = np.convolve(distribution, jonckheere_null_distribution(groups))
        observed2 += round(2 * jonckheere_statistic(groups))
        sizes = [as_sample(group).size for group in groups]
        pairs2 += 2 * sum(sizes[i] * sizes[j] for i in range(len(sizes)) for j in range(i + 1, len(sizes)))
    return HypothesisTestResult(observed2 / 2, _tail_pvalue(distribution, observed2, pairs2, alternative))


# Return variance for bimodal returns ----------------------------------------------------------------------
#
# Final returns of RL runs are often bimodal (seeds stuck at a floor, seeds at a ceiling), where a standard
# deviation mixes how often a variant fails with how much its successes vary. These take them apart.


def normalized_scores(returns: ArrayLike, random_return: float, reference_return: float) -> np.ndarray:
    """:param returns: final returns
    :param random_return: the return of a uniform-random policy (score 0)
    :param reference_return: the reference return (score 1), e.g. the env's reward threshold
    :return: (return - random) / (reference - random)"""
    if reference_return == random_return:
        raise ValueError(f"reference_return equals random_return ({random_return}): no scale to normalize by")
    return (as_sample(returns, "returns") - random_return) / (reference_return - random_return)


def failure_rate(scores: ArrayLike, threshold: float = 0.5, confidence: float = 0.95) -> Estimate:
    """:param scores: one normalized score per run
    :param threshold: a run whose score is below it failed
    :param confidence: level of the Wilson score interval
    :return: the fraction of runs that failed, with its Wilson interval (good coverage at a few runs and at 0
        or 1, where a normal interval collapses)"""
    values = as_sample(scores, "scores")
    failed = int(np.sum(values < threshold))
    interval = sps.binomtest(failed, values.size).proportion_ci(confidence_level=confidence, method="wilson")
    return Estimate(failed / values.size, float(interval.low), float(interval.high))


def failure_rate_test(
    x_scores: ArrayLike, y_scores: ArrayLike, threshold: float = 0.5, alternative: Alternative = "two-sided"
) -> HypothesisTestResult:
    """Barnard's exact test that X fails at a different rate than Y (more powerful than Fisher's test on a
    2 x 2 table with free margins, as two groups of seeds are).

    :param x_scores: one normalized score per run of X
    :param y_scores: one normalized score per run of Y
    :param threshold: a run whose score is below it failed
    :param alternative: "two-sided", "greater" (X fails more often) or "less"
    :return: X's failure rate minus Y's, and the exact p-value"""
    _check_alternative(alternative)
    x, y = as_sample(x_scores, "x_scores"), as_sample(y_scores, "y_scores")
    failed_x, failed_y = int(np.sum(x < threshold)), int(np.sum(y < threshold))
    difference = failed_x / x.size - failed_y / y.size
    if failed_x + failed_y in (0, x.size + y.size):
        return HypothesisTestResult(difference, 1.0)  # every run on one side: no evidence either way
    table = np.array([[failed_x, failed_y], [x.size - failed_x, y.size - failed_y]])
    return HypothesisTestResult(difference, float(sps.barnard_exact(table, alternative=alternative).pvalue))


def inter_percentile_range(values: ArrayLike, coverage: float = 0.9) -> float:
    """:param values: e.g. the normalized final returns of a variant's runs
    :param coverage: the central fraction of the distribution spanned (0.9: IPR-90, Tanaka & Mahmood 2026)
    :return: the (1 + coverage) / 2 percentile minus the (1 - coverage) / 2 percentile (linear interpolation)"""
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be in (0, 1), got {coverage}")
    low, high = np.percentile(as_sample(values), [50 * (1 - coverage), 50 * (1 + coverage)])
    return float(high - low)


def paired_log_ratio_test(x: ArrayLike, y: ArrayLike, alternative: Alternative = "two-sided") -> HypothesisTestResult:
    """Wilcoxon signed-rank test on log(x / y) of paired measurements (a bench's repeats, each timing every
    variant back to back), exact for up to 50 pairs without ties.

    :param x: per repeat, X's time
    :param y: per repeat, Y's time, in the same order
    :param alternative: "two-sided", "greater" (X slower) or "less"
    :return: the Hodges-Lehmann ratio (exp of the median of the log ratios' pairwise means, the estimate the
        signed-rank test inverts: above 1 exactly when the test's statistic is above its mean, barring ties)
        and the p-value; with 5 pairs the smallest two-sided p is 2/32 = 0.0625"""
    _check_alternative(alternative)
    x, y = as_sample(x, "x"), as_sample(y, "y")
    if x.size != y.size:
        raise ValueError(f"paired samples must have as many values, got {x.size} and {y.size}")
    logs = np.log(x / y)
    result = sps.wilcoxon(logs, alternative=alternative, method="auto")
    walsh = ((logs[:, None] + logs[None, :]) / 2)[np.triu_indices(logs.size)]
    return HypothesisTestResult(float(np.exp(np.median(walsh))), float(result.pvalue))


def holm_adjust_at(pvalues: ArrayLike, index: int, pvalue: float) -> float:
    """
    The Holm-adjusted p-value that ``pvalue`` would get in place of ``pvalues[index]``, the family's other
    p-values as they are: the adjusted value of a part standing for its claim, or of the smallest p-value a
    comparison's sample sizes allow.

    :param pvalues: the family's raw p-values
    :param index: the place taken
    :param pvalue: the raw p-value put there
    :return: its adjusted value
    """
    family = np.array(pvalues, dtype=float)
    family[index] = pvalue
    return float(holm_adjust(family)[index])


# Alternatives and non-inferiority ----------------------------------------------------------------------


def _hanley_mcneil_variance(probability: float, n_x: int, n_y: int) -> float:
    """Hanley and McNeil's variance of an estimate of P(X > Y) from n_x and n_y runs, at this true value."""
    q1, q2 = probability / (2 - probability), 2 * probability**2 / (1 + probability)
    return (probability * (1 - probability) + (n_x - 1) * (q1 - probability**2)
            + (n_y - 1) * (q2 - probability**2)) / (n_x * n_y)


def _noninferiority_components(x: np.ndarray, y: np.ndarray, margin: float) -> tuple[float, list[tuple[float, int]]]:
    """P(X > Y) (ties 1/2) and its variance as (component, degrees of freedom) pairs: DeLong's placement
    variance (one component per group), or Hanley and McNeil's at the margin, whichever is larger. The floor
    is the variance under the null hypothesis: at complete separation DeLong's is 0 and a test on it alone
    rejects far too often."""
    wins = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    placement_x = wins.mean(axis=1).var(ddof=1) / x.size
    placement_y = wins.mean(axis=0).var(ddof=1) / y.size
    floor = _hanley_mcneil_variance(margin, x.size, y.size)
    if placement_x + placement_y >= floor:
        return float(wins.mean()), [(placement_x, x.size - 1), (placement_y, y.size - 1)]
    return float(wins.mean()), [(floor, x.size + y.size - 2)]


def _welch_t(difference: float, components: list[tuple[float, int]], tasks: int) -> tuple[float, float, float]:
    """:return: the standard error of a mean over tasks whose variances add up from these components, the t
    statistic of ``difference`` and its Welch-Satterthwaite degrees of freedom"""
    variance = sum(c for c, _ in components)
    df = variance**2 / sum(c * c / dof for c, dof in components if c > 0)
    error = math.sqrt(variance) / tasks
    return error, difference / error, df


def noninferiority_test(
    x_tasks: Sequence[ArrayLike], y_tasks: Sequence[ArrayLike], margin: float, confidence: float = 0.95
) -> tuple[Estimate, HypothesisTestResult]:
    """
    Test of P(X > Y), averaged over tasks, against a non-inferiority margin: the claim "X is not worse than Y by
    more than the margin" (margin 0.35) holds when P(X > Y) is significantly above it, fails when significantly
    below. A Welch t test on DeLong's placement variance per task (the variances of a mean over tasks add),
    the variance kept at least Hanley and McNeil's at the margin: with DeLong's alone a z test rejects about 30
    times as often as it should at 3 runs per group (docs/levels.py). Two-sided, so that a one-sided decision
    at 0.05 / 2 is the 95 % interval excluding the margin. Deterministic: a verdict cannot move with a seed.

    :param x_tasks: per task, one score per run of X, at least 2
    :param y_tasks: per task, one score per run of Y, in the same task order, at least 2
    :param margin: the bound on P(X > Y), in (0, 1)
    :param confidence: level of the two-sided interval returned
    :return: P(X > Y) with its t interval (on the floored variance: the interval the test inverts, wider than
        P's own at complete separation), and the t statistic with its two-sided p-value
    """
    if not 0 < margin < 1:
        raise ValueError(f"margin must be in (0, 1), got {margin}")
    pairs = [(as_sample(x, "x"), as_sample(y, "y")) for x, y in zip(x_tasks, y_tasks, strict=True)]
    if not pairs or any(min(x.size, y.size) < 2 for x, y in pairs):
        raise ValueError("non-inferiority needs at least one task and 2 runs per group in every task")
    per_task = [_noninferiority_components(x, y, margin) for x, y in pairs]
    probability = float(np.mean([p for p, _ in per_task]))
    error, t, df = _welch_t(probability - margin, [c for _, parts in per_task for c in parts], len(pairs))
    half = float(sps.t.ppf(0.5 + confidence / 2, df)) * error
    interval = Estimate(probability, max(0.0, probability - half), min(1.0, probability + half))
    return interval, HypothesisTestResult(float(t), float(2 * sps.t.sf(abs(t), df)))


def smallest_noninferiority_pvalue(sizes: Sequence[tuple[int, int]], margin: float,
                                   side: Literal["greater", "less"] | None = None) -> float:
    """
    The smallest p-value :func:`noninferiority_test` can give with these group sizes, reached when every run of
    one group beats every run of the other in every task (DeLong's variance is then 0, the floor holds). The
    margin is off-centre, so the two sides differ: at margin 0.35, P(X > Y) can lie 0.65 above it but only
    0.35 below, and 10 against 10 runs reach 6e-5 above and 0.012 below.

    :param sizes: per task, (n_x, n_y)
    :param margin: the bound on P(X > Y)
    :param side: the side of the margin: "greater" (P(X > Y) = 1), "less" (0), None the farther one
    :return: the smallest attainable two-sided p-value
    """
    floors = [(_hanley_mcneil_variance(margin, n_x, n_y), n_x + n_y - 2) for n_x, n_y in sizes]
    distance = {"greater": 1 - margin, "less": margin, None: max(margin, 1 - margin)}[side]
    _, t, df = _welch_t(distance, floors, len(sizes))
    return float(2 * sps.t.sf(t, df))


def mean_difference_test(
    x_tasks: Sequence[ArrayLike], y_tasks: Sequence[ArrayLike]
) -> tuple[HypothesisTestResult, str]:
    """
    Two-sided permutation test of the difference of means, stratified by task: the rank tests' alternative
    for the robustness line. One task with at most :data:`EXACT_PERMUTATIONS` reassignments is enumerated
    exactly; otherwise the statistic, the sum over tasks of the standardized mean differences, is referred
    to the normal distribution with its exact permutation mean (0) and variance. No random numbers.

    :param x_tasks: per task, one value per run of X
    :param y_tasks: per task, one value per run of Y
    :return: the statistic with its p-value, and the name of the method used
    """
    xs = [as_sample(x, "x") for x in x_tasks]
    ys = [as_sample(y, "y") for y in y_tasks]
    if len(xs) == 1 and math.comb(xs[0].size + ys[0].size, xs[0].size) <= EXACT_PERMUTATIONS:
        pooled = np.concatenate([xs[0], ys[0]])
        n_x, total = xs[0].size, pooled.sum()
        sums_x = pooled[_every_split(pooled.size, n_x)].sum(axis=1)
        differences = sums_x / n_x - (total - sums_x) / ys[0].size
        observed = xs[0].mean() - ys[0].mean()
        # A relative tolerance: equal differences computed in another order must count as equal.
        tolerance = 1e-9 * max(1.0, float(np.abs(differences).max()))
        pvalue = float(np.mean(np.abs(differences) >= abs(observed) - tolerance))
        return HypothesisTestResult(float(observed), pvalue), "permutation of means, exact"
    statistic, variance = 0.0, 0.0
    for x, y in zip(xs, ys, strict=True):
        pooled = np.concatenate([x, y])
        spread = pooled.var(ddof=1) if pooled.size > 1 else 0.0
        if spread == 0:
            continue  # every run equal: this task carries no evidence either way
        # Var of mean(x) - mean(y) over reassignments: S^2 (1/n_x + 1/n_y), S^2 the pooled variance (ddof 1).
        scale = math.sqrt(spread * (1 / x.size + 1 / y.size))
        statistic += (x.mean() - y.mean()) / scale
        variance += 1.0
    if variance == 0:
        return HypothesisTestResult(0.0, 1.0), "permutation of means, normal approximation"
    z = statistic / math.sqrt(variance)
    return HypothesisTestResult(float(z), float(2 * sps.norm.sf(abs(z)))), "permutation of means, normal approximation"


def ordered_probability_along(groups: Sequence[np.ndarray], axis: int) -> np.ndarray:
    """
    The trend's effect size: over every pair of runs from groups i < j, the probability that the run of the
    later group is higher (ties 1/2), i.e. the Jonckheere-Terpstra J over its number of pairs; 1/2 without
    trend. Vectorized along the other axes, for bootstrap resamples.

    :param groups: the groups in their hypothesized order, runs along ``axis``
    :param axis: the axis of the runs
    :return: the probabilities
    """
    wins, pairs = 0.0, 0
    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            size = groups[j].shape[axis] * groups[i].shape[axis]
            wins = wins + probability_greater_along(groups[j], groups[i], axis) * size
            pairs += size
    return wins / pairs


def trend_pairs(groups: Sequence[ArrayLike]) -> int:
    """:param groups: one task's groups, in order
    :return: the pairs of runs from two different groups: the count J's probability is taken over"""
    return sum(np.size(a) * np.size(b) for a, b in itertools.combinations(groups, 2))


def trend_probability(
    tasks: Sequence[Sequence[ArrayLike]], *, confidence: float = 0.95, n_resamples: int = BOOTSTRAP_RESAMPLES,
    rng: Rng = None,
) -> Estimate:
    """
    :func:`ordered_probability_along` averaged over tasks weighted by their pairs of runs (the summed J over
    the summed pairs: the statistic :func:`jonckheere_terpstra` tests, so the two agree on the side), with a
    stratified percentile bootstrap CI (runs resampled within each group of each task).

    :param tasks: per task, the groups in their hypothesized order, one score per run
    :param confidence: confidence level
    :param n_resamples: bootstrap resamples
    :param rng: seed or generator
    :return: the probability that a later group's run beats an earlier group's, with its interval
    """
    counts = [len(groups) for groups in tasks]
    flat = [as_sample(group) for groups in tasks for group in groups]
    weights = np.array([trend_pairs(groups) for groups in tasks], dtype=float)

    def statistic(*samples: np.ndarray, axis: int) -> np.ndarray:
        per_task, start = [], 0
        for count in counts:
            per_task.append(ordered_probability_along(samples[start:start + count], axis))
            start += count
        return np.tensordot(weights / weights.sum(), np.array(per_task), axes=1)

    return bootstrap_ci(flat, statistic, confidence=confidence, n_resamples=n_resamples, rng=rng)
