"""Compute cost of each norm: layer timings relative to none, training throughput relative to plain SB3.

Every comparison is paired: within one repeat, all variants run back to back in a rotated order in one
process with one torch thread, and the ratio is taken inside the repeat; the reported figure is the
median ratio over repeats, so slow phases of a shared machine hit numerator and denominator alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger

from rlnorm.analysis import stats as st
from rlnorm.analysis.results import BENCH_REFERENCE
from rlnorm.core.envs import make_env
from rlnorm.core.norms import get_norm, validate_norm
from rlnorm.core.policies import use_fast_optimizers
from rlnorm.study.agents import load_agent
from rlnorm.study.algorithms import ALGORITHMS
from rlnorm.study.provenance import code_revision, hardware, versions
from rlnorm.study.records import write_json

CORE_NORMS = ("none", "bn", "mobn", "wn", "wn+mobn", "ln")
PLAIN = BENCH_REFERENCE
#: SB3's MlpPolicy with the optimizer implementation the normalized policies use: the reference that
#: isolates the norms' own cost from the optimizer's.
PLAIN_FAST = "MlpPolicy+fused"
THROUGHPUT_ALGOS = ("ppo", "sac")


@dataclass(frozen=True)
class LayerCost:
    """Time of one rollout step and one gradient update of PPO's CartPole policy, relative to none.

    :param norm: the norm
    :param rollout_step: eval-mode forward on a batch of ``n_envs`` observations, microseconds
    :param gradient_update: train-mode ``evaluate_actions`` + backward + Adam step on one minibatch,
        microseconds
    :param rollout_ratio: ``rollout_step`` of none / this norm's (1.0 = as fast as none)
    :param update_ratio: ``gradient_update`` of none / this norm's
    """

    norm: str
    rollout_step: float
    gradient_update: float
    rollout_ratio: float
    update_ratio: float


GHOST = "/ghost"
"""Joins a norm and a number of ghost batches into a bench variant's name: ``bn/ghost16``."""


def ghost_variant(norm: str, ghost_batches: int) -> str:
    """:return: the bench variant of ``norm`` with ``ghost_batches`` ghost batches"""
    return f"{norm}{GHOST}{ghost_batches}"


def _norm_of(variant: str) -> tuple[str, dict[str, int]]:
    norm, _, ghost_batches = variant.partition(GHOST)
    return norm, ({"ghost_batches": int(ghost_batches)} if ghost_batches else {})


def _median_ratios(times: dict[str, list[float]], reference: str) -> dict[str, float]:
    return {name: ratio.value for name, ratio in median_ratio_cis(times, reference).items()}


def median_ratio_cis(times: dict[str, list[float]], reference: str) -> dict[str, st.Estimate]:
    """:return: per variant, the median over paired repeats of reference time / its time, with a 95 % bootstrap
    CI over repeats (nan bounds with one repeat)"""
    reference_times = np.array(times[reference])
    return {
        name: st.bootstrap_ci([reference_times / np.array(values)], np.median, n_resamples=10_000, rng=0)
        for name, values in times.items()
    }


def paired_times(variants: Sequence[str], repeats: int, measure: Callable[[str], float]) -> dict[str, list[float]]:
    """:param variants: what to measure
    :param repeats: paired repeats; each runs every variant once, starting one further along the list
    :param measure: variant -> one measurement
    :return: variant -> its measurements, one per repeat"""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(repeats):
        order = list(variants[repeat % len(variants) :]) + list(variants[: repeat % len(variants)])
        for name in order:
            times[name].append(measure(name))
    return times


def silent_logger() -> Logger:
    """:return: a logger without outputs, what SB3 uses at ``verbose=0`` minus the empty ``SB3-<time>``
    directory SB3 makes in the system temp dir for every model that learns without a logger of its own"""
    return Logger(folder=None, output_formats=[])


def _build(algo: str, env_id: str, policy: str, seed: int = 0):
    agent = load_agent(algo, env_id)
    env = make_vec_env(make_env, n_envs=agent.n_envs, seed=seed, env_kwargs={"env_id": env_id})
    kwargs = agent.model_kwargs(env.action_space)
    policy_class = PLAIN
    if policy not in (PLAIN, PLAIN_FAST):
        policy_class = ALGORITHMS[algo].policy_class()
        kwargs["policy_kwargs"]["norm"], kwargs["policy_kwargs"]["norm_kwargs"] = _norm_of(policy)
    model = agent.algo_class(policy_class, env, seed=seed, device="cpu", verbose=0, **kwargs)
    model.set_logger(silent_logger())
    if policy == PLAIN_FAST:
        policy_net = model.policy
        use_fast_optimizers(*([policy_net.optimizer] if hasattr(policy_net, "optimizer")
                              else [policy_net.actor.optimizer, policy_net.critic.optimizer]))
    return model


def layer_costs(norms: Sequence[str] = CORE_NORMS, repeats: int = 7, calls: int = 300) -> list[LayerCost]:
    """Time the two operations training repeats most, per norm, with PPO's zoo settings for CartPole-v1.

    :param norms: the norms to time (none is always included, as the reference)
    :param repeats: paired repeats; the medians are reported
    :param calls: calls timed per measurement
    :return: one cost per norm
    """
    norms = ["none", *[n for n in norms if n != "none"]]
    models = {norm: _build("ppo", "CartPole-v1", norm) for norm in norms}
    n_envs, batch_size = models["none"].n_envs, models["none"].batch_size
    generator = torch.Generator().manual_seed(0)
    rollout_obs = torch.randn(n_envs, 4, generator=generator)
    batch_obs = torch.randn(batch_size, 4, generator=generator)
    batch_actions = torch.randint(0, 2, (batch_size,), generator=generator)

    def rollout_step(norm: str) -> float:
        policy = models[norm].policy
        policy.set_training_mode(False)
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(calls):
                policy(rollout_obs)
        return (time.perf_counter() - start) / calls * 1e6

    def gradient_update(norm: str) -> float:
        policy = models[norm].policy
        policy.set_training_mode(True)
        start = time.perf_counter()
        for _ in range(calls // 3):
            values, log_prob, _ = policy.evaluate_actions(batch_obs, batch_actions)
            loss = values.mean() - log_prob.mean()
            policy.optimizer.zero_grad()
            loss.backward()
            policy.optimizer.step()
        return (time.perf_counter() - start) / (calls // 3) * 1e6

    rollout = paired_times(norms, repeats, rollout_step)
    update = paired_times(norms, repeats, gradient_update)
    rollout_ratio, update_ratio = _median_ratios(rollout, "none"), _median_ratios(update, "none")
    return [
        LayerCost(
            norm,
            float(np.median(rollout[norm])),
            float(np.median(update[norm])),
            rollout_ratio[norm],
            update_ratio[norm],
        )
        for norm in norms
    ]


def training_times(
    algo: str, env_id: str, norms: Sequence[str] = CORE_NORMS, timesteps: int = 20_000, repeats: int = 5
) -> dict[str, list[float]]:
    """Seconds of a ``learn`` of ``timesteps`` steps with each norm and with SB3's plain ``MlpPolicy`` (and
    :data:`PLAIN_FAST`), zoo hyperparameters, in paired repeats.

    :param algo: ``"ppo"`` or ``"sac"``
    :param env_id: an env id the agent file has
    :param norms: the norms to time (or :func:`ghost_variant` names)
    :param timesteps: env steps per timed ``learn``
    :param repeats: paired repeats
    :return: variant -> its seconds, one per repeat
    """
    if algo not in THROUGHPUT_ALGOS:
        raise ValueError(f"throughput is benchmarked for {', '.join(THROUGHPUT_ALGOS)}; got {algo!r}")

    def learn_time(variant: str) -> float:
        model = _build(algo, env_id, variant)
        start = time.perf_counter()
        model.learn(timesteps)
        return time.perf_counter() - start

    return paired_times([PLAIN, PLAIN_FAST, *norms], repeats, learn_time)


def write_bench_record(
    path: str | Path, command: str, timesteps: dict[str, int], times: dict[str, dict], code: dict[str, Any],
    cnn: dict[str, Any] | None = None,
) -> Path:
    """Write the paired training times that ``rlnorm report`` answers "WN is cheaper to compute than BN" with
    (docs/method.md#verdicts), when the record lies in the study's results directory as
    :data:`~rlnorm.analysis.results.BENCH_RECORD`.

    :param path: the file
    :param command: the command that measured them
    :param timesteps: ``algo/env`` -> env steps per timed ``learn``
    :param times: ``algo/env`` -> :func:`training_times`' result
    :param code: the code that was timed (:func:`rlnorm.study.provenance.code_revision` when the timing began)
    :param cnn: the convolutional workloads and ratio sweep (:func:`rlnorm.study.bench_cnn.run_cnn_bench`'s record)
    :return: the file
    """
    record = {
        "command": command,
        "hardware": hardware(),
        "versions": versions(),
        "code": code,
        "training_time_s": {task: {"timesteps": timesteps[task], "times": times[task]} for task in times},
        **(cnn or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    return path


def training_speed(algo: str, env_id: str, norm: str = "none", timesteps: int = 1_000) -> float:
    """Env steps per second of training once it updates the networks, with the agent's zoo settings, one
    torch thread and no evaluation: what a budget of many steps costs. Off-policy agents update from
    their first batch here; the steps before the zoo's ``learning_starts`` (random actions, no updates)
    are far cheaper, so a run's cost is about ``(budget - learning_starts) / speed``.

    :param algo: an algorithm the runner knows (``rlnorm study`` configs' names)
    :param env_id: an env id its agent file has
    :param norm: the norm
    :param timesteps: env steps timed (at least one PPO/A2C rollout is timed)
    :return: env steps per second
    """
    load_agent(algo, env_id)  # a clear error for an unknown algo or env
    validate_norm(norm)
    torch.set_num_threads(1)
    model = _build(algo, env_id, PLAIN if ALGORITHMS[algo].policy is None else norm)
    if hasattr(model, "learning_starts"):
        model.learning_starts = model.batch_size
    rollout = getattr(model, "n_steps", 1) * model.n_envs
    model.learn(max(rollout, model.batch_size + 1))  # warm-up: first updates, lazy imports
    timesteps = max(timesteps, rollout)
    start = time.perf_counter()
    model.learn(timesteps, reset_num_timesteps=False)
    return timesteps / (time.perf_counter() - start)


def run_bench(
    norms: Sequence[str] = CORE_NORMS,
    repeats: int = 5,
    ppo_steps: int = 20_000,
    sac_steps: int = 1_000,
    record: tuple[Path, str] | None = None,
    ghost_batches: int = 1,
    cnn: bool = False,
) -> str:
    """Run every benchmark and format the results as Markdown tables.

    :param norms: the norms to benchmark
    :param repeats: paired repeats of each measurement
    :param ppo_steps: env steps per timed PPO CartPole-v1 ``learn`` (0: skip)
    :param sac_steps: env steps per timed SAC Pendulum-v1 ``learn`` (0: skip)
    :param ghost_batches: above 1, also time each batch-statistics norm with that many ghost batches, and
        its cost against the same norm without them
    :param record: (file, the command) to write the training times to (:func:`write_bench_record`)
    :param cnn: also time the convolutional workloads and the activations-to-weights sweep
        (:func:`rlnorm.study.bench_cnn.run_cnn_bench`)
    :return: the report
    """
    torch.set_num_threads(1)
    code = code_revision()
    lines = [
        "Layer cost, PPO CartPole-v1 policy (zoo settings), relative to none (1.00 = as fast):",
        "",
        "| norm | rollout step (µs) | ratio | gradient update (µs) | ratio |",
        "|---|---|---|---|---|",
    ]
    for cost in layer_costs(norms, repeats):
        lines.append(
            f"| {cost.norm} | {cost.rollout_step:.0f} | {cost.rollout_ratio:.2f} "
            f"| {cost.gradient_update:.0f} | {cost.update_ratio:.2f} |"
        )
    timesteps, times = {}, {}
    with_statistics = [norm for norm in norms if get_norm(norm).batch_statistics]
    dosed = [ghost_variant(norm, ghost_batches) for norm in with_statistics] if ghost_batches > 1 else []
    for algo, env_id, steps in (("ppo", "CartPole-v1", ppo_steps), ("sac", "Pendulum-v1", sac_steps)):
        if steps <= 0:
            continue
        task = f"{algo}/{env_id}"
        timesteps[task], times[task] = steps, training_times(algo, env_id, [*norms, *dosed], steps, repeats)
        ratios = median_ratio_cis(times[task], PLAIN)
        del ratios[PLAIN]
        lines += [
            "",
            f"Training throughput, {algo.upper()} {env_id} ({steps} steps x {repeats} paired repeats), "
            "relative to SB3 MlpPolicy (median of the paired ratios, 95 % bootstrap CI over repeats):",
            "",
            "| norm | ratio | 95 % CI |",
            "|---|---|---|",
        ]
        lines += [f"| {name} | {r.value:.3f} | [{r.low:.3f}, {r.high:.3f}] |" for name, r in ratios.items()]
        for variant in dosed:
            norm = _norm_of(variant)[0]
            cost = median_ratio_cis({norm: times[task][norm], variant: times[task][variant]}, norm)[variant]
            lines.append(f"| {variant} vs {norm} | {cost.value:.3f} | [{cost.low:.3f}, {cost.high:.3f}] |")
    lines += ["", f"Normalized policies use the fused (or multi-tensor) optimizer; {PLAIN_FAST} is plain SB3 "
              "with the same optimizer, so the norm's own cost is its ratio divided by that row's."]
    cnn_record = None
    if cnn:
        from rlnorm.study.bench_cnn import run_cnn_bench

        cnn_lines, cnn_record = run_cnn_bench(norms, repeats)
        lines += ["", cnn_lines]
    if record is not None and (times or cnn_record):
        path = write_bench_record(record[0], record[1], timesteps, times, code, cnn_record)
        lines += ["", f"Training times written to {path}."]
    return "\n".join(lines)
