"""The study report: setup, tables, figures, and a verdict on each claim of docs/method.md#verdicts.

Verdict logic. Every claim is made of comparisons of two variants on one quantity, each with an expected
direction ("bn's final return is below none's"). A comparison's effect size is the probability of
improvement P(X > Y) over pairs of runs, with a 95 % (stratified) percentile bootstrap CI; its p-value
comes from a Mann-Whitney test (location) or a Brown-Forsythe test (spread) on one task, and from a
permutation test stratified by task (labels shuffled within each task) for the overall verdict. All the
comparisons of a report form one family for the Holm correction. A comparison is

- "supported" when its Holm-adjusted p-value is below 0.05 and the CI of P(X > Y) lies entirely on the
  expected side of 1/2;
- "contradicted" when both hold on the other side;
- "inconclusive" otherwise, including with too few finished runs (:data:`MIN_RUNS`), and for spreads of
  variants whose final returns do not overlap: a variant that fails on every seed has a small spread
  too, so spreads are compared only between variants that reach comparable returns (docs/method.md#verdicts).

A claim combines its comparisons (:func:`claim_verdicts` says how for each). Numbers in natural units
(IQM difference with its CI, standard deviations, means) are printed beside each verdict.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rlnorm import stats as st
from rlnorm.plots import CAPTIONS, plot_study
from rlnorm.results import (
    BENCH_RECORD,
    BOOTSTRAP_SEED,
    DONE,
    FAILED,
    NO_ESTIMATE,
    NORM_MODES,
    NORMALIZED_LAYERS,
    RUNNING,
    Group,
    Results,
    Run,
    RunMetrics,
)

ALPHA = 0.05
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
MIN_RUNS = {"location": 2, "spread": 3}
"""Finished runs each variant needs for a comparison. Spreads need 3: with 2 runs both deviate from
their median by the same amount, so Brown-Forsythe sees no within-group variation and returns p = 0."""
Direction = Literal["less", "greater"]
Kind = Literal["location", "spread"]
Task = tuple[str, str]

MECHANISMS = {"a": "minibatch noise", "b": "the mode switch", "c": "chasing statistics"}
MODE_MECHANISMS = {"sb3": "abc", "consistent": "ac", "frozen": "c", "fixed": ""}
"""Which mechanisms of docs/method.md#mechanisms-and-norm-modes each norm mode keeps."""
BATCH_STATISTICS_NORMS = ("bn", "mobn", "wn+mobn", "brn")
REFERENCE_ALGORITHMS = {"crossq": "sac"}
"""Algorithms run as published beside another (issue 6) -> that algorithm. CrossQ is SAC with Batch Renorm
in the critic and no target network, the published careful use of batch statistics off-policy; its
paper finds it beats SAC. The report compares it with SAC's none and bn on the same environment."""


# ----------------------------------------------------------------------------------------------- comparisons


@dataclass(frozen=True)
class Quantity:
    """A per-run number that comparisons are made on.

    :param name: how tables call it
    :param per_run: its value for one run (nan when the run has none)
    :param kind: location (compare levels) or spread (compare across-seed dispersion of ``per_run``)
    :param unit: printed after means, e.g. " s"
    """

    name: str
    per_run: Callable[[Run], float]
    kind: Kind = "location"
    unit: str = ""


FINAL = Quantity("final return", lambda run: run.metrics.final)
SPREAD = Quantity("across-seed spread of final return", lambda run: run.metrics.final, kind="spread")
WITHIN = Quantity("within-run dispersion", lambda run: run.metrics.within_run_dispersion)
NOISE = Quantity("probe noise at outputs", lambda run: run.probe_mean("noise"))
TRAIN_TIME = Quantity("training time per run", lambda run: run.train_time_s, unit=" s")
BENCH_TIME = Quantity("training time in rlnorm bench", lambda run: math.nan, unit=" s")
"""Seconds of one timed ``learn`` in the bench record (no run has it): claim 4's measure when recorded."""


@dataclass
class Comparison:
    """X against Y on one quantity, on one task or on all tasks pooled (``task`` None).

    :param quantity: what is compared
    :param x: variant X (per task, as the claim picked it)
    :param y: variant Y
    :param task: the task, None for all tasks
    :param expected: the direction the claim expects X to lie from Y, None for no claim (ladder steps)
    :param probability: P(X > Y) with its CI (of the deviations from the median, for spreads)
    :param pvalue: raw p-value, nan when the comparison was not made
    :param detail: the numbers in natural units
    :param blocked: why the comparison is not read, if it is not
    :param p_adjusted: Holm-adjusted p-value, set once the report's family is known
    :param sizes: per task compared, (runs of X, runs of Y)
    :param smallest_p: the smallest raw p-value the test can give with these sizes (nan where not known:
        spreads); with ``smallest_p_adjusted``, what the sample sizes allow at all
    :param smallest_p_adjusted: ``smallest_p`` after the correction, the other comparisons' p-values as they
        are: at or above the level, the comparison cannot be significant whatever the data
    """

    quantity: Quantity
    x: str
    y: str
    task: Task | None
    expected: Direction | None
    probability: st.Estimate
    pvalue: float
    detail: str
    blocked: str | None = None
    p_adjusted: float = math.nan
    sizes: tuple[tuple[int, int], ...] = ()
    smallest_p: float = math.nan
    smallest_p_adjusted: float = math.nan

    @property
    def powerless(self) -> bool:
        """:return: whether these sample sizes cannot reach significance in this family, whatever the data"""
        return not self.blocked and self.smallest_p_adjusted >= ALPHA

    @property
    def direction(self) -> Direction | None:
        """:return: the side of 1/2 where the data put P(X > Y) after correction, None if not significant"""
        if self.blocked or not self.p_adjusted < ALPHA:
            return None
        if self.probability.high < 0.5:
            return "less"
        if self.probability.low > 0.5:
            return "greater"
        return None

    @property
    def verdict(self) -> str:
        """:return: supported, contradicted or inconclusive (module docstring)"""
        if self.direction is None or self.expected is None:
            return INCONCLUSIVE
        return SUPPORTED if self.direction == self.expected else CONTRADICTED

    @property
    def outcome(self) -> str:
        """:return: the verdict when the comparison tests a claim, else which way the data go"""
        if self.blocked:
            return self.blocked
        if self.powerless:
            return f"cannot be significant with n = {self.sample_sizes} (smallest p {_fmt(self.smallest_p_adjusted)})"
        if self.expected is not None:
            return self.verdict
        sides = {"less": "X lower (significant)", "greater": "X higher (significant)"}
        return sides.get(self.direction, "no significant difference")

    @property
    def scope(self) -> str:
        """:return: ``algo/env`` or ``all tasks``"""
        return "all tasks" if self.task is None else "/".join(self.task)

    @property
    def sample_sizes(self) -> str:
        """:return: the runs compared, ``5 vs 5`` (per task when pooled: ``10 vs 10, 5 vs 5``)"""
        return ", ".join(f"{n_x} vs {n_y}" for n_x, n_y in self.sizes)


def _deviations(values: np.ndarray) -> np.ndarray:
    # Brown-Forsythe's scores: the spread of a group, run by run.
    return np.abs(values - np.median(values))


def compare(
    results: Results,
    quantity: Quantity,
    pairs: dict[Task, tuple[Group, Group]],
    expected: Direction | None,
    task: Task | None,
) -> Comparison:
    """
    Compare X and Y on one task, or on all the tasks given (``task`` None).

    :param results: the results (for the tasks whose finals are not comparable)
    :param quantity: what to compare
    :param pairs: per task, the (X, Y) groups
    :param expected: the direction the claim expects
    :param task: the single task compared, None for all of ``pairs`` pooled
    :return: the comparison, with its raw p-value
    """
    pairs = {t: pair for t, pair in pairs.items() if t not in results.incomparable}
    x_name, y_name = _names(pairs)
    values = {t: (x.values(quantity.per_run), y.values(quantity.per_run)) for t, (x, y) in pairs.items()}
    if not values:
        blocked = "the finished runs of this task end at different steps" if task else "no comparable task"
        return Comparison(quantity, x_name, y_name, task, expected, NO_ESTIMATE, math.nan, "", blocked)
    return compare_values(quantity, x_name, y_name, values, expected, task)


def compare_values(
    quantity: Quantity,
    x_name: str,
    y_name: str,
    values: dict[Task, tuple[np.ndarray, np.ndarray]],
    expected: Direction | None,
    task: Task | None,
) -> Comparison:
    """
    The statistics of :func:`compare`, on the numbers themselves (one per run, or per bench repeat).

    :param quantity: what they measure
    :param x_name: what X is
    :param y_name: what Y is
    :param values: per task, the values of X and of Y
    :param expected: the direction the claim expects
    :param task: the single task compared, None for all of ``values`` pooled
    :return: the comparison, with its raw p-value
    """
    empty = Comparison(quantity, x_name, y_name, task, expected, NO_ESTIMATE, math.nan, "")
    minimum = MIN_RUNS[quantity.kind]
    if min(min(x.size, y.size) for x, y in values.values()) < minimum:
        empty.blocked = f"fewer than {minimum} finished runs of {x_name} or {y_name} ({quantity.name})"
        return empty
    if quantity.kind == "spread":
        overlapping = {t: v for t, v in values.items() if _overlap(*v)}
        if not overlapping:
            empty.blocked = "final returns do not overlap: spreads of different levels are not compared"
            empty.detail = _detail(quantity, values, task)
            return empty
        values = overlapping
        scores = [(_deviations(x), _deviations(y)) for x, y in values.values()]
    else:
        scores = list(values.values())
    xs, ys = [x for x, _ in scores], [y for _, y in scores]
    sizes = tuple((x.size, y.size) for x, y in scores)
    probability = st.stratified_probability_of_improvement(xs, ys, rng=BOOTSTRAP_SEED)
    if task is None:
        pvalue = st.stratified_rank_test(xs, ys).pvalue
    elif quantity.kind == "spread":
        pvalue = st.brown_forsythe(*values[task]).pvalue
    else:
        pvalue = st.exact_mann_whitney(*values[task]).pvalue
    smallest = math.nan if quantity.kind == "spread" and task is not None else st.smallest_rank_test_pvalue(sizes)
    return Comparison(quantity, x_name, y_name, task, expected, probability, pvalue, _detail(quantity, values, task),
                      sizes=sizes, smallest_p=smallest)


def _names(pairs: dict[Task, tuple[Group, Group]]) -> tuple[str, str]:
    x_names = list(dict.fromkeys(x.variant for x, _ in pairs.values()))
    y_names = list(dict.fromkeys(y.variant for _, y in pairs.values()))
    return "/".join(x_names) or "-", "/".join(y_names) or "-"


def _overlap(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether two groups reach comparable returns: the best run of each is above the worst of the other."""
    return bool(x.max() >= y.min() and y.max() >= x.min())


def _detail(quantity: Quantity, values: dict[Task, tuple[np.ndarray, np.ndarray]], task: Task | None) -> str:
    if len(values) > 1:
        return f"over {len(values)} tasks"
    if task is None:  # pooled, but only one task qualified: say which
        return f"{'/'.join(next(iter(values)))} only: {_detail(quantity, values, next(iter(values)))}"
    x, y = next(iter(values.values()))
    if quantity.kind == "spread":
        return f"std {_fmt(st.sample_std(x))} vs {_fmt(st.sample_std(y))}"
    if quantity is FINAL:
        difference = st.bootstrap_ci(
            [x, y], lambda a, b, axis: st.iqm_along(a, axis) - st.iqm_along(b, axis), rng=BOOTSTRAP_SEED
        )
        return f"IQM {_fmt(st.iqm(x))} vs {_fmt(st.iqm(y))}, difference {_estimate(difference)}"
    return f"mean {_fmt(np.mean(x))}{quantity.unit} vs {_fmt(np.mean(y))}{quantity.unit}"


# ----------------------------------------------------------------------------------------------- claims


@dataclass
class Verdict:
    """The answer to one claim on one scope.

    :param claim: the claim's number in docs/method.md#verdicts (or a mechanism letter for the ladder)
    :param statement: the claim
    :param scope: ``algo/env`` or ``all tasks``
    :param verdict: supported, contradicted, inconclusive, or "not measured"
    :param comparisons: the comparisons it rests on
    :param note: why, in words
    """

    claim: str
    statement: str
    scope: str
    verdict: str
    comparisons: list[Comparison] = field(default_factory=list)
    note: str = ""


@dataclass(frozen=True)
class Claim:
    """A claim of docs/method.md#verdicts and how its comparisons combine.

    :param number: its number
    :param statement: the claim
    :param parts: (quantity, X norm, Y norm, expected direction of X from Y)
    :param combine: how the parts' verdicts make the claim's
    """

    number: str
    statement: str
    parts: tuple[tuple[Quantity, str, str, Direction], ...]
    combine: Callable[[list[Comparison]], tuple[str, str]]


def any_part(parts: list[Comparison]) -> tuple[str, str]:
    """Supported if any comparison is; contradicted if one is and none supports it.

    :param parts: the comparisons
    :return: verdict and note"""
    verdicts = [part.verdict for part in parts]
    if SUPPORTED in verdicts:
        return SUPPORTED, "at least one part is supported"
    if CONTRADICTED in verdicts:
        return CONTRADICTED, "a part is contradicted and none supported"
    return INCONCLUSIVE, "no part is significant after correction"


def all_but_last_guard(parts: list[Comparison]) -> tuple[str, str]:
    """Supported if every part but the last is, and the last (a level that must not be worse) is not
    contradicted; contradicted if any part is.

    :param parts: the comparisons, the level guard last
    :return: verdict and note"""
    verdicts = [part.verdict for part in parts]
    if CONTRADICTED in verdicts:
        return CONTRADICTED, f"contradicted on {parts[verdicts.index(CONTRADICTED)].quantity.name}"
    if all(verdict == SUPPORTED for verdict in verdicts[:-1]):
        return SUPPORTED, "every part supported, and the final return not significantly worse"
    missing = [part.quantity.name for part in parts[:-1] if part.verdict != SUPPORTED]
    return INCONCLUSIVE, "not significant: " + ", ".join(missing)


def single(parts: list[Comparison]) -> tuple[str, str]:
    """The verdict of the one comparison.

    :param parts: one comparison
    :return: verdict and note"""
    return parts[0].verdict, parts[0].blocked or ""


def cost(parts: list[Comparison]) -> tuple[str, str]:
    """The verdict of the one comparison of training times: the bench's paired repeats, or else the study
    runs', which share the machine with other runs.

    :param parts: one comparison
    :return: verdict and note"""
    verdict, note = single(parts)
    source = (
        f"paired repeats of `rlnorm bench` ({BENCH_RECORD})"
        if parts[0].quantity is BENCH_TIME
        else f"study runs share the machine: `rlnorm bench --out <results>/{BENCH_RECORD}` measures cost"
    )
    return verdict, "; ".join(filter(None, [note, source]))


CLAIMS = (
    Claim(
        "1",
        "BN hurts RL: final IQM below none's, or across-seed spread above none's",
        ((FINAL, "bn", "none", "less"), (SPREAD, "bn", "none", "greater")),
        any_part,
    ),
    Claim(
        "2",
        "WN + mean-only BN is gentler than BN: less probe noise, less across-seed and within-run dispersion, "
        "final return not worse",
        (
            (NOISE, "wn+mobn", "bn", "less"),
            (SPREAD, "wn+mobn", "bn", "less"),
            (WITHIN, "wn+mobn", "bn", "less"),
            (FINAL, "wn+mobn", "bn", "greater"),
        ),
        all_but_last_guard,
    ),
    Claim("3", "Mean-only BN's noise is milder than BN's (probe)", ((NOISE, "mobn", "bn", "less"),), single),
    Claim("4", "WN is cheaper to compute than BN", ((TRAIN_TIME, "wn", "bn", "less"),), cost),
)


def claim_verdicts(results: Results) -> list[Verdict]:
    """
    The verdict on each claim of docs/method.md#verdicts, per task and over all tasks, before Holm correction (see
    :func:`adjust`). A claim whose variants a task lacks is "not measured" there.

    Claim 1 is supported if either part is (lower level, or higher spread at comparable levels); claim 2
    needs lower noise, spread and within-run dispersion all supported, and a final return not
    significantly worse; claims 3 and 4 are one comparison each. Claim 4 rests on the runs' training
    wall time, which shares the machine with other runs: ``rlnorm bench`` measures it properly.

    :param results: the results
    :return: the verdicts, claim by claim
    """
    verdicts = []
    # A reference cell runs one published algorithm, no norms: the claims do not apply to it.
    tasks = [task for task in results.tasks if task[0] not in REFERENCE_ALGORITHMS]
    for claim in CLAIMS:
        if claim.parts[0][0] is TRAIN_TIME and results.bench is not None:
            verdicts += bench_verdicts(results.bench, claim)
            continue
        parts_per_task: dict[Task | None, list[Comparison]] = {}
        missing: dict[Task, str] = {}
        for quantity, x, y, expected in claim.parts:
            pairs = {}
            for task in tasks:
                gx, gy = results.canonical(task, x), results.canonical(task, y)
                if gx is None or gy is None:
                    missing[task] = f"no {x if gx is None else y} variant"
                elif any(np.isfinite(quantity.per_run(run)) for run in gx.finished):
                    pairs[task] = (gx, gy)
                else:
                    missing[task] = f"no {quantity.name} measured"
            for task in pairs:
                parts_per_task.setdefault(task, []).append(
                    compare(results, quantity, {task: pairs[task]}, expected, task)
                )
            if len(pairs) > 1:
                parts_per_task.setdefault(None, []).append(compare(results, quantity, pairs, expected, None))
        for task in tasks:
            if task in missing or task not in parts_per_task:
                note = missing.get(task, "")
                if claim.number == "4":
                    note += "; see `rlnorm bench`"
                verdicts.append(Verdict(claim.number, claim.statement, "/".join(task), "not measured", note=note))
            else:
                verdicts.append(Verdict(claim.number, claim.statement, "/".join(task), "", parts_per_task[task]))
        if None in parts_per_task and len(parts_per_task[None]) == len(claim.parts):
            verdicts.append(Verdict(claim.number, claim.statement, "all tasks", "", parts_per_task[None]))
    return verdicts


def bench_verdicts(bench: dict[str, Any], claim: Claim) -> list[Verdict]:
    """
    A cost claim on the bench record's training times (docs/method.md#verdicts: the bench, not study runs that share
    the machine, measures cost): X against Y on each task timed, and over those tasks.

    :param bench: the bench record (:func:`rlnorm.bench.write_bench_record`)
    :param claim: a claim of one training-time comparison
    :return: its verdicts, before Holm correction
    """
    _, x, y, expected = claim.parts[0]
    values = {
        tuple(task.split("/", 1)): (np.asarray(timed["times"][x], float), np.asarray(timed["times"][y], float))
        for task, timed in bench.get("training_time_s", {}).items()
        if x in timed["times"] and y in timed["times"]
    }
    if not values:
        note = f"the bench record ({BENCH_RECORD}) has no training times of {x} and {y}"
        return [Verdict(claim.number, claim.statement, "all tasks", "not measured", note=note)]
    scopes: list[Task | None] = [*values, None] if len(values) > 1 else [*values]
    return [
        Verdict(
            claim.number,
            claim.statement,
            "all tasks" if task is None else "/".join(task),
            "",
            [compare_values(BENCH_TIME, x, y, values if task is None else {task: values[task]}, expected, task)],
        )
        for task in scopes
    ]


# ----------------------------------------------------------------------------------------------- ladder


@dataclass
class Ladder:
    """The mechanism ladder of a batch-statistics norm on one task (issue 6): none, then the norm in each
    mode it was run in, in the order sb3 -> consistent -> frozen -> fixed.

    :param task: the task
    :param norm: the norm
    :param rungs: (label, group) from none to the last mode
    :param steps: each step's comparison: the later rung (X) against the earlier (Y)
    :param removed: the mechanisms each step removes (letters)
    :param verdicts: one per mechanism
    """

    task: Task
    norm: str
    rungs: list[tuple[str, Group]]
    steps: list[Comparison]
    removed: list[str]
    verdicts: list[Verdict] = field(default_factory=list)


def mechanism_ladders(results: Results) -> list[Ladder]:
    """
    The ladders of every (task, batch-statistics norm) run in at least two modes. Each step from one mode to
    the next removes mechanisms (docs/method.md#mechanisms-and-norm-modes); a step that removes exactly one of
    them tests it, expecting the return to rise when a harmful mechanism is removed. The first step, none -> sb3,
    is the gap the mechanisms account for; it tests no mechanism.

    :param results: the results
    :return: the ladders, before Holm correction
    """
    ladders = []
    for task in results.tasks:
        norms = dict.fromkeys(group.norm for group in results.groups_of(task) if group.norm_mode != NORM_MODES[0])
        for norm in norms:
            modes = [(mode, results.canonical(task, norm, mode)) for mode in NORM_MODES]
            modes = [(mode, group) for mode, group in modes if group is not None]
            if len(modes) < 2:
                continue
            baseline = results.canonical(task, "none")
            # (label, group, the mechanisms it keeps): none keeps none, so its step to sb3 tests nothing.
            rungs = [("none", baseline, "")] if baseline else []
            rungs += [(f"{norm} {mode}", group, MODE_MECHANISMS[mode]) for mode, group in modes]
            ladder = Ladder(task, norm, [(label, group) for label, group, _ in rungs], [], [])
            for (_, earlier, before), (_, later, after) in zip(rungs, rungs[1:], strict=False):
                removed = "".join(sorted(set(before) - set(after)))
                expected: Direction | None = "greater" if len(removed) == 1 else None
                ladder.steps.append(compare(results, FINAL, {task: (later, earlier)}, expected, task))
                ladder.removed.append(removed)
            ladders.append(ladder)
    return ladders


def ladder_verdicts(ladder: Ladder) -> list[Verdict]:
    """
    One sentence per mechanism, from the step that removes it alone (after Holm correction).

    :param ladder: the ladder
    :return: the verdicts on "(m) hurts", one per mechanism
    """
    verdicts = []
    for letter, name in MECHANISMS.items():
        scope = f"{'/'.join(ladder.task)} {ladder.norm}"
        steps = [
            (step, removed) for step, removed in zip(ladder.steps, ladder.removed, strict=True) if letter in removed
        ]
        statement = f"({letter}) {name} hurts"
        if not steps:
            verdicts.append(Verdict(letter, statement, scope, "not measured", note="no step removes it"))
            continue
        step, removed = steps[0]
        if len(removed) > 1:
            together = " and ".join(f"({m})" for m in removed)
            note = f"not separated: one step removes {together} together ({_step_sentence(step)})"
            verdicts.append(Verdict(letter, statement, scope, "not measured", [step], note))
            continue
        sentences = {
            SUPPORTED: f"removing {name} raises the final return: {_step_sentence(step)}",
            CONTRADICTED: f"removing {name} lowers the final return, so it helps here: {_step_sentence(step)}",
            INCONCLUSIVE: f"no effect of {name} shown: {_step_sentence(step)}",
        }
        verdicts.append(Verdict(letter, statement, scope, step.verdict, [step], sentences[step.verdict]))
    return verdicts


def _step_sentence(step: Comparison) -> str:
    if step.blocked:
        return f"{step.y} -> {step.x}: {step.blocked}"
    return f"{step.y} -> {step.x}, {step.detail}, p_adj {_fmt(step.p_adjusted)}"


def reference_comparisons(results: Results) -> list[Comparison]:
    """
    Each reference cell (:data:`REFERENCE_ALGORITHMS`) against the algorithm it stands beside, on the same
    environment, with none and with bn: final return, no claimed direction.

    :param results: the results
    :return: the comparisons (X the reference cell, Y e.g. ``sac none``), before Holm correction
    """
    comparisons = []
    for task in results.tasks:
        beside = (REFERENCE_ALGORITHMS.get(task[0], ""), task[1])
        if beside not in results.tasks:
            continue
        reference = results.groups_of(task)[0]
        for norm in ("none", "bn"):
            other = results.canonical(beside, norm)
            if other is None:
                continue
            ends = {int(run.steps[-1]) for group in (reference, other) for run in group.finished if run.steps.size}
            if len(ends) > 1:
                comparison = Comparison(FINAL, reference.variant, "", task, None, NO_ESTIMATE, math.nan, "",
                                        f"runs end at different steps ({sorted(ends)}): different budgets")
            else:
                comparison = compare(results, FINAL, {task: (reference, other)}, None, task)
            comparison.y = f"{beside[0]} {norm}"
            comparisons.append(comparison)
    return comparisons


# ----------------------------------------------------------------------------------------------- analysis


@dataclass
class Analysis:
    """Everything the report concludes, after the Holm correction over all its comparisons.

    :param verdicts: claim verdicts per task and overall
    :param ladders: the mechanism ladders, with their verdicts
    :param references: the reference cells against the algorithm they stand beside
    """

    verdicts: list[Verdict]
    ladders: list[Ladder]
    references: list[Comparison]

    @property
    def family(self) -> list[Comparison]:
        """:return: every comparison of the report: the family of the Holm correction"""
        return ([c for v in self.verdicts for c in v.comparisons] + [c for ladder in self.ladders for c in ladder.steps]
                + self.references)


def adjust(comparisons: list[Comparison]) -> None:
    """
    Holm-correct a family of comparisons in place; those not made keep a nan adjusted p-value.

    :param comparisons: the family
    """
    made = [c for c in comparisons if not c.blocked and not math.isnan(c.pvalue)]
    pvalues = [c.pvalue for c in made]
    for comparison, adjusted in zip(made, st.holm_adjust(pvalues), strict=True):
        comparison.p_adjusted = float(adjusted)
    for index, comparison in enumerate(made):
        if not math.isnan(comparison.smallest_p):
            # The best these sizes allow: this comparison at its smallest p, the others as they are.
            best = pvalues[:index] + [comparison.smallest_p] + pvalues[index + 1 :]
            comparison.smallest_p_adjusted = float(st.holm_adjust(best)[index])


def analyze(results: Results) -> Analysis:
    """
    Make every comparison of the report, correct them as one family, and decide the verdicts.

    :param results: the results
    :return: the analysis
    """
    analysis = Analysis(claim_verdicts(results), mechanism_ladders(results), reference_comparisons(results))
    adjust(analysis.family)
    combine = {claim.number: claim.combine for claim in CLAIMS}
    for verdict in analysis.verdicts:
        if verdict.comparisons:
            verdict.verdict, verdict.note = combine[verdict.claim](verdict.comparisons)
    for ladder in analysis.ladders:
        ladder.verdicts = ladder_verdicts(ladder)
    return analysis


def baseline_comparisons(results: Results) -> list[Comparison]:
    """
    Each variant against the task's baseline (none, else the first variant) on final return and spread,
    Holm-corrected as their own family (the table ``rlnorm analyze`` prints).

    :param results: the results
    :return: the comparisons
    """
    comparisons = []
    for task in results.tasks:
        groups = results.groups_of(task)
        baseline = results.canonical(task, "none") or groups[0]
        for group in groups:
            if group is not baseline:
                for quantity in (FINAL, SPREAD):
                    comparisons.append(compare(results, quantity, {task: (group, baseline)}, None, task))
    adjust(comparisons)
    return comparisons


# ----------------------------------------------------------------------------------------------- tables


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value + 0.0:.3g}"  # + 0.0 turns -0.0 into 0.0


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds:,.0f} s ({seconds / 3600:.1f} h)"
    if seconds >= 60:
        return f"{seconds:,.0f} s ({seconds / 60:.1f} min)"
    return f"{seconds:.1f} s"


def _estimate(estimate: st.Estimate) -> str:
    if math.isnan(estimate.low):
        return _fmt(estimate.value)
    return f"{_fmt(estimate.value)} [{_fmt(estimate.low)}, {_fmt(estimate.high)}]"


Table = tuple[list[str], list[list[str]]]


def run_table(results: Results) -> Table:
    """:param results: the results
    :return: one row per run: status, progress, the docs/method.md#metrics metrics and the training time"""
    headers = [
        "run",
        "status",
        "steps",
        "final",
        "AUC",
        "within-run disp.",
        "short risk",
        "long risk",
        "episode spread",
        "probe noise",
        "train time (s)",
        "reason",
    ]
    rows = [
        [
            run.run_id,
            run.status,
            f"{run.steps[-1] if run.steps.size else 0}/{run.budget}",
            *(
                _fmt(getattr(run.metrics, name))
                for name in (
                    "final",
                    "auc",
                    "within_run_dispersion",
                    "short_term_risk",
                    "long_term_risk",
                    "eval_spread",
                )
            ),
            _fmt(run.probe_mean("noise")),
            _fmt(run.train_time_s),
            run.reason or "",
        ]
        for run in results.runs
    ]
    return headers, rows


def group_table(results: Results) -> Table:
    """:param results: the results
    :return: one row per (algo, env, variant): run counts, level and dispersion across seeds, with CIs"""
    headers = [
        "task",
        "variant",
        "mode",
        "done/failed/running",
        "final IQM [95% CI]",
        "final mean [95% CI]",
        "std [95% CI]",
        "IQR",
        "worst run",
        "within-run disp. [95% CI]",
        "long risk",
        "probe noise",
        "train time (s)",
    ]
    rows = [
        [
            "/".join(group.task),
            group.variant,
            group.norm_mode,
            "/".join(str(group.count(status)) for status in (DONE, FAILED, RUNNING)),
            _estimate(group.final_iqm),
            _estimate(group.final_mean),
            _estimate(group.final_std),
            _fmt(group.final_iqr),
            _fmt(group.final_cvar),
            _estimate(group.within_run_dispersion),
            _fmt(group.long_term_risk),
            _estimate(group.probe_noise),
            _fmt(group.train_time_s.value),
        ]
        for group in results.groups
    ]
    return headers, rows


def comparison_table(comparisons: list[Comparison]) -> Table:
    """:param comparisons: the comparisons
    :return: one row per comparison: effect, CI, p-values, verdict"""
    headers = ["scope", "X", "Y", "quantity", "P(X > Y) [95% CI]", "in natural units", "p", "p (Holm)", "outcome"]
    rows = [
        [
            c.scope,
            c.x,
            c.y,
            c.quantity.name,
            _estimate(c.probability),
            c.detail,
            _fmt(c.pvalue),
            _fmt(c.p_adjusted),
            c.outcome,
        ]
        for c in comparisons
    ]
    return headers, rows


def verdict_table(verdicts: list[Verdict]) -> Table:
    """:param verdicts: claim or mechanism verdicts
    :return: one row per verdict, its parts' effects and adjusted p-values in the last columns"""
    headers = ["claim", "scope", "verdict", "effect: P(X > Y) [95% CI]", "p (Holm)", "why"]
    rows = [
        [
            f"{v.claim}. {v.statement}",
            v.scope,
            f"**{v.verdict}**",
            "; ".join(f"{c.quantity.name} {c.x} vs {c.y}: {_estimate(c.probability)}" for c in v.comparisons),
            "; ".join(_fmt(c.p_adjusted) for c in v.comparisons),
            v.note,
        ]
        for v in verdicts
    ]
    return headers, rows


def verdict_matrix(verdicts: list[Verdict]) -> Table:
    """:param verdicts: claim or mechanism verdicts
    :return: the verdicts at a glance: one row per scope, one column per claim"""
    scopes = list(dict.fromkeys(v.scope for v in verdicts))
    claims = list(dict.fromkeys((v.claim, v.statement.split(":")[0]) for v in verdicts))
    cell = {(v.claim, v.scope): v.verdict for v in verdicts}
    headers = ["scope", *(f"{number}. {statement}" if number.isdigit() else statement for number, statement in claims)]
    rows = [
        [scope, *(_bold_if_decided(cell.get((number, scope), "not measured")) for number, _ in claims)]
        for scope in scopes
    ]
    return headers, rows


def _bold_if_decided(verdict: str) -> str:
    return f"**{verdict}**" if verdict in (SUPPORTED, CONTRADICTED) else verdict


def markdown_table(table: Table) -> str:
    """:param table: headers and rows
    :return: a Markdown pipe table, columns padded so it also reads as plain text"""
    headers, rows = table
    cells = [headers, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return (
            "| "
            + " | ".join(cell.replace("|", "/").ljust(width) for cell, width in zip(row, widths, strict=True))
            + " |"
        )

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def analysis_tables(results: Results) -> str:
    """
    What ``rlnorm analyze`` prints: the notes, then per run, per (algo, env, variant), and each variant
    against the baseline.

    :param results: the results
    :return: the text
    """
    sections = [f"# {results.path}"]
    sections += [f"note: {note}" for note in results.notes]
    sections += ["## Runs", markdown_table(run_table(results))]
    sections += ["## Per task and variant (finished runs)", markdown_table(group_table(results))]
    comparisons = baseline_comparisons(results)
    if comparisons:
        sections += ["## Against the baseline (Holm over this table)", markdown_table(comparison_table(comparisons))]
    return "\n\n".join(sections) + "\n"


# ----------------------------------------------------------------------------------------------- report


Block = tuple
"""("h1" | "h2" | "h3" | "p", text), ("list", item, ...), ("table", Table), ("figure", png path, caption)."""


def _counts(runs: Sequence[Run]) -> str:
    return ", ".join(f"{sum(run.status == status for run in runs)} {status}" for status in (DONE, FAILED, RUNNING))


def _task_setup(runs: list[Run]) -> list[str]:
    """One row of the setup table, from the config of the task's first run."""
    spec, agent = runs[0].config.get("run", {}), runs[0].config.get("agent", {})
    evaluation = spec.get("eval", {})
    return [
        "/".join(runs[0].task),
        str(spec.get("timesteps", "?")),
        ", ".join(map(str, sorted({run.seed for run in runs}))),
        f"every {evaluation.get('every', '?')} steps, {evaluation.get('episodes', '?')} episodes"
        + (", deterministic" if evaluation.get("deterministic", True) else ""),
        json.dumps({"n_envs": agent.get("n_envs"), **agent.get("algo_kwargs", {})}),
    ]


def setup_blocks(results: Results) -> list[Block]:
    """:param results: the results
    :return: the setup section: study, tasks, variants, budget, seeds, versions, hardware, wall time"""
    runs = results.runs
    name = (results.study or {}).get("name", results.path.name)
    tasks = (
        ["task", "budget (steps)", "seeds", "evaluation", "hyperparameters"],
        [_task_setup([run for run in runs if run.task == task]) for task in results.tasks],
    )
    groups = {group.variant: group for group in results.groups}.values()
    variants = (
        ["variant", "norm", "mode", "options", "in"],
        [[g.variant, g.norm, g.norm_mode, json.dumps(g.norm_kwargs), g.norm_in] for g in groups],
    )
    versions = sorted({json.dumps(run.versions, sort_keys=True) for run in runs if run.versions})
    hosts = sorted({f"{run.host} ({run.hardware})" if run.hardware else run.host for run in runs if run.host})
    wall = [run.wall_time_s for run in runs if not math.isnan(run.wall_time_s)]
    memory = [run.peak_memory_mib for run in runs if not math.isnan(run.peak_memory_mib)]
    facts = [f"versions: {', '.join(f'{k} {v}' for k, v in json.loads(text).items())}" for text in versions]
    facts.append(
        f"hardware: host {', '.join(hosts) or 'unknown'}; peak memory per worker "
        f"{_fmt(max(memory) if memory else math.nan)} MiB"
    )
    facts.append(
        f"wall time: {_duration(sum(wall))} summed over {len(wall)} recorded runs "
        f"(mean {_fmt(float(np.mean(wall)) if wall else math.nan)} s per run, evaluation included)"
    )
    if results.bench is not None:
        bench = results.bench
        facts.append(
            f"compute cost (claim 4): `{bench.get('command', 'rlnorm bench')}` ({BENCH_RECORD}), on "
            f"{bench.get('hardware', 'unknown hardware')}"
        )
    return [
        ("h2", "Setup"),
        ("p", f"Study {name!r} in {results.path}: {len(runs)} runs ({_counts(runs)})."),
        ("table", tasks),
        ("table", variants),
        ("list", *facts),
    ]


def _ladder_blocks(ladders: list[Ladder]) -> list[Block]:
    if not ladders:
        return []
    blocks: list[Block] = [
        ("h2", "Which mechanism hurts?"),
        (
            "p",
            "Each rung removes mechanisms: sb3 (a+b+c) -> consistent (a+c) -> frozen (c) -> fixed (none), with "
            "(a) minibatch noise, (b) the mode switch, (c) statistics chasing the policy's state distribution. "
            "Each step compares the final return of the later rung (X) with the earlier one (Y). The consistent -> "
            "frozen step removes (a) but also swaps the batch's current statistics for lagging running ones, and a "
            "fixed-statistics layer is an affine reparametrization (mobn-fixed a constant shift, bn-fixed a constant "
            "per-unit affine map; frozen mobn at momentum 0 likewise), so 'fixed rescues' also reads 'no active "
            "normalization rescues' (the project's docs/method.md, \"Mechanisms and norm modes\").",
        ),
    ]
    blocks.append(("table", verdict_matrix([v for ladder in ladders for v in ladder.verdicts])))
    for ladder in ladders:
        blocks += [
            ("h3", f"{'/'.join(ladder.task)}: {ladder.norm}"),
            ("table", comparison_table(ladder.steps)),
            ("list", *(f"{v.statement}: **{v.verdict}**. {v.note}" for v in ladder.verdicts)),
        ]
    return blocks


def _reference_blocks(references: list[Comparison]) -> list[Block]:
    if not references:
        return []
    tasks = ", ".join(dict.fromkeys(c.scope for c in references))
    return [
        ("h2", "Reference cells: batch statistics used as published"),
        (
            "p",
            f"{tasks}: CrossQ (Bhatt et al. 2024) is SAC with Batch Renorm in the critic and no target network, "
            "and its paper finds it beats SAC. Its final return (X) against SAC with no norm and with BN (Y) on "
            "the same environment and budget, in the report's Holm family.",
        ),
        ("table", comparison_table(references)),
        ("list", *(_reference_sentence(c) for c in references)),
    ]


def _reference_sentence(comparison: Comparison) -> str:
    if comparison.blocked:
        return f"{comparison.x} against {comparison.y}: not compared, {comparison.blocked}"
    return (f"{comparison.x} against {comparison.y}: {comparison.detail}, p_adj {_fmt(comparison.p_adjusted)}: "
            f"**{comparison.outcome}**")


def report_blocks(results: Results, figures: list[Path], out_dir: Path | None = None) -> list[Block]:
    """
    The report's content, in order, whatever its format.

    :param results: the results
    :param figures: PNG files to show
    :param out_dir: where the report is written, for the command that regenerates it
    :return: the blocks
    """
    analysis = analyze(results)
    comparisons = [c for v in analysis.verdicts for c in v.comparisons]
    family = len(analysis.family)
    done, planned = sum(run.status == DONE for run in results.runs), results.planned_runs
    interim = f" (interim: {done} of {planned} runs finished)" if done < planned else ""
    blocks: list[Block] = [("h1", f"rlnorm report: {results.path.name}{interim}")]
    if results.notes:
        blocks += [("h2", "Notes"), ("list", *results.notes)]
    blocks += setup_blocks(results)
    if out_dir is not None:
        config = (results.study or {}).get("source")
        runs = f"the runs with `rlnorm study {config}` (it keeps finished runs), " if config else ""
        command = f"rlnorm report {results.path} --out {out_dir}"
        blocks.append(("p", f"To regenerate: {runs}this report, its figures and runs.csv with `{command}`."))
    blocks += [
        ("h2", "Verdicts"),
        (
            "p",
            f"Supported or contradicted only when the Holm-adjusted p-value (over all {family} comparisons of "
            f"this report) is below {ALPHA} and the 95 % CI of P(X > Y) excludes 1/2; otherwise inconclusive. "
            "With few seeds per variant, inconclusive is the expected answer. The rules are in the project's "
            "docs/method.md, \"Verdicts\".",
        ),
        ("table", verdict_matrix(analysis.verdicts)),
        ("table", verdict_table(analysis.verdicts)),
    ]
    if comparisons:
        blocks += [("h3", "Comparisons behind the verdicts"), ("table", comparison_table(comparisons))]
    blocks += _ladder_blocks(analysis.ladders)
    blocks += _reference_blocks(analysis.references)
    blocks += [
        ("h2", "Per task and variant (finished runs)"),
        ("table", group_table(results)),
        ("h2", "Runs"),
        ("table", run_table(results)),
        ("h2", "Figures"),
    ]
    return blocks + [("figure", path, CAPTIONS.get(path.stem, "")) for path in figures]


def to_markdown(blocks: list[Block], base: Path) -> str:
    """:param blocks: the report's content
    :param base: directory the figure links are relative to
    :return: Markdown"""
    out = []
    for kind, *content in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + content[0])
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in content))
        elif kind == "table":
            out.append(markdown_table(content[0]))
        elif kind == "figure":
            out.append(f"![{content[0].stem}]({content[0].relative_to(base)})\n\n*{content[1]}*")
        else:
            out.append(content[0])
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Markdown's **bold** and `code` in running text, as HTML."""
    parts = html.escape(text).split("**")
    text = "".join(f"<b>{part}</b>" if i % 2 else part for i, part in enumerate(parts))
    parts = text.split("`")
    return "".join(f"<code>{part}</code>" if i % 2 else part for i, part in enumerate(parts))


def _html_table(table: Table) -> str:
    headers, rows = table
    head = "".join(f"<th>{_inline(cell)}</th>" for cell in headers)
    body = "".join("<tr>" + "".join(f"<td>{_inline(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{path.stem}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_inline(caption)}</figcaption></figure>"
    )


HTML_STYLE = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0;display:block;overflow-x:auto}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}th{background:#f3f3f3}
img{max-width:100%}figure{margin:1.5em 0}figcaption{font-size:13px;color:#444}"""


def to_html(blocks: list[Block]) -> str:
    """:param blocks: the report's content
    :return: one self-contained HTML page, the figures embedded as base64 PNG"""
    render = {
        "p": lambda text: f"<p>{_inline(text)}</p>",
        "list": lambda *items: "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in items) + "</ul>",
        "table": _html_table,
        "figure": _html_figure,
        **{h: (lambda text, h=h: f"<{h}>{_inline(text)}</{h}>") for h in ("h1", "h2", "h3")},
    }
    body = "\n".join(render[kind](*content) for kind, *content in blocks)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>rlnorm report</title>'
        f"<style>{HTML_STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


RUN_SUMMARY_COLUMNS = (
    "run", "algo", "env", "variant", "norm", "norm_mode", "norm_kwargs", "norm_in", "seed", "status",
    "ghost_batches", "steps", "budget", *RunMetrics.__dataclass_fields__, "probe_noise", "probe_gap",
    "probe_relative_noise", "probe_layer_relative_noise", "probe_layer_noise_excess_kurtosis", "wall_time_s",
    "evaluation_s", "hardware", "reason",
)
"""``probe_*`` are means over probe points and networks, at the outputs or (``probe_layer_*``) over every normalized
layer; empty where undefined or not applicable (noise where the probe's minibatch was its whole pool)."""


def write_run_summary(results: Results, path: str | Path) -> Path:
    """Write one CSV row per run: its variant, status, the docs/method.md#metrics metrics, the probe at the outputs, its
    times and the processor it ran on, as plain numbers (empty where undefined), for analysis elsewhere.

    :param results: the results
    :param path: the CSV file
    :return: the file
    """
    path = Path(path)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(RUN_SUMMARY_COLUMNS)
        for run in results.runs:
            numbers = [
                *(getattr(run.metrics, name) for name in RunMetrics.__dataclass_fields__),
                run.probe_mean("noise"),
                run.probe_mean("gap"),
                run.probe_mean("relative_noise"),
                run.probe_mean("relative_noise", NORMALIZED_LAYERS),
                run.probe_mean("noise_excess_kurtosis", NORMALIZED_LAYERS),
                run.wall_time_s,
                run.evaluation_s,
            ]
            writer.writerow([
                run.run_id, run.algo, run.env_id, run.variant, run.norm, run.norm_mode,
                json.dumps(run.norm_kwargs, sort_keys=True), run.norm_in, run.seed, run.status,
                run.norm_kwargs.get("ghost_batches", 1), int(run.steps[-1]) if run.steps.size else 0, run.budget,
                *("" if math.isnan(value) else f"{value:.6g}" for value in numbers),
                run.hardware,
                run.reason or "",
            ])
    return path


def write_report(results: Results, out_dir: str | Path) -> tuple[Path, Path]:
    """
    Write the report: ``report.md`` with its figures in ``figures/`` (PNG and PDF), ``report.html``,
    which holds everything (figures embedded) and opens in any browser, and ``runs.csv``, the per-run
    summary (:func:`write_run_summary`).

    :param results: the results
    :param out_dir: where to write, created if needed
    :return: the Markdown and HTML files
    """
    out_dir = Path(out_dir)
    figures = [path for path in plot_study(results, out_dir / "figures") if path.suffix == ".png"]
    blocks = report_blocks(results, figures, out_dir)
    write_run_summary(results, out_dir / "runs.csv")
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text(to_markdown(blocks, out_dir))
    html_path.write_text(to_html(blocks))
    return md_path, html_path
