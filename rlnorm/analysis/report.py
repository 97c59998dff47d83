"""The study report: the answer first (verdicts and the figures that carry them), then the comparisons, return
variance, the ladders, and the setup and per-run tables as an appendix.

Rendering only: :mod:`rlnorm.analysis.verdicts` decides; this module turns its typed results into one document model
(:data:`Block`), written as Markdown and as one self-contained HTML page, and into ``comparisons.csv`` (one row
per comparison, recomputable from ``runs.csv``) and ``runs.csv`` (one row per run).
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rlnorm.analysis import stats as st
from rlnorm.analysis.claims import Claim, Scores, default_claims, parse_claims, parse_scores
from rlnorm.analysis.plots import CAPTIONS, plot_study
from rlnorm.analysis.results import (
    BENCH_RECORD,
    DONE,
    FAILED,
    NORMALIZED_LAYERS,
    RUNNING,
    Results,
    Run,
    RunMetrics,
    task_costs,
)
from rlnorm.analysis.scales import RANDOM_EPISODES, TaskScale, random_returns, task_scales
from rlnorm.analysis.verdicts import (
    ALL_TASKS,
    ALPHA,
    CONTRADICTED,
    MECHANISMS,
    NOT_MEASURED,
    SUPPORTED,
    Analysis,
    ClaimVerdict,
    Decided,
    analyze,
    decide_secondary,
    noise_dose,
    undirected_test,
)
from rlnorm.study.checks import ConfigError

Table = tuple[list[str], list[list[str]]]


# ----------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Declared:
    """What a report tests and how it scores returns.

    :param claims: the claims
    :param scores: the score settings
    :param source: where they come from, in words
    :param config: the config file they were read from, if one was given
    """

    claims: tuple[Claim, ...]
    scores: Scores
    source: str
    config: str | None = None


def planned_variants(results: Results) -> dict[str, list[str]]:
    """:return: ``algo/env`` -> the variants the study plans (``study.json``), or those with runs without one"""
    tasks = (results.study or {}).get("tasks")
    if tasks:
        return {f"{t['algo']}/{t['env_id']}": [v["name"] for v in t.get("variants", [])] for t in tasks}
    return {"/".join(task): [g.variant for g in results.groups_of(task)] for task in results.tasks}


def declared(results: Results, config: str | Path | None = None) -> Declared:
    """
    The claims and score settings of a report: a config file's ``claims`` and ``scores`` if one is given, else
    the study's own (``study.json``), else :data:`rlnorm.analysis.claims.DEFAULT_CLAIMS`.

    :param results: the results
    :param config: a study config file to read them from
    :return: them, checked against the study's variants
    :raises ConfigError: on a claim naming an unknown variant, task or quantity, or an unreadable config
    """
    tasks = planned_variants(results)
    if config is not None:
        try:
            raw = yaml.safe_load(Path(config).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read claims from {config}: {error}") from None
        source = f"the claims of {config}"
    else:
        raw = results.study or {}
        source = "the claims of the study's config"
    try:
        scores = parse_scores(raw.get("scores") or {}, tasks)
        given = str(config) if config is not None else None
        if raw.get("claims") is None:
            return Declared(default_claims(tasks), scores, "the default claims (the config declares none)", given)
        return Declared(parse_claims(raw["claims"], tasks), scores, source, given)
    except ConfigError as error:
        raise ConfigError(f"{config or results.path / 'study.json'}: {error}") from None


def scales_of(results: Results, scores: Scores) -> dict[tuple[str, str], TaskScale]:
    """:return: each task's score scale, the random policy's returns cached in the results directory"""
    randoms = random_returns(results.path, list(dict.fromkeys(env for _, env in results.tasks)))
    iqms = {task: np.array([g.final_iqm.value for g in results.groups_of(task)]) for task in results.tasks}
    return task_scales(iqms, randoms, scores)


# ----------------------------------------------------------------------------------------------- numbers


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value + 0.0:.3g}"  # + 0.0 turns -0.0 into 0.0


def _p(value: float) -> str:
    """p-values: small ones in scientific notation, so that no exact p reads as 0."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3g}"


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


def _bold_if_decided(verdict: str) -> str:
    return f"**{verdict}**" if verdict in (SUPPORTED, CONTRADICTED) else verdict


def verdict_label(verdict: ClaimVerdict) -> str:
    """:return: the verdict as a reader takes it: "cannot be significant with n = ..." where the sizes forbid it,
    "n/a" where the parts it lacks are those whose quantity cannot vary"""
    if verdict.verdict == NOT_MEASURED:
        missing = [d for d in verdict.parts if not d.test.made]
        return "n/a" if all(d.test.reason.startswith("n/a") for d in missing) else NOT_MEASURED
    if verdict.powerless and verdict.verdict not in (SUPPORTED, CONTRADICTED):
        return f"cannot be significant with n = {_sizes(verdict.parts)}"
    return verdict.verdict


def _sizes(parts: Sequence[Decided]) -> str:
    sizes = dict.fromkeys(" vs ".join(map(str, size)) for d in parts if d.test.made for size in d.test.sizes)
    return ", ".join(sizes)


def outcome(decided: Decided) -> str:
    """:return: a comparison's verdict, its reason when not made, or that its sizes cannot reach significance"""
    if decided.test.reason:
        return decided.test.reason
    if decided.powerless and decided.verdict not in (SUPPORTED, CONTRADICTED, "X higher", "X lower"):
        return f"cannot be significant with n = {_sizes([decided])} (smallest p {_p(decided.smallest_p_adjusted)})"
    return decided.verdict


def _natural(decided: Decided) -> str:
    test = decided.test
    if len(test.summaries) == 2:
        return f"{test.summary_name} {_estimate(test.summaries[0])} vs {_estimate(test.summaries[1])}"
    if test.summaries:
        return f"{test.summary_name} " + " -> ".join(_estimate(s) for s in test.summaries)
    return f"over {len(test.sizes)} tasks" if len(test.sizes) > 1 else ""


# ----------------------------------------------------------------------------------------------- tables


def verdict_matrix(analysis: Analysis) -> Table:
    """:return: the verdicts at a glance: one row per claim, one column per scope (the tasks, then all tasks)"""
    scopes = list(dict.fromkeys(v.scope for v in analysis.verdicts))
    scopes = [s for s in scopes if s != ALL_TASKS] + ([ALL_TASKS] if ALL_TASKS in scopes else [])
    names = list(dict.fromkeys(v.claim.name for v in analysis.verdicts))
    cell = {(v.claim.name, v.scope): verdict_label(v) for v in analysis.verdicts}
    return ["claim", *scopes], [[name, *(_bold_if_decided(cell.get((name, scope), "-")) for scope in scopes)]
                                for name in names]


def verdict_table(analysis: Analysis) -> Table:
    """:return: one row per claim and scope: verdict, effects, p-values, the smallest reachable p, robustness"""
    headers = ["claim", "scope", "verdict", "effect [95% CI]", "p", "p (Holm)", "smallest p (Holm)", "robustness",
               "why"]
    rows = []
    for v in analysis.verdicts:
        effects = "; ".join(f"{d.test.quantity}: {d.test.effect_name} {_estimate(d.test.effect)}"
                            for d in v.parts if d.test.made)
        rows.append([v.claim.name, v.scope, _bold_if_decided(verdict_label(v)), effects, _p(v.p), _p(v.p_adjusted),
                     _p(v.smallest_p_adjusted), v.robust, v.why])
    return headers, rows


def comparison_table(comparisons: Sequence[Decided]) -> Table:
    """:return: one row per comparison: effect, natural units, test, p-values, outcome"""
    headers = ["scope", "X", "Y", "quantity", "effect [95% CI]", "in natural units", "test", "p", "p (Holm)",
               "outcome"]
    rows = [[d.test.scope, d.test.x, d.test.y or "-", d.test.quantity,
             f"{d.test.effect_name} {_estimate(d.test.effect)}" if d.test.made else "-", _natural(d),
             d.test.test or "-", _p(d.test.pvalue), _p(d.p_adjusted), _bold_if_decided(outcome(d))]
            for d in comparisons]
    return headers, rows


def variance_table(analysis: Analysis) -> Table:
    """:return: return variance per task and variant on normalized final returns"""
    headers = ["task", "variant", "runs", "score IQM [95% CI]", "failure rate [Wilson 95%]", "successes",
               "spread among successes (std)", "IPR-90", "within-run disp. (per 1e5 steps)"]
    rows = [["/".join(r.task), r.variant, str(r.runs), _estimate(r.score), _estimate(r.failure_rate),
             str(r.successes), _fmt(r.spread_among_successes) if r.successes > 1 else "n/a: fewer than 2 successes",
             _fmt(r.ipr90), _fmt(r.within_run)] for r in analysis.variance]
    return headers, rows


def dose_table(analysis: Analysis) -> Table:
    """:return: per task and dose of each noise dose-response chain, the noise measured and the return reached"""
    injected = any(d.injected_noise for d in analysis.dose)  # a column only where some chain injects noise
    headers = ["task", "chain (its first dose)", "variant", "ghost batches", *(["injected noise"] if injected else []),
               "runs", "relative probe noise [95% CI]",
               "noise added: first probe point, x the first measured dose's [95% CI]", "final IQM [95% CI]",
               "failure rate [Wilson 95%]"]
    rows = [["/".join(d.task), d.chain[0], d.variant, str(d.ghost_batches),
             *([f"{d.injected_noise:g}"] if injected else []), str(d.runs), _estimate(d.relative_noise),
             _estimate(d.added_noise), _estimate(d.final), _estimate(d.failure_rate)]
            for d in analysis.dose]
    return headers, rows


def threshold_notes(results: Results, analysis: Analysis) -> list[str]:
    """:return: a note for each task whose finished runs all lie on one side of the failure threshold: there, the
    failure rate cannot tell the variants apart"""
    notes = []
    for task, scale in analysis.scales.items():
        finals = np.concatenate([g.finals() for g in results.groups_of(task)])
        if not finals.size or math.isnan(scale.reference_return):
            continue
        side = "above" if finals.min() >= scale.failure_return else "below" if finals.max() < scale.failure_return \
            else None
        if side:
            notes.append(f"{'/'.join(task)}: every finished run is {side} the failure threshold (return "
                         f"{_fmt(scale.failure_return)}), so the failure rates there are all "
                         f"{'0' if side == 'above' else '1'} and cannot tell the variants apart")
    return notes


def scale_table(analysis: Analysis) -> Table:
    """:return: per task, how returns were normalized and the failure threshold"""
    headers = ["task", f"random policy ({RANDOM_EPISODES} episodes)", "reference (score 1)", "reference from",
               "a run fails below"]
    rows = [["/".join(task), _fmt(s.random_return), _fmt(s.reference_return), s.reference_source,
             f"score {_fmt(s.failure_below)} (return {_fmt(s.failure_return)})"] for task, s in analysis.scales.items()]
    return headers, rows


def aggregate_table(analysis: Analysis) -> Table:
    """:return: per variant, the IQM of normalized final returns across tasks"""
    headers = ["variant", "tasks", "runs", "IQM of normalized final return [95% stratified CI]"]
    rows = [[a.variant, str(len(a.tasks)), str(sum(s.size for s in a.scores)), _estimate(a.iqm)]
            for a in analysis.aggregates]
    return headers, rows


def run_table(results: Results) -> Table:
    """:return: one row per run: status, progress, the docs/method.md#metrics metrics and the training time"""
    headers = ["run", "status", "steps", "final", "AUC", "within-run disp.", "short risk", "long risk",
               "episode spread", "relative probe noise", "train time (s)", "reason"]
    names = ("final", "auc", "within_run_dispersion", "short_term_risk", "long_term_risk", "eval_spread")
    rows = [[run.run_id, run.status, f"{run.steps[-1] if run.steps.size else 0}/{run.budget}",
             *(_fmt(getattr(run.metrics, name)) for name in names), _fmt(run.probe_median("relative_noise")),
             _fmt(run.train_time_s), run.reason or ""] for run in results.runs]
    return headers, rows


def group_table(results: Results) -> Table:
    """:return: one row per (algo, env, variant): run counts, level and dispersion across seeds, with CIs"""
    headers = ["task", "variant", "mode", "done/failed/running", "final IQM [95% CI]", "final mean [95% CI]",
               "std [95% CI]", "IQR", "worst run", "within-run disp. [95% CI]", "long risk", "absolute probe noise",
               "train time (s)"]
    rows = [["/".join(g.task), g.variant, g.norm_mode, "/".join(str(g.count(s)) for s in (DONE, FAILED, RUNNING)),
             _estimate(g.final_iqm), _estimate(g.final_mean), _estimate(g.final_std), _fmt(g.final_iqr),
             _fmt(g.final_cvar), _estimate(g.within_run_dispersion), _fmt(g.long_term_risk),
             _estimate(g.probe_noise), _fmt(g.train_time_s.value)] for g in results.groups]
    return headers, rows


def markdown_table(table: Table) -> str:
    """:param table: headers and rows
    :return: a Markdown pipe table, columns padded so it also reads as plain text"""
    headers, rows = table
    cells = [headers, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        padded = (cell.replace("|", "/").ljust(width) for cell, width in zip(row, widths, strict=True))
        return "| " + " | ".join(padded) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def baseline_comparisons(results: Results, scales: dict[tuple[str, str], TaskScale], seed: int = 0) -> list[Decided]:
    """
    Each variant against the task's baseline (none, else the first variant) on final return and failure rate,
    Holm-corrected as their own family (the table ``rlnorm analyze`` prints).

    :return: the comparisons
    """
    tests = []
    for task in results.tasks:
        groups = results.groups_of(task)
        baseline = results.group(task, "none") or groups[0]
        for group in groups:
            if group is baseline:
                continue
            tests += [undirected_test(results, task, group.variant, baseline.variant, quantity, scales, seed,
                                     f"{group.variant} vs {baseline.variant}")
                      for quantity in ("final return", "failure rate")]
    return decide_secondary(tests)


def analysis_tables(results: Results, scales: dict[tuple[str, str], TaskScale]) -> str:
    """
    What ``rlnorm analyze`` prints: the notes, then per run, per (algo, env, variant), and each variant against
    the baseline.

    :param results: the results
    :param scales: each task's score scale
    :return: the text
    """
    sections = [f"# {results.path}"]
    sections += [f"note: {note}" for note in results.notes]
    sections += ["## Runs", markdown_table(run_table(results))]
    sections += ["## Per task and variant (finished runs)", markdown_table(group_table(results))]
    comparisons = baseline_comparisons(results, scales)
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
    """:return: the setup section: study, tasks, variants, budget, seeds, versions, hardware, wall time, and what
    the runs cost per task"""
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
    made_on = Counter(f"{run.host} ({run.hardware})" if run.hardware else run.host for run in runs if run.host)
    # Runs agree bit for bit only on one kind of processor: a study made on several says how many each made.
    hosts = [f"{host}, {count} run{'' if count == 1 else 's'}" if len(made_on) > 1 else host
             for host, count in sorted(made_on.items())]
    wall = [run.wall_time_s for run in runs if not math.isnan(run.wall_time_s)]
    memory = [run.peak_memory_mib for run in runs if not math.isnan(run.peak_memory_mib)]
    facts = [f"versions: {', '.join(f'{k} {v}' for k, v in json.loads(text).items())}" for text in versions]
    facts.append(f"hardware: host {', '.join(hosts) or 'unknown'}; peak memory per worker "
                 f"{_fmt(max(memory) if memory else math.nan)} MiB")
    facts.append(f"wall time: {_duration(sum(wall))} summed over {len(wall)} recorded runs "
                 f"(mean {_fmt(float(np.mean(wall)) if wall else math.nan)} s per run, evaluation included)")
    if results.bench is not None:
        # The record names the path it was written to, often another machine's: show where it lies now.
        command = re.sub(r"--out \S+", f"--out {results.path / BENCH_RECORD}",
                         results.bench.get("command", "rlnorm bench"))
        facts.append(f"compute cost: `{command}` ({BENCH_RECORD}), on "
                     f"{results.bench.get('hardware', 'unknown hardware')}")
    return [
        ("h2", "Appendix: setup"),
        ("p", f"Study {name!r} in {results.path}: {len(runs)} runs ({_counts(runs)})."),
        ("table", tasks),
        ("table", variants),
        ("list", *facts),
        ("p", "What the runs cost per task: their wall time, and the shares of it spent evaluating and probing."),
        ("table", cost_table(results)),
    ]


def cost_table(results: Results) -> Table:
    """:return: per task, the recorded runs' summed wall time and the shares of it spent evaluating and probing"""
    headers = ["task", "runs timed", "wall time", "mean per run", "evaluation (% of wall time)",
               "probe (% of wall time)"]
    rows = [["/".join(cost.task), str(cost.runs), _duration(cost.wall_time_s) if cost.runs else "-",
             _duration(cost.wall_time_s / cost.runs) if cost.runs else "-", _fmt(100 * cost.evaluation_share),
             _fmt(100 * cost.probe_share)] for cost in task_costs(results)]
    return headers, rows


def _answer(analysis: Analysis, declared: Declared) -> list[Block]:
    decided = [v for v in analysis.verdicts if v.verdict in (SUPPORTED, CONTRADICTED)]
    powerless = [v for v in analysis.verdicts if verdict_label(v).startswith("cannot")]
    sentences = [f"**{v.claim.name}** ({v.scope}): **{v.verdict}**, p (Holm) {_p(v.p_adjusted)}, {v.robust}."
                 for v in decided]
    summary = (f"{len(decided)} of {len(analysis.verdicts)} claim-scope verdicts are decided; "
               f"{len(powerless)} cannot be significant with their sample sizes; the rest are inconclusive, n/a or not "
               "measured (table below).")
    return [
        ("h2", "The answer"),
        ("p", f"Claims: {declared.source}. Each claim on each scope is one test of the primary family; Holm corrects "
              f"over its {analysis.primary_size} comparisons made. Supported or contradicted only when the adjusted "
              f"p-value is below {ALPHA} and the test statistic lies on the claimed (or the other) side; the rules "
              "are in the project's docs/method.md, \"Verdicts\". Verdicts do not depend on a random seed (the "
              f"bootstrap intervals, seed {analysis.seed}, do)."),
        ("p", summary),
        ("list", *sentences) if sentences else ("p", "No claim is supported or contradicted."),
        ("table", verdict_matrix(analysis)),
    ]


def _mechanism_sentences(analysis: Analysis) -> list[str]:
    sentences = []
    for ladder in analysis.ladders:
        for step, removed in zip(ladder.steps, ladder.removed, strict=True):
            if len(removed) != 1 or not step.test.made:
                continue
            name = MECHANISMS[removed]
            effect = {"X higher": f"removing ({removed}) {name} raises the return",
                      "X lower": f"removing ({removed}) {name} lowers the return: it helps here"}
            # Too few runs to decide is not "no effect": the sentence says which it is.
            undecided = outcome(step) if step.powerless else f"no effect of ({removed}) {name} shown"
            sentences.append(f"{'/'.join(ladder.task)} {ladder.norm}: {step.test.y} -> {step.test.x}: "
                             f"{effect.get(step.verdict, undecided)} "
                             f"({_natural(step)}, p (Holm, secondary) {_p(step.p_adjusted)})")
    return sentences


def report_blocks(results: Results, analysis: Analysis, declared: Declared, figures: list[Path],
                  out_dir: Path | None = None) -> list[Block]:
    """
    The report's content, in order, whatever its format: the answer and its figures, the verdicts in detail,
    return variance, the comparisons, the ladders and reference cells, then the appendix.

    :param results: the results
    :param analysis: what they show
    :param declared: the claims tested and where they come from
    :param figures: PNG files to show
    :param out_dir: where the report is written, for the command that regenerates it
    :return: the blocks
    """
    done, planned = sum(run.status == DONE for run in results.runs), results.planned_runs
    interim = f" (interim: {done} of {planned} runs finished)" if done < planned else ""
    blocks: list[Block] = [("h1", f"rlnorm report: {results.path.name}{interim}")]
    if results.notes:
        blocks += [("h2", "Notes"), ("list", *results.notes)]
    blocks += _answer(analysis, declared)
    first = [path for path in figures if path.stem in LEADING_FIGURES]
    blocks += [("figure", path, CAPTIONS.get(path.stem, "")) for path in first]
    blocks += [("h2", "Verdicts in detail"), ("table", verdict_table(analysis))]
    if analysis.aggregates:
        blocks += [("h2", "Across tasks"),
                   ("p", "Final returns normalized per task (a uniform-random policy 0, the reference 1), pooled over "
                         "the tasks each variant ran on; IQM with a stratified bootstrap CI (runs resampled within "
                         "each task), as rliable computes it."),
                   ("table", aggregate_table(analysis))]
    if analysis.dose:
        blocks += [("h2", "Noise dose-response"),
                   ("p", "Ghost batches dose minibatch noise alone: with k of them each training batch is split into k"
                         " parts, each normalized with its own statistics, so the noise grows about root-k fold while "
                         "the statistics stay those of current data (the project's docs/method.md, \"Ghost batches: a "
                         "noise dose\"); injected noise perturbs fixed or running statistics as a batch's own would "
                         "scatter, d times (\"Injected noise: a dose without batch statistics\"). Per dose of each "
                         "trend claim on final return: the relative probe noise measured (each run's median over its "
                         "probe points, averaged over runs: the noise it trained with); the noise the dose adds to one"
                         " network (at the first probe point, before any update, where the doses of a seed share their"
                         " network and states: the ratio to the first measured dose's, seed by seed, over the seeds "
                         "whose first points measured one network); and the final return and failure rate it led to. "
                         "The trend verdicts (exact Jonckheere-Terpstra) are above."),
                   ("table", dose_table(analysis))]
    if analysis.variance:
        blocks += [("h2", "Return variance"),
                   ("p", "Final returns of RL runs are often bimodal (seeds stuck at a floor, seeds at the ceiling), "
                         "where a standard deviation mixes how often a variant fails with how much its successes "
                         "vary. So: the failure rate, the spread among the runs that did not fail, the 90 % "
                         "inter-percentile range of all runs (IPR-90), and the within-run dispersion of normalized "
                         "curves, failing runs kept. Spreads are compared only among successes at overlapping "
                         "levels; the comparisons say so where they are not."),
                   ("table", scale_table(analysis)),
                   *([("list", *notes)] if (notes := threshold_notes(results, analysis)) else []),
                   ("table", variance_table(analysis))]
    parts = [d for v in analysis.verdicts for d in v.parts]
    if parts:
        blocks += [("h2", "Comparisons behind the verdicts (primary family)"), ("table", comparison_table(parts))]
    if analysis.ladders:
        blocks += [
            ("h2", "Mechanism ladders (secondary family)"),
            ("p", "Each rung removes mechanisms: sb3 (a+b+c) -> consistent (a+c) -> frozen (c) -> fixed (none), with "
                  "(a) minibatch noise, (b) the mode switch, (c) statistics chasing the policy's state distribution. "
                  "Each step compares the final return of the later rung (X) with the earlier one (Y), Holm over the "
                  f"{analysis.secondary_size} secondary comparisons. The consistent -> frozen step removes (a) but "
                  "also swaps the batch's statistics for lagging running ones, and a fixed-statistics layer is an "
                  "affine reparametrization, so 'fixed rescues' also reads 'no active normalization rescues' (the "
                  "project's docs/method.md, \"Mechanisms and norm modes\")."),
            ("list", *_mechanism_sentences(analysis)),
        ]
        for ladder in analysis.ladders:
            blocks += [("h3", f"{'/'.join(ladder.task)}: {ladder.norm}"), ("table", comparison_table(ladder.steps))]
    if analysis.references:
        blocks += [("h2", "Reference cells: batch statistics used as published (secondary family)"),
                   ("p", "CrossQ (Bhatt et al. 2024) is SAC with Batch Renorm in the critic and no target network; its "
                         "paper finds it beats SAC. Batch Renorm is plain BN during its warm-up (100,000 critic "
                         "updates by default), so a shorter run tests BN with a joint (s, a)/(s', a') batch instead "
                         "(the project's docs/method.md). Its final return (X) against SAC with no norm and with BN "
                         "(Y) on the same environment and budget."),
                   ("table", comparison_table(analysis.references))]
    if out_dir is not None:
        config = (results.study or {}).get("source")
        runs = f"the runs with `rlnorm study {config}` (it keeps finished runs), " if config else ""
        command = f"rlnorm report {results.path} --out {out_dir} --seed {analysis.seed}{_config_flag(declared)}"
        blocks.append(("p", f"To regenerate: {runs}this report with `{command}`."))
    blocks += setup_blocks(results)
    blocks += [("h2", "Appendix: per task and variant (finished runs)"), ("table", group_table(results)),
               ("h2", "Appendix: runs"), ("table", run_table(results)), ("h2", "Appendix: all figures")]
    return blocks + [("figure", path, CAPTIONS.get(path.stem, "")) for path in figures if path not in first]


LEADING_FIGURES = ("learning_curves", "aggregate", "performance_profile", "dose_response", "mechanism_curves")
"""The figures that carry the verdicts, shown right after the answer."""


def _config_flag(declared: Declared) -> str:
    return f" --config {declared.config}" if declared.config else ""


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


COMPARISON_COLUMNS = ("scope", "claim", "x", "y", "quantity", "n_x", "n_y", "effect", "ci_low", "ci_high", "test",
                      "margin", "p", "p_adjusted", "family", "verdict", "effect_name", "alternative_test",
                      "alternative_p", "reason")
"""One row per comparison. ``n_x``/``n_y`` are summed over the tasks of a pooled row; a trend's ``x`` is its variants
in order and ``n_x`` its runs. A part of a compound claim has the adjusted p-value it gets in its claim's place."""


def _number(value: float) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.6g}"


def write_csv(path: str | Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """:param path: the CSV file
    :param columns: its header
    :param rows: its rows
    :return: the file"""
    path = Path(path)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def write_comparisons(analysis: Analysis, path: str | Path) -> Path:
    """Write ``comparisons.csv``: every comparison of the report, as plain numbers.

    :param analysis: what the report shows
    :param path: the CSV file
    :return: the file
    """
    rows = []
    for d in analysis.comparisons:
        t = d.test
        n_x = sum(size[0] for size in t.sizes) if t.y else sum(sum(size) for size in t.sizes)
        n_y = sum(size[1] for size in t.sizes) if t.y and t.sizes and len(t.sizes[0]) > 1 else ""
        rows.append([
            t.scope, t.claim, t.x, t.y, t.quantity, n_x if t.sizes else "", n_y,
            *(_number(v) for v in (t.effect.value, t.effect.low, t.effect.high)), t.test,
            "" if t.margin is None else t.margin, _number(t.pvalue), _number(d.p_adjusted), d.family, d.verdict,
            t.effect_name, t.alternative_test, _number(t.alternative_p), t.reason or "",
        ])
    return write_csv(path, COMPARISON_COLUMNS, rows)


RUN_SUMMARY_COLUMNS = (
    "run", "algo", "env", "variant", "norm", "norm_mode", "norm_kwargs", "norm_in", "seed", "status",
    "ghost_batches", "injected_noise", "steps", "budget", *RunMetrics.__dataclass_fields__, "probe_noise", "probe_gap",
    "probe_relative_noise", "probe_layer_relative_noise", "probe_layer_noise_excess_kurtosis", "mode_mismatch",
    "mode_mismatch_max", "wall_time_s", "evaluation_s", "probe_s", "train_time_s", "hardware", "reason",
)
"""``probe_*`` are medians over probe points, averaged over networks (``Run.probe_median``), at the outputs or
(``probe_layer_*``) over every normalized layer; empty where undefined or not applicable (noise where the probe's
minibatch was its whole pool and no layer injected noise).
``mode_mismatch`` is the mean over updates of |r - 1| at PPO's first minibatch, ``mode_mismatch_max`` the largest
single |r - 1| of those minibatches; empty for runs that did not log it (algorithms other than PPO/A2C). With
injected noise it includes that noise: the train-mode pass draws it."""


def write_run_summary(results: Results, path: str | Path) -> Path:
    """Write one CSV row per run: its variant, status, the docs/method.md#metrics metrics, the probe, its times and
    the processor it ran on, as plain numbers (empty where undefined), for analysis elsewhere.

    :param results: the results
    :param path: the CSV file
    :return: the file
    """
    rows = []
    for run in results.runs:
        numbers = [
            *(getattr(run.metrics, name) for name in RunMetrics.__dataclass_fields__),
            run.probe_median("noise"),
            run.probe_median("gap"),
            run.probe_median("relative_noise"),
            run.probe_median("relative_noise", NORMALIZED_LAYERS),
            run.probe_median("noise_excess_kurtosis", NORMALIZED_LAYERS),
            run.mismatch.values.mean() if run.mismatch is not None and run.mismatch.values.size else math.nan,
            (run.mismatch_max.values.max()
             if run.mismatch_max is not None and run.mismatch_max.values.size else math.nan),
            run.wall_time_s,
            run.evaluation_s,
            run.probe_s,
            run.train_time_s,
        ]
        rows.append([
            run.run_id, run.algo, run.env_id, run.variant, run.norm, run.norm_mode,
            json.dumps(run.norm_kwargs, sort_keys=True), run.norm_in, run.seed, run.status,
            *noise_dose(run.norm_kwargs), int(run.steps[-1]) if run.steps.size else 0, run.budget,
            *(_number(value) for value in numbers), run.hardware, run.reason or "",
        ])
    return write_csv(path, RUN_SUMMARY_COLUMNS, rows)


def write_report(
    results: Results, out_dir: str | Path, config: str | Path | None = None, seed: int = 0
) -> tuple[Path, Path]:
    """
    Write the report: ``report.md`` with its figures in ``figures/`` (PNG and PDF), ``report.html`` (everything,
    figures embedded), ``comparisons.csv`` and ``runs.csv``. The random policy's returns are measured once and
    cached in the results directory (``random_returns.json``).

    :param results: the results
    :param out_dir: where to write, created if needed
    :param config: a study config whose ``claims`` and ``scores`` to use instead of the study's own
    :param seed: seed of the bootstrap intervals (the verdicts do not depend on it)
    :return: the Markdown and HTML files
    """
    out_dir = Path(out_dir)
    claims = declared(results, config)
    analysis = analyze(results, claims.claims, scales_of(results, claims.scores), seed)
    figures = [path for path in plot_study(results, out_dir / "figures", analysis) if path.suffix == ".png"]
    blocks = report_blocks(results, analysis, claims, figures, out_dir)
    write_run_summary(results, out_dir / "runs.csv")
    write_comparisons(analysis, out_dir / "comparisons.csv")
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text(to_markdown(blocks, out_dir))
    html_path.write_text(to_html(blocks))
    return md_path, html_path
