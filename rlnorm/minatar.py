"""MinAtar (Young & Tian 2019): five Atari-like games on 10 x 10 images, small enough for a CPU-only study.

The ``minatar`` package (``pip install -e ".[minatar]"``) provides Gymnasium envs such as
``MinAtar/Breakout-v1`` once ``minatar.gym.register_envs()`` has run; their observations are (10, 10, C)
arrays of bools, which SB3's image pipeline does not take. Here::

    env = make_minatar("MinAtar/Breakout-v1")   # float32 (C, 10, 10) observations in {0, 1}
    PPO(NormActorCriticPolicy, env, policy_kwargs=dict(norm="wn+mobn", features_extractor_class=MinAtarCNN,
                                                       net_arch=[]))
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

MINATAR_EXTRA = 'pip install -e ".[minatar]"'


def register_minatar_envs() -> None:
    """Register MinAtar's Gymnasium envs (importing ``minatar`` registers none).

    :raises ImportError: without the ``minatar`` package, in one line naming the extra that brings it
    """
    try:
        import minatar.gym
    except ImportError:
        raise ImportError(f"MinAtar envs need the minatar package: {MINATAR_EXTRA}") from None
    if not any(env_id.startswith("MinAtar/") for env_id in gym.registry):
        minatar.gym.register_envs()


class MinAtarObservation(gym.ObservationWrapper):
    """MinAtar's (H, W, C) bool images as (C, H, W) float32 in {0, 1}: channels first, as SB3's convolutions
    take them (SB3 transposes only uint8 images, and its NatureCNN refuses bools).

    :param env: a MinAtar env
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        height, width, channels = env.observation_space.shape
        self.observation_space = spaces.Box(0.0, 1.0, (channels, height, width), np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.moveaxis(observation, -1, 0).astype(np.float32)


def make_minatar(env_id: str, **kwargs: object) -> gym.Env:
    """:param env_id: a MinAtar env id, e.g. ``MinAtar/Breakout-v1``
    :param kwargs: passed to ``gym.make``
    :return: the env with channels-first float observations (:class:`MinAtarObservation`)"""
    register_minatar_envs()
    return MinAtarObservation(gym.make(env_id, **kwargs))


class MinAtarCNN(BaseFeaturesExtractor):
    """Young & Tian's network body for MinAtar: one convolution of 16 3 x 3 filters (stride 1) and a ReLU, then
    128 units and a ReLU. Built from ``nn.Sequential`` parts, so that ``norm_features`` puts the norm after
    the convolution and after the Linear.

    :param observation_space: (C, H, W) images
    :param features_dim: the units after the convolution (128 in the paper)
    """

    def __init__(self, observation_space: spaces.Box, features_dim: int = 128) -> None:
        super().__init__(observation_space, features_dim)
        channels, height, width = observation_space.shape
        self.cnn = nn.Sequential(nn.Conv2d(channels, 16, kernel_size=3, stride=1), nn.ReLU(), nn.Flatten())
        self.linear = nn.Sequential(nn.Linear(16 * (height - 2) * (width - 2), features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.cnn(observations))
