"""MinAtar for image-observation studies: observations SB3 takes, Young & Tian's network body, and the norm in it."""

import importlib.util
import sys

import numpy as np
import pytest
from stable_baselines3 import DQN, PPO

from rlnorm.minatar import MinAtarCNN, make_minatar, register_minatar_envs
from rlnorm.norms import NormalizedLayer
from rlnorm.policies import NormActorCriticPolicy, NormDQNPolicy

needs_minatar = pytest.mark.skipif(importlib.util.find_spec("minatar") is None, reason="the minatar extra")


@needs_minatar
def test_observations_are_channels_first_floats_of_the_same_pixels():
    env = make_minatar("MinAtar/Breakout-v1")
    observation, _ = env.reset(seed=0)
    raw = env.unwrapped.game.state()  # MinAtar's own (10, 10, 4) bools
    assert env.observation_space.shape == observation.shape == (4, 10, 10) and observation.dtype == np.float32
    np.testing.assert_array_equal(observation, np.moveaxis(raw, -1, 0))


@needs_minatar
@pytest.mark.parametrize(("algo", "policy"), [(DQN, NormDQNPolicy), (PPO, NormActorCriticPolicy)])
def test_the_norm_goes_after_the_convolution_and_the_linear_of_young_and_tians_body(algo, policy):
    kwargs = {"learning_starts": 32, "batch_size": 16, "buffer_size": 256} if algo is DQN else \
        {"n_steps": 64, "batch_size": 32, "n_epochs": 1}
    model = algo(policy, make_minatar("MinAtar/Breakout-v1"), seed=0, **kwargs,
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
