"""Figures of a study, as PNG and PDF, sized for a paper (7 in wide, 8 pt text).

Every figure has one panel per (algo, env) and one colour per variant, the same in all figures
(:func:`variant_colors`): each norm has its colour, and the variants of one norm (its modes, its
options) are shades of it. Aggregates use the finished runs only (:mod:`rlnorm.analysis.results` says why);
failed and unfinished runs appear in the learning curves as thin lines, a failure ending in a cross.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import zip_longest
from operator import attrgetter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a cluster node, and no window in tests

import matplotlib.pyplot as plt  # noqa: E402 (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import to_hex, to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from rlnorm.analysis import stats as st  # noqa: E402
from rlnorm.analysis.results import (  # noqa: E402
    BENCH_REFERENCE,
    CNN_BENCH_REFERENCE,
    DEFAULT_NORM_MODE,
    DONE,
    FAILED,
    NORM_MODES,
    OUTPUT_LAYER,
    RUNNING,
    Group,
    Results,
    Run,
    Series,
    learning_curve,
)
from rlnorm.analysis.verdicts import Analysis, DosePoint  # noqa: E402

WIDTH_IN = 7.0
"""A two-column paper's text width."""
PANEL_HEIGHT_IN = 2.2
MAX_COLUMNS = 3
MAX_CATEGORIES = 8
"""Labelled categories a panel a third of the page wide holds (rotated labels of up to ~15 characters)."""
STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 200,
}
NORM_COLORS = {
    "none": "#333333",
    "bn": "#d62728",
    "mobn": "#ff7f0e",
    "wn": "#1f77b4",
    "wn+mobn": "#9467bd",
    "ln": "#2ca02c",
    "brn": "#8c564b",
    "rms": "#17becf",
    "sn": "#e377c2",
    "pnorm": "#bcbd22",
}
EXTRA_COLORS = ["#7f7f7f", "#aec7e8", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d"]
SHADES = (0.0, 0.4, -0.35, 0.65, -0.55)
"""How far the n-th variant of a norm moves from the norm's colour: toward white (> 0) or black (< 0);
a norm with more variants than this spreads them evenly over the same range instead."""
LINE_STYLES = ("-", "--", ":", "-.")
MODE_STYLES = dict(zip(NORM_MODES, LINE_STYLES, strict=True))
"""Line style of each norm mode in the learning curves: the ladder's rungs differ by style, not only by shade."""

CAPTIONS = {
    "learning_curves": "Evaluation return over training: IQM of the finished runs with its 95 % bootstrap CI; "
    "thin lines are failed (ending in x) or unfinished runs.",
    "mechanism_curves": "Learning curves of the variants beside the core norms, per task and norm, with none's: "
    "its modes (line style: sb3 solid, consistent dashed, frozen dotted, fixed dash-dot) and its option sweeps.",
    "final_returns": "Final return (mean of the last 3 evaluations) of every finished run (points), with the IQM "
    "and its 95 % CI (diamond); under a variant with unfinished or failed runs, its runs by status.",
    "dispersion": "Level and dispersion side by side, per norm (SB3 mode, default options): final IQM, across-seed "
    "standard deviation of the final return, and within-run dispersion (IQR of the curve's slopes / range), each "
    "with a 95 % bootstrap CI.",
    "improvement": "Probability of improvement P(row > column) of the final return between the norms (SB3 mode, "
    "default options), over pairs of finished runs; the mechanism ladder compares the other variants.",
    "compute_cost": "Training wall time of each run (evaluation excluded; points) and the variant's median (bar). "
    "Runs share the machine, so use `rlnorm bench` for precise ratios.",
    "bench_cost": "Training throughput relative to SB3's MlpPolicy in the bench record (`rlnorm bench --out`): "
    "one point per paired repeat, the median as the bar; 1 = as fast as plain SB3.",
    "probe_noise": "Minibatch noise at the networks' outputs over training (docs/method.md#the-noise-probe), "
    "per norm (SB3 mode, default options), mean over runs; line style per network; symmetric log scale where "
    "values span orders of magnitude.",
    "probe_gap": "Train/eval gap at the networks' outputs over training, per norm (SB3 mode, default options), "
    "mean over runs; line style per network.",
    "mode_mismatch": "PPO/A2C mode mismatch: |r - 1| of the probability ratio at the first minibatch of each "
    "update, before any step; mean (solid) and max (dashed), averaged over runs.",
    "aggregate": "Final return normalized per task (uniform-random policy 0, reference 1), IQM over the runs of every "
    "task a variant ran on, with a 95 % stratified bootstrap CI (rliable's aggregate).",
    "performance_profile": "Performance profile: the fraction of runs whose normalized final return exceeds tau, "
    "averaged over the tasks a variant ran on (rliable's score distribution); higher and further right is better.",
    "dose_response": "Noise dose-response: final return (IQM, 95 % CI) of each dose of a trend claim against its "
    "measured noise (log axis, 95 % CI), joined in dose order. Left, the noise the dose adds to one network: at the "
    "first probe point, before any update, over the chain's first dose with the same seed (mean over seeds); "
    "right, the relative probe noise the runs trained with (each run's median over its probe points, mean over "
    "runs). The legend names each chain by its first variant, the labels the others by what their names add; one "
    "row per task.",
    "statistics_drift": "Relative change of the running statistics between probe points, mean over runs; "
    "line style per network.",
}
"""What each figure shows, by file name (the report prints these under the figures)."""


def plot_study(results: Results, out_dir: str | Path, analysis: Analysis | None = None) -> list[Path]:
    """
    Draw every figure the results have data for.

    :param results: the study's results
    :param out_dir: where to write them, created if needed
    :param analysis: what the report concludes, for the figures of normalized scores and of the noise dose
    :return: the files written, a PNG and a PDF per figure
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    colors = variant_colors(results)
    figures: dict[str, Callable[[Results, dict[str, str]], Figure | None]] = {
        "learning_curves": plot_learning_curves,
        "mechanism_curves": plot_mechanism_curves,
        "final_returns": plot_final_returns,
        "dispersion": plot_dispersion,
        "improvement": plot_improvement,
        "compute_cost": plot_compute_cost,
        "bench_cost": plot_bench_cost,
        "cnn_cost": plot_cnn_cost,
        "probe_noise": lambda r, c: plot_series(r, c, _probe_series("noise"), "minibatch noise", core_only=True),
        "probe_gap": lambda r, c: plot_series(r, c, _probe_series("gap"), "train/eval gap", core_only=True),
        "mode_mismatch": lambda r, c: plot_series(r, c, _mismatch_series, "|r - 1| at first minibatch"),
        "statistics_drift": lambda r, c: plot_series(r, c, _drift_series, "running-statistics drift"),
    }
    if analysis is not None:
        figures["aggregate"] = lambda r, c: plot_aggregate(analysis, c)
        figures["performance_profile"] = lambda r, c: plot_performance_profile(analysis, c)
        figures["dose_response"] = lambda r, c: plot_dose_response(analysis, c)
    paths = []
    with plt.rc_context(STYLE):
        for name, draw in figures.items():
            figure = draw(results, colors)
            if figure is not None:
                paths += save(figure, out_dir / name)
    return paths


def save(figure: Figure, stem: Path) -> list[Path]:
    """
    Write a figure as PNG and PDF, and close it.

    :param figure: the figure
    :param stem: the path without suffix
    :return: the two files
    """
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for path in paths:
        # Without a creation date, the same records give the same PDF bytes (a regenerated report diffs clean).
        metadata = {"CreationDate": None} if path.suffix == ".pdf" else None
        figure.savefig(path, bbox_inches="tight", metadata=metadata)  # the whole legend, however many variants
    plt.close(figure)
    return paths


# ----------------------------------------------------------------------------------------------- colours


def variant_colors(results: Results) -> dict[str, str]:
    """
    One colour per variant for every figure: the norm's colour for its first variant (SB3 mode, study
    order), lighter or darker shades of it for its other variants.

    :param results: the study's results
    :return: variant name -> hex colour
    """
    colors: dict[str, str] = {}
    extra = iter(EXTRA_COLORS * (1 + len(results.groups) // len(EXTRA_COLORS)))
    by_norm: dict[str, list[Group]] = {}
    for group in results.groups:
        if group.variant not in [g.variant for g in by_norm.get(group.norm, [])]:
            by_norm.setdefault(group.norm, []).append(group)
    for norm, groups in by_norm.items():
        base = NORM_COLORS.get(norm) or next(extra)
        ordered = sorted(groups, key=lambda g: NORM_MODES.index(g.norm_mode) if g.norm_mode in NORM_MODES else 4)
        amounts = SHADES if len(ordered) <= len(SHADES) else _spread_shades(len(ordered))
        for group, amount in zip(ordered, amounts, strict=False):
            colors[group.variant] = shade(base, amount)
    return colors


def _spread_shades(n: int) -> list[float]:
    """:return: ``n`` distinct shade amounts: the norm's own colour (0), then lighter and darker ones spaced
    evenly up to the lightest and darkest of :data:`SHADES`, alternating"""
    lighter = np.linspace(0, max(SHADES), n // 2 + 1)[1:]
    darker = np.linspace(0, min(SHADES), (n - 1) - n // 2 + 1)[1:]
    return [0.0, *(float(a) for pair in zip_longest(lighter, darker) for a in pair if a is not None)]


def shade(color: str, amount: float) -> str:
    """:param color: a matplotlib colour
    :param amount: in [-1, 1]: toward white when positive, toward black when negative
    :return: the shaded colour, as hex"""
    rgb = np.array(to_rgb(color))
    target = 1.0 if amount > 0 else 0.0
    return to_hex(rgb + (target - rgb) * abs(amount))


def _legend(figure: Figure, colors: dict[str, str], variants: list[str], extra: list[Line2D] = (),
            styles: dict[str, str] | None = None) -> None:
    handles = [Line2D([], [], color=colors[v], marker="o", markersize=4, label=v, ls=(styles or {}).get(v, "-"))
               for v in variants]
    handles += list(extra)
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), frameon=False)


# ----------------------------------------------------------------------------------------------- layout


def _panels(tasks: Sequence[object], columns: int | None = None, categories: int = 0) -> tuple[Figure, list[Axes]]:
    """A figure with one panel per task or other item (or per item x column when ``columns`` is given);
    panels with more than :data:`MAX_CATEGORIES` categories on their x axis take the full width."""
    if columns is None:
        ncols = 1 if categories > MAX_CATEGORIES else min(len(tasks), MAX_COLUMNS)
        nrows = math.ceil(len(tasks) / ncols)
    else:
        ncols, nrows = columns, len(tasks)
    figure, axes = plt.subplots(
        nrows, ncols, figsize=(WIDTH_IN, PANEL_HEIGHT_IN * nrows + 0.5), layout="constrained", squeeze=False
    )
    flat = list(axes.flat)
    for unused in flat[len(tasks) * (columns or 1) :]:
        unused.set_visible(False)
    return figure, flat


ALGORITHM_NAMES = {"crossq": "CrossQ"}
"""How a panel title writes an algorithm whose name is not an acronym (the others are upper-cased)."""


def _title(task: tuple[str, str]) -> str:
    return f"{ALGORITHM_NAMES.get(task[0], task[0].upper())} {task[1]}"


def _category_axis(ax: Axes, labels: list[str]) -> None:
    ax.set_xticks(range(len(labels)), labels, rotation=30 if max(map(len, labels)) > 6 else 0, ha="right")
    ax.set_xlim(-0.5, len(labels) - 0.5)  # a lone category keeps its width


def _interval(estimate: st.Estimate) -> list[list[float]] | None:
    """:return: the estimate's CI as matplotlib's error-bar lengths, None when it is unknown (one run)"""
    if math.isnan(estimate.low):
        return None
    return [[estimate.value - estimate.low], [estimate.high - estimate.value]]


def _errorbar(ax: Axes, x: float, estimate: st.Estimate, color: str, marker: str = "o") -> None:
    """A point with its CI; a point alone when the interval is unknown (one run)."""
    if math.isnan(estimate.value):
        return
    ax.errorbar([x], [estimate.value], yerr=_interval(estimate), color=color, marker=marker, markersize=5, capsize=3,
                lw=1.2)


# ----------------------------------------------------------------------------------------------- figures


def is_core(group: Group) -> bool:
    """:return: whether a variant is a norm as SB3 runs it (mode sb3, default options): the variants the
    learning curves compare; the others (modes, option sweeps) are drawn by norm in the mechanism curves"""
    return group.norm_mode == DEFAULT_NORM_MODE and not group.norm_kwargs


def plot_learning_curves(results: Results, colors: dict[str, str]) -> Figure | None:
    """
    Learning curves per task of the core variants (:func:`is_core`): IQM and 95 % CI band of each
    variant's finished runs; failed and unfinished runs as thin lines.

    :param results: the study's results
    :param colors: variant -> colour
    :return: the figure, None where no task ran a core variant
    """
    cores = [(task, [g for g in results.groups_of(task) if is_core(g)]) for task in results.tasks]
    panels = [(task, groups) for task, groups in cores if groups]
    if not panels:
        return None
    return _curve_panels(results, colors, [(_title(task), groups) for task, groups in panels])


def plot_mechanism_curves(results: Results, colors: dict[str, str]) -> Figure | None:
    """
    Learning curves of the variants that are not core, beside none's curve on their task: per task and
    norm, one panel of its modes (default options), and one of its option sweeps beside the same mode
    with default options.

    :param results: the study's results
    :param colors: variant -> colour
    :return: the figure, or None if every variant is core
    """
    panels = []
    for task in results.tasks:
        groups = results.groups_of(task)
        baseline = [g for g in groups if g.variant == "none"]
        for norm in dict.fromkeys(g.norm for g in groups if not is_core(g)):
            modes = [g for g in groups if g.norm == norm and not g.norm_kwargs]
            swept = [g for g in groups if g.norm == norm and g.norm_kwargs]
            if len(modes) > 1:
                panels.append((f"{_title(task)}: {norm}", baseline + modes))
            if swept:
                options = ", ".join(sorted({key for g in swept for key in g.norm_kwargs}))
                defaults = [g for g in modes if g.norm_mode in {s.norm_mode for s in swept}]
                panels.append((f"{_title(task)}: {norm}, {options}", baseline + defaults + swept))
    return _curve_panels(results, colors, panels) if panels else None


def _curve_panels(results: Results, colors: dict[str, str], panels: list[tuple[str, list[Group]]]) -> Figure:
    figure, axes = _panels([title for title, _ in panels])
    for ax, (title, groups) in zip(axes, panels, strict=False):
        for group in groups:
            color = colors[group.variant]
            band = learning_curve(group)
            if band is not None:
                ax.plot(band.steps, band.value, color=color, lw=1.5, ls=MODE_STYLES.get(group.norm_mode, "-"))
                ax.fill_between(band.steps, band.low, band.high, color=color, alpha=0.2, lw=0)
            for run in group.runs:
                if run.status != DONE and run.steps.size:
                    ax.plot(run.steps, run.returns, color=color, lw=0.6, alpha=0.6)
                    if run.status == FAILED:
                        ax.plot(run.steps[-1], run.returns[-1], "x", color=color, markersize=6)
        ax.set(title=title, xlabel="environment steps", ylabel="return")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
    shown = list(dict.fromkeys(g.variant for _, groups in panels for g in groups))
    runs = [run for _, groups in panels for g in groups for run in g.runs]
    partial = [Line2D([], [], color="grey", lw=0.6, alpha=0.6, label="unfinished / failed (x) run")]
    styles = {g.variant: MODE_STYLES.get(g.norm_mode, "-") for _, groups in panels for g in groups}
    _legend(figure, colors, shown, partial if any(r.status != DONE for r in runs) else [], styles)
    return figure


def _status_label(group: Group) -> str:
    if group.count(DONE) == len(group.runs):
        return group.variant
    counts = [f"{group.count(status)} {status}" for status in (DONE, FAILED, RUNNING) if group.count(status)]
    return group.variant + "\n" + ", ".join(counts)


def _most_groups(results: Results) -> int:
    return max(len(results.groups_of(task)) for task in results.tasks)


def plot_final_returns(results: Results, colors: dict[str, str]) -> Figure:
    """
    Final return of every finished run per variant (jittered points) with the IQM and its CI.

    :param results: the study's results
    :param colors: variant -> colour
    :return: the figure
    """
    figure, axes = _panels(results.tasks, categories=_most_groups(results))
    jitter = np.random.default_rng(0)
    for ax, task in zip(axes, results.tasks, strict=False):
        groups = results.groups_of(task)
        for x, group in enumerate(groups):
            finals = group.finals()
            offsets = jitter.uniform(-0.15, 0.15, finals.size)
            ax.scatter(x + offsets, finals, s=12, color=colors[group.variant], alpha=0.6, lw=0)
            _errorbar(ax, x + 0.3, group.final_iqm, colors[group.variant], marker="D")
        _category_axis(ax, [_status_label(group) for group in groups])
        ax.set(title=_title(task), ylabel="final return")
    return figure


DISPERSION_COLUMNS = (
    ("final IQM", lambda group: group.final_iqm),
    ("across-seed std of final", lambda group: group.final_std),
    ("within-run dispersion", lambda group: group.within_run_dispersion),
)


def plot_dispersion(results: Results, colors: dict[str, str]) -> Figure | None:
    """
    Per task, three panels side by side: the level (final IQM), the across-seed standard deviation and
    the within-run dispersion, each per core variant (:func:`is_core`) with its CI (docs/method.md#verdicts: never
    variance alone).

    :param results: the study's results
    :param colors: variant -> colour
    :return: the figure, None where no task ran a core variant
    """
    cores = [(task, [g for g in results.groups_of(task) if is_core(g)]) for task in results.tasks]
    panels = [(task, groups) for task, groups in cores if groups]
    if not panels:
        return None
    figure, axes = _panels([task for task, _ in panels], columns=len(DISPERSION_COLUMNS))
    for row, (task, groups) in enumerate(panels):
        for column, (label, estimate) in enumerate(DISPERSION_COLUMNS):
            ax = axes[row * len(DISPERSION_COLUMNS) + column]
            for x, group in enumerate(groups):
                _errorbar(ax, x, estimate(group), colors[group.variant])
            _category_axis(ax, [group.variant for group in groups])
            ax.set(title=f"{_title(task)}: {label}" if column == 0 else label)
    return figure


def plot_improvement(results: Results, colors: dict[str, str]) -> Figure | None:
    """
    Probability-of-improvement matrix per task, between its core variants (:func:`is_core`; the mechanism
    ladder compares the others): P(final of a row variant's run > a column variant's run).

    :param results: the study's results
    :param colors: variant -> colour (the tick labels take them)
    :return: the figure, None when no task has two variants with finished runs
    """
    compared = {task: [g for g in results.groups_of(task) if is_core(g) and g.finals().size] for task in results.tasks}
    tasks = [task for task, groups in compared.items() if len(groups) > 1]
    if not tasks:
        return None
    figure, axes = _panels(tasks)
    image = None
    for ax, task in zip(axes, tasks, strict=False):
        groups = compared[task]
        matrix = np.array([[_probability(row, column) for column in groups] for row in groups])
        image = ax.imshow(matrix, cmap="RdBu", vmin=0, vmax=1)
        for (i, j), value in np.ndenumerate(matrix):
            if i != j:
                # White on the dark ends of the colour map, black in its light middle.
                color = "white" if abs(value - 0.5) > 0.3 else "black"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6, color=color)
        names = [group.variant for group in groups]
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        for label in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
            label.set_color(colors[label.get_text()])
        ax.set(title=_title(task), xlabel="Y", ylabel="X")
        ax.spines[:].set_visible(False)
    figure.colorbar(image, ax=axes[: len(tasks)], label="P(X > Y)", shrink=0.8)
    return figure


def _probability(x: Group, y: Group) -> float:
    if x is y:
        return math.nan
    return float(st.probability_greater_along(x.finals(), y.finals(), axis=0))


def plot_compute_cost(results: Results, colors: dict[str, str]) -> Figure | None:
    """
    Training wall time per run (points) and per variant (bar: the median), per task.

    :param results: the study's results
    :param colors: variant -> colour
    :return: the figure, None when no run finished
    """
    if not any(group.finished for group in results.groups):
        return None
    figure, axes = _panels(results.tasks, categories=_most_groups(results))
    for ax, task in zip(axes, results.tasks, strict=False):
        groups = results.groups_of(task)
        for x, group in enumerate(groups):
            times = group.values(lambda run: run.train_time_s)
            # The median: a run slowed by other load on the machine moves its point, not the bar.
            ax.bar(x, np.median(times) if times.size else np.nan, color=colors[group.variant], alpha=0.35, width=0.6)
            ax.scatter(np.full(times.size, x), times, s=12, color=colors[group.variant], zorder=3)
        _category_axis(ax, [group.variant for group in groups])
        ax.set(title=_title(task), ylabel="training time per run (s)")
    return figure


def plot_bench_cost(results: Results, colors: dict[str, str]) -> Figure | None:
    """
    Training throughput of each variant relative to SB3's ``MlpPolicy``, per task of the bench record.

    :param results: the study's results (its bench record)
    :param colors: variant -> colour (a norm's colour, grey for plain SB3)
    :return: the figure, None without a bench record that timed the reference
    """
    timed = {
        task: record
        for task, record in (results.bench or {}).get("training_time_s", {}).items()
        if BENCH_REFERENCE in record["times"]
    }
    if not timed:
        return None
    figure, axes = _panels(list(timed))
    for ax, (task, record) in zip(axes, timed.items(), strict=False):
        times = {name: np.asarray(values, float) for name, values in record["times"].items()}
        reference = times.pop(BENCH_REFERENCE)
        for x, (name, values) in enumerate(times.items()):
            ratios = reference / values  # paired: the same repeat's reference
            color = _color(name, colors)
            ax.bar(x, np.median(ratios), color=color, alpha=0.35, width=0.6)
            ax.scatter(np.full(ratios.size, x), ratios, s=12, color=color, zorder=3)
        ax.axhline(1.0, color="black", lw=0.6, ls=":")
        _category_axis(ax, list(times))
        algo, env_id = task.split("/", 1)
        ax.set(title=f"{_title((algo, env_id))}, {record['timesteps']} steps", ylabel=f"throughput / {BENCH_REFERENCE}")
    return figure


def plot_cnn_cost(results: Results, colors: dict[str, str]) -> Figure | None:
    """
    The bench's convolutional part: each norm's train-mode time relative to none against activations per weight
    (NatureCNN's convolutions over batch sizes; dashed: its FLOPs relative to the convolutions'), and each
    workload's speed relative to SB3's ``CnnPolicy``.

    :param results: the study's results (its bench record)
    :param colors: variant -> colour
    :return: the figure, None without a convolutional bench
    """
    bench = results.bench or {}
    sweep = bench.get("conv_sweep", [])
    workloads = {name: record["times"] for name, record in bench.get("cnn_time_s", {}).items()
                 if CNN_BENCH_REFERENCE in record["times"]}
    panels = [draw for draw, data in ((_sweep_panel, sweep), (_workloads_panel, workloads)) if data]
    if not panels:
        return None
    figure, axes = _panels(panels)
    for ax, draw in zip(axes, panels, strict=True):
        draw(ax, sweep if draw is _sweep_panel else workloads, colors)
    return figure


def _color(variant: str, colors: dict[str, str]) -> str:
    return colors.get(variant) or NORM_COLORS.get(variant, EXTRA_COLORS[0])


def _sweep_panel(ax: Axes, sweep: list[dict], colors: dict[str, str]) -> None:
    ratio = [point["activations"] / point["weights"] for point in sweep]
    for norm in sweep[0]["times"]:
        # Paired: each repeat's time over the same repeat's none.
        cost = [np.median(np.asarray(point["times"][norm]) / np.asarray(point["times"]["none"])) for point in sweep]
        ax.plot(ratio, cost, color=_color(norm, colors), marker="o", markersize=3, label=norm)
        ax.plot(ratio, [1 + point["norm_flops"][norm] for point in sweep], color=_color(norm, colors), ls="--",
                lw=0.8)
    ax.axhline(1.0, color="black", lw=0.6, ls=":")
    ax.set(xscale="log", xlabel="activations / weights", ylabel="time / none (train mode)",
           title="NatureCNN convolutions (dashed: FLOPs)")
    ax.legend(ncols=2)


def _workloads_panel(ax: Axes, workloads: dict[str, dict[str, list[float]]], colors: dict[str, str]) -> None:
    for x, times in enumerate(workloads.values()):
        reference = np.asarray(times[CNN_BENCH_REFERENCE], float)
        variants = [variant for variant in times if variant != CNN_BENCH_REFERENCE]
        for offset, variant in enumerate(variants):
            speed = reference / np.asarray(times[variant], float)  # paired by repeat
            position = x + (offset - (len(variants) - 1) / 2) * 0.8 / len(variants)
            ax.scatter(np.full(speed.size, position), speed, s=4, color=_color(variant, colors), alpha=0.4)
            ax.scatter([position], [np.median(speed)], s=14, color=_color(variant, colors), marker="D", zorder=3)
    ax.axhline(1.0, color="black", lw=0.6, ls=":")
    _category_axis(ax, [name.replace("/", " ") for name in workloads])
    ax.set(ylabel=f"speed / {CNN_BENCH_REFERENCE}", title="workloads (diamond: median)")


# ----------------------------------------------------------------------------------------------- series


SeriesOf = Callable[[Run], dict[str, Series]]
"""The curves a run logs, by label (network name, or mean/max)."""


def _by_network(records: list, value: Callable[[object], float]) -> dict[str, Series]:
    """Split probe or drift records into one curve per network."""
    networks = dict.fromkeys(record.network for record in records)
    return {
        network: Series(
            np.array([record.timesteps for record in records if record.network == network]),
            np.array([value(record) for record in records if record.network == network]),
        )
        for network in networks
    }


def _probe_series(quantity: str) -> SeriesOf:
    return lambda run: _by_network(
        [record for record in run.probe if record.layer == OUTPUT_LAYER], attrgetter(quantity)
    )


def _mismatch_series(run: Run) -> dict[str, Series]:
    return {} if run.mismatch is None else {"mean": run.mismatch, "max": run.mismatch_max}


def _drift_series(run: Run) -> dict[str, Series]:
    return _by_network(list(run.drift), attrgetter("drift"))


def _scale_to_spread(ax: Axes, values: np.ndarray) -> None:
    """Symmetric log scale when the non-zero values span more than two orders of magnitude (zeros stay
    visible on it, unlike on a log scale)."""
    magnitudes = np.abs(values[np.isfinite(values) & (values != 0)])
    if magnitudes.size and magnitudes.max() > 100 * magnitudes.min():
        ax.set_yscale("symlog", linthresh=10 ** np.floor(np.log10(magnitudes.min())))


def mean_over_runs(curves: list[Series]) -> Series:
    """
    Average curves logged by several runs at each step, over the runs that have that step (a run still
    going contributes its first steps) and a value there (nan: undefined, left out).

    :param curves: one curve per run
    :return: the mean curve, nan (a gap) where no run has a value
    """
    by_step: dict[int, list[float]] = {}
    for curve in curves:
        for step, value in zip(curve.steps.tolist(), curve.values.tolist(), strict=True):
            by_step.setdefault(step, []).append(value)
    steps = sorted(by_step)
    means = [np.mean(defined) if (defined := [v for v in by_step[step] if not math.isnan(v)]) else math.nan
             for step in steps]
    return Series(np.array(steps), np.array(means))


def plot_series(
    results: Results, colors: dict[str, str], series_of: SeriesOf, ylabel: str, core_only: bool = False
) -> Figure | None:
    """
    A quantity logged over training, per task with data: one line per variant and label, averaged over
    the variant's runs; colour by variant, line style by label. Values spanning more than two orders of
    magnitude get a symmetric log scale, so that small ones are not flattened to zero.

    :param results: the study's results
    :param colors: variant -> colour
    :param series_of: the curves of one run, by label
    :param ylabel: what the quantity is
    :param core_only: draw only the core variants (:func:`is_core`)
    :return: the figure, None when no run logged it
    """
    groups = [group for group in results.groups if is_core(group) or not core_only]
    tasks = [task for task in results.tasks if any(series_of(run) for g in groups if g.task == task for run in g.runs)]
    if not tasks:
        return None
    figure, axes = _panels(tasks)
    labels: list[str] = []
    for ax, task in zip(axes, tasks, strict=False):
        drawn = []
        for group in (group for group in groups if group.task == task):
            by_label: dict[str, list[Series]] = {}
            for run in group.runs:
                for label, curve in series_of(run).items():
                    by_label.setdefault(label, []).append(curve)
            for label, curves in by_label.items():
                labels += [label] if label not in labels else []
                mean = mean_over_runs(curves)
                style = LINE_STYLES[labels.index(label) % len(LINE_STYLES)]
                ax.plot(mean.steps, mean.values, color=colors[group.variant], ls=style, lw=1.2)
                drawn.append(mean.values)
        _scale_to_spread(ax, np.concatenate(drawn) if drawn else np.array([]))
        ax.set(title=_title(task), xlabel="environment steps", ylabel=ylabel)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
    styles = [
        Line2D([], [], color="grey", ls=LINE_STYLES[i % len(LINE_STYLES)], label=label)
        for i, label in enumerate(labels)
    ]
    variants = list(dict.fromkeys(group.variant for group in groups if group.task in tasks))
    _legend(figure, colors, variants, styles)
    return figure


# ----------------------------------------------------------------------------------------------- normalized


def plot_aggregate(analysis: Analysis, colors: dict[str, str]) -> Figure | None:
    """
    IQM of normalized final returns per variant across tasks, with its stratified CI.

    :param analysis: the report's analysis
    :param colors: variant -> colour
    :return: the figure, None without normalized scores
    """
    rows = list(analysis.aggregates)
    if not rows:
        return None
    figure, ax = plt.subplots(figsize=(WIDTH_IN / 2, 0.25 * len(rows) + 1.0), layout="constrained")
    for i, row in enumerate(rows):
        ax.errorbar([row.iqm.value], [i], xerr=_interval(row.iqm), color=colors.get(row.variant, "grey"), marker="o",
                    markersize=4, capsize=2, lw=1.2)
    ax.set_yticks(range(len(rows)), [f"{r.variant} ({len(r.tasks)})" for r in rows])
    ax.invert_yaxis()
    ax.axvline(1.0, color="grey", lw=0.6, ls=":")
    ax.set(xlabel="IQM of normalized final return (tasks)")
    return figure


def plot_performance_profile(analysis: Analysis, colors: dict[str, str]) -> Figure | None:
    """
    Fraction of runs above each normalized score, averaged over tasks, per variant (rliable's profile).

    :param analysis: the report's analysis
    :param colors: variant -> colour
    :return: the figure, None without normalized scores
    """
    rows = [row for row in analysis.aggregates if sum(s.size for s in row.scores) > 1]
    if not rows:
        return None
    every = np.concatenate([s for row in rows for s in row.scores])
    taus = np.linspace(min(0.0, float(every.min())), max(1.0, float(every.max())), 201)
    figure, ax = plt.subplots(figsize=(WIDTH_IN / 2, 2.6), layout="constrained")
    for row in rows:
        profile = np.mean([np.mean(scores[:, None] > taus[None, :], axis=0) for scores in row.scores], axis=0)
        ax.plot(taus, profile, color=colors.get(row.variant, "grey"), lw=1.2, label=row.variant)
    ax.set(xlabel="normalized final return tau", ylabel="fraction of runs > tau", ylim=(0, 1.02))
    ax.legend(fontsize=6, frameon=False, ncol=2)
    return figure


def plot_dose_response(analysis: Analysis, colors: dict[str, str]) -> Figure | None:
    """
    Final return against the measured noise along each trend claim's variants, per task, on two panels: the
    noise each dose adds to one network (at the first probe point, over the chain's first measured dose's) and the
    relative probe noise the runs trained with (their medians over training).

    :param analysis: the report's analysis (its dose-response points)
    :param colors: variant -> colour
    :return: the figure, None without a trend claim that ran
    """
    tasks = list(dict.fromkeys(point.task for point in analysis.dose))
    if not tasks:
        return None
    figure, axes = _panels(tasks, columns=2)
    for row, task in enumerate(tasks):
        chains = [[point for point in analysis.dose if point.task == task and point.chain == chain]
                  for chain in dict.fromkeys(point.chain for point in analysis.dose if point.task == task)]
        added, trained = axes[2 * row], axes[2 * row + 1]
        # The first dose's own ratio is 1 by definition: a chain is drawn where another dose paired with it.
        paired = [points for points in chains if any(not math.isnan(p.added_noise.value) for p in points[1:])]
        _dose_panel(added, paired, colors, lambda point: point.added_noise)
        added.set(title=f"{_title(task)}: noise the dose adds", ylabel="final return",
                  xlabel="noise at the first probe point / the first measured dose's (same seed)")
        if not added.lines:
            added.text(0.5, 0.5, "not measured: no seed's doses shared\ntheir network at the first probe point",
                       transform=added.transAxes, ha="center", va="center", fontsize=6)
        _dose_panel(trained, chains, colors, lambda point: point.relative_noise)
        trained.set(title=f"{_title(task)}: noise the runs trained with", ylabel="final return",
                    xlabel="relative probe noise (median over training)")
    return figure


def _dose_panel(ax: Axes, chains: list[list[DosePoint]], colors: dict[str, str],
                noise_of: Callable[[DosePoint], st.Estimate]) -> None:
    """Each chain's doses at (noise, final return IQM) with their CIs, joined in dose order; doses whose noise
    was not measured are left out."""
    lows: list[float] = []
    highs: list[float] = []
    for points in chains:
        chain, color = points[0].chain, colors.get(points[0].chain[0], "grey")
        drawn = [point for point in points if not math.isnan(noise_of(point).value)]
        for point in drawn:
            noise, level = noise_of(point), point.final
            ax.errorbar([noise.value], [level.value], xerr=_interval(noise), yerr=_interval(level), color=color,
                        marker="o", markersize=4, capsize=2, lw=1, label=chain[0] if point is drawn[0] else None)
            # The chain is in the legend; a point names only what sets it apart from the chain's first.
            dose = point.variant.removeprefix(chain[0]).lstrip("-") if point.variant != chain[0] else ""
            ax.annotate(dose, (noise.value, level.value), fontsize=5, xytext=(3, 3), textcoords="offset points")
            lows.append(noise.value if math.isnan(noise.low) else noise.low)
            highs.append(noise.value if math.isnan(noise.high) else noise.high)
        if len(drawn) > 1:
            ax.plot([noise_of(p).value for p in drawn], [p.final.value for p in drawn], color=color, lw=0.8, ls=":")
    # Ghost batches multiply the noise (about root-k fold): a log axis spaces the doses evenly.
    if lows and min(lows) > 0:
        ax.set_xscale("log")
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        ax.xaxis.set_major_formatter(plain)
        if max(highs) < 10 * min(lows):  # less than a decade: label the 2, 3, ... ticks too
            ax.xaxis.set_minor_formatter(plain)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, frameon=False)
