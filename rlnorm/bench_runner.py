"""Benchmark of the study runner: speed-up of 2 workers over 1, overhead over bare SB3, memory per worker.

    python -m rlnorm.bench_runner [--runs 16] [--timesteps N] [--repeats 2] [--config configs/quick.yaml]

The runs are equal: the config's first task (PPO CartPole-v1 for quick.yaml) with norm none, its budget
(or ``--timesteps``) and its evaluation settings, one seed each. The default of 16 runs is what each of
quick.yaml's 2 workers does (30 runs), so a worker's start is spread over as many runs as in the study.
Measured on the same runs:

- bare: build the model and ``model.learn`` in a fresh process (its start not timed), one torch thread, no
  evaluation, no files;
- runner, 1 worker and 2 workers: :func:`rlnorm.executors.run_local` over :func:`rlnorm.run.run_one`, as a
  study runs them (process start, imports, evaluation and files included);
- the machine: two processes of pure Python against one, which is the most 2 workers can gain here (a
  virtual machine's 2 cores may not be 2 free cores).

Each time is the best of ``--repeats`` (other load only ever slows a measurement down). Targets
(issue 3): 2 workers >= 1.8x faster than 1; the runner <= 10 % slower than bare; peak memory <= 1 GiB per
worker (each run's ``done.json`` records its worker's).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from rlnorm.agents import load_agent
from rlnorm.config import RunSpec, load_study, single_run
from rlnorm.executors import run_local
from rlnorm.run import build_model, make_env, prepare_process, run_one

QUICK = Path(__file__).resolve().parent.parent / "configs" / "quick.yaml"


def bench_specs(config: Path, runs: int, timesteps: int | None = None) -> list[RunSpec]:
    """:return: ``runs`` equal runs: the config's first task with norm none, seeds 0..runs-1"""
    task = load_study(config).tasks[0]
    budget = timesteps or task.timesteps
    return [single_run(task.algo, task.env_id, "none", seed, budget, eval_settings=task.eval) for seed in range(runs)]


def time_bare(specs: list[RunSpec]) -> float:
    """:return: seconds to build and train each run's model without the runner, no evaluation, no files.

    Timed in a fresh process prepared as a worker is, its start not timed, so that the two sides differ only
    by what the runner adds: in the benchmark's own process the same training, with the same calls (counted
    with cProfile), took 6-7 % longer, which hid that much of the runner's overhead.
    """
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_time_bare_here, specs).result()


def _time_bare_here(specs: list[RunSpec]) -> float:
    prepare_process()
    start = time.perf_counter()
    for spec in specs:
        agent = load_agent(spec.algo, spec.env_id)
        model = build_model(spec, agent, make_env(agent, agent.n_envs))
        model.learn(total_timesteps=spec.timesteps)
    return time.perf_counter() - start


def time_runner(specs: list[RunSpec], workers: int) -> tuple[float, float, float, float]:
    """:return: seconds for the runner to do the runs with ``workers`` processes, seconds of it spent
    evaluating and seconds spent inside the runs (each summed over runs), and the largest peak memory of
    a worker in MiB"""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        results = list(run_local([partial(run_one, spec, Path(out) / spec.run_id) for spec in specs], workers))
        elapsed = time.perf_counter() - start
        failed = [result for result in results if not result.ok]
        if failed:
            raise RuntimeError(f"{failed[0].run_id} failed: {failed[0].reason}")
        records = [json.loads((Path(out) / spec.run_id / "done.json").read_text()) for spec in specs]
    evaluation = sum(record["evaluation_s"] for record in records)
    inside_runs = sum(record["wall_time_s"] for record in records)
    return elapsed, evaluation, inside_runs, max(record["peak_memory_mib"] for record in records)


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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rlnorm.bench_runner", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16, help="number of equal runs (default: 16)")
    parser.add_argument("--timesteps", type=int, help="steps per run (default: the config's budget)")
    parser.add_argument("--repeats", type=int, default=2, help="repeats of each measurement, best kept (default: 2)")
    parser.add_argument("--config", type=Path, default=QUICK, help="config giving the task and evaluation")
    args = parser.parse_args(argv)
    specs = bench_specs(args.config, args.runs, args.timesteps)
    spec = specs[0]
    print(
        f"{args.runs} runs of {spec.algo} {spec.env_id}, {spec.timesteps} steps each, evaluation every "
        f"{spec.eval.every} steps x {spec.eval.episodes} episodes; best of {args.repeats}"
    )
    bare, one, two = [], [], []
    for _ in range(args.repeats):
        bare.append(time_bare(specs))
        one.append(time_runner(specs, 1))
        two.append(time_runner(specs, 2))
    bare_s = min(bare)
    (one_s, evaluation_s, inside_s, peak_one), (two_s, *_, peak_two) = min(one), min(two)
    start_s = one_s - inside_s
    rest_s = inside_s - evaluation_s - bare_s
    print(f"bare model.learn, own process: {bare_s:6.1f} s")
    print(f"runner, 1 worker:              {one_s:6.1f} s   overhead {one_s / bare_s - 1:+.1%} (target <= +10 %):")
    print(f"  evaluation                   {evaluation_s:6.1f} s   {evaluation_s / bare_s:+.1%}")
    print(
        f"  worker start (spawn, imports){start_s:6.1f} s   {start_s / bare_s:+.1%}"
        f"   paid once per worker: here over {len(specs)} runs"
    )
    print(f"  the rest (files, probe, ...) {rest_s:6.1f} s   {rest_s / bare_s:+.1%}")
    print(
        f"runner, 2 workers:             {two_s:6.1f} s   speed-up {one_s / two_s:.2f}x (target >= 1.8x); "
        f"this machine's 2 processes of pure Python: {machine_speedup():.2f}x"
    )
    print(f"peak memory of a worker:       {max(peak_one, peak_two):6.0f} MiB (target <= 1024 MiB)")


if __name__ == "__main__":
    main()
