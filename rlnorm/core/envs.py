"""Environments by id, as every part of rlnorm makes them: Gymnasium's, and MinAtar's (Young & Tian 2019: five
Atari-like games on 10 x 10 images, small enough for a CPU-only study).

The ``minatar`` package (``pip install -e ".[minatar]"``) provides Gymnasium envs such as
``MinAtar/Breakout-v1`` once ``minatar.gym.register_envs()`` has run; their observations are (10, 10, C)
arrays of bools, which SB3's image pipeline does not take: :func:`make_env` hands them over channels first,
as floats. Torch-free.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

MINATAR_PREFIX = "MinAtar/"
MINATAR_EXTRA = 'pip install -e ".[minatar]"'


def register_minatar_envs() -> None:
    """Register MinAtar's Gymnasium envs (importing ``minatar`` registers none).

    :raises ImportError: without the ``minatar`` package, in one line naming the extra that brings it
    """
    try:
        import minatar.gym
    except ImportError:
        raise ImportError(f"MinAtar envs need the minatar package: {MINATAR_EXTRA}") from None
    if not any(env_id.startswith(MINATAR_PREFIX) for env_id in gym.registry):
        minatar.gym.register_envs()


def known_env(env_id: str) -> bool:
    """:param env_id: an env id
    :return: whether Gymnasium knows it (MinAtar's ids once registered, which this does when it can)"""
    if env_id.startswith(MINATAR_PREFIX):
        register_minatar_envs()
    return env_id in gym.registry


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


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """:param env_id: a Gymnasium env id, or a MinAtar one such as ``MinAtar/Breakout-v1``
    :param kwargs: passed to ``gym.make``
    :return: the env; MinAtar's with channels-first float observations (:class:`MinAtarObservation`)"""
    if env_id.startswith(MINATAR_PREFIX):
        register_minatar_envs()
        return MinAtarObservation(gym.make(env_id, **kwargs))
    return gym.make(env_id, **kwargs)
