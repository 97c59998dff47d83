"""One run: train an agent with a norm variant, evaluate it as it learns, and record it in its directory.

A run directory holds, when the run is finished::

    config.json        the run spec, the agent's hyperparameters and the evaluation seed
    monitor.csv        the training episodes (SB3's VecMonitor)
    progress.csv       SB3's logger: train/* (with train/mode_mismatch for PPO and A2C) and eval/*
    evaluations.csv    one row per evaluation episode: timesteps, episode, return, length
    evaluations.npz    the same in RL Zoo's layout: timesteps (n,), results and ep_lengths (n, episodes)
    probe.csv          the minibatch-noise probe at evaluations (rlnorm.probe; see ProbeSettings):
                       timesteps, network, layer ("output" or a normalized layer's name), noise, gap
    statistics.csv     timesteps, network, drift: relative change of the running statistics since the
                       previous probe (networks with running statistics only)
    model.zip          the final model (and vecnormalize.pkl when observations are normalized)
    events.out.tfevents.*  TensorBoard logs, when asked
    done.json          written last, atomically: wall time (and the part spent evaluating), peak memory,
                       versions, warnings; or instead
    failed.json        the reason the run failed (an exception, or NaN/inf in the networks)

A directory without ``done.json`` or ``failed.json`` is an interrupted run: the study redoes it.

Training and evaluation are reproducible: one torch thread (bit-identical results on CPU need the same
thread count, docs/method.md#sb3-and-the-norms), SB3 seeds Python, numpy, torch and the training envs from
``seed``, and the evaluation envs are seeded from ``seed + EVAL_SEED_OFFSET``, so they never replay the training envs'
episodes. Evaluation runs the policy in eval mode with deterministic actions, which draw no random
numbers, so evaluating does not change training.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import json
import os
import platform
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    VecEnv,
    VecMonitor,
    VecNormalize,
    sync_envs_normalization,
)

from rlnorm.agents import AgentSpec, load_agent
from rlnorm.callbacks import ModeMismatchCallback
from rlnorm.config import ALGORITHMS, EvalSettings, ProbeSettings, RunSpec
from rlnorm.policies import NormActorCriticPolicy
from rlnorm.probe import (
    minibatch_noise,
    policy_networks,
    running_statistics,
    statistics_drift,
    training_batch_size,
)
from rlnorm.provenance import code_revision, hardware, peak_memory_mib, versions
from rlnorm.records import OUTPUT_LAYER, PROBE_COLUMNS

EVAL_SEED_OFFSET = 1_000_000


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


class NonFiniteError(RuntimeError):
    """The networks or the evaluation returns hold NaN or inf."""


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
    record: dict[str, Any] = {"run_id": spec.run_id}
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
    probed = spec.probe.enabled and ALGORITHMS[spec.algo].policy_class is not None
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
    env: VecEnv = DummyVecEnv([lambda: gym.make(agent.env_id)] * n_envs)
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
    policy_class = ALGORITHMS[spec.algo].policy_class
    if policy_class is None:  # run as published (config checks its variant is norm none)
        return agent.algo_class("MlpPolicy", env, seed=spec.seed, device="cpu", verbose=0, **kwargs)
    variant = spec.variant
    kwargs["policy_kwargs"].update(
        norm=variant.norm, norm_kwargs=variant.norm_kwargs, norm_in=variant.norm_in, norm_mode=variant.norm_mode
    )
    return agent.algo_class(policy_class, env, seed=spec.seed, device="cpu", verbose=0, **kwargs)


class PeriodicEvaluation(BaseCallback):
    """Evaluate before training, every ``settings.every`` environment steps, and at the end.

    Each evaluation checks the networks for NaN/inf first, and writes its episodes to ``csv_path`` as it
    goes, so an interrupted or failed run shows how far it got.

    :param eval_env: the evaluation environments, one per episode, seeded
    :param settings: when and how to evaluate
    :param csv_path: where to append one row per episode
    """

    def __init__(self, eval_env: VecEnv, settings: EvalSettings, csv_path: Path) -> None:
        super().__init__()
        self.eval_env, self.settings, self.csv_path = eval_env, settings, csv_path
        self.timesteps: list[int] = []
        self.returns: list[list[float]] = []
        self.lengths: list[list[int]] = []
        self.next_evaluation = 0
        self.seconds = 0.0
        with open(csv_path, "w", newline="") as file:
            csv.writer(file).writerow(["timesteps", "episode", "return", "length"])

    def _on_training_start(self) -> None:
        self._evaluate()

    def _on_step(self) -> bool:
        if self.model.num_timesteps >= self.next_evaluation:
            self._evaluate()
        return True

    def _on_training_end(self) -> None:
        if self.timesteps[-1] != self.model.num_timesteps:
            self._evaluate()

    def _evaluate(self) -> None:
        start = time.perf_counter()
        step = self.model.num_timesteps
        check_finite(self.model, step)
        if isinstance(self.eval_env, VecNormalize):
            sync_envs_normalization(self.training_env, self.eval_env)
        with eval_mode_throughout(self.model.policy):
            returns, lengths = evaluate_policy(
                self.model,
                self.eval_env,
                n_eval_episodes=self.settings.episodes,
                deterministic=self.settings.deterministic,
                return_episode_rewards=True,
            )
        if not np.all(np.isfinite(returns)):
            raise NonFiniteError(f"evaluation returns are not finite at step {step}: {returns}")
        self.timesteps.append(step)
        self.returns.append([float(r) for r in returns])
        self.lengths.append([int(n) for n in lengths])
        with open(self.csv_path, "a", newline="") as file:
            csv.writer(file).writerows([step, i, r, n] for i, (r, n) in enumerate(zip(returns, lengths, strict=True)))
        self.logger.record("eval/mean_reward", float(np.mean(returns)))
        self.logger.record("eval/mean_ep_length", float(np.mean(lengths)))
        self.next_evaluation = (step // self.settings.every + 1) * self.settings.every
        self.seconds += time.perf_counter() - start

    def save_npz(self, path: Path) -> None:
        """Write the evaluations in RL Zoo's ``evaluations.npz`` layout.

        :param path: the file
        """
        np.savez(
            path,
            timesteps=np.array(self.timesteps),
            results=np.array(self.returns),
            ep_lengths=np.array(self.lengths),
        )


@contextmanager
def eval_mode_throughout(policy: BasePolicy) -> Iterator[None]:
    """Put ``policy`` in eval mode once for a whole evaluation, and keep it there.

    SB3's ``predict`` calls ``set_training_mode(False)`` at every step: a walk over every module that
    costs about a sixth of an evaluation of a small MLP. Inside this context that call does nothing, so
    ``evaluate_policy`` computes exactly what it would otherwise; a request for train mode raises,
    since nothing in an evaluation may update the networks.

    :param policy: the policy to evaluate
    """
    policy.set_training_mode(False)

    def stay_in_eval_mode(mode: bool) -> None:
        if mode:
            raise RuntimeError("train mode was requested during an evaluation")

    policy.set_training_mode = stay_in_eval_mode  # type: ignore[method-assign]
    try:
        yield
    finally:
        del policy.set_training_mode  # the class's method again


class MechanismRecorder(BaseCallback):
    """Record, every ``settings.every`` environment steps, each network's minibatch noise and train/eval gap
    (at its output and per normalized layer: :func:`rlnorm.probe.minibatch_noise`), and the drift of its
    running statistics since the previous record.

    The probe draws minibatches of the size the algorithm trains with from the states it trains on:
    PPO/A2C's whole rollout, probed when it is complete (before the update), and the replay buffer once
    updates have begun (past ``learning_starts``). It draws from its own generator and restores everything it
    touches, so recording does not change the training run.

    :param settings: probe size and interval
    :param run_dir: where ``probe.csv`` and ``statistics.csv`` go
    """

    def __init__(self, settings: ProbeSettings, run_dir: Path) -> None:
        super().__init__()
        self.settings = settings
        self.probe_csv, self.statistics_csv = run_dir / "probe.csv", run_dir / "statistics.csv"
        self.previous: dict[str, torch.Tensor] = {}
        self.next_probe = 0
        self.seconds = 0.0
        for path, header in ((self.probe_csv, PROBE_COLUMNS), (self.statistics_csv, ["timesteps", "network", "drift"])):
            with open(path, "w", newline="") as file:
                csv.writer(file).writerow(header)

    def _on_step(self) -> bool:
        model = self.model
        # Off-policy: once updates have begun (SB3 trains past learning_starts), so that the probe measures
        # the noise of training batches drawn from the buffer training draws from.
        if (not isinstance(model, OnPolicyAlgorithm) and model.num_timesteps >= self.next_probe
                and model.num_timesteps > model.learning_starts):
            buffer = model.replay_buffer
            if (buffer.buffer_size if buffer.full else buffer.pos) * buffer.n_envs >= training_batch_size(model):
                self.record()
        return True

    def _on_rollout_end(self) -> None:
        if isinstance(self.model, OnPolicyAlgorithm) and self.model.num_timesteps >= self.next_probe:
            self.record()

    def record(self) -> None:
        """Probe the model now and append the rows."""
        start = time.perf_counter()
        step = self.model.num_timesteps
        self.next_probe = (step // self.settings.every + 1) * self.settings.every
        batch_size = training_batch_size(self.model)
        probe_rows, drift_rows = [], []
        for index, (name, (network, pool)) in enumerate(policy_networks(self.model).items()):
            measured = minibatch_noise(network, pool, batch_size, self.settings.draws, self.settings.states,
                                       seed=step + index)
            layers = {OUTPUT_LAYER: (measured.noise, measured.gap, measured.relative_noise,
                                     measured.noise_excess_kurtosis)}
            layers.update({layer: (measured.noise_per_layer[layer], measured.gap_per_layer[layer],
                                   measured.relative_noise_per_layer[layer],
                                   measured.noise_excess_kurtosis_per_layer[layer])
                           for layer in measured.noise_per_layer})
            probe_rows += [[step, name, layer, batch_size, pool.shape[0], *values] for layer, values in layers.items()]
            statistics = running_statistics(network)
            if statistics is not None:
                if name in self.previous:
                    drift_rows.append([step, name, statistics_drift(self.previous[name], statistics)])
                self.previous[name] = statistics
        for path, rows in ((self.probe_csv, probe_rows), (self.statistics_csv, drift_rows)):
            with open(path, "a", newline="") as file:
                csv.writer(file).writerows(rows)
        self.seconds += time.perf_counter() - start


def check_finite(model: BaseAlgorithm, step: int) -> None:
    """:param model: the model whose parameters and buffers (running statistics) to check
    :param step: the current step, for the message
    :raises NonFiniteError: naming the first tensor holding NaN or inf
    """
    for name, tensor in [*model.policy.named_parameters(), *model.policy.named_buffers()]:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise NonFiniteError(f"NaN or inf in {name} at step {step}")


def _finish(path: Path, record: dict[str, Any], start: float, ok: bool) -> RunResult:
    wall_time_s = time.perf_counter() - start
    record.update(
        wall_time_s=wall_time_s,
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        host=platform.node(),
        hardware=hardware(),
        peak_memory_mib=peak_memory_mib(),
        versions=versions(),
        code=code_revision(),
    )
    write_json(path, record)
    return RunResult(record["run_id"], ok, record.get("reason"), wall_time_s)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a JSON file atomically (write, then rename): a reader, or a resumed study, sees the whole
    file or none of it.

    :param path: the file
    :param data: its content; classes are written by name, other objects by their repr
    """
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, default=_describe) + "\n")
    os.replace(temporary, path)


def _describe(value: Any) -> str:
    """JSON form of the hyperparameters that are objects: classes by name, others (schedules) by repr."""
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def probe_run(run_dir: str | Path, n_steps: int = 2_000, n_draws: int = 16, n_probe: int = 32) -> dict[str, Any]:
    """The minibatch-noise probe on a finished run's saved model (``rlnorm probe``).

    A saved model has no buffer, so the states come from running its own stochastic policy in a fresh,
    seeded environment, as its buffer would have gathered them.

    :param run_dir: a run directory with ``config.json`` and ``model.zip``
    :param n_steps: transitions to gather
    :param n_draws: minibatches per probe state
    :param n_probe: probe states
    :return: network name -> measurement (:class:`rlnorm.probe.NoiseMeasurement`)
    """
    from rlnorm.probe import collect_transitions, probe_model

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file() or not (run_dir / "model.zip").is_file():
        raise ValueError(f"{run_dir} is not a finished run directory (it needs config.json and model.zip)")
    run_spec = json.loads((run_dir / "config.json").read_text())["run"]
    algo_class = load_agent(run_spec["algo"], run_spec["env_id"]).algo_class
    model = algo_class.load(run_dir / "model.zip", device="cpu")
    env = gym.make(run_spec["env_id"])
    normalize = None
    if (run_dir / "vecnormalize.pkl").exists():
        # The observation statistics as training left them, frozen.
        statistics = VecNormalize.load(str(run_dir / "vecnormalize.pkl"), DummyVecEnv([lambda: env]))
        statistics.training = False
        normalize = statistics.normalize_obs
    transitions = collect_transitions(model, env, n_steps, run_spec["seed"] + EVAL_SEED_OFFSET, normalize)
    return probe_model(model, n_draws=n_draws, n_probe=n_probe, transitions=transitions)
