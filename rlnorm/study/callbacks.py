"""SB3 callbacks of a run: periodic evaluation, the minibatch-noise probe and statistics drift, and the logging
of what the policies here measure.

Evaluation runs the policy in eval mode with deterministic actions, which draw no random numbers, and the probe
draws from its own generator and restores everything it touches, so neither changes the training run.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, sync_envs_normalization

from rlnorm.core.probe import (
    minibatch_noise,
    policy_networks,
    running_statistics,
    statistics_drift,
    training_batch_size,
)
from rlnorm.study.config import EvalSettings, ProbeSettings
from rlnorm.study.records import OUTPUT_LAYER, PROBE_COLUMNS


class ModeMismatchCallback(BaseCallback):
    """Log the train/eval mode mismatch of a :class:`~rlnorm.core.policies.NormActorCriticPolicy` (PPO, A2C).

    Records ``train/mode_mismatch`` (mean |r - 1|) and ``train/mode_mismatch_max`` (max |r - 1|) of the
    probability ratio r on the first minibatch of each update, measured before any gradient step. They
    are recorded at the start of the next rollout, so they land in the same ``progress.csv`` row as the
    rest of that update's ``train/*`` values (SB3 dumps logs between a rollout and the update).

    :param verbose: SB3 verbosity
    """

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self._logged_updates = 0

    def _on_rollout_start(self) -> None:
        policy = self.model.policy
        if getattr(policy, "mode_mismatch_updates", 0) > self._logged_updates:
            self.logger.record("train/mode_mismatch", policy.mode_mismatch)
            self.logger.record("train/mode_mismatch_max", policy.mode_mismatch_max)
            self._logged_updates = policy.mode_mismatch_updates

    def _on_step(self) -> bool:
        return True


class NonFiniteError(RuntimeError):
    """The networks or the evaluation returns hold NaN or inf."""


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
    (at its output and per normalized layer: :func:`rlnorm.core.probe.minibatch_noise`), and the drift of its
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
        probe_rows, drift_rows = [], []
        for index, (name, (network, pool)) in enumerate(policy_networks(self.model).items()):
            # A minibatch size above the rollout trains on the whole rollout (SB3 only warns about it).
            batch_size = min(training_batch_size(self.model), pool.shape[0])
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
