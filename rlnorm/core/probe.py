"""The minibatch-noise probe: how much a network's output for a state depends on the batch (the method and its
theory: docs/method.md#the-noise-probe).

For each probe state x, the probe draws K minibatches of B-1 other states from the same pool, runs
the network in train mode on [x, others] with gradients off, and keeps the output for x:

- minibatch noise of x = std over the K draws (per output unit, then averaged), Huang et al. 2019's
  stochastic normalization disturbance; zero for batch-independent networks;
- train/eval gap of x = |mean over the draws - eval-mode output| (per unit, then averaged).

The probe leaves the network exactly as it found it (parameters, running statistics, power-iteration
vectors, modes) and draws its minibatches from its own generator, so probing during training does not
change the training run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer, RolloutBuffer
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from stable_baselines3.dqn.policies import DQNPolicy
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

from rlnorm.core.envs import make_env
from rlnorm.core.norms import BatchStatisticsNorm, NormalizedLayer
from rlnorm.study.agents import load_agent
from rlnorm.study.records import EVAL_SEED_OFFSET, PROBE_DRAWS, PROBE_STATES


@dataclass(frozen=True)
class NoiseMeasurement:
    """What the probe measured on one network.

    Noise and gap are in the output's own units, so they grow with the output's scale: a diverged critic
    looks noisy. ``relative_noise`` and ``noise_excess_kurtosis`` do not depend on that scale.

    :param noise: minibatch noise, averaged over probe states and output units
    :param gap: train/eval gap, averaged over probe states and output units
    :param relative_noise: the noise over the eval-mode spread of the output across probe states, each
        averaged over the same units (:func:`relative_noise`); nan with fewer than 2 probe states or
        outputs that do not vary
    :param noise_excess_kurtosis: the shape of the noise, 0 for Gaussian noise (:func:`noise_excess_kurtosis`);
        nan where there is no noise
    :param noise_per_output: minibatch noise of each output unit, averaged over probe states
    :param batch_size: B, the batch size probed at
    :param pool_size: the number of states the minibatches were drawn from; when it equals ``batch_size``
        every draw is the same batch and the noise is 0 by construction, unless a layer injects noise
    :param noise_per_layer: minibatch noise of each normalized layer's output, by module name
    :param gap_per_layer: train/eval gap of each normalized layer's output, by module name
    :param relative_noise_per_layer: relative noise of each normalized layer's output, by module name
    :param noise_excess_kurtosis_per_layer: noise shape of each normalized layer's output, by module name
    """

    noise: float
    gap: float
    relative_noise: float
    noise_excess_kurtosis: float
    noise_per_output: np.ndarray
    batch_size: int
    pool_size: int
    noise_per_layer: dict[str, float] = field(default_factory=dict)
    gap_per_layer: dict[str, float] = field(default_factory=dict)
    relative_noise_per_layer: dict[str, float] = field(default_factory=dict)
    noise_excess_kurtosis_per_layer: dict[str, float] = field(default_factory=dict)


def relative_noise(draws: torch.Tensor, evals: torch.Tensor) -> float:
    """Minibatch noise relative to the spread of the output across states: unchanged when a unit's output
    is scaled. A ratio of averages, so that near-constant units (a policy's logits at initialization, a
    dead ReLU) cannot dominate it as they would an average of per-unit ratios.

    :param draws: outputs for each probe state in each draw, (states, draws, units)
    :param evals: eval-mode outputs for each probe state, (states, units)
    :return: (noise sd over draws, averaged over states and units) / (sd of ``evals`` over states, averaged
        over units); nan with fewer than 2 states or eval-mode outputs that do not vary
    """
    if evals.shape[0] < 2:
        return math.nan
    spread = evals.double().std(dim=0).mean().item()
    return draws.double().std(dim=1).mean().item() / spread if spread > 0 else math.nan


def noise_excess_kurtosis(draws: torch.Tensor) -> float:
    """The shape of the minibatch noise: the excess kurtosis of the draws' deviations from their per-state
    mean, standardized per (state, unit) and pooled; 0 for Gaussian noise, larger for heavy-tailed noise.

    Standardizing K draws by their own (biased) standard deviation pulls the kurtosis of Gaussian draws
    down to 3 (K - 1) / (K + 1) on average, exactly; that bias is removed, so Gaussian noise gives 0 for any K.

    :param draws: outputs for each probe state in each draw, (states, draws, units)
    :return: the excess kurtosis; nan where no (state, unit) has any noise
    """
    n_draws = draws.shape[1]
    deviations = draws.double() - draws.double().mean(dim=1, keepdim=True)
    second, fourth = deviations.pow(2).mean(dim=1), deviations.pow(4).mean(dim=1)
    # Deviations at float rounding of the output are not noise.
    noisy = second.sqrt() > 1e-6 * draws.abs().amax().double().clamp_min(1e-12)
    if not noisy.any():
        return math.nan
    return (fourth[noisy] / second[noisy] ** 2).mean().item() - 3 * (n_draws - 1) / (n_draws + 1)


_PLAIN = (bool, int, float, str, type(None))


@contextmanager
def untouched(module: nn.Module) -> Iterator[Callable[[], None]]:
    """Restore every parameter, buffer, mode and plain attribute of ``module`` and its submodules on exit,
    in place; the context value is a function that restores the parameters and buffers at any time inside.
    Torch's global random state is restored too: a layer that injects noise draws from it.

    In place, because SB3 holds references to running-statistics buffers (docs/method.md#sb3-and-the-norms).
    Data-dependent initialization is held off: a probe must not be the batch a layer initializes from.

    :param module: the network to protect
    """
    saved = {name: value.detach().clone() for name, value in module.state_dict(keep_vars=True).items()}
    # Plain attributes too (the mode, the hold on data-dependent initialization...): a train-mode call may
    # change them, and a probe must not be that call.
    attributes = {sub: {key: value for key, value in vars(sub).items() if isinstance(value, _PLAIN)}
                  for sub in module.modules()}
    layers = [layer for layer in module.modules() if isinstance(layer, NormalizedLayer)]
    for layer in layers:
        layer.hold_data_init(True)

    def restore() -> None:
        with torch.no_grad():
            for name, value in module.state_dict(keep_vars=True).items():
                value.copy_(saved[name])
        for layer in layers:
            # A fold computed from state that was just overwritten in place must not be reused.
            layer.drop_folded()

    # The generators of the devices the module is on: an injected dose draws from them.
    devices = sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=devices):
            yield restore
    finally:
        restore()
        # Also ends the hold on data-dependent initialization.
        for sub, values in attributes.items():
            vars(sub).update(values)


def injects_noise(module: nn.Module) -> bool:
    """:return: whether a layer of ``module`` injects noise into its statistics in train mode (``injected_noise``
    with running or fixed statistics), so that the same batch gives different outputs"""
    return any(isinstance(layer, BatchStatisticsNorm) and layer.injects_noise for layer in module.modules())


def _layer_outputs(module: nn.Module, recorded: dict[str, torch.Tensor]) -> list:
    """Register hooks that keep the first row of each normalized layer's output."""

    def keep_first_row(name: str):
        def hook(_module: nn.Module, _args: tuple, output: torch.Tensor) -> None:
            recorded[name] = output[0].clone()

        return hook

    return [
        layer.register_forward_hook(keep_first_row(name))
        for name, layer in module.named_modules()
        if isinstance(layer, NormalizedLayer)
    ]


def minibatch_noise(
    module: nn.Module,
    states: torch.Tensor,
    batch_size: int,
    n_draws: int = PROBE_DRAWS,
    n_probe: int = PROBE_STATES,
    seed: int = 0,
) -> NoiseMeasurement:
    """Measure the minibatch noise and the train/eval gap of ``module`` on a pool of states.

    :param module: a network mapping a batch of rows to a batch of outputs
    :param states: the pool, one state (network input) per row; probe states and their minibatch
        companions are drawn from it
    :param batch_size: B, the batch size the network is trained with
    :param n_draws: K, minibatches per probe state
    :param n_probe: number of probe states (at most the pool size)
    :param seed: seed of the probe's own generator
    :return: the measurement
    """
    n_states = states.shape[0]
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 (a sample and one other), got {batch_size}")
    if batch_size > n_states:
        raise ValueError(f"batch_size {batch_size} exceeds the {n_states} states in the pool")
    if n_draws < 2:
        raise ValueError(f"n_draws must be at least 2 to measure a spread, got {n_draws}")
    if n_probe < 1:
        raise ValueError(f"n_probe must be at least 1, got {n_probe}")
    generator = torch.Generator().manual_seed(seed)
    probe_indices = torch.randperm(n_states, generator=generator)[: min(n_probe, n_states)]

    outputs, layer_draws, eval_outputs, eval_layers = [], [], [], []
    recorded: dict[str, torch.Tensor] = {}
    hooks = _layer_outputs(module, recorded)
    try:
        with untouched(module) as restore, torch.no_grad():
            module.eval()
            for index in probe_indices:
                eval_outputs.append(module(states[index : index + 1])[0])
                eval_layers.append(dict(recorded))
            module.train()
            # A batch of the whole pool is the same batch at every draw (sorted, see below): one forward
            # stands for all of them, as with PPO's zoo settings on CartPole, unless a layer injects noise.
            whole_pool = batch_size == n_states and not injects_noise(module)
            for index in probe_indices:
                draws, draws_by_layer = [], []
                for _ in range(1 if whole_pool else n_draws):
                    others = torch.randperm(n_states - 1, generator=generator)[: batch_size - 1].sort().values
                    # Skip the probe state itself. Sorted: the order of a batch changes its output only by
                    # float rounding, which must not pass for noise (when B is the whole pool, as with
                    # PPO's zoo settings on CartPole, every draw is the same batch).
                    others = others + (others >= index).long()
                    batch = torch.cat([states[index : index + 1], states[others]])
                    draws.append(module(batch)[0])
                    draws_by_layer.append(dict(recorded))
                    # Every draw starts from the same state: a train-mode call may move statistics.
                    restore()
                if whole_pool:
                    draws, draws_by_layer = draws * n_draws, draws_by_layer * n_draws
                outputs.append(torch.stack(draws))
                layer_draws.append({name: torch.stack([d[name] for d in draws_by_layer]) for name in recorded})
    finally:
        for hook in hooks:
            hook.remove()

    draws = torch.stack(outputs)  # probe states x draws x outputs
    evals = torch.stack(eval_outputs)
    by_layer = {
        name: (torch.stack([per_state[name] for per_state in layer_draws]),
               torch.stack([evaluated[name] for evaluated in eval_layers]))
        for name in (layer_draws[0] if layer_draws else {})
    }
    return NoiseMeasurement(
        noise=draws.std(dim=1).mean().item(),
        gap=(draws.mean(dim=1) - evals).abs().mean().item(),
        relative_noise=relative_noise(draws, evals),
        noise_excess_kurtosis=noise_excess_kurtosis(draws),
        noise_per_output=draws.std(dim=1).mean(dim=0).numpy(),
        batch_size=batch_size,
        pool_size=n_states,
        noise_per_layer={name: d.std(dim=1).mean().item() for name, (d, _) in by_layer.items()},
        gap_per_layer={name: (d.mean(dim=1) - e).abs().mean().item() for name, (d, e) in by_layer.items()},
        relative_noise_per_layer={name: relative_noise(d, e) for name, (d, e) in by_layer.items()},
        noise_excess_kurtosis_per_layer={name: noise_excess_kurtosis(d) for name, (d, _) in by_layer.items()},
    )


def buffer_transitions(model: BaseAlgorithm) -> tuple[np.ndarray, np.ndarray]:
    """The states of a model's own rollout or replay buffer, as its training batches see them.

    :param model: an SB3 model
    :return: (observations, actions as the buffer stores them), one transition per row; observations
        normalized with the model's ``VecNormalize`` statistics where a replay buffer stores them raw (SB3
        normalizes them when it samples a batch; a rollout buffer stores them normalized already)
    """
    buffer = model.rollout_buffer if hasattr(model, "rollout_buffer") else model.replay_buffer
    if isinstance(buffer, RolloutBuffer) and buffer.generator_ready:
        # PPO/A2C flatten the rollout in place, (steps, envs, ...) -> (steps * envs, ...), when they train.
        observations, actions = buffer.observations, buffer.actions
    else:
        n_rows = buffer.buffer_size if buffer.full else buffer.pos
        observations, actions = buffer.observations[:n_rows], buffer.actions[:n_rows]
        observations = observations.reshape(n_rows * buffer.n_envs, *observations.shape[2:])
        actions = actions.reshape(n_rows * buffer.n_envs, -1)
    vec_normalize = model.get_vec_normalize_env()
    if isinstance(buffer, ReplayBuffer) and vec_normalize is not None:
        observations = vec_normalize.normalize_obs(observations)
    return observations, actions


def policy_networks(
    model: BaseAlgorithm, transitions: tuple[np.ndarray, np.ndarray] | None = None
) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """The networks of an SB3 model, each with its pool of inputs, preprocessed as SB3 does (images scaled).

    Actor-critic (PPO, A2C): ``actor`` (action logits or means) and ``value``; DQN: ``q``; SAC and TD3:
    ``actor`` (mean action) and ``critic`` (the first Q-network, on state-action pairs).

    :param model: the model
    :param transitions: (observations, actions as the buffer stores them), one per row; default: the
        model's own rollout or replay buffer (:func:`buffer_transitions`), which must not be empty
    :return: network name -> (network, pool of inputs)
    """
    policy = model.policy
    observed, acted = transitions or buffer_transitions(model)
    # Observations keep their shape (an image stays an image); the critic's state-action rows are flat.
    observations = preprocess_obs(torch.as_tensor(observed), policy.observation_space, policy.normalize_images)
    flat = observations.reshape(observations.shape[0], -1).numpy()
    pairs = torch.as_tensor(np.concatenate([flat, acted.reshape(acted.shape[0], -1)], axis=1), dtype=torch.float32)
    if observations.shape[0] == 0:
        raise ValueError("the model's buffer is empty: train it (or collect a rollout) before probing")
    if isinstance(policy, ActorCriticPolicy):
        extractor = policy.mlp_extractor
        return {
            "actor": (nn.Sequential(policy.pi_features_extractor, extractor.policy_net, policy.action_net),
                      observations),
            "value": (nn.Sequential(policy.vf_features_extractor, extractor.value_net, policy.value_net),
                      observations),
        }
    if isinstance(policy, DQNPolicy):
        # The Q-network preprocesses its input itself: it gets the observations as stored.
        return {"q": (policy.q_net, torch.as_tensor(observed))}
    if isinstance(policy, (SACPolicy, TD3Policy)):
        actor = policy.actor
        if isinstance(policy, SACPolicy):
            actor_net = nn.Sequential(actor.features_extractor, actor.latent_pi, actor.mu)
        else:
            actor_net = nn.Sequential(actor.features_extractor, actor.mu)
        # Replay buffers store actions scaled to [-1, 1], which is what the critic sees in training.
        return {"actor": (actor_net, observations), "critic": (policy.critic.q_networks[0], pairs)}
    raise ValueError(f"no probe for policy class {type(policy).__name__}")


def collect_transitions(
    model: BaseAlgorithm,
    env: gym.Env,
    n_steps: int,
    seed: int = 0,
    normalize_observation: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, ...]:
    """Run the model's own stochastic policy to gather states, for a model saved without its buffer.

    :param model: the model
    :param env: an environment of the kind it was trained on
    :param n_steps: transitions to gather
    :param seed: seed of the environment
    :param normalize_observation: what the model's ``VecNormalize`` did to observations, if it had one
        (its saved statistics' ``normalize_obs``): the policy acts on, and a buffer stores, normalized ones
    :return: (observations, actions as SB3's buffers store them: scaled to [-1, 1] for Box spaces)
    """
    observations, actions = [], []
    observation, _ = env.reset(seed=seed)
    for _ in range(n_steps):
        if normalize_observation is not None:
            observation = normalize_observation(observation)
        action, _ = model.predict(observation, deterministic=False)
        observations.append(np.asarray(observation, dtype=np.float32))
        stored = model.policy.scale_action(action) if isinstance(env.action_space, gym.spaces.Box) else action
        actions.append(np.asarray(stored, dtype=np.float32).reshape(-1))
        observation, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            observation, _ = env.reset()
    return np.stack(observations), np.stack(actions)


def training_batch_size(model: BaseAlgorithm) -> int:
    """:param model: an SB3 model
    :return: the size of its training minibatches (A2C trains on the whole rollout)"""
    return getattr(model, "batch_size", None) or model.n_steps * model.n_envs


def probe_model(
    model: BaseAlgorithm,
    batch_size: int | None = None,
    n_draws: int = PROBE_DRAWS,
    n_probe: int = PROBE_STATES,
    seed: int = 0,
    transitions: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, NoiseMeasurement]:
    """Probe every network of an SB3 model.

    :param model: a trained (or training) SB3 model with an MLP policy
    :param batch_size: minibatch size to probe at; default: the batch size the algorithm trains with
    :param n_draws: minibatches per probe state
    :param n_probe: number of probe states
    :param seed: seed of the probe's own generator
    :param transitions: the states to probe on (see :func:`policy_networks`); default: the model's buffer
    :return: network name -> measurement
    """
    if batch_size is None:
        batch_size = training_batch_size(model)
    measurements = {}
    for name, (network, pool) in policy_networks(model, transitions).items():
        measurements[name] = minibatch_noise(network, pool, min(batch_size, pool.shape[0]), n_draws, n_probe, seed)
    return measurements


def running_statistics(module: nn.Module) -> torch.Tensor | None:
    """:param module: a network
    :return: a copy of all its ``running_*`` statistics, concatenated (None if it has none); Batch Renorm's
        update count, a ``running_*`` buffer too, is no statistic
    """
    buffers = [buffer.detach().flatten() for name, buffer in module.named_buffers()
               if "running_" in name and not name.endswith("running_batches")]
    return torch.cat(buffers).clone() if buffers else None


def statistics_drift(before: torch.Tensor, after: torch.Tensor) -> float:
    """How far running statistics moved: ‖after - before‖ / ‖before‖ (mechanism (c) of
    docs/method.md#mechanisms-and-norm-modes).

    :param before: a :func:`running_statistics` snapshot
    :param after: a later one of the same network
    :return: the relative L2 change; nan when ``before`` is all zeros (mean-only BN before its first
        update, e.g. an off-policy agent before ``learning_starts``), since a change relative to
        nothing has no size
    """
    scale = before.norm()
    return math.nan if scale == 0 else ((after - before).norm() / scale).item()


def probe_run(
    run_dir: str | Path, n_steps: int = 2_000, n_draws: int = PROBE_DRAWS, n_probe: int = PROBE_STATES
) -> dict[str, Any]:
    """The minibatch-noise probe on a finished run's saved model (``rlnorm probe``).

    A saved model has no buffer, so the states come from running its own stochastic policy in a fresh,
    seeded environment, as its buffer would have gathered them.

    :param run_dir: a run directory with ``config.json`` and ``model.zip``
    :param n_steps: transitions to gather
    :param n_draws: minibatches per probe state
    :param n_probe: probe states
    :return: network name -> measurement (:class:`rlnorm.core.probe.NoiseMeasurement`)
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file() or not (run_dir / "model.zip").is_file():
        raise ValueError(f"{run_dir} is not a finished run directory (it needs config.json and model.zip)")
    run_spec = json.loads((run_dir / "config.json").read_text())["run"]
    algo_class = load_agent(run_spec["algo"], run_spec["env_id"]).algo_class
    model = algo_class.load(run_dir / "model.zip", device="cpu")
    env = make_env(run_spec["env_id"])
    normalize = None
    if (run_dir / "vecnormalize.pkl").exists():
        # The observation statistics as training left them, frozen.
        statistics = VecNormalize.load(str(run_dir / "vecnormalize.pkl"), DummyVecEnv([lambda: env]))
        statistics.training = False
        normalize = statistics.normalize_obs
    transitions = collect_transitions(model, env, n_steps, run_spec["seed"] + EVAL_SEED_OFFSET, normalize)
    return probe_model(model, n_draws=n_draws, n_probe=n_probe, transitions=transitions)
