"""Read a results directory into tidy tables: one record per run, one aggregate per (algo, env, variant).

A results directory is what :func:`rlnorm.study.study.run_study` writes: ``<algo>/<env>/<variant>/seed-<seed>/``
run directories (their files are listed in :mod:`rlnorm.study.run`), and ``study.json``. Each run is read
whatever state it is in: ``done`` (``done.json``), ``failed`` (``failed.json``) or ``running`` (neither: still
going, or interrupted), with the evaluations it got to. Only finished runs enter the aggregates and the
comparisons: a failed or unfinished run's curve stops early, and its "final" return would be another
quantity; they are listed, counted per group, and drawn apart in the figures.

Bad input, decided here once so every consumer behaves the same:

- a directory holding no run directory raises :class:`ResultsError` (one line);
- finished runs of one task evaluated at different steps (another budget or evaluation schedule) are
  read, and a note says so; curves are aggregated per variant on the steps its runs share. When they
  also end at different steps their final returns measure different budgets, so the task is marked
  incomparable (:attr:`Results.incomparable`) and the report makes no comparison on it;
- a study with one variant gets a note (nothing to compare); its per-run tables are still made.

This module and the ones after it (plots, report) use numpy, scipy and matplotlib only, never torch.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlnorm.analysis import metrics
from rlnorm.analysis import stats as st
from rlnorm.study.records import NORM_MODES, OUTPUT_LAYER

NORMALIZED_LAYERS = "layers"
"""Every normalized layer of a network, for :meth:`Run.probe_median`."""

DONE, FAILED, RUNNING = "done", "failed", "running"
DEFAULT_NORM_MODE = NORM_MODES[0]
UNDEFINED_DRIFT = 1e9
"""A recorded drift this large is a change relative to all-zero statistics, which has no size (read as nan)."""
BENCH_RECORD = "bench.json"
"""``rlnorm bench --out``'s record of paired training times, read from a results directory for "WN is cheaper to
compute than BN"."""
BENCH_REFERENCE = "MlpPolicy"
"""What the bench's throughputs are relative to: SB3's own policy."""
CNN_BENCH_REFERENCE = "CnnPolicy"
"""What the bench's convolutional workloads are timed against: SB3's own policy for images."""
FINAL_POINTS = 3
"""Evaluation points averaged into the final return (docs/method.md#metrics)."""
BOOTSTRAP_SEED = 0
"""Seed of every bootstrap here, so that the same results directory always gives the same intervals."""


class ResultsError(ValueError):
    """The directory cannot be read as results; the message is one line saying why."""


@dataclass(frozen=True)
class Series:
    """A quantity logged over training.

    :param steps: environment steps, increasing
    :param values: the value at each step
    """

    steps: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class ProbeRecord:
    """One row of ``probe.csv``: the noise probe on one network (or layer) at one evaluation point.

    :param timesteps: environment step of the measurement
    :param network: actor, value, q or critic
    :param layer: ``output`` for the network's output, else the module name of a normalized layer
    :param noise: minibatch noise, in the output's units (docs/method.md#the-noise-probe)
    :param gap: train/eval gap
    :param relative_noise: the noise over the output's spread across probe states (scale-free)
    :param noise_excess_kurtosis: the noise's excess kurtosis, 0 for Gaussian noise
    :param batch_size: the B probed at (0 in records written before it was recorded)
    :param pool_size: the states the minibatches came from (0 likewise); equal to ``batch_size``, every draw
        is the same batch and the noise is 0 by construction, unless a layer injected noise
    """

    timesteps: int
    network: str
    layer: str
    noise: float
    gap: float
    relative_noise: float = math.nan
    noise_excess_kurtosis: float = math.nan
    batch_size: int = 0
    pool_size: int = 0

    @property
    def noise_not_applicable(self) -> bool:
        """Whether the minibatch was the whole pool and nothing else varied between draws: every draw the same
        batch, no noise by construction (a layer that injects noise makes some)."""
        return self.batch_size > 0 and self.batch_size == self.pool_size and self.noise == 0


@dataclass(frozen=True)
class DriftRecord:
    """One row of ``statistics.csv``: how far a network's running statistics moved since the last point.

    :param timesteps: environment step
    :param network: the network
    :param drift: relative L2 change of the running statistics since the previous evaluation point
    """

    timesteps: int
    network: str
    drift: float


@dataclass(frozen=True)
class RunMetrics:
    """The per-run metrics of docs/method.md#metrics; nan where the curve is too short (or flat) to define them."""

    final: float
    auc: float
    within_run_dispersion: float
    short_term_risk: float
    long_term_risk: float
    eval_spread: float


@dataclass(frozen=True)
class Run:
    """One run directory, read.

    :param run_id: ``<algo>/<env>/<variant>/seed-<seed>``
    :param path: its directory
    :param algo: algorithm
    :param env_id: environment id
    :param variant: variant name
    :param norm: norm name (the variant name when the run has no config yet)
    :param norm_mode: sb3, consistent, frozen or fixed
    :param norm_kwargs: the norm's options
    :param norm_in: the networks that have the norm
    :param seed: training seed
    :param budget: training steps asked for (0 if unknown)
    :param status: done, failed or running
    :param reason: why it failed
    :param steps: environment step of each evaluation so far
    :param returns: mean return of each evaluation
    :param episodes: the evaluation episodes' returns, (evaluations, episodes)
    :param metrics: metrics of the curve
    :param wall_time_s: seconds from start to the record (nan while running)
    :param evaluation_s: seconds of it spent evaluating (nan if unknown)
    :param probe_s: seconds of it spent probing the minibatch noise (nan if unknown)
    :param host: the machine it ran on
    :param hardware: its processor, cores and memory
    :param peak_memory_mib: peak resident memory of its worker
    :param versions: package versions
    :param mismatch: PPO/A2C's mean |r - 1| at the first minibatch of each update (None if not logged)
    :param mismatch_max: the max |r - 1| of the same minibatches
    :param probe: rows of ``probe.csv``
    :param drift: rows of ``statistics.csv``
    :param config: the content of ``config.json`` (empty if the run failed before writing it)
    """

    run_id: str
    path: Path
    algo: str
    env_id: str
    variant: str
    norm: str
    norm_mode: str
    norm_kwargs: dict[str, Any]
    norm_in: str
    seed: int
    budget: int
    status: str
    reason: str | None
    steps: np.ndarray
    returns: np.ndarray
    episodes: np.ndarray
    metrics: RunMetrics
    wall_time_s: float = math.nan
    evaluation_s: float = math.nan
    probe_s: float = math.nan
    host: str = ""
    hardware: str = ""
    peak_memory_mib: float = math.nan
    versions: dict[str, str] = field(default_factory=dict)
    mismatch: Series | None = None
    mismatch_max: Series | None = None
    probe: tuple[ProbeRecord, ...] = ()
    drift: tuple[DriftRecord, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> tuple[str, str]:
        """:return: (algo, env_id)"""
        return self.algo, self.env_id

    @property
    def train_time_s(self) -> float:
        """:return: wall time minus the time spent evaluating: the cost of training with the norm"""
        return self.wall_time_s - (0.0 if math.isnan(self.evaluation_s) else self.evaluation_s)

    def probe_median(self, quantity: str = "noise", layer: str = OUTPUT_LAYER) -> float:
        """
        The probe's level over training, one number per run: per (network, layer) series the median over its
        probe points, averaged over the series.

        A median, not a mean: a single probe point can outweigh the rest. A run's first point can come before
        any update, when BN's running statistics still hold their initial values, so the eval-mode spread that
        scales the relative noise is not the data's (DQN CartPole bn: 3.0 there on average, a median of 0.2 later);
        and where a Q-function is nearly flat across states, its relative noise at one point can reach 60. With
        3 or more points, a ``fixed`` variant's one noisy point (its first update) leaves its level at 0 (without
        injected noise).

        Not applicable is not zero: where the probe's minibatch was its whole pool (PPO's zoo CartPole, whose
        minibatch is the whole rollout), every draw is the same batch, so the noise quantities are 0 by
        construction and are left out (nan when nothing else is left), unless a layer injected noise, which is
        then measured; the gap is still measured there.

        :param quantity: a field of :class:`ProbeRecord`: ``noise``, ``gap``, ``relative_noise`` or
            ``noise_excess_kurtosis``
        :param layer: ``output``, a normalized layer's module name, or :data:`NORMALIZED_LAYERS` for all of them
        :return: the mean over series of their medians over defined values, nan without any
        """
        series = self._probe_series(quantity, layer)
        return float(np.mean([np.median(values) for values in series.values()])) if series else math.nan

    def probe_first(self, quantity: str = "noise", layer: str = OUTPUT_LAYER) -> float:
        """
        The probe at the run's first probe point, averaged over networks (and layers). Where that point comes
        before any update (PPO/A2C: the first rollout; off-policy: when ``learning_starts`` is at least the batch
        size), runs that differ only in how they train, such as ghost-batch doses, measure one network there,
        seed by seed: acting is in eval mode and off-policy runs act at random until updates begin.

        :param quantity: a field of :class:`ProbeRecord`
        :param layer: ``output``, a normalized layer's module name, or :data:`NORMALIZED_LAYERS`
        :return: the mean over series of their values at the run's earliest probe step; nan where none is defined
            there (a whole-pool point's noise, say), never a later point's
        """
        if self.first_probe_step is None:
            return math.nan
        series = self._probe_series(quantity, layer, at=self.first_probe_step)
        return float(np.mean([values[0] for values in series.values()])) if series else math.nan

    @property
    def first_probe_step(self) -> int | None:
        """:return: the environment step of the run's first probe point, None without a probe"""
        return min((record.timesteps for record in self.probe), default=None)

    def _probe_series(self, quantity: str, layer: str, at: int | None = None) -> dict[tuple[str, str], list[float]]:
        """:return: per (network, layer) asked for, the defined values of ``quantity`` in step order (or at step
        ``at`` only)"""
        every_layer = layer == NORMALIZED_LAYERS
        records = [r for r in self.probe if (r.layer != OUTPUT_LAYER if every_layer else r.layer == layer)
                   and (at is None or r.timesteps == at)]
        if quantity != "gap":
            records = [r for r in records if not r.noise_not_applicable]
        series: dict[tuple[str, str], list[float]] = {}
        for record in sorted(records, key=lambda r: r.timesteps):
            value = getattr(record, quantity)
            if not math.isnan(value):
                series.setdefault((record.network, record.layer), []).append(value)
        return series


def _of_its_runs(name: str) -> property:
    """:return: a read-only attribute of a :class:`Group`: its runs' ``name``, which they share"""
    return property(lambda group: getattr(group.runs[0], name), doc=f"the runs' {name}")


@dataclass(frozen=True)
class Group:
    """The runs of one variant on one task, and their across-seed aggregates (finished runs only).

    Estimates are nan when no finished run has the metric; interval bounds are nan with a single run. The
    task and variant (``algo``, ``env_id``, ``variant``, ``norm``, ``norm_mode``, ``norm_kwargs``,
    ``norm_in``) are its runs'.

    :param runs: all its runs, by seed (at least one)
    :param final_iqm: IQM of the final returns, 95 % bootstrap CI
    :param final_mean: mean of the final returns, 95 % bootstrap CI
    :param final_std: across-seed standard deviation of the final returns, 95 % bootstrap CI
    :param final_iqr: interquartile range of the final returns
    :param final_cvar: CVaR_0.05 of the final returns (the worst run for fewer than 20)
    :param auc: mean AUC, 95 % CI
    :param within_run_dispersion: mean within-run dispersion, 95 % CI
    :param short_term_risk: mean short-term risk
    :param long_term_risk: mean long-term risk
    :param eval_spread: mean eval-episode spread
    :param probe_noise: the runs' median minibatch noise at the networks' outputs over training, their mean, 95 %
        CI
    :param probe_gap: the runs' median train/eval gap at the outputs, their mean, 95 % CI
    :param train_time_s: mean training wall time per run (evaluation excluded), 95 % CI
    """

    runs: tuple[Run, ...]
    final_iqm: st.Estimate
    final_mean: st.Estimate
    final_std: st.Estimate
    final_iqr: float
    final_cvar: float
    auc: st.Estimate
    within_run_dispersion: st.Estimate
    short_term_risk: float
    long_term_risk: float
    eval_spread: float
    probe_noise: st.Estimate
    probe_gap: st.Estimate
    train_time_s: st.Estimate

    algo = _of_its_runs("algo")
    env_id = _of_its_runs("env_id")
    variant = _of_its_runs("variant")
    norm = _of_its_runs("norm")
    norm_mode = _of_its_runs("norm_mode")
    norm_kwargs = _of_its_runs("norm_kwargs")
    norm_in = _of_its_runs("norm_in")

    @property
    def task(self) -> tuple[str, str]:
        """:return: (algo, env_id)"""
        return self.algo, self.env_id

    @property
    def finished(self) -> tuple[Run, ...]:
        """:return: the runs that are done"""
        return tuple(run for run in self.runs if run.status == DONE)

    def count(self, status: str) -> int:
        """:param status: done, failed or running
        :return: how many runs have it"""
        return sum(run.status == status for run in self.runs)

    def values(self, per_run: Callable[[Run], float]) -> np.ndarray:
        """:param per_run: a number of one run
        :return: that number for each finished run, nan values dropped"""
        return finished_values(self.runs, per_run)

    def finals(self) -> np.ndarray:
        """:return: the final return of each finished run"""
        return self.values(lambda run: run.metrics.final)


@dataclass(frozen=True)
class Results:
    """A results directory, read.

    :param path: the directory
    :param runs: every run, ordered by task, variant and seed
    :param groups: one per (algo, env, variant) with runs, in the same order
    :param notes: what a reader must know before trusting a comparison (one line each)
    :param incomparable: tasks whose finished runs end at different steps: no comparisons on them
    :param study: the content of ``study.json`` (None if absent)
    :param bench: the content of :data:`BENCH_RECORD` (None if absent)
    """

    path: Path
    runs: tuple[Run, ...]
    groups: tuple[Group, ...]
    notes: tuple[str, ...]
    incomparable: frozenset[tuple[str, str]]
    study: dict[str, Any] | None
    bench: dict[str, Any] | None = None

    @property
    def tasks(self) -> list[tuple[str, str]]:
        """:return: the (algo, env) pairs, in study order"""
        return list(dict.fromkeys(group.task for group in self.groups))

    @property
    def variants(self) -> list[str]:
        """:return: every variant name, in study order"""
        return list(dict.fromkeys(group.variant for group in self.groups))

    @property
    def planned_runs(self) -> int:
        """:return: the runs the study config plans (``study.json``), or the runs found without one"""
        return max(len(self.runs), _planned_runs(self.study) if self.study is not None else 0)

    def groups_of(self, task: tuple[str, str]) -> list[Group]:
        """:param task: (algo, env)
        :return: its groups, in variant order"""
        return [group for group in self.groups if group.task == task]

    def group(self, task: tuple[str, str], variant: str) -> Group | None:
        """:param task: (algo, env)
        :param variant: variant name
        :return: the group, None if the task has no run of that variant"""
        return next((group for group in self.groups_of(task) if group.variant == variant), None)

    def canonical(self, task: tuple[str, str], norm: str, mode: str = DEFAULT_NORM_MODE) -> Group | None:
        """
        The variant that stands for a norm in a mode on a task, for the claims: the one named after the
        norm (SB3 mode) or ``<norm>-<mode>``, else the only one with that norm and mode, default options and
        the norm in both networks.

        :param task: (algo, env)
        :param norm: norm name
        :param mode: norm mode
        :return: the group, None if there is none or no single one
        """
        groups = [group for group in self.groups_of(task) if group.norm == norm and group.norm_mode == mode]
        names = (norm, f"{norm}-{mode}") if mode == DEFAULT_NORM_MODE else (f"{norm}-{mode}",)
        named = [group for group in groups if group.variant in names]
        plain = [group for group in groups if not group.norm_kwargs and group.norm_in == "both"]
        return named[0] if named else plain[0] if len(plain) == 1 else None

    def probe_table(self) -> list[dict[str, Any]]:
        """:return: tidy probe rows, one per (run, timesteps, network, layer)"""
        return [{**_run_keys(run), **vars(record)} for run in self.runs for record in run.probe]

    def drift_table(self) -> list[dict[str, Any]]:
        """:return: tidy drift rows, one per (run, timesteps, network)"""
        return [{**_run_keys(run), **vars(record)} for run in self.runs for record in run.drift]

    def mismatch_table(self) -> list[dict[str, Any]]:
        """:return: tidy mode-mismatch rows, one per (run, update) of the PPO/A2C runs that logged it"""
        return [
            {**_run_keys(run), "timesteps": int(step), "mismatch": float(mean), "mismatch_max": float(peak)}
            for run in self.runs
            if run.mismatch is not None and run.mismatch_max is not None
            for step, mean, peak in zip(run.mismatch.steps, run.mismatch.values, run.mismatch_max.values, strict=True)
        ]


@dataclass(frozen=True)
class TaskCost:
    """What a task's recorded runs cost.

    :param task: (algo, env)
    :param runs: runs with a wall time
    :param wall_time_s: their summed wall time
    :param evaluation_share: the fraction of it spent evaluating, over the runs that recorded it (nan if none did)
    :param probe_share: the fraction spent probing, likewise
    """

    task: tuple[str, str]
    runs: int
    wall_time_s: float
    evaluation_share: float
    probe_share: float


def task_costs(results: Results) -> list[TaskCost]:
    """:return: per task, its runs' summed wall time and the shares spent evaluating and probing (what a study's
    evaluation and probe intervals cost)"""
    costs = []
    for task in results.tasks:
        timed = [run for run in results.runs if run.task == task and not math.isnan(run.wall_time_s)]
        costs.append(TaskCost(task, len(timed), sum(run.wall_time_s for run in timed),
                              _share_of_wall_time(timed, lambda run: run.evaluation_s),
                              _share_of_wall_time(timed, lambda run: run.probe_s)))
    return costs


def _share_of_wall_time(runs: list[Run], part: Callable[[Run], float]) -> float:
    """:return: the seconds ``part`` gives over the wall time of the runs that recorded it (nan if none did)"""
    known = [run for run in runs if not math.isnan(part(run))]
    total = sum(run.wall_time_s for run in known)
    return sum(part(run) for run in known) / total if known and total > 0 else math.nan


def _run_keys(run: Run) -> dict[str, Any]:
    return {"algo": run.algo, "env_id": run.env_id, "variant": run.variant, "seed": run.seed}


# ----------------------------------------------------------------------------------------------- reading


def load_results(path: str | Path) -> Results:
    """
    Read a results directory: every run in it, whatever its state, with metrics and aggregates.

    :param path: the study's output directory
    :return: the results
    :raises ResultsError: if the directory does not exist or holds no run directory
    """
    path = Path(path)
    if not path.is_dir():
        raise ResultsError(f"{path} is not a directory; give a study's output directory")
    if (path / "config.json").exists() and path.name.startswith("seed-"):
        raise ResultsError(f"{path} is one run's directory; give the study's output directory ({path.parents[3]})")
    run_dirs = sorted(directory for directory in path.glob("*/*/*/seed-*") if directory.is_dir())
    if not run_dirs:
        raise ResultsError(f"{path} is not a results directory: no <algo>/<env>/<variant>/seed-<n> run directory in it")
    study = _read_json(path / "study.json")
    runs = sorted((read_run(directory, path) for directory in run_dirs), key=_order(study))
    groups = tuple(
        summarize([run for run in runs if (run.task, run.variant) == key])
        for key in dict.fromkeys((run.task, run.variant) for run in runs)
    )
    notes, incomparable = _check(runs, groups, study)
    bench = _read_bench(path / BENCH_RECORD)
    return Results(path, tuple(runs), groups, tuple(notes), frozenset(incomparable), study, bench)


def _order(study: dict[str, Any] | None) -> Callable[[Run], tuple]:
    """Sort runs as the study config lists tasks and variants (then by name), with none first otherwise."""
    tasks = [(task["algo"], task["env_id"]) for task in (study or {}).get("tasks", [])]
    variants = [variant["name"] for variant in (study or {}).get("variants", [])]

    def position(items: list, item: Any) -> int:
        return items.index(item) if item in items else len(items)

    return lambda run: (
        position(tasks, run.task),
        run.task,
        position(variants, run.variant),
        run.variant != "none",
        run.variant,
        run.seed,
    )


def read_run(directory: Path, root: Path) -> Run:
    """
    Read one run directory, in any state.

    :param directory: the run's directory
    :param root: the results directory (for the run id)
    :return: the run
    """
    algo, env_dir, variant_name, seed_dir = directory.relative_to(root).parts
    config = _read_json(directory / "config.json") or {}
    spec = config.get("run", {})
    # The directory writes an env id's "/" as "-" (MinAtar/Breakout-v1 -> MinAtar-Breakout-v1): the id is the config's.
    env_id = spec.get("env_id", env_dir)
    variant = spec.get("variant", {})
    done, failed = _read_json(directory / "done.json"), _read_json(directory / "failed.json")
    record = done or failed or {}
    steps, episodes = read_evaluations(directory)
    returns = episodes.mean(axis=1) if episodes.size else np.zeros(0)
    mismatch = _read_columns(directory / "progress.csv", "time/total_timesteps", "train/mode_mismatch")
    mismatch_max = _read_columns(directory / "progress.csv", "time/total_timesteps", "train/mode_mismatch_max")
    return Run(
        run_id=f"{algo}/{env_dir}/{variant_name}/{seed_dir}",
        path=directory,
        algo=algo,
        env_id=env_id,
        variant=variant_name,
        norm=variant.get("norm", variant_name),
        norm_mode=variant.get("norm_mode") or DEFAULT_NORM_MODE,
        norm_kwargs=variant.get("norm_kwargs", {}),
        norm_in=variant.get("norm_in", "both"),
        seed=int(spec.get("seed", seed_dir.removeprefix("seed-"))),
        budget=int(spec.get("timesteps", 0)),
        status=DONE if done is not None else FAILED if failed is not None else RUNNING,
        reason=None if failed is None else failed.get("reason", "unknown"),
        steps=steps,
        returns=returns,
        episodes=episodes,
        metrics=run_metrics(steps, episodes),
        wall_time_s=float(record.get("wall_time_s", math.nan)),
        evaluation_s=float(record.get("evaluation_s", math.nan)),
        probe_s=float(record.get("probe_s", math.nan)),
        host=record.get("host", ""),
        hardware=record.get("hardware", ""),
        peak_memory_mib=float(record.get("peak_memory_mib", math.nan)),
        versions=record.get("versions", {}),
        mismatch=mismatch,
        mismatch_max=mismatch_max,
        probe=tuple(_probe_record(row) for row in _read_csv(directory / "probe.csv")),
        drift=tuple(
            DriftRecord(int(row["timesteps"]), row["network"], _defined_drift(float(row["drift"])))
            for row in _read_csv(directory / "statistics.csv")
        ),
        config=config,
    )


def _probe_record(row: dict[str, str]) -> ProbeRecord:
    # Records written before the scale-free probe lack its columns.
    return ProbeRecord(
        int(row["timesteps"]), row["network"], row["layer"], float(row["noise"]), float(row["gap"]),
        relative_noise=float(row.get("relative_noise", math.nan)),
        noise_excess_kurtosis=float(row.get("noise_excess_kurtosis", math.nan)),
        batch_size=int(row.get("batch_size", 0)),
        pool_size=int(row.get("pool_size", 0)),
    )


def read_evaluations(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    """
    The evaluations of a run from ``evaluations.csv``, which is written as the run goes (``evaluations.npz``
    only at the end), so it also holds the evaluations of failed and running runs.

    :param directory: the run's directory
    :return: the steps (n,) and the episode returns (n, episodes); an evaluation cut short by an
        interruption (fewer episodes than the others) is dropped
    """
    by_step: dict[int, list[float]] = {}
    for row in _read_csv(directory / "evaluations.csv"):
        by_step.setdefault(int(row["timesteps"]), []).append(float(row["return"]))
    if not by_step:
        return np.zeros(0, dtype=int), np.zeros((0, 0))
    episodes = max(len(values) for values in by_step.values())
    complete = {step: values for step, values in by_step.items() if len(values) == episodes}
    return np.array(list(complete), dtype=int), np.array(list(complete.values()))


def run_metrics(steps: np.ndarray, episodes: np.ndarray) -> RunMetrics:
    """
    The docs/method.md#metrics metrics of one curve; each is nan when the curve has fewer points than it needs.

    :param steps: evaluation steps
    :param episodes: episode returns, (evaluations, episodes)
    :return: the metrics
    """
    n = len(steps)
    returns = episodes.mean(axis=1) if n else np.zeros(0)

    def when(minimum: int, compute: Callable[[], float]) -> float:
        return compute() if n >= minimum else math.nan

    return RunMetrics(
        final=when(FINAL_POINTS, lambda: metrics.final_return(returns, FINAL_POINTS)),
        auc=when(1, lambda: metrics.auc(returns)),
        within_run_dispersion=when(
            metrics.DEFAULT_DISPERSION_WINDOW + 1, lambda: metrics.within_run_dispersion(steps, returns)
        ),
        short_term_risk=when(2, lambda: metrics.short_term_risk(steps, returns)),
        long_term_risk=when(2, lambda: metrics.long_term_risk(returns)),
        eval_spread=when(1, lambda: float(np.mean(metrics.eval_episode_spread(episodes)))),
    )


def _defined_drift(value: float) -> float:
    # Records written before rlnorm.core.probe.statistics_drift returned nan for all-zero statistics hold
    # ‖Δ‖/1e-12 there (>= 1e9 for any visible change): undefined, like the nan written now.
    return math.nan if value >= UNDEFINED_DRIFT else value


def _read_bench(path: Path) -> dict[str, Any] | None:
    bench = _read_json(path)
    if bench is None:
        return None

    def timed(part: Any) -> bool:
        return isinstance(part, dict) and all(
            isinstance(task, dict) and isinstance(task.get("times"), dict)
            and all(isinstance(times, list) for times in task["times"].values())
            for task in part.values())

    if not (isinstance(bench, dict) and timed(bench.get("training_time_s")) and timed(bench.get("cnn_time_s", {}))):
        raise ResultsError(
            f"{path} is not a bench record: expected training_time_s: {{algo/env: {{timesteps, times: {{variant: "
            "[seconds, ...]}}} (and cnn_time_s: {workload: {times: ...}}), as `rlnorm bench --out` writes it"
        )
    return bench


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ResultsError(f"{path} is not valid JSON: {error}") from None


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as file:
        # A run killed mid-write can leave a last line cut short: keep the complete rows only.
        return [row for row in csv.DictReader(file) if None not in row.values() and "" not in row.values()]


def _read_columns(path: Path, x: str, y: str) -> Series | None:
    """Two columns of an SB3 logger CSV, on the rows where both are set (SB3 leaves the others empty)."""
    if not path.exists():
        return None
    with open(path, newline="") as file:
        pairs = [(row.get(x), row.get(y)) for row in csv.DictReader(file)]
    pairs = [(float(a), float(b)) for a, b in pairs if a and b]
    if not pairs:
        return None
    steps, values = np.array(pairs).T
    return Series(steps.astype(int), values)


# ----------------------------------------------------------------------------------------------- aggregates

NO_ESTIMATE = st.Estimate(math.nan, math.nan, math.nan)


def finished_values(runs: tuple[Run, ...] | list[Run], per_run: Callable[[Run], float]) -> np.ndarray:
    """
    :param runs: runs of any status
    :param per_run: a number of one run
    :return: that number for each finished run, nan values (metrics a curve cannot define) dropped
    """
    values = np.array([per_run(run) for run in runs if run.status == DONE], dtype=float)
    return values[np.isfinite(values)]


def std_ci(values: np.ndarray) -> st.Estimate:
    """
    Across-seed standard deviation (ddof=1) with a 95 % percentile bootstrap CI.

    :param values: one number per run
    :return: the estimate; nan with fewer than two runs
    """
    if values.size < 2:
        return NO_ESTIMATE
    return st.bootstrap_ci([values], lambda sample, axis: np.std(sample, ddof=1, axis=axis), rng=BOOTSTRAP_SEED)


def _ci(values: np.ndarray, estimator: Callable[..., st.Estimate]) -> st.Estimate:
    if values.size == 0:
        return NO_ESTIMATE
    return estimator(values, rng=BOOTSTRAP_SEED)


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else math.nan


def summarize(runs: list[Run]) -> Group:
    """
    Aggregate the runs of one (algo, env, variant) across seeds.

    :param runs: its runs, at least one
    :return: the group
    """
    def values(per_run: Callable[[Run], float]) -> np.ndarray:
        return finished_values(runs, per_run)

    finals = values(lambda run: run.metrics.final)
    return Group(
        runs=tuple(runs),
        final_iqm=_ci(finals, st.iqm_ci),
        final_mean=_ci(finals, st.mean_ci),
        final_std=std_ci(finals),
        final_iqr=st.iqr(finals) if finals.size else math.nan,
        final_cvar=st.cvar(finals) if finals.size else math.nan,
        auc=_ci(values(lambda run: run.metrics.auc), st.mean_ci),
        within_run_dispersion=_ci(values(lambda run: run.metrics.within_run_dispersion), st.mean_ci),
        short_term_risk=_mean(values(lambda run: run.metrics.short_term_risk)),
        long_term_risk=_mean(values(lambda run: run.metrics.long_term_risk)),
        eval_spread=_mean(values(lambda run: run.metrics.eval_spread)),
        probe_noise=_ci(values(lambda run: run.probe_median("noise")), st.mean_ci),
        probe_gap=_ci(values(lambda run: run.probe_median("gap")), st.mean_ci),
        train_time_s=_ci(values(lambda run: run.train_time_s), st.mean_ci),
    )


@dataclass(frozen=True)
class Band:
    """An aggregate over runs at each evaluation step, with its 95 % CI.

    :param steps: environment steps
    :param value: the aggregate at each step
    :param low: lower bound
    :param high: upper bound
    """

    steps: np.ndarray
    value: np.ndarray
    low: np.ndarray
    high: np.ndarray


def learning_curve(group: Group, aggregate: st.Aggregate = "iqm") -> Band | None:
    """
    The group's learning curve: IQM (or mean) of its finished runs' returns at each evaluation step they
    all share, with 95 % percentile bootstrap CIs.

    :param group: the runs of one variant on one task
    :param aggregate: "iqm" or "mean"
    :return: the band, None without finished runs
    """
    runs = group.finished
    if not runs:
        return None
    shared = sorted(set.intersection(*(set(run.steps.tolist()) for run in runs)))
    curves = np.array([[run.returns[run.steps.tolist().index(step)] for step in shared] for run in runs])
    estimates = [
        st.stratified_ci([curves[:, i]], aggregate, n_resamples=500, rng=BOOTSTRAP_SEED) for i in range(len(shared))
    ]
    value, low, high = (np.array([getattr(e, name) for e in estimates]) for name in ("value", "low", "high"))
    return Band(np.array(shared), value, low, high)


def _planned_runs(study: dict[str, Any]) -> int:
    return sum(
        len(task["seeds"]) * len(task.get("variants", study.get("variants", []))) for task in study.get("tasks", [])
    )


def _check(
    runs: list[Run], groups: tuple[Group, ...], study: dict[str, Any] | None
) -> tuple[list[str], set[tuple[str, str]]]:
    """The notes a reader needs before any comparison, and the tasks on which finals are not comparable."""
    notes = []
    variants = list(dict.fromkeys(run.variant for run in runs))
    if len(variants) == 1:
        notes.append(f"the study has one variant ({variants[0]}): nothing to compare; the tables describe its runs")
    for status, meaning in ((FAILED, "failed"), (RUNNING, "are running or were interrupted")):
        ids = [run.run_id for run in runs if run.status == status]
        if ids:
            notes.append(
                f"{len(ids)} run(s) {meaning} ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''}): "
                "listed with their status, left out of aggregates and comparisons"
            )
    if study is not None:
        expected = _planned_runs(study)
        if expected > len(runs):
            notes.append(f"{expected - len(runs)} run(s) of the study config have not started")
    incomparable = set()
    for task in dict.fromkeys(run.task for run in runs):
        finished = [run for run in runs if run.task == task and run.status == DONE]
        grids = {tuple(run.steps.tolist()) for run in finished}
        name = "/".join(task)
        if len(variants) > 1 and len({group.variant for group in groups if group.task == task}) == 1:
            notes.append(f"{name} has one variant: no comparison between its variants")
        if len(grids) > 1:
            ends = sorted({grid[-1] for grid in grids if grid})
            notes.append(
                f"{name}: finished runs were evaluated at {len(grids)} different step schedules; curves are "
                "aggregated on the steps each variant's runs share"
                + (
                    f", and runs end at different steps ({ends}): their finals measure different budgets, so "
                    "no comparison is made on this task"
                    if len(ends) > 1
                    else ""
                )
            )
            if len(ends) > 1:
                incomparable.add(task)
    return notes, incomparable
