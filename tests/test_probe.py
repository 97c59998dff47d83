"""The minibatch-noise probe against theory (docs/method.md#the-noise-probe) and on SB3 models."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import DQN, PPO, SAC, TD3
from stable_baselines3.common.env_util import make_vec_env
from torch import nn

from rlnorm.core.norms import BatchNorm, MeanOnlyBatchNorm, get_norm
from rlnorm.core.policies import NormActorCriticPolicy, NormDQNPolicy, NormSACPolicy, NormTD3Policy
from rlnorm.core.probe import (
    collect_transitions,
    minibatch_noise,
    noise_excess_kurtosis,
    probe_model,
    probe_run,
    statistics_drift,
)
from rlnorm.study.config import EvalSettings, single_run
from rlnorm.study.run import run_one

SIGMA, FEATURES, POOL, B = 2.0, 8, 20_000, 64


@pytest.fixture(scope="module")
def gaussian_pool():
    return torch.randn(POOL, FEATURES, generator=torch.Generator().manual_seed(0)) * SIGMA


def test_mean_only_noise_is_sigma_over_root_b(gaussian_pool):
    measured = minibatch_noise(MeanOnlyBatchNorm(FEATURES), gaussian_pool, B, n_draws=64, n_probe=32)
    expected = SIGMA * math.sqrt(B - 1) / B  # sd of the mean of B-1 others, divided by B
    assert measured.noise == pytest.approx(expected, rel=0.08)


def test_batch_norm_noise_follows_the_clt_prediction(gaussian_pool):
    layer = BatchNorm(FEATURES)
    measured = minibatch_noise(layer, gaussian_pool, B, n_draws=64, n_probe=32)
    # Per probe state and unit, sd ≈ sqrt((1 + z²/2) / B) at standardized value z; average the same way.
    probe = gaussian_pool[torch.randperm(POOL, generator=torch.Generator().manual_seed(0))[:32]]
    z = probe / SIGMA
    expected = torch.sqrt((1 + z**2 / 2) / B).mean().item()
    assert measured.noise == pytest.approx(expected, rel=0.08)
    # and BN's noise exceeds mean-only BN's once both are in the same units (divide mobn's by sigma)
    mean_only = minibatch_noise(MeanOnlyBatchNorm(FEATURES), gaussian_pool, B, n_draws=64, n_probe=32)
    assert measured.noise > mean_only.noise / SIGMA


@pytest.mark.parametrize("norm", ["none", "wn", "ln", "rms"])
def test_batch_independent_networks_have_no_noise_and_no_gap(gaussian_pool, norm):
    torch.manual_seed(0)
    network = nn.Sequential(get_norm(norm).factory(nn.Linear(FEATURES, 16)), nn.Tanh(), nn.Linear(16, 3))
    measured = minibatch_noise(network, gaussian_pool, B, n_draws=8, n_probe=8)
    assert measured.noise < 1e-6 and measured.gap < 1e-6
    assert all(value < 1e-6 for value in measured.noise_per_layer.values())


def test_per_layer_noise_and_gap_are_reported_for_each_normalized_layer(gaussian_pool):
    torch.manual_seed(0)
    network = nn.Sequential(get_norm("bn").factory(nn.Linear(FEATURES, 16)), nn.ReLU(),
                            get_norm("bn").factory(nn.Linear(16, 16)), nn.ReLU(), nn.Linear(16, 2))
    network.train()
    network(gaussian_pool[:512])  # running statistics that are not the data's: a real train/eval gap
    measured = minibatch_noise(network, gaussian_pool, B, n_draws=8, n_probe=8)
    assert set(measured.noise_per_layer) == {"0", "2"}
    assert all(value > 0.01 for value in measured.noise_per_layer.values())
    assert measured.gap > 0 and measured.noise_per_output.shape == (2,)


def test_probe_leaves_the_network_and_the_global_generator_untouched(gaussian_pool):
    network = nn.Sequential(get_norm("wn+mobn").factory(nn.Linear(FEATURES, 16), init="data"), nn.Tanh(),
                            get_norm("sn").factory(nn.Linear(16, 16)), nn.Linear(16, 1))
    network.eval()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    rng_state = torch.get_rng_state()
    minibatch_noise(network, gaussian_pool, B, n_draws=4, n_probe=4)
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert not any(module.training for module in network.modules())
    for key, value in network.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_probe_rejects_impossible_settings(gaussian_pool):
    with pytest.raises(ValueError, match="batch_size 30000 exceeds the 20000 states"):
        minibatch_noise(BatchNorm(FEATURES), gaussian_pool, 30_000)
    with pytest.raises(ValueError, match="n_draws must be at least 2"):
        minibatch_noise(BatchNorm(FEATURES), gaussian_pool, B, n_draws=1)


MODELS = {
    "ppo": (lambda norm: PPO(NormActorCriticPolicy, make_vec_env("CartPole-v1", n_envs=2, seed=0), n_steps=64,
                             batch_size=32, seed=0, policy_kwargs=dict(norm=norm, net_arch=[16])),
            128, {"actor", "value"}),
    "dqn": (lambda norm: DQN(NormDQNPolicy, "CartPole-v1", learning_starts=64, batch_size=32, seed=0,
                             policy_kwargs=dict(norm=norm, net_arch=[16])), 128, {"q"}),
    "sac": (lambda norm: SAC(NormSACPolicy, "Pendulum-v1", learning_starts=64, batch_size=32, seed=0,
                             policy_kwargs=dict(norm=norm, net_arch=[16])), 80, {"actor", "critic"}),
    "td3": (lambda norm: TD3(NormTD3Policy, "Pendulum-v1", learning_starts=64, batch_size=32, seed=0,
                             policy_kwargs=dict(norm=norm, net_arch=[16])), 80, {"actor", "critic"}),
}


@pytest.mark.parametrize("algo", list(MODELS))
def test_probe_model_measures_every_network_from_its_own_buffer(algo):
    build, steps, networks = MODELS[algo]
    for norm in ("none", "bn"):
        model = build(norm)
        model.learn(steps)
        measured = probe_model(model, n_draws=4, n_probe=4)
        assert set(measured) == networks
        for measurement in measured.values():
            assert (measurement.noise > 1e-4) == (norm == "bn")


@pytest.mark.parametrize("norm_kwargs", [{}, {"norm_mode": "fixed", "norm_kwargs": {"injected_noise": 1.0}}])
def test_probing_during_training_does_not_change_the_run(norm_kwargs):
    def train(probe: bool):
        model = PPO(NormActorCriticPolicy, make_vec_env("CartPole-v1", n_envs=2, seed=0), n_steps=64, batch_size=32,
                    seed=0, policy_kwargs=dict(norm="bn", net_arch=[16], **norm_kwargs))
        model.learn(128)
        # As at an evaluation point: eval mode, a folded layer cached by predict, then the probe.
        model.predict(np.zeros((2, 4), dtype=np.float32), deterministic=True)
        if probe:
            probe_model(model, n_draws=4, n_probe=4)
        model.learn(128, reset_num_timesteps=False)
        return np.concatenate([p.detach().numpy().ravel() for p in model.policy.state_dict().values()])

    np.testing.assert_array_equal(train(probe=True), train(probe=False))


def test_a_batch_that_is_the_whole_pool_has_exactly_no_noise(gaussian_pool):
    pool = gaussian_pool[:64]
    measured = minibatch_noise(BatchNorm(FEATURES), pool, batch_size=64, n_draws=4, n_probe=4)
    assert measured.noise == 0.0


def test_injected_noise_is_measured_as_batch_noise_of_its_size_even_on_the_whole_pool(gaussian_pool):
    # d = 1: the scatter of the statistics of a batch of B, so about mean-only BN's own noise at B.
    torch.manual_seed(0)
    fixed = MeanOnlyBatchNorm(FEATURES, injected_noise=1.0)
    fixed.set_statistics("fixed")
    with torch.no_grad():
        fixed(gaussian_pool)
    state = torch.get_rng_state()
    measured = minibatch_noise(fixed, gaussian_pool, B, n_draws=64, n_probe=32)
    assert torch.equal(torch.get_rng_state(), state)  # the probe draws from the global generator and puts it back
    assert measured.noise == pytest.approx(SIGMA / math.sqrt(B), rel=0.1)
    whole_pool = minibatch_noise(fixed, gaussian_pool[:B], batch_size=B, n_draws=16, n_probe=8)
    assert whole_pool.noise > 0.1


def test_a_layer_waiting_to_fix_its_statistics_is_probed_with_each_draws_own_batch(gaussian_pool):
    # Before the first update every draw is that first batch: each fixes the statistics from itself, as batch
    # statistics would, not from the probe's first draw.
    waiting = MeanOnlyBatchNorm(FEATURES)
    waiting.set_statistics("fixed")
    measured = minibatch_noise(waiting, gaussian_pool, B, n_draws=16, n_probe=8)
    plain = minibatch_noise(MeanOnlyBatchNorm(FEATURES), gaussian_pool, B, n_draws=16, n_probe=8)
    assert measured.noise == pytest.approx(plain.noise, rel=1e-6) and plain.noise > 0.1
    assert not bool(waiting.statistics_fixed)


def test_the_gap_at_a_whole_pool_batch_is_train_mode_on_the_pool_against_eval_mode():
    torch.manual_seed(0)
    pool = torch.randn(64, FEATURES) * 3.0 + 1.0
    layer = BatchNorm(FEATURES)
    measured = minibatch_noise(layer, pool, batch_size=64, n_draws=4, n_probe=64)
    with torch.no_grad():
        evaluated = layer.eval()(pool)  # before the train-mode call, which moves the running statistics
        expected = (layer.train()(pool) - evaluated).abs().mean().item()
    assert measured.gap == pytest.approx(expected, rel=1e-5) and expected > 0.5


def test_states_gathered_for_a_saved_model_are_what_its_policy_saw():
    model = MODELS["ppo"][0]("bn")
    seen = []

    def normalize(observation):
        normalized = (observation - 1.0) / 2.0
        seen.append(normalized)
        return normalized

    observations, actions = collect_transitions(model, gym.make("CartPole-v1"), 20, 3, normalize_observation=normalize)
    np.testing.assert_array_equal(observations, np.stack(seen).astype(np.float32))
    assert actions.shape == (20, 1)
    raw, _ = collect_transitions(model, gym.make("CartPole-v1"), 20, seed=3)
    np.testing.assert_allclose(raw[0], observations[0] * 2.0 + 1.0, atol=1e-6)  # same first state, unnormalized


def test_probe_a_saved_run_that_normalized_observations(tmp_path):
    spec = single_run("a2c", "Pendulum-v1", "bn", seed=0, timesteps=160, eval_settings=EvalSettings(160, 1))
    assert run_one(spec, tmp_path).ok and (tmp_path / "vecnormalize.pkl").is_file()
    measured = probe_run(tmp_path, n_steps=100, n_draws=4, n_probe=4)
    assert set(measured) == {"actor", "value"} and all(m.noise > 1e-4 for m in measured.values())


def test_statistics_drift_is_the_relative_change_and_undefined_from_zero():
    before = torch.tensor([3.0, 4.0])
    assert statistics_drift(before, torch.tensor([3.0, 4.0])) == 0.0
    assert statistics_drift(before, torch.tensor([6.0, 8.0])) == pytest.approx(1.0)
    # mean-only BN's running mean before any update: a change relative to nothing has no size
    assert math.isnan(statistics_drift(torch.zeros(2), torch.tensor([0.1, 0.0])))


# The scale-free probe: relative noise and the noise's shape ---------------------------------------------

RATIO_B, RATIO_STATES, RATIO_DRAWS, RATIO_POOL = 32, 200, 16, 4_000


def laplace_sample(shape: tuple[int, ...], scale: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    sign = torch.randint(0, 2, shape, generator=generator) * 2 - 1
    return sign * torch.empty(shape).exponential_(generator=generator) * scale


def relative_noise_of(layer: nn.Module, pool: torch.Tensor) -> float:
    # A smaller pool than the module's: each draw shuffles the pool, and 4,000 states are plenty for B = 32.
    return minibatch_noise(layer, pool[:RATIO_POOL], RATIO_B, n_draws=RATIO_DRAWS, n_probe=RATIO_STATES).relative_noise


def batch_norm_matching(pool: torch.Tensor) -> BatchNorm:
    # Running statistics equal to the data's, as a trained layer's are: its eval output is standardized.
    layer = BatchNorm(FEATURES)
    layer.running_mean.copy_(pool.mean(0))
    layer.running_var.copy_(pool.var(0))
    return layer


def test_mean_only_relative_noise_is_root_b_minus_one_over_b(gaussian_pool):
    expected = math.sqrt(RATIO_B - 1) / RATIO_B  # sd of the mean of B-1 others over B, relative to sigma
    assert relative_noise_of(MeanOnlyBatchNorm(FEATURES), gaussian_pool) == pytest.approx(expected, rel=0.05)


def test_batch_norm_is_noisier_than_mean_only_relative_to_spread_and_more_so_on_heavy_tails(gaussian_pool):
    laplace = laplace_sample((RATIO_POOL, FEATURES), SIGMA / math.sqrt(2), seed=1)  # variance SIGMA^2
    ratios = {
        name: relative_noise_of(batch_norm_matching(pool), pool) / relative_noise_of(MeanOnlyBatchNorm(FEATURES), pool)
        for name, pool in (("gaussian", gaussian_pool), ("laplace", laplace))
    }
    # Linearized, BN's noise at standardized value z is sqrt((1 + (kurtosis - 1) z^2 / 4) / B): averaged over
    # z, about 1.22 times mean-only BN's on Gaussian features (kurtosis 3) and 1.4 on Laplace ones (6).
    assert 1.12 < ratios["gaussian"] < 1.32
    assert 1.28 < ratios["laplace"] < 1.52 and ratios["laplace"] > ratios["gaussian"] + 0.1


def test_mean_only_noise_is_gaussian_by_its_excess_kurtosis(gaussian_pool):
    measured = minibatch_noise(MeanOnlyBatchNorm(FEATURES), gaussian_pool[:RATIO_POOL], RATIO_B,
                               n_draws=RATIO_DRAWS, n_probe=RATIO_STATES)
    assert measured.noise_excess_kurtosis == pytest.approx(0.0, abs=0.08)


@pytest.mark.parametrize("n_draws", [8, 200])
def test_excess_kurtosis_of_gaussian_draws_is_zero_at_any_number_of_draws(n_draws):
    generator = torch.Generator().manual_seed(n_draws)
    groups = 160_000 // n_draws
    draws = torch.randn(groups, n_draws, 1, generator=generator) * 3.0 + 5.0
    assert noise_excess_kurtosis(draws) == pytest.approx(0.0, abs=0.06)
    # Laplace's excess kurtosis is 3; 8 draws standardized by their own spread cannot show much of it.
    assert noise_excess_kurtosis(laplace_sample((groups, n_draws, 1), 1.0, seed=2)) > (0.3 if n_draws == 8 else 2.0)


@pytest.mark.parametrize("norm", ["none", "ln"])
def test_batch_independent_layers_have_zero_relative_noise_and_no_noise_shape(gaussian_pool, norm):
    torch.manual_seed(0)
    layer = get_norm(norm).factory(nn.Linear(FEATURES, 16))
    measured = minibatch_noise(nn.Sequential(layer), gaussian_pool, B, n_draws=8, n_probe=8)
    assert measured.relative_noise == 0.0 and math.isnan(measured.noise_excess_kurtosis)


def test_relative_noise_does_not_change_when_a_units_output_is_scaled(gaussian_pool):
    def measure(network: nn.Module, pool: torch.Tensor):
        return minibatch_noise(network, pool, B, n_draws=16, n_probe=16, seed=3)

    torch.manual_seed(0)
    network = nn.Sequential(get_norm("mobn").factory(nn.Linear(FEATURES, 16)), nn.Tanh(), nn.Linear(16, 3))
    plain = measure(network, gaussian_pool)
    scaled_inputs = measure(MeanOnlyBatchNorm(FEATURES), gaussian_pool * 10)
    unscaled_inputs = measure(MeanOnlyBatchNorm(FEATURES), gaussian_pool)
    with torch.no_grad():
        network[2].weight.mul_(10)
        network[2].bias.mul_(10)
    scaled_outputs = measure(network, gaussian_pool)
    assert scaled_outputs.noise == pytest.approx(10 * plain.noise, rel=1e-4)  # the units' noise did scale
    assert scaled_outputs.relative_noise == pytest.approx(plain.relative_noise, rel=1e-4)
    assert scaled_inputs.noise == pytest.approx(10 * unscaled_inputs.noise, rel=1e-4)
    assert scaled_inputs.relative_noise == pytest.approx(unscaled_inputs.relative_noise, rel=1e-4)
    assert scaled_outputs.relative_noise_per_layer["0"] == pytest.approx(plain.relative_noise_per_layer["0"], rel=1e-4)


def test_ghost_batches_raise_the_measured_noise_about_root_k_fold(gaussian_pool):
    noise = {k: relative_noise_of(MeanOnlyBatchNorm(FEATURES, ghost_batches=k), gaussian_pool) for k in (1, 4, 16)}
    # The probe state's ghost batch holds B/k samples: noise sqrt(B/k - 1) / (B/k), relative to sigma.
    for k in (4, 16):
        size = RATIO_B // k
        assert noise[k] == pytest.approx(math.sqrt(size - 1) / size, rel=0.06)
    assert noise[1] < noise[4] < noise[16]


# The probe leaves every piece of state as it found it ----------------------------------------------------

def test_a_probe_before_the_first_batch_does_not_stop_fixed_statistics_from_being_fixed(gaussian_pool):
    layer = get_norm("bn").factory(nn.Linear(FEATURES, 4))
    layer.norm.set_statistics("fixed")
    minibatch_noise(layer, gaussian_pool, B, n_draws=2, n_probe=2)
    first = gaussian_pool[:128] + 3.0
    layer.train()(first)
    with torch.no_grad():
        pre_norm = layer.layer(first)
    torch.testing.assert_close(layer.norm.running_mean, pre_norm.mean(0))
    assert bool(layer.norm.statistics_fixed)


def test_off_policy_probe_states_are_normalized_as_training_batches_are():
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from rlnorm.core.probe import buffer_transitions

    env = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]), norm_reward=False)
    model = SAC(NormSACPolicy, env, learning_starts=64, batch_size=32, seed=0,
                policy_kwargs=dict(norm="bn", net_arch=[16]))
    model.learn(80)
    observations, actions = buffer_transitions(model)
    stored = model.replay_buffer.observations[: model.replay_buffer.pos, 0]
    np.testing.assert_allclose(observations, env.normalize_obs(stored), rtol=1e-6)
    assert not np.allclose(observations, stored)  # the buffer itself holds raw observations
    sampled = model.replay_buffer.sample(8, env=env)  # what a training batch is made of
    assert sampled.observations.abs().max() <= env.clip_obs


def test_the_drift_of_batch_renorm_statistics_leaves_out_its_update_count():
    from rlnorm.core.probe import running_statistics

    layer = get_norm("brn").factory(nn.Linear(FEATURES, 4))
    layer.train()(torch.randn(32, FEATURES))
    assert layer.norm.running_batches.item() == 1
    torch.testing.assert_close(running_statistics(layer), torch.cat([layer.norm.running_mean, layer.norm.running_var]))
