"""Envs by id: MinAtar's images as SB3 takes them, Young & Tian's network body, and the norm in it."""

import importlib.util
import sys

import numpy as np
import pytest
from stable_baselines3 import DQN, PPO

from rlnorm.core.envs import make_env, register_minatar_envs
from rlnorm.core.extractors import MinAtarCNN
from rlnorm.core.norms import NormalizedLayer
from rlnorm.core.policies import NormActorCriticPolicy, NormDQNPolicy

needs_minatar = pytest.mark.skipif(importlib.util.find_spec("minatar") is None, reason="the minatar extra")


@needs_minatar
def test_observations_are_channels_first_floats_of_the_same_pixels():
    env = make_env("MinAtar/Breakout-v1")
    observation, _ = env.reset(seed=0)
    raw = env.unwrapped.game.state()  # MinAtar's own (10, 10, 4) bools
    assert env.observation_space.shape == observation.shape == (4, 10, 10) and observation.dtype == np.float32
    np.testing.assert_array_equal(observation, np.moveaxis(raw, -1, 0))


@needs_minatar
@pytest.mark.parametrize(("algo", "policy"), [(DQN, NormDQNPolicy), (PPO, NormActorCriticPolicy)])
def test_the_norm_goes_after_the_convolution_and_the_linear_of_young_and_tians_body(algo, policy):
    kwargs = {"learning_starts": 32, "batch_size": 16, "buffer_size": 256} if algo is DQN else \
        {"n_steps": 64, "batch_size": 32, "n_epochs": 1}
    model = algo(policy, make_env("MinAtar/Breakout-v1"), seed=0, **kwargs,
                 policy_kwargs={"norm": "wn+mobn", "features_extractor_class": MinAtarCNN, "net_arch": []})
    extractor = (model.q_net if algo is DQN else model.policy).features_extractor
    layers = [m.layer for m in extractor.modules() if isinstance(m, NormalizedLayer)]
    assert [(type(layer).__name__, layer.weight.shape) for layer in layers] == [
        ("ParametrizedConv2d", (16, 4, 3, 3)), ("ParametrizedLinear", (128, 1024))]
    model.learn(128)


def test_without_the_package_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "minatar", None)
    monkeypatch.setitem(sys.modules, "minatar.gym", None)
    with pytest.raises(ImportError, match=r'^MinAtar envs need the minatar package: pip install -e "\.\[minatar\]"$'):
        register_minatar_envs()


@needs_minatar
def test_a_minatar_run_lives_in_one_directory_level_and_reads_back_with_its_env_id(tmp_path):
    from test_results import curve_to, write_run

    from rlnorm.analysis.results import load_results
    from rlnorm.study.config import single_run

    spec = single_run("dqn", "MinAtar/Breakout-v1", "wn+mobn", 0, timesteps=1000)
    assert spec.run_id == "dqn/MinAtar-Breakout-v1/wn+mobn/seed-0"
    run_dir = write_run(tmp_path, "wn+mobn", 0, curve_to(5.0), algo="dqn", env_id="MinAtar/Breakout-v1")
    assert run_dir.relative_to(tmp_path).parts[1] == "MinAtar-Breakout-v1"
    (run,) = load_results(tmp_path).runs
    assert (run.run_id, run.env_id, run.task) == (
        "dqn/MinAtar-Breakout-v1/wn+mobn/seed-0", "MinAtar/Breakout-v1", ("dqn", "MinAtar/Breakout-v1"))


@needs_minatar
def test_the_probe_measures_each_convolution_of_a_minatar_q_network():
    from rlnorm.core.probe import minibatch_noise, policy_networks

    model = DQN(NormDQNPolicy, make_env("MinAtar/Breakout-v1"), seed=0, learning_starts=64, batch_size=16,
                buffer_size=256, policy_kwargs={"norm": "bn", "features_extractor_class": MinAtarCNN, "net_arch": []})
    model.learn(96)
    (network, pool), = policy_networks(model).values()
    assert pool.shape[1:] == (4, 10, 10)
    measured = minibatch_noise(network, pool, 16, n_draws=4, n_probe=4)
    assert set(measured.noise_per_layer) == {"features_extractor.cnn.0", "features_extractor.linear.0"}
    assert measured.noise_per_layer["features_extractor.cnn.0"] > 0


def test_a_config_naming_a_minatar_env_without_the_extra_names_the_extra(monkeypatch):
    from rlnorm.study.checks import ConfigError
    from rlnorm.study.config import single_run

    monkeypatch.setitem(sys.modules, "minatar", None)
    monkeypatch.setitem(sys.modules, "minatar.gym", None)
    monkeypatch.setattr("gymnasium.registry", {k: v for k, v in __import__("gymnasium").registry.items()
                                               if not k.startswith("MinAtar/")})
    message = r'--env: MinAtar envs need the minatar package: pip install -e "\.\[minatar\]"'
    with pytest.raises(ConfigError, match=message):
        single_run("dqn", "MinAtar/Breakout-v1", "bn", 0)
