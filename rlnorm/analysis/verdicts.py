"""What the data show: every comparison a report makes, its family's correction, and the verdicts (pure, typed).

The rules (docs/method.md#verdicts):

- A claim (:mod:`rlnorm.analysis.claims`) is tested per task and over its tasks pooled (stratified by task). Each
  (claim, scope) is **one** entry of the primary Holm family: a claim of one part its p-value, an ``all_of``
  claim the largest of its parts' (intersection-union: every part must hold), an ``any_of`` claim k times the
  smallest (Bonferroni over its k parts). A part's adjusted p-value is the one it gets in its claim's place.
- A part is **supported** when its adjusted p-value is below :data:`ALPHA` and the test's statistic lies on
  the claimed side; **contradicted** when significant on the other side; else **inconclusive**. The side is
  the statistic's (P(X > Y) against 1/2, J against its mean), so no verdict depends on a random seed: the
  bootstrap intervals printed beside them do. Non-inferiority tests P(X > Y) against the margin instead of 1/2:
  supported when significantly on the claimed side of it (above for ``not less``, below for ``not greater``),
  contradicted when significantly on the other.
- ``all_of`` is supported when every part is, contradicted when one is; ``any_of`` supported when one part is,
  contradicted when every part made is. A part tested where its claim is not measured (an ``all_of`` claim
  with another part n/a) never enters the family: it reads :data:`OUTSIDE_FAMILY`.
- Where the sample sizes cannot reach significance after correction whatever the data, the verdict says
  "cannot be significant with n = ...", not "inconclusive". A quantity that cannot vary is "n/a" and enters
  no test. A verdict is "robust" when the alternative test (permutation of means for ranks, Fisher for
  Barnard, a paired t test for Wilcoxon) gives the same one.
- Secondary comparisons, with their own Holm family: every step of the mechanism ladders and the reference
  cells (CrossQ against SAC).

Rendering (Markdown, HTML, CSV) is :mod:`rlnorm.analysis.report`'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from scipy import stats as sps

from rlnorm.analysis import metrics
from rlnorm.analysis import stats as st
from rlnorm.analysis.claims import Claim, Pairwise, Part, Trend
from rlnorm.analysis.results import NORM_MODES, NORMALIZED_LAYERS, OUTPUT_LAYER, Group, Results, Run
from rlnorm.analysis.scales import TaskScale
from rlnorm.study.algorithms import ALGORITHMS

ALPHA = 0.05
SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_MEASURED = "supported", "contradicted", "inconclusive", "not measured"
OUTSIDE_FAMILY = "not decided: its claim is not measured on this scope"
"""A part tested where its claim is not (an all_of claim with another part n/a): it never entered the family."""
ALL_TASKS = "all tasks"
MIN_RUNS = 2
MIN_SUCCESSES = 3
"""Successful runs each variant needs for a spread among them: with 2, both deviate from their median alike."""
FIRST_SPREAD_TOLERANCE = 1e-5
"""Relative difference of two runs' first-point output spreads still read as one network: the probe computes in
float32 (one network measured twice differs by about 1e-7), one update of another ghost-batch dose by far more."""

DOSE_OPTIONS = ("ghost_batches", "injected_noise")
"""The norm options that dose noise (docs/method.md#ghost-batches-a-noise-dose and the section after it)."""

_UNMEASURED = st.Estimate(math.nan, math.nan, math.nan)
"""A dose-response quantity that could not be measured."""

Task = tuple[str, str]
Side = Literal["greater", "less"] | None
Family = Literal["primary", "secondary"]
CLAIMED_SIDE = {"not less": "greater", "not greater": "less"}
"""Where a non-inferiority direction puts P(X > Y) from its margin."""

MECHANISMS = {"a": "minibatch noise", "b": "the mode switch", "c": "chasing statistics"}
MODE_MECHANISMS = {"sb3": "abc", "consistent": "ac", "frozen": "c", "fixed": ""}
"""Which mechanisms of docs/method.md#mechanisms-and-norm-modes each norm mode keeps."""
REFERENCE_ALGORITHMS = {name: algorithm.beside for name, algorithm in ALGORITHMS.items() if algorithm.beside}
"""Algorithms run as published beside another -> that algorithm (CrossQ beside SAC): the report compares them on
the same environment, with the other's none and bn."""


# ----------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Test:
    """One comparison, made (or why it was not).

    :param claim: the claim's name, or what the comparison belongs to (a ladder, a reference cell)
    :param scope: ``algo/env`` or :data:`ALL_TASKS`
    :param x: variant X (a trend: the variants in order, joined by " < ")
    :param y: variant Y ("" for a trend)
    :param quantity: what is compared
    :param direction: the claimed direction, None for a comparison that tests no claim
    :param margin: the non-inferiority margin on P(X > Y), None otherwise
    :param sizes: per task, the runs (or bench repeats) of each group compared
    :param effect: P(X > Y) (a trend: P(later > earlier); bench times: Hodges-Lehmann time ratio X / Y) with its
        interval
    :param effect_name: what ``effect`` is
    :param test: the test's name
    :param pvalue: its p-value (nan when not made)
    :param side: where the test statistic puts X from Y (None: exactly at the null, or not made)
    :param alternative_p: the alternative test's p-value (nan where there is none: then the same test counts)
    :param alternative_side: where the alternative's statistic puts X
    :param alternative_test: its name
    :param smallest_p: the smallest p-value the test can give with these sizes (nan if not known)
    :param summaries: (X, Y) in natural units, e.g. IQM of the final return with CIs
    :param summary_name: what the summaries are
    :param reason: why the comparison is not made ("n/a: ..." when the quantity cannot vary)
    """

    claim: str
    scope: str
    x: str
    y: str
    quantity: str
    direction: str | None
    margin: float | None
    sizes: tuple[tuple[int, ...], ...]
    effect: st.Estimate
    effect_name: str
    test: str
    pvalue: float
    side: Side = None
    alternative_p: float = math.nan
    alternative_side: Side = None
    alternative_test: str = ""
    smallest_p: float = math.nan
    summaries: tuple[st.Estimate, ...] = ()
    summary_name: str = ""
    reason: str | None = None

    @property
    def made(self) -> bool:
        """:return: whether it has a p-value"""
        return self.reason is None and not math.isnan(self.pvalue)


@dataclass(frozen=True)
class Decided:
    """A comparison after its family's correction.

    :param test: the comparison
    :param family: primary (a claim's) or secondary
    :param p_adjusted: Holm-adjusted p-value (for a part, in its claim's place)
    :param alternative_p_adjusted: the alternative test's, likewise
    :param smallest_p_adjusted: the smallest adjusted p-value these sizes allow, the family's others as they are
    :param verdict: supported, contradicted, inconclusive or not measured; for a comparison without a claimed
        direction, "X higher", "X lower" or "no significant difference"
    :param alternative_verdict: the verdict with the alternative test
    """

    test: Test
    family: Family
    p_adjusted: float
    alternative_p_adjusted: float
    smallest_p_adjusted: float
    verdict: str
    alternative_verdict: str

    @property
    def powerless(self) -> bool:
        """:return: whether these sample sizes cannot reach significance in this family, whatever the data"""
        return self.test.made and self.smallest_p_adjusted >= ALPHA


@dataclass(frozen=True)
class ClaimVerdict:
    """The answer to one claim on one scope.

    :param claim: the claim
    :param scope: ``algo/env`` or :data:`ALL_TASKS`
    :param verdict: supported, contradicted, inconclusive or not measured
    :param parts: its parts, decided
    :param p: the claim's p-value in the primary family (nan when not measured)
    :param p_adjusted: its Holm-adjusted value
    :param smallest_p_adjusted: the smallest adjusted p-value its sample sizes allow
    :param robust: "robust", "depends on the test", or "" when not measured
    :param why: in words
    """

    claim: Claim
    scope: str
    verdict: str
    parts: tuple[Decided, ...]
    p: float
    p_adjusted: float
    smallest_p_adjusted: float
    robust: str
    why: str

    @property
    def powerless(self) -> bool:
        """:return: whether the sample sizes cannot make this claim significant, whatever the data"""
        return not math.isnan(self.p) and self.smallest_p_adjusted >= ALPHA


@dataclass(frozen=True)
class Ladder:
    """The mechanism ladder of a batch-statistics norm on one task: none, then the norm in each mode it ran in
    (sb3 -> consistent -> frozen -> fixed); each step compares the later rung (X) with the earlier (Y).

    :param task: the task
    :param norm: the norm
    :param rungs: the variants from none to the last mode
    :param steps: each step, decided (secondary family)
    :param removed: the mechanisms each step removes (letters of :data:`MECHANISMS`)
    """

    task: Task
    norm: str
    rungs: tuple[str, ...]
    steps: tuple[Decided, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True)
class VarianceRow:
    """Return variance of one variant on one task, on normalized final returns (random 0, reference 1).

    :param task: the task
    :param variant: the variant
    :param runs: finished runs
    :param score: IQM of the normalized final returns, with CI
    :param failure_rate: fraction of runs below the failure threshold, Wilson CI
    :param successes: runs at or above it
    :param spread_among_successes: the sample standard deviation of the successes' scores (nan below 2)
    :param ipr90: the 90 % inter-percentile range of all runs' scores
    :param within_run: mean within-run dispersion of the normalized curves (failing runs kept), per 10^5 steps
    """

    task: Task
    variant: str
    runs: int
    score: st.Estimate
    failure_rate: st.Estimate
    successes: int
    spread_among_successes: float
    ipr90: float
    within_run: float


@dataclass(frozen=True)
class Aggregate:
    """A variant across tasks: IQM of normalized final returns, runs pooled over the tasks it ran on, with a
    stratified bootstrap CI (rliable's aggregate).

    :param variant: the variant
    :param tasks: the tasks pooled
    :param iqm: the IQM with its CI
    :param scores: per task, the runs' normalized scores (for the performance profile)
    """

    variant: str
    tasks: tuple[Task, ...]
    iqm: st.Estimate
    scores: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class DosePoint:
    """One dose of a noise dose-response chain on one task: the noise it measured and the return it reached.

    :param task: the task
    :param chain: the chain's variants in dose order (a trend claim's on final return)
    :param variant: this dose's variant
    :param ghost_batches: its ``ghost_batches`` (1: the plain layer)
    :param injected_noise: its ``injected_noise`` (0: none)
    :param runs: its finished runs
    :param relative_noise: the runs' median relative probe noise over training, averaged over runs, 95 % bootstrap CI
    :param added_noise: the relative noise at the first probe point over that of the chain's first dose with the
        same seed, mean over seeds with 95 % bootstrap CI: what the dose adds to one network, from the seeds whose
        doses measured one network and pool there (before any update); nan where none did or where the chain
        varies more than the dose
    :param final: IQM of the final returns, 95 % bootstrap CI
    :param failure_rate: fraction of runs below the task's failure threshold, Wilson CI (nan without a scale)
    """

    task: Task
    chain: tuple[str, ...]
    variant: str
    ghost_batches: int
    injected_noise: float
    runs: int
    relative_noise: st.Estimate
    added_noise: st.Estimate
    final: st.Estimate
    failure_rate: st.Estimate


@dataclass(frozen=True)
class Analysis:
    """Everything a report concludes.

    :param verdicts: per claim and scope
    :param primary_size: the number of comparisons the primary family corrects over
    :param ladders: the mechanism ladders
    :param references: the reference cells against the algorithm they stand beside
    :param secondary_size: the number the secondary family corrects over
    :param variance: return variance per task and variant
    :param aggregates: per variant, across tasks
    :param scales: per task, how returns were normalized
    :param seed: the seed of the bootstrap intervals
    :param dose: the noise dose-response: every dose of each trend claim on final return along ghost batches
    """

    verdicts: tuple[ClaimVerdict, ...]
    primary_size: int
    ladders: tuple[Ladder, ...]
    references: tuple[Decided, ...]
    secondary_size: int
    variance: tuple[VarianceRow, ...]
    aggregates: tuple[Aggregate, ...]
    scales: dict[Task, TaskScale]
    seed: int
    dose: tuple[DosePoint, ...]

    @property
    def comparisons(self) -> list[Decided]:
        """:return: every comparison: the claims' parts, then the secondary family"""
        parts = [part for verdict in self.verdicts for part in verdict.parts]
        return parts + [step for ladder in self.ladders for step in ladder.steps] + list(self.references)


# ----------------------------------------------------------------------------------------------- quantities


def _successful_scores(group: Group, scale: TaskScale) -> np.ndarray:
    scores = scale.normalize(group.finals()) if group.finals().size else np.array([])
    return scores[scores >= scale.failure_below]


def _per_run(quantity: str, scale: TaskScale) -> Callable[[Run], float]:
    """The number of one run that a quantity compares (nan: the run has none)."""
    if quantity == "final return":
        return lambda run: run.metrics.final
    if quantity == "failure rate":
        return lambda run: float(scale.normalize(np.array([run.metrics.final]))[0] < scale.failure_below)
    if quantity == "within-run dispersion":
        return lambda run: _normalized_dispersion(run, scale)
    if quantity == "relative probe noise":
        return lambda run: run.probe_median("relative_noise")
    if quantity == "noise kurtosis":
        return lambda run: run.probe_median("noise_excess_kurtosis", NORMALIZED_LAYERS)
    if quantity == "training time":
        return lambda run: run.train_time_s
    raise ValueError(f"no per-run value for quantity {quantity!r}")


def _normalized_dispersion(run: Run, scale: TaskScale) -> float:
    if run.steps.size < metrics.DEFAULT_DISPERSION_WINDOW + 1:
        return math.nan
    # Per 10^5 steps, so the numbers printed are not all zeros.
    return 1e5 * metrics.slope_dispersion(run.steps, scale.normalize(run.returns))


def _not_applicable(quantity: str, groups: list[Group]) -> str | None:
    """Why a quantity cannot vary on these groups, None if it can."""
    if quantity in ("relative probe noise", "noise kurtosis"):
        records = [r for g in groups for run in g.finished for r in run.probe]
        if records and all(r.noise_not_applicable for r in records):
            return ("n/a: the probe's minibatch is its whole pool (every draw the same batch), so its noise "
                    "cannot vary")
        if not records:
            return "not measured: no probe records"
    return None


# ----------------------------------------------------------------------------------------------- tests


def _side(effect: float, centre: float = 0.5) -> Side:
    return "greater" if effect > centre else "less" if effect < centre else None


def _location_test(claim: str, scope: str, part: Pairwise, quantity_name: str,
                   values: list[tuple[np.ndarray, np.ndarray]], rng: int) -> Test:
    """X against Y by exact (stratified) Mann-Whitney, or Barnard / non-inferiority where the part says."""
    xs, ys = [x for x, _ in values], [y for _, y in values]
    sizes = tuple((x.size, y.size) for x, y in values)
    common = dict(claim=claim, scope=scope, x=part.x, y=part.y, quantity=quantity_name, direction=part.direction,
                  margin=part.margin, sizes=sizes, effect_name="P(X > Y)")
    if part.margin is not None:
        interval, result = st.noninferiority_test(xs, ys, part.margin)
        side = _side(result.statistic, 0.0)
        # The margin is off-centre: the data's side of it may be out of reach where the other is not.
        return Test(**common, effect=interval, test="welch t on P(X > Y) against the margin", pvalue=result.pvalue,
                    side=side, smallest_p=st.smallest_noninferiority_pvalue(sizes, part.margin, side))
    effect = st.stratified_probability_of_improvement(xs, ys, rng=rng)
    rank = st.stratified_rank_test(xs, ys)
    smallest = st.smallest_rank_test_pvalue(sizes)
    if quantity_name == "failure rate" and scope != ALL_TASKS:
        # The values are 1 for a failed run: as scores, 1 - value is below 1/2 exactly for those.
        barnard = st.failure_rate_test(1 - xs[0], 1 - ys[0], threshold=0.5)
        fisher = sps.fisher_exact([[int(xs[0].sum()), int(ys[0].sum())],
                                   [int(xs[0].size - xs[0].sum()), int(ys[0].size - ys[0].sum())]]).pvalue
        side = _side(barnard.statistic, 0.0)
        # Barnard's test reaches below the rank test's floor: its own smallest p is at complete separation.
        floor = float(sps.barnard_exact([[xs[0].size, 0], [0, ys[0].size]]).pvalue)
        return Test(**common, effect=effect, test="barnard exact", pvalue=barnard.pvalue, side=side,
                    alternative_p=float(fisher), alternative_side=side, alternative_test="fisher exact",
                    smallest_p=floor)
    alternative, name = st.mean_difference_test(xs, ys)
    test = ("mann-whitney" if scope != ALL_TASKS else "stratified mann-whitney") + _exactness(rank)
    return Test(**common, effect=effect, test=test, pvalue=rank.pvalue, side=_side(effect.value),
                alternative_p=alternative.pvalue, alternative_side=_side(alternative.statistic, 0.0),
                alternative_test=name, smallest_p=smallest)


def _exactness(result: st.HypothesisTestResult) -> str:
    return " exact" if result.exact else ", normal approximation"


def _spread_test(claim: str, scope: str, part: Pairwise, values: list[tuple[np.ndarray, np.ndarray]]) -> Test:
    """Spread of the successes: Brown-Forsythe, the rank test on the deviations and the permutation test, all
    three (stats.spread_test)."""
    xs, ys = [x for x, _ in values], [y for _, y in values]
    spread = st.spread_test(xs, ys)
    effect, result = spread.effect, spread.combined
    sizes = tuple((x.size, y.size) for x, y in values)
    name = (("stratified " if scope == ALL_TASKS else "") + "brown-forsythe, mann-whitney on |deviation from median| "
            "and permutation, all three" + ("" if spread.rank.exact else ", normal approximation")
            + ("" if spread.permutation.exact else f", {st.PERMUTATION_RESAMPLES:,} permutations drawn"))
    stds = tuple(st.Estimate(st.sample_std(v), math.nan, math.nan) for v in values[0]) if len(values) == 1 else ()
    return Test(claim, scope, part.x, part.y, part.quantity, part.direction, None, sizes, effect, "mean |dev| X - Y",
                name, result.pvalue, _side(result.statistic, 0.0), smallest_p=st.smallest_spread_pvalue(sizes),
                summaries=stds, summary_name="std of successes' scores")


def _summaries(quantity: str, values: list[tuple[np.ndarray, np.ndarray]], rng: int) -> tuple[tuple, str]:
    if len(values) != 1:
        return (), ""
    x, y = values[0]
    if quantity == "final return":
        return (st.iqm_ci(x, rng=rng), st.iqm_ci(y, rng=rng)), "IQM"
    if quantity == "failure rate":
        return (st.failure_rate(1 - x, threshold=0.5), st.failure_rate(1 - y, threshold=0.5)), "failure rate"
    return (st.mean_ci(x, rng=rng), st.mean_ci(y, rng=rng)), "mean"


def bench_tests(claim: str, part: Pairwise, bench: dict) -> list[Test]:
    """A training-time part on the bench record's paired repeats: per task timed, and over them pooled; then per
    convolutional update workload (docs/method.md#compute-cost-in-convolutional-networks), each on its own."""

    def having(records: dict) -> dict[Task, dict]:
        return {tuple(name.split("/", 1)): record["times"] for name, record in records.items()
                if part.x in record["times"] and part.y in record["times"]}

    timed = having(bench.get("training_time_s", {}))
    scopes: list[Task | None] = [*timed, None] if len(timed) > 1 else [*timed]
    updates = having({name: record for name, record in bench.get("cnn_time_s", {}).items()
                      if record.get("step") == "update"})
    return ([_bench_test(claim, part, [timed[task]] if task else list(timed.values()), task) for task in scopes]
            + [_bench_test(claim, part, [times], task) for task, times in updates.items()])


def _bench_test(claim: str, part: Pairwise, chosen: list[dict], task: Task | None) -> Test:
    x = np.concatenate([np.asarray(t[part.x], float) for t in chosen])
    y = np.concatenate([np.asarray(t[part.y], float) for t in chosen])
    result = st.paired_log_ratio_test(x, y)
    ratios = np.log(x / y)
    # With every ratio equal a t statistic is undefined: the rank test then stands alone.
    paired_t = sps.ttest_rel(np.log(x), np.log(y)) if np.ptp(ratios) > 0 else None
    return Test(claim, ALL_TASKS if task is None else "/".join(task), part.x, part.y, "training time (bench)",
                part.direction, None, ((x.size,),), st.Estimate(result.statistic, math.nan, math.nan),
                "Hodges-Lehmann time ratio X / Y", "wilcoxon signed-rank on log ratio (paired)", result.pvalue,
                _side(result.statistic, 1.0), float(paired_t.pvalue) if paired_t else math.nan,
                _side(float(paired_t.statistic), 0.0) if paired_t else None,
                "paired t on log ratio", 2 / 2 ** x.size,
                (st.Estimate(float(np.median(x)), math.nan, math.nan), st.Estimate(float(np.median(y)), math.nan,
                                                                                    math.nan)),
                "median s per bench repeat")


def _not_made(claim: str, scope: str, part: Part, reason: str) -> Test:
    x, y = (part.x, part.y) if isinstance(part, Pairwise) else (" < ".join(part.variants), "")
    return Test(claim, scope, x, y, part.quantity, part.direction, getattr(part, "margin", None), (),
                st.Estimate(math.nan, math.nan, math.nan), "", "", math.nan, reason=reason)


def _groups(results: Results, task: Task, variants: tuple[str, ...]) -> list[Group] | None:
    groups = [results.group(task, variant) for variant in variants]
    return None if any(group is None for group in groups) else groups


def part_tests(results: Results, claim: Claim, part: Part, scales: dict[Task, TaskScale], rng: int) -> list[Test]:
    """
    Make a part of a claim on each task that ran its variants (and that the claim names, if it names tasks), and
    over them pooled when there are several.

    :param results: the results
    :param claim: the claim
    :param part: its part
    :param scales: each task's score scale
    :param rng: seed of the bootstrap intervals
    :return: one test per task, then the pooled one
    """
    tasks = [task for task in results.tasks if task not in results.incomparable
             and (not claim.tasks or "/".join(task) in claim.tasks)
             and _groups(results, task, part.variants) is not None]
    if isinstance(part, Pairwise) and part.quantity == "training time" and results.bench is not None:
        made = bench_tests(claim.name, part, results.bench)
        if made:
            return made
    per_task: dict[Task, list[np.ndarray] | str] = {}
    for task in tasks:
        groups = _groups(results, task, part.variants)
        scale = scales[task]
        reason = _not_applicable(part.quantity, groups)
        if reason is None and part.quantity in ("failure rate", "spread among successes") \
                and math.isnan(scale.reference_return):
            reason = "not measured: no reference return to normalize by"
        if reason is None and part.quantity == "spread among successes":
            successes = [_successful_scores(group, scale) for group in groups]
            if min(s.size for s in successes) < MIN_SUCCESSES:
                reason = f"fewer than {MIN_SUCCESSES} successful runs of {' or '.join(part.variants)}: no spread"
            elif not (successes[0].max() >= successes[1].min() and successes[1].max() >= successes[0].min()):
                reason = "successes at different levels (their ranges do not overlap): spreads not compared"
            elif np.ptp(st.merge_near_ties(np.concatenate(successes))) == 0:
                # Every success at one score (CartPole's cap): no split of them can differ, so p is 1 by construction.
                reason = (f"n/a: every successful run of {' and '.join(part.variants)} ends at one score "
                          f"(return {scale.return_of(successes[0][0]):.4g}), so their spreads cannot differ")
            per_task[task] = reason or successes
            continue
        values = reason or [group.values(_per_run(part.quantity, scale)) for group in groups]
        if not isinstance(values, str) and min(v.size for v in values) < MIN_RUNS:
            values = f"fewer than {MIN_RUNS} finished runs with a {part.quantity} in a group"
        per_task[task] = values
    tests = []
    usable = {task: values for task, values in per_task.items() if not isinstance(values, str)}
    scopes: list[tuple[str, dict]] = [("/".join(task), {task: values}) for task, values in per_task.items()]
    if len(usable) > 1:
        scopes.append((ALL_TASKS, usable))
    for scope, chosen in scopes:
        reasons = [values for values in chosen.values() if isinstance(values, str)]
        if reasons:
            tests.append(_not_made(claim.name, scope, part, reasons[0]))
            continue
        groups_per_task = list(chosen.values())
        if isinstance(part, Trend):
            tests.append(_trend_test(claim.name, scope, part, groups_per_task, rng))
        elif part.quantity == "spread among successes":
            tests.append(_spread_test(claim.name, scope, part, [tuple(v) for v in groups_per_task]))
        else:
            pairs = [tuple(v) for v in groups_per_task]
            test = _location_test(claim.name, scope, part, part.quantity, pairs, rng)
            summaries, name = _summaries(part.quantity, pairs, rng)
            tests.append(replace(test, summaries=summaries, summary_name=name))
    if not tests:
        tests.append(_not_made(claim.name, ALL_TASKS, part, f"no task ran {', '.join(part.variants)} together"))
    return tests


def _trend_test(claim: str, scope: str, part: Trend, tasks: list[list[np.ndarray]], rng: int) -> Test:
    result = st.jonckheere_terpstra(tasks, alternative="two-sided")
    pairs = sum(st.trend_pairs(groups) for groups in tasks)
    effect = st.trend_probability(tasks, rng=rng)
    smallest = 2 * math.prod(1 / _arrangements(groups) for groups in tasks)
    return Test(claim, scope, " < ".join(part.variants), "", part.quantity, part.direction, None,
                tuple(tuple(len(group) for group in groups) for groups in tasks), effect, "P(later > earlier)",
                "jonckheere-terpstra exact" + (" stratified" if scope == ALL_TASKS else ""), result.pvalue,
                _side(result.statistic, pairs / 2), smallest_p=min(1.0, smallest),
                summaries=tuple(st.iqm_ci(group, rng=rng) for group in tasks[0]) if len(tasks) == 1 else (),
                summary_name="IQM per dose" if part.quantity == "final return" else "IQM")


def _arrangements(groups: list[np.ndarray]) -> float:
    """The assignments of the pooled runs to groups of these sizes: the most extreme J has one of them."""
    sizes = [len(group) for group in groups]
    return math.factorial(sum(sizes)) / math.prod(math.factorial(size) for size in sizes)


# ----------------------------------------------------------------------------------------------- verdicts


def _part_verdict(test: Test, p_adjusted: float, side: Side) -> str:
    if not test.made:
        return NOT_MEASURED
    if math.isnan(p_adjusted):
        return OUTSIDE_FAMILY
    if test.direction is None:
        if not p_adjusted < ALPHA or side is None:
            return "no significant difference"
        return "X higher" if side == "greater" else "X lower"
    if not p_adjusted < ALPHA or side is None:
        return INCONCLUSIVE
    return SUPPORTED if side == CLAIMED_SIDE.get(test.direction, test.direction) else CONTRADICTED


def _in_slot(combine: str, count: int, pvalue: float) -> float:
    """A part's p-value as it stands for its claim: an any_of part's is Bonferroni'd over the claim's parts."""
    return min(1.0, count * pvalue) if combine == "any_of" else pvalue


def _combine(verdicts: list[str], combine: str) -> str:
    if combine == "all_of":
        if CONTRADICTED in verdicts:
            return CONTRADICTED
        return SUPPORTED if all(v == SUPPORTED for v in verdicts) else INCONCLUSIVE
    if SUPPORTED in verdicts:
        return SUPPORTED
    # "A or B" is false only when both are: one part against the claim leaves it open while another is undecided.
    return CONTRADICTED if all(v == CONTRADICTED for v in verdicts) else INCONCLUSIVE


def _claim_p(pvalues: list[float], combine: str) -> float:
    if combine == "all_of":
        return max(pvalues)
    return min(1.0, len(pvalues) * min(pvalues)) if combine == "any_of" else pvalues[0]


def decide_claims(claims: tuple[Claim, ...], tests: dict[str, list[list[Test]]]) -> tuple[list[ClaimVerdict], int]:
    """
    Correct the claims as one primary family and decide each claim on each scope.

    :param claims: the claims
    :param tests: claim name -> per part, its tests (one per scope)
    :return: the verdicts, and the family's size
    """
    entries = []  # (claim, scope, parts' tests made) of every claim and scope with a p-value
    pending = []
    for claim in claims:
        scopes = list(dict.fromkeys(t.scope for part in tests[claim.name] for t in part))
        for scope in scopes:
            parts = [next((t for t in part if t.scope == scope), None) for part in tests[claim.name]]
            parts = [p if p is not None else _not_made(claim.name, scope, claim.parts[i], "not made on this scope")
                     for i, p in enumerate(parts)]
            made = [p for p in parts if p.made]
            usable = made if claim.combine == "any_of" else (made if len(made) == len(parts) else [])
            pending.append((claim, scope, parts, usable))
            if usable:
                entries.append(len(pending) - 1)
    family = [_claim_p([t.pvalue for t in pending[i][3]], pending[i][0].combine) for i in entries]
    adjusted = st.holm_adjust(family) if family else np.array([])
    verdicts = []
    for index, (claim, scope, parts, usable) in enumerate(pending):
        if index not in entries:
            reasons = [p.reason for p in parts if p.reason]
            decided = tuple(_decide(p, "primary", math.nan, math.nan, math.nan) for p in parts)
            verdicts.append(ClaimVerdict(claim, scope, NOT_MEASURED, decided, math.nan, math.nan, math.nan, "",
                                         "; ".join(dict.fromkeys(reasons))))
            continue
        slot = entries.index(index)
        count = len(usable)

        def adjust(pvalue: float, slot: int = slot, count: int = count, combine: str = claim.combine) -> float:
            return st.holm_adjust_at(family, slot, _in_slot(combine, count, pvalue))

        decided = tuple(
            _decide(p, "primary", adjust(p.pvalue), adjust(p.alternative_p if not math.isnan(p.alternative_p)
                                                          else p.pvalue),
                    adjust(p.smallest_p) if not math.isnan(p.smallest_p) else math.nan)
            if p.made else _decide(p, "primary", math.nan, math.nan, math.nan)
            for p in parts
        )
        made = [d for d in decided if d.test.made]
        verdict = _combine([d.verdict for d in made], claim.combine)
        alternative = _combine([d.alternative_verdict for d in made], claim.combine)
        smallests = [d.test.smallest_p for d in made]
        smallest = (math.nan if any(math.isnan(s) for s in smallests)
                    else st.holm_adjust_at(family, slot, _claim_p(smallests, claim.combine)))
        why = _why(claim, made, verdict)
        verdicts.append(ClaimVerdict(claim, scope, verdict, decided, family[slot], float(adjusted[slot]), smallest,
                                     "robust" if verdict == alternative else f"depends on the test ({alternative} "
                                     "with the alternative)", why))
    return verdicts, len(family)


def _decide(test: Test, family: Family, p_adjusted: float, alternative_adjusted: float, smallest: float) -> Decided:
    alternative_side = test.alternative_side if not math.isnan(test.alternative_p) else test.side
    return Decided(test, family, p_adjusted, alternative_adjusted, smallest,
                   _part_verdict(test, p_adjusted, test.side),
                   _part_verdict(test, alternative_adjusted, alternative_side))


def _why(claim: Claim, made: list[Decided], verdict: str) -> str:
    if claim.combine == "all_of" and verdict == INCONCLUSIVE:
        missing = [f"{d.test.quantity} ({d.verdict})" for d in made if d.verdict != SUPPORTED]
        return "intersection-union: not every part holds: " + ", ".join(missing)
    if claim.combine == "any_of":
        return "any part, Bonferroni over its parts: " + ", ".join(f"{d.test.quantity} {d.verdict}" for d in made)
    if claim.combine == "all_of":
        return "intersection-union over " + ", ".join(d.test.quantity for d in made)
    return ""


def decide_secondary(tests: list[Test]) -> list[Decided]:
    """:param tests: the secondary comparisons
    :return: them decided, Holm over those made"""
    made = [i for i, t in enumerate(tests) if t.made]
    family = [tests[i].pvalue for i in made]
    alternatives = [tests[i].alternative_p if not math.isnan(tests[i].alternative_p) else tests[i].pvalue
                    for i in made]
    decided = []
    for i, test in enumerate(tests):
        if i not in made:
            decided.append(_decide(test, "secondary", math.nan, math.nan, math.nan))
            continue
        slot = made.index(i)
        smallest = math.nan if math.isnan(test.smallest_p) else st.holm_adjust_at(family, slot, test.smallest_p)
        decided.append(_decide(test, "secondary", st.holm_adjust_at(family, slot, test.pvalue),
                               st.holm_adjust_at(family, slot, alternatives[slot]), smallest))
    return decided


# ----------------------------------------------------------------------------------------------- secondary


def undirected_test(results: Results, task: Task, x: str, y: str, quantity: str, scales: dict[Task, TaskScale],
                    rng: int, name: str) -> Test:
    """
    X against Y on one task, with no claimed direction: a comparison of the secondary families.

    :param results: the results
    :param task: the task
    :param x: variant X
    :param y: variant Y
    :param quantity: a key of :data:`rlnorm.analysis.claims.QUANTITIES`
    :param scales: each task's score scale
    :param rng: seed of the bootstrap intervals
    :param name: what the comparison belongs to
    :return: the comparison
    """
    part = Pairwise(x, y, quantity, "greater")
    (test,) = part_tests(results, Claim(name, (part,), tasks=("/".join(task),)), part, scales, rng)
    return replace(test, direction=None)


def ladder_tests(results: Results, scales: dict[Task, TaskScale], rng: int) -> list[tuple[Task, str, list[str],
                                                                                           list[Test], list[str]]]:
    """
    Every (task, batch-statistics norm) run in at least two modes: its rungs (none, then the modes in order) and a
    final-return comparison per step, each tagged with the mechanisms it removes.

    :return: (task, norm, rungs, steps, removed) per ladder
    """
    ladders = []
    for task in results.tasks:
        if task in results.incomparable:
            continue
        norms = dict.fromkeys(g.norm for g in results.groups_of(task) if g.norm_mode != NORM_MODES[0])
        for norm in norms:
            modes = [(mode, results.canonical(task, norm, mode)) for mode in NORM_MODES]
            modes = [(mode, group) for mode, group in modes if group is not None]
            if len(modes) < 2:
                continue
            baseline = results.canonical(task, "none")
            rungs = ([("none", baseline, "")] if baseline else []) + [
                (group.variant, group, MODE_MECHANISMS[mode]) for mode, group in modes]
            steps, removed = [], []
            for (earlier, _, before), (later, _, after) in zip(rungs, rungs[1:], strict=False):
                steps.append(undirected_test(results, task, later, earlier, "final return", scales, rng,
                                             f"ladder {'/'.join(task)} {norm}"))
                removed.append("".join(sorted(set(before) - set(after))))
            ladders.append((task, norm, [r[0] for r in rungs], steps, removed))
    return ladders


def reference_tests(results: Results, scales: dict[Task, TaskScale], rng: int) -> list[Test]:
    """Each reference cell against the algorithm it stands beside, with none and bn, on final return."""
    tests = []
    for task in results.tasks:
        beside = (REFERENCE_ALGORITHMS.get(task[0], ""), task[1])
        if beside not in results.tasks:
            continue
        reference = results.groups_of(task)[0]
        for norm in ("none", "bn"):
            other = results.canonical(beside, norm)
            if other is None:
                continue
            x, y = reference.finals(), other.finals()
            name, scope = f"{reference.variant} beside {beside[0]}", "/".join(task)
            part = Pairwise(reference.variant, f"{beside[0]} {norm}", "final return", "greater")
            ends = {int(run.steps[-1]) for g in (reference, other) for run in g.finished if run.steps.size}
            if len(ends) > 1:
                tests.append(replace(_not_made(name, scope, part, f"runs end at different steps ({sorted(ends)})"),
                                     direction=None))
            elif min(x.size, y.size) < MIN_RUNS:
                tests.append(replace(_not_made(name, scope, part, "fewer than 2 finished runs"), direction=None))
            else:
                test = _location_test(name, scope, part, "final return", [(x, y)], rng)
                summaries, label = _summaries("final return", [(x, y)], rng)
                tests.append(replace(test, direction=None, summaries=summaries, summary_name=label))
    return tests


# ----------------------------------------------------------------------------------------------- variance


def variance_rows(results: Results, scales: dict[Task, TaskScale], rng: int) -> list[VarianceRow]:
    """:return: return variance per task and variant with finished runs (docs/method.md#metrics)"""
    rows = []
    for group in results.groups:
        scale = scales.get(group.task)
        finals = group.finals()
        if scale is None or not finals.size or math.isnan(scale.reference_return):
            continue
        scores = scale.normalize(finals)
        successes = scores[scores >= scale.failure_below]
        dispersion = group.values(_per_run("within-run dispersion", scale))
        rows.append(VarianceRow(
            group.task, group.variant, int(scores.size), st.iqm_ci(scores, rng=rng),
            st.failure_rate(scores, scale.failure_below), int(successes.size),
            _spread(successes), st.inter_percentile_range(scores),
            float(np.mean(dispersion)) if dispersion.size else math.nan,
        ))
    return rows


def _spread(scores: np.ndarray) -> float:
    if scores.size < 2:
        return math.nan
    # Equal scores are exactly 0 apart, not a rounding error's width.
    return 0.0 if np.ptp(scores) == 0 else st.sample_std(scores)


def aggregates(results: Results, scales: dict[Task, TaskScale], rng: int) -> list[Aggregate]:
    """:return: per variant, the IQM of its normalized final returns pooled over the tasks it ran on"""
    out = []
    for variant in results.variants:
        tasks, scores = [], []
        for task in results.tasks:
            group, scale = results.group(task, variant), scales.get(task)
            if group is None or scale is None or math.isnan(scale.reference_return) or task[0] in REFERENCE_ALGORITHMS:
                continue
            finals = group.finals()
            if finals.size:
                tasks.append(task)
                scores.append(scale.normalize(finals))
        if scores:
            out.append(Aggregate(variant, tuple(tasks), st.stratified_ci(scores, "iqm", rng=rng), tuple(scores)))
    return out


def dose_response(results: Results, claims: tuple[Claim, ...], scales: dict[Task, TaskScale],
                  rng: int) -> list[DosePoint]:
    """
    The noise dose-response of each trend claim on final return along ghost batches or injected noise (other
    trends, such as a momentum sweep, dose something else): per task where every dose has finished runs with probe
    noise, each dose's relative noise over training, the noise it adds to one network, and the return it reached,
    in dose order.

    :param results: the results
    :param claims: the claims (their trend parts on final return name the chains)
    :param scales: each task's score scale, for the failure rate
    :param rng: seed of the bootstrap intervals
    :return: the points, by task, chain and dose
    """
    chains = list(dict.fromkeys(part.variants for claim in claims for part in claim.parts
                                if isinstance(part, Trend) and part.quantity == "final return"))
    points = []
    for task in results.tasks:
        for chain in chains:
            groups = _groups(results, task, chain)
            if groups is None or len({noise_dose(group.norm_kwargs) for group in groups}) == 1:
                continue
            noise = [group.values(lambda run: run.probe_median("relative_noise")) for group in groups]
            # A dose without measurable noise (no dose at all on a whole-pool minibatch) stays in, as n/a.
            if any(group.finals().size == 0 for group in groups) or not any(values.size for values in noise):
                continue
            scale = scales.get(task)
            added = _added_noise(groups, rng)
            for group, values, added_noise in zip(groups, noise, added, strict=True):
                finals = group.finals()
                failure = (st.failure_rate(scale.normalize(finals), scale.failure_below)
                           if scale is not None and not math.isnan(scale.reference_return)
                           else _UNMEASURED)
                relative = st.mean_ci(values, rng=rng) if values.size else _UNMEASURED
                points.append(DosePoint(task, chain, group.variant, *noise_dose(group.norm_kwargs), int(finals.size),
                                        relative, added_noise, st.iqm_ci(finals, rng=rng), failure))
    return points


def noise_dose(norm_kwargs: dict) -> tuple[int, float]:
    """:return: the noise dose a variant's options set: (``ghost_batches``, ``injected_noise``), (1, 0.0) for none"""
    return int(norm_kwargs.get("ghost_batches", 1)), float(norm_kwargs.get("injected_noise", 0.0))


def _added_noise(groups: list[Group], rng: int) -> list[st.Estimate]:
    """Per dose, its first-point relative noise over the first measured dose's, seed by seed (see
    DosePoint.added_noise); a dose before that one (no noise to measure) is nan."""
    def design(group: Group) -> str:
        kwargs = {key: value for key, value in group.norm_kwargs.items() if key not in DOSE_OPTIONS}
        return repr((group.norm, group.norm_mode, group.norm_in, sorted(kwargs.items())))

    measured = [i for i, group in enumerate(groups)
                if any(math.isfinite(run.probe_first("relative_noise")) for run in group.finished)]
    if len({design(group) for group in groups}) > 1 or not measured:
        return [_UNMEASURED] * len(groups)
    base = {run.seed: run for run in groups[measured[0]].finished}
    out = [_UNMEASURED] * measured[0]
    for group in groups[measured[0]:]:
        ratios = [run.probe_first("relative_noise") / base[run.seed].probe_first("relative_noise")
                  for run in group.finished if run.seed in base and _one_network_first(run, base[run.seed])]
        ratios = [ratio for ratio in ratios if math.isfinite(ratio)]
        out.append(st.mean_ci(ratios, rng=rng) if ratios else _UNMEASURED)
    return out


def _one_network_first(run: Run, other: Run) -> bool:
    """Whether two runs' first probe points measured one network on one pool of states: the same step and the same
    eval-mode output spread (noise over relative noise) for every network, to float32 rounding. Updates before
    the first point (off-policy ``learning_starts`` below the batch size) make the doses' networks differ."""
    def first_spreads(of: Run) -> dict[str, float]:
        step = of.first_probe_step
        return {r.network: r.noise / r.relative_noise for r in of.probe
                if r.timesteps == step and r.layer == OUTPUT_LAYER and not r.noise_not_applicable
                and r.relative_noise > 0}

    mine, theirs = first_spreads(run), first_spreads(other)
    return (run.first_probe_step == other.first_probe_step and bool(mine) and mine.keys() == theirs.keys()
            and all(math.isclose(mine[net], theirs[net], rel_tol=FIRST_SPREAD_TOLERANCE) for net in mine))


# ----------------------------------------------------------------------------------------------- all


def analyze(results: Results, claims: tuple[Claim, ...], scales: dict[Task, TaskScale], seed: int = 0) -> Analysis:
    """
    Make every comparison of a report, correct the primary and secondary families, and decide.

    :param results: the results
    :param claims: the claims to test
    :param scales: each task's score scale (:func:`rlnorm.analysis.scales.task_scales`)
    :param seed: seed of the bootstrap intervals (verdicts do not depend on it)
    :return: the analysis
    """
    tests = {claim.name: [part_tests(results, claim, part, scales, seed) for part in claim.parts] for claim in claims}
    verdicts, primary_size = decide_claims(claims, tests)
    raw_ladders = ladder_tests(results, scales, seed)
    references = reference_tests(results, scales, seed)
    secondary = decide_secondary([step for *_, steps, _ in raw_ladders for step in steps] + references)
    ladders, start = [], 0
    for task, norm, rungs, steps, removed in raw_ladders:
        ladders.append(Ladder(task, norm, tuple(rungs), tuple(secondary[start:start + len(steps)]), tuple(removed)))
        start += len(steps)
    return Analysis(tuple(verdicts), primary_size, tuple(ladders), tuple(secondary[start:]),
                    sum(d.test.made for d in secondary), tuple(variance_rows(results, scales, seed)),
                    tuple(aggregates(results, scales, seed)), scales, seed,
                    tuple(dose_response(results, claims, scales, seed)))
