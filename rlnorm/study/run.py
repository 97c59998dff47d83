"""One run: train an agent with a norm variant, evaluate it as it learns, and record it in its directory.

A run directory holds, when the run is finished::

    config.json        the run spec, the agent's hyperparameters and the evaluation seed
    monitor.csv        the training episodes (SB3's VecMonitor)
    progress.csv       SB3's logger: train/* (with train/mode_mismatch for PPO and A2C) and eval/*
    evaluations.csv    one row per evaluation episode: timesteps, episode, return, length
    evaluations.npz    the same in RL Zoo's layout: timesteps (n,), results and ep_lengths (n, episodes)
    probe.csv          the minibatch-noise probe every ProbeSettings.every steps
                       (rlnorm.study.callbacks.MechanismRecorder), one row per network and layer:
                       rlnorm.study.records.PROBE_COLUMNS
    statistics.csv     timesteps, network, drift: relative change of the running statistics since the
                       previous probe (networks with running statistics only)
    model.zip          the final model (and vecnormalize.pkl when observations are normalized)
    events.out.tfevents.*  TensorBoard logs, when asked
    done.json          written last, atomically: wall time (and the parts spent evaluating and probing), peak
                       memory, processor, versions, the code that made it (rlnorm.study.provenance), warnings;
                       or instead
    failed.json        the reason the run failed (an exception, or NaN/inf in the networks)

A directory without ``done.json`` or ``failed.json`` is an interrupted run: the study redoes it.

Training and evaluation are reproducible: one torch thread (bit-identical results on CPU need the same
thread count, docs/method.md#sb3-and-the-norms), SB3 seeds Python, numpy, torch and the training envs from
``seed``, and the evaluation envs are seeded from ``seed + EVAL_SEED_OFFSET``, so they never replay the training
envs' episodes. Neither evaluation nor the probe changes training (:mod:`rlnorm.study.callbacks`).
"""

from __future__ import annotations

import dataclasses
import importlib
import platform
import time
import traceback
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    VecEnv,
    VecMonitor,
    VecNormalize,
)

from rlnorm.core import envs
from rlnorm.core.policies import NormActorCriticPolicy
from rlnorm.study.agents import AgentSpec, load_agent
from rlnorm.study.algorithms import ALGORITHMS
from rlnorm.study.callbacks import MechanismRecorder, ModeMismatchCallback, PeriodicEvaluation
from rlnorm.study.config import RunSpec
from rlnorm.study.provenance import hardware, loaded_code_revision, peak_memory_mib, versions
from rlnorm.study.records import EVAL_SEED_OFFSET, write_json


@dataclass(frozen=True)
class RunResult:
    """What a run reports back to the study.

    :param run_id: the run's id
    :param ok: whether it finished (``done.json``) rather than failed (``failed.json``)
    :param reason: why it failed, in one line
    :param wall_time_s: seconds from start to record
    """

    run_id: str
    ok: bool
    reason: str | None
    wall_time_s: float


def prepare_process() -> None:
    """Set this process up for timed, reproducible training: one torch thread (docs/method.md#sb3-and-the-norms),
    and torch's compiler stack imported now, since torch imports it (2-3 s) when a process builds its first optimizer,
    which would otherwise land in the first run's time."""
    torch.set_num_threads(1)
    importlib.import_module("torch._dynamo")


def run_one(spec: RunSpec, run_dir: str | Path) -> RunResult:
    """Train, evaluate and record one run; a failure is recorded in ``failed.json``, not raised.

    :param spec: the run
    :param run_dir: its directory, absent or empty (the study removes interrupted runs' files)
    :return: how it ended
    """
    prepare_process()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    record: dict[str, Any] = {"run_id": spec.run_id, "code": loaded_code_revision()}
    try:
        with warnings.catch_warnings(record=True) as caught:
            # Warnings go to done.json rather than the terminal, where they would break the progress bar.
            warnings.simplefilter("always")
            record.update(train(spec, run_dir))
        record["warnings"] = sorted({str(w.message) for w in caught})
    except Exception as error:
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        record.update(reason=reason, traceback=traceback.format_exc())
        return _finish(run_dir / "failed.json", record, start, ok=False)
    return _finish(run_dir / "done.json", record, start, ok=True)


def train(spec: RunSpec, run_dir: Path) -> dict[str, float]:
    """Build the envs and the model, train with periodic evaluation, and save the results.

    :param spec: the run
    :param run_dir: its directory
    :return: the environment steps trained, and the seconds spent evaluating and probing
    """
    agent = load_agent(spec.algo, spec.env_id)
    eval_seed = spec.seed + EVAL_SEED_OFFSET
    # Shallow, so that the hyperparameter objects (schedules, action noise) are written by their repr.
    agent_fields = {field.name: getattr(agent, field.name) for field in dataclasses.fields(agent)}
    write_json(run_dir / "config.json", {"run": spec.to_dict(), "eval_seed": eval_seed, "agent": agent_fields})
    train_env = make_env(agent, agent.n_envs, run_dir / "monitor.csv")
    eval_env = make_env(agent, spec.eval.episodes)
    eval_env.seed(eval_seed)
    if isinstance(eval_env, VecNormalize):
        # Evaluate with the training statistics (synced before each evaluation), on the true rewards.
        eval_env.training, eval_env.norm_reward = False, False

    model = build_model(spec, agent, train_env)
    model.set_logger(configure(str(run_dir), ["csv", "tensorboard"] if spec.tensorboard else ["csv"]))
    evaluator = PeriodicEvaluation(eval_env, spec.eval, run_dir / "evaluations.csv")
    callbacks: list[BaseCallback] = [evaluator]
    # An algorithm run as published (CrossQ) has networks the probe does not know.
    probed = spec.probe.enabled and ALGORITHMS[spec.algo].policy is not None
    mechanisms = MechanismRecorder(spec.probe, run_dir) if probed else None
    if mechanisms is not None:
        callbacks.append(mechanisms)
    if isinstance(model.policy, NormActorCriticPolicy):
        callbacks.append(ModeMismatchCallback())
    model.learn(total_timesteps=spec.timesteps, callback=callbacks)

    evaluator.save_npz(run_dir / "evaluations.npz")
    model.save(run_dir / "model.zip")
    if isinstance(train_env, VecNormalize):
        train_env.save(str(run_dir / "vecnormalize.pkl"))
    model.logger.close()
    train_env.close()
    eval_env.close()
    return {
        "timesteps": model.num_timesteps,
        "evaluation_s": evaluator.seconds,
        "probe_s": mechanisms.seconds if mechanisms is not None else 0.0,
    }


def make_env(agent: AgentSpec, n_envs: int, monitor_file: Path | None = None) -> VecEnv:
    """:param agent: the agent (env id, observation normalization)
    :param n_envs: number of environments, stepped in this process
    :param monitor_file: where to record the episodes (None: kept in memory, for evaluation)
    :return: the vectorized environment, not yet seeded
    """
    env: VecEnv = DummyVecEnv([lambda: envs.make_env(agent.env_id)] * n_envs)
    # Monitor before normalizing, so that it records the true rewards.
    env = VecMonitor(env, filename=None if monitor_file is None else str(monitor_file))
    if agent.normalize:
        env = VecNormalize(env, **(agent.normalize if isinstance(agent.normalize, dict) else {}))
    return env


def build_model(spec: RunSpec, agent: AgentSpec, env: VecEnv) -> BaseAlgorithm:
    """:param spec: the run (algorithm, norm variant, seed)
    :param agent: the agent's hyperparameters
    :param env: the training environment
    :return: the SB3 model with the run's norm in its policy, seeded
    """
    kwargs = agent.model_kwargs(env.action_space)
    policy_class = ALGORITHMS[spec.algo].policy_class()
    if policy_class is None:  # run as published (config checks its variant is norm none)
        return agent.algo_class("MlpPolicy", env, seed=spec.seed, device="cpu", verbose=0, **kwargs)
    variant = spec.variant
    kwargs["policy_kwargs"].update(
        norm=variant.norm, norm_kwargs=variant.norm_kwargs, norm_in=variant.norm_in, norm_mode=variant.norm_mode
    )
    return agent.algo_class(policy_class, env, seed=spec.seed, device="cpu", verbose=0, **kwargs)


def _finish(path: Path, record: dict[str, Any], start: float, ok: bool) -> RunResult:
    wall_time_s = time.perf_counter() - start
    record.update(
        wall_time_s=wall_time_s,
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        host=platform.node(),
        hardware=hardware(),
        peak_memory_mib=peak_memory_mib(),
        versions=versions(),
    )
    write_json(path, record)
    return RunResult(record["run_id"], ok, record.get("reason"), wall_time_s)


