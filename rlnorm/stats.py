"""Statistics across runs: spread, tail risk, aggregates with bootstrap CIs, and tests between two groups.

Pure functions on numpy arrays (docs/method.md#metrics), in the style of rliable, built on scipy. A "group" is one
number per run (typically the final return of each seed); a "task" is one (algo, env) pair, and the
stratified functions resample runs within each task, as rliable does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

Alternative = Literal["two-sided", "less", "greater"]
Aggregate = Literal["mean", "iqm"]
Rng = int | np.random.Generator | None

_ALTERNATIVES = ("two-sided", "less", "greater")


@dataclass(frozen=True)
class Estimate:
    """A point estimate with the bounds of its confidence interval (nan when no interval exists)."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class HypothesisTestResult:
    """The statistic of a test and its p-value."""

    statistic: float
    pvalue: float


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
    n_resamples: int = 2000,
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
    n_resamples: int = 2000,
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
    values: ArrayLike, *, confidence: float = 0.95, n_resamples: int = 2000, rng: Rng = None
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
    values: ArrayLike, *, confidence: float = 0.95, n_resamples: int = 2000, rng: Rng = None
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
    n_resamples: int = 2000,
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
    n_resamples: int = 2000,
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


def brown_forsythe(x: ArrayLike, y: ArrayLike) -> HypothesisTestResult:
    """
    Brown-Forsythe test that two groups have the same spread (Levene's test centred on the median).

    :param x: one number per run of the first group, at least two
    :param y: one number per run of the second group, at least two
    :return: the F statistic and its p-value; when no run deviates from its group's median (both
        groups constant) the spreads are equal and the result is statistic 0, p-value 1
    """
    groups = {"x": as_sample(x, "x"), "y": as_sample(y, "y")}
    for name, group in groups.items():
        if group.size < 2:
            raise ValueError(f"{name} has a single value; the Brown-Forsythe test needs at least 2 per group")
    if all(np.all(group == np.median(group)) for group in groups.values()):
        # scipy divides 0 by 0 here; equal (zero) spreads are no evidence of a difference.
        return HypothesisTestResult(0.0, 1.0)
    result = sps.levene(groups["x"], groups["y"], center="median")
    return HypothesisTestResult(float(result.statistic), float(result.pvalue))


def mann_whitney(x: ArrayLike, y: ArrayLike, alternative: Alternative = "two-sided") -> HypothesisTestResult:
    """
    Mann-Whitney U test that runs of x tend to score differently from runs of y.

    :param x: one number per run of the first group
    :param y: one number per run of the second group
    :param alternative: "two-sided", "greater" (x tends higher) or "less"
    :return: U of x (the number of pairs with x higher, ties 1/2) and the p-value (scipy picks the exact
        distribution for small samples without ties)
    """
    _check_alternative(alternative)
    result = sps.mannwhitneyu(as_sample(x, "x"), as_sample(y, "y"), alternative=alternative)
    return HypothesisTestResult(float(result.statistic), float(result.pvalue))


def permutation_test_means(
    x: ArrayLike,
    y: ArrayLike,
    alternative: Alternative = "two-sided",
    *,
    n_resamples: int = 9999,
    rng: Rng = None,
) -> HypothesisTestResult:
    """
    Permutation test of the difference of means, mean(x) - mean(y), over reassignments of runs to groups.

    :param x: one number per run of the first group
    :param y: one number per run of the second group
    :param alternative: "two-sided", "greater" (x higher) or "less"
    :param n_resamples: number of random permutations; when it covers all distinct reassignments
        (as with a few seeds per group) scipy runs the exact test
    :param rng: seed or generator, for reproducible p-values
    :return: the difference of means and its p-value
    """
    _check_alternative(alternative)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    result = sps.permutation_test(
        (as_sample(x, "x"), as_sample(y, "y")),
        lambda a, b, axis: np.mean(a, axis=axis) - np.mean(b, axis=axis),
        permutation_type="independent",
        vectorized=True,
        n_resamples=n_resamples,
        alternative=alternative,
        rng=rng,
    )
    return HypothesisTestResult(float(result.statistic), float(result.pvalue))


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


def stratified_permutation_pvalue(
    x_tasks: Sequence[np.ndarray], y_tasks: Sequence[np.ndarray], n_resamples: int = 9999, rng: Rng = None
) -> float:
    """
    Two-sided p-value of the mean over tasks of P(X > Y) against 1/2, by permuting the group labels of the
    runs within each task (the stratified analogue of the Mann-Whitney test).

    :param x_tasks: per task, one score per run of X
    :param y_tasks: per task, one score per run of Y
    :param n_resamples: random permutations
    :param rng: seed or generator
    :return: the p-value, counting the observed labelling as one permutation
    """
    generator = np.random.default_rng(rng)

    def statistic(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        # The rank-based P(X > Y), vectorized over the permutations in the first axis.
        return np.mean([probability_greater_along(x, y, axis=-1) for x, y in pairs], axis=0) - 0.5

    observed = statistic([(np.asarray(x), np.asarray(y)) for x, y in zip(x_tasks, y_tasks, strict=True)])
    shuffled = []
    for x, y in zip(x_tasks, y_tasks, strict=True):
        pooled = np.tile(np.concatenate([x, y]), (n_resamples, 1))
        permuted = generator.permuted(pooled, axis=1)
        shuffled.append((permuted[:, : len(x)], permuted[:, len(x) :]))
    extreme = np.sum(np.abs(statistic(shuffled)) >= abs(observed) - 1e-12)
    return float((1 + extreme) / (1 + n_resamples))
