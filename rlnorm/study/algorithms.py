"""The algorithms rlnorm runs: one registry for the agents' files, the study configs, the runner, the command
line and the analysis. Torch-free: classes are named here and imported only when a run needs them."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

NORM_IN = ("both", "actor", "critic")
"""The networks a norm can go in: ``both``, or only the ``actor`` (policy) or the ``critic`` (value / Q)."""


def _import(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Algorithm:
    """An algorithm and how rlnorm runs it.

    :param model: its SB3 (or sb3-contrib) class, as ``module:Class``
    :param policy: rlnorm's policy class for it, as ``module:Class``; None: it runs as published (a reference
        cell, its only variant norm none)
    :param action_spaces: the Gymnasium action space classes it handles (names in ``gymnasium.spaces``)
    :param norm_in: the ``norm_in`` values it allows
    :param beside: for a reference cell, the algorithm the report compares it with on the same environment
    """

    model: str
    policy: str | None
    action_spaces: tuple[str, ...]
    norm_in: tuple[str, ...] = NORM_IN
    beside: str | None = None

    def model_class(self) -> type:
        """:return: the SB3 algorithm class"""
        return _import(self.model)

    def policy_class(self) -> type | None:
        """:return: rlnorm's policy class, None for an algorithm run as published"""
        return None if self.policy is None else _import(self.policy)


_EVERY_SPACE = ("Box", "Discrete", "MultiDiscrete", "MultiBinary")
ALGORITHMS: dict[str, Algorithm] = {
    "ppo": Algorithm("stable_baselines3:PPO", "rlnorm.core.policies:NormActorCriticPolicy", _EVERY_SPACE),
    "a2c": Algorithm("stable_baselines3:A2C", "rlnorm.core.policies:NormActorCriticPolicy", _EVERY_SPACE),
    # DQN has a single Q-network.
    "dqn": Algorithm("stable_baselines3:DQN", "rlnorm.core.policies:NormDQNPolicy", ("Discrete",), norm_in=("both",)),
    "sac": Algorithm("stable_baselines3:SAC", "rlnorm.core.policies:NormSACPolicy", ("Box",)),
    "td3": Algorithm("stable_baselines3:TD3", "rlnorm.core.policies:NormTD3Policy", ("Box",)),
    # sb3-contrib's CrossQ with its default Batch Renorm critic: the published off-policy use of batch
    # statistics (SAC with Batch Renorm and no target network), a reference cell beside SAC.
    "crossq": Algorithm("sb3_contrib:CrossQ", None, ("Box",), norm_in=("both",), beside="sac"),
}
