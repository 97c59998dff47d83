"""Benchmark of the study runner: overhead over bare SB3, speed-up of 2 workers over 1, memory per worker.

    python -m rlnorm.study.bench_runner [--runs 16] [--timesteps N] [--repeats 2] [--config configs/quick.yaml]

The runs are equal: the config's first task (PPO CartPole-v1 for quick.yaml) with norm none, its budget
(or ``--timesteps``) and its evaluation settings, one seed each. The default of 16 runs is what each of
quick.yaml's 2 workers does (30 runs), so a worker's start is spread over as many runs as in the study.
Measured on the same runs:

- the runner's overhead per run, paired: in one fresh process prepared as a worker is, each run is done
  bare (build the model and ``model.learn``: no evaluation, no files) and by :func:`rlnorm.study.run.run_one`
  (evaluation, probe, files), back to back, in alternating order; the median over runs of the ratio.
  Pairs, because this virtual machine's speed drifts by 10-20 % over minutes: two blocks of the same 16
  runs, one bare and one through the runner, differed by more than the overhead being measured;
- a worker's start (spawn, imports): the 1-worker runner's time less the time spent inside its runs;
- the runner with 1 and 2 workers: :func:`rlnorm.study.executors.run_local` over ``run_one``, as a study runs
  them, each the best of ``--repeats`` (other load only ever slows a measurement down);
- the machine: two processes of pure Python against one, which is the most 2 workers can gain here (a
  virtual machine's 2 cores may not be 2 free cores).

Targets: the runner <= 10 % slower than bare; 2 workers >= 1.8x faster than 1; peak memory
<= 1 GiB per worker (each run's ``done.json`` records its worker's).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from rlnorm.study.agents import load_agent
from rlnorm.study.bench import silent_logger
from rlnorm.study.config import RunSpec, load_study, single_run
from rlnorm.study.executors import run_local
from rlnorm.study.run import build_model, make_env, prepare_process, run_one

# Relative to the working directory, not to this file: an installed package has no configs/ beside it.
QUICK = Path("configs") / "quick.yaml"


def bench_specs(config: Path, runs: int, timesteps: int | None = None) -> list[RunSpec]:
    """:return: ``runs`` equal runs: the config's first task with norm none, seeds 0..runs-1"""
    task = load_study(config).tasks[0]
    budget = timesteps or task.timesteps
    return [single_run(task.algo, task.env_id, "none", seed, budget, eval_settings=task.eval) for seed in range(runs)]


@dataclass(frozen=True)
class PairedTimes:
    """Seconds per run, measured in pairs: ``bare[i]``, ``runner[i]`` and ``evaluation[i]`` (the part of
    ``runner[i]`` spent evaluating) are the same run done both ways."""

    bare: np.ndarray
    runner: np.ndarray
    evaluation: np.ndarray


def time_paired(specs: list[RunSpec]) -> PairedTimes:
    """:return: each run's time bare and through ``run_one``, back to back in a fresh process prepared as a
    worker is (its start not timed), so that a pair differs only by what the runner adds"""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_time_paired_here, specs).result()


def _time_paired_here(specs: list[RunSpec]) -> PairedTimes:
    prepare_process()
    bare, runner, evaluation = [], [], []
    with tempfile.TemporaryDirectory() as out:
        for index, spec in enumerate(specs):
            timed_bare = partial(_timed, partial(_learn_bare, spec))
            timed_runner = partial(_timed, partial(run_one, spec, Path(out) / spec.run_id))
            # Alternate which goes first, so that neither side always follows the other.
            if index % 2 == 0:
                bare.append(timed_bare())
                runner.append(timed_runner())
            else:
                runner.append(timed_runner())
                bare.append(timed_bare())
            record = json.loads((Path(out) / spec.run_id / "done.json").read_text())
            evaluation.append(record["evaluation_s"])
    return PairedTimes(np.array(bare), np.array(runner), np.array(evaluation))


def _learn_bare(spec: RunSpec) -> None:
    agent = load_agent(spec.algo, spec.env_id)
    model = build_model(spec, agent, make_env(agent, agent.n_envs))
    model.set_logger(silent_logger())
    model.learn(total_timesteps=spec.timesteps)


def time_runner(specs: list[RunSpec], workers: int) -> tuple[float, float, float]:
    """:return: seconds for the runner to do the runs with ``workers`` processes, seconds spent inside the
    runs (summed over runs), and the largest peak memory of a worker in MiB"""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        results = list(run_local([partial(run_one, spec, Path(out) / spec.run_id) for spec in specs], workers))
        elapsed = time.perf_counter() - start
        failed = [result for result in results if not result.ok]
        if failed:
            raise RuntimeError(f"{failed[0].run_id} failed: {failed[0].reason}")
        records = [json.loads((Path(out) / spec.run_id / "done.json").read_text()) for spec in specs]
    inside_runs = sum(record["wall_time_s"] for record in records)
    return elapsed, inside_runs, max(record["peak_memory_mib"] for record in records)


def machine_speedup(iterations: int = 20_000_000) -> float:
    """:return: how much faster 2 processes of pure Python do twice the work of 1 (2.0 on 2 free cores)"""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_spin_for, [0, 0]))  # start both processes before timing
        one = _timed(lambda: list(pool.map(_spin_for, [iterations])))
        two = _timed(lambda: list(pool.map(_spin_for, [iterations, iterations])))
    return 2 * one / two


def _spin_for(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i
    return total


def _timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


@dataclass(frozen=True)
class RunnerBench:
    """What :func:`measure` measured (seconds unless said otherwise).

    :param paired: each run's time bare and through ``run_one``
    :param worker_start_s: a worker's start (spawn, imports): the 1-worker runner's time less its runs' time
    :param one_worker_s: the runner with 1 worker, best of the repeats
    :param two_workers_s: the runner with 2 workers, best of the repeats
    :param inside_runs_one_s: time spent inside the runs with 1 worker (summed over runs)
    :param inside_runs_two_s: time spent inside the runs with 2 workers (summed over runs)
    :param machine_speedup: 2 processes of pure Python against 1 on this machine
    :param peak_memory_mib: the largest peak memory of a worker
    """

    paired: PairedTimes
    worker_start_s: float
    one_worker_s: float
    two_workers_s: float
    inside_runs_one_s: float
    inside_runs_two_s: float
    machine_speedup: float
    peak_memory_mib: float

    @property
    def overhead(self) -> np.ndarray:
        """:return: per run, the runner's time over the bare time, less 1"""
        return self.paired.runner / self.paired.bare - 1

    @property
    def worker_start(self) -> float:
        """:return: a worker's start as a fraction of the bare runs' time"""
        return self.worker_start_s / self.paired.bare.sum()


def measure(specs: list[RunSpec], repeats: int) -> RunnerBench:
    """:param specs: equal runs (:func:`bench_specs`)
    :param repeats: repeats of each worker count, the best kept (other load only ever slows one down)
    :return: the measurements"""
    paired = time_paired(specs)
    one = min(time_runner(specs, 1) for _ in range(repeats))
    two = min(time_runner(specs, 2) for _ in range(repeats))
    return RunnerBench(
        paired=paired,
        worker_start_s=one[0] - one[1],
        one_worker_s=one[0],
        two_workers_s=two[0],
        inside_runs_one_s=one[1],
        inside_runs_two_s=two[1],
        machine_speedup=machine_speedup(),
        peak_memory_mib=max(one[2], two[2]),
    )


def render(bench: RunnerBench, specs: list[RunSpec], repeats: int) -> str:
    """:return: the measurements as the lines ``python -m rlnorm.study.bench_runner`` prints"""
    spec, paired = specs[0], bench.paired
    evaluation = paired.evaluation / paired.bare
    rest = (paired.runner - paired.evaluation) / paired.bare - 1
    busy = bench.inside_runs_two_s / (2 * bench.two_workers_s)
    slowdown = bench.inside_runs_two_s / bench.inside_runs_one_s
    # The speed-up is 2 x (how busy the runner keeps both workers) / (how much a run slows when another runs
    # beside it) x (a worker's start): the first is the runner's, the second the machine's.
    return "\n".join([
        f"{len(specs)} runs of {spec.algo} {spec.env_id}, {spec.timesteps} steps each, evaluation every "
        f"{spec.eval.every} steps x {spec.eval.episodes} episodes",
        f"per run, paired (median over {len(specs)} runs, [quartiles]):",
        f"  bare model.learn               {np.median(paired.bare):6.1f} s",
        f"  runner (run_one)               {np.median(paired.runner):6.1f} s   overhead {_quartiles(bench.overhead)}",
        f"    evaluation                   {np.median(paired.evaluation):6.1f} s   {_quartiles(evaluation)}",
        f"    the rest (files, probe, ...)            {_quartiles(rest)}",
        f"worker start (spawn, imports)    {bench.worker_start_s:6.1f} s   {bench.worker_start:+.1%}"
        f"   paid once per worker: here over {len(specs)} runs",
        f"runner overhead in all:                    {np.median(bench.overhead) + bench.worker_start:+.1%}"
        "   (target <= +10 %)",
        f"runner, 1 worker:              {bench.one_worker_s:6.1f} s   (best of {repeats})",
        f"runner, 2 workers:             {bench.two_workers_s:6.1f} s   speed-up "
        f"{bench.one_worker_s / bench.two_workers_s:.2f}x (target >= 1.8x), of which",
        f"  workers busy                          {busy:.0%} of the time",
        f"  a run beside another takes            {slowdown:.2f}x as long as alone",
        f"  this machine's 2 processes of pure Python: {bench.machine_speedup:.2f}x",
        f"peak memory of a worker:       {bench.peak_memory_mib:6.0f} MiB (target <= 1024 MiB)",
    ])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rlnorm.study.bench_runner", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16, help="number of equal runs (default: 16)")
    parser.add_argument("--timesteps", type=int, help="steps per run (default: the config's budget)")
    parser.add_argument("--repeats", type=int, default=2, help="repeats of each worker count, best kept (default: 2)")
    parser.add_argument("--config", type=Path, default=QUICK,
                        help=f"config giving the task and evaluation (default: {QUICK}, from the repository root)")
    args = parser.parse_args(argv)
    if not args.config.is_file():
        parser.error(f"--config {args.config}: no such file (run from the repository root, or name a study config)")
    specs = bench_specs(args.config, args.runs, args.timesteps)
    print(render(measure(specs, args.repeats), specs, args.repeats))


def _quartiles(ratios: np.ndarray) -> str:
    low, median, high = np.percentile(ratios, [25, 50, 75])
    return f"{median:+.1%} [{low:+.1%}, {high:+.1%}]"


if __name__ == "__main__":
    main()
