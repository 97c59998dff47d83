"""The scale of each task's returns, for normalized scores: a uniform-random policy's return is 0, a reference 1.

The random policy's return is measured by rlnorm (:func:`random_policy_return`, at least
:data:`RANDOM_EPISODES` episodes) and cached in the results directory (:data:`RANDOM_RETURNS`), so a report
reads the same numbers on any machine. The reference is, in this order: the config's ``scores.reference``,
the env's ``spec.reward_threshold``, else the best variant's IQM on the task; :class:`TaskScale` says which.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from rlnorm.analysis import stats as st
from rlnorm.analysis.claims import Scores
from rlnorm.core.envs import make_env

RANDOM_RETURNS = "random_returns.json"
"""Cache of the random policy's returns, in a results directory: env id -> {mean, episodes, seed, gymnasium}."""
RANDOM_EPISODES = 100
RANDOM_SEED = 0


@dataclass(frozen=True)
class TaskScale:
    """How one task's returns are normalized.

    :param random_return: a uniform-random policy's mean return (score 0)
    :param reference_return: score 1
    :param reference_source: where the reference comes from, in words
    :param failure_below: a run fails when its normalized final return is below this
    """

    random_return: float
    reference_return: float
    reference_source: str
    failure_below: float

    def normalize(self, returns: np.ndarray) -> np.ndarray:
        """:param returns: returns of this task
        :return: (return - random) / (reference - random)"""
        return st.normalized_scores(returns, self.random_return, self.reference_return)

    def return_of(self, score: float) -> float:
        """:param score: a normalized score
        :return: the return it stands for, in the task's own units"""
        return self.random_return + score * (self.reference_return - self.random_return)

    @property
    def failure_return(self) -> float:
        """:return: the failure threshold in the task's own return units"""
        return self.return_of(self.failure_below)


def random_policy_return(env_id: str, episodes: int = RANDOM_EPISODES, seed: int = RANDOM_SEED) -> float:
    """
    The mean undiscounted return of actions drawn uniformly from the action space.

    :param env_id: a Gymnasium env id
    :param episodes: episodes run, the env reset with seeds ``seed``, ``seed + 1``, ...
    :param seed: the first reset seed; the action space is seeded with it too
    :return: the mean episode return
    """
    env = make_env(env_id)
    env.action_space.seed(seed)
    returns = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def random_returns(results_dir: Path, env_ids: list[str]) -> dict[str, float]:
    """
    The random policy's return of each env, read from the results directory's cache, measured (and cached)
    for those it lacks.

    :param results_dir: the results directory
    :param env_ids: the envs needed
    :return: env id -> mean return
    """
    path = results_dir / RANDOM_RETURNS
    cache = json.loads(path.read_text()) if path.exists() else {}
    missing = [env_id for env_id in env_ids if env_id not in cache]
    for env_id in missing:
        cache[env_id] = {
            "mean": random_policy_return(env_id),
            "episodes": RANDOM_EPISODES,
            "seed": RANDOM_SEED,
            "gymnasium": gym.__version__,
        }
    if missing:
        path.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
    return {env_id: float(cache[env_id]["mean"]) for env_id in env_ids}


def task_scales(
    tasks: dict[tuple[str, str], np.ndarray], randoms: dict[str, float], scores: Scores
) -> dict[tuple[str, str], TaskScale]:
    """
    :param tasks: (algo, env) -> the IQM of each variant's final returns on it (for the last fallback)
    :param randoms: env id -> the random policy's return
    :param scores: the declared settings
    :return: each task's scale
    """
    scales = {}
    for (algo, env_id), iqms in tasks.items():
        declared = scores.reference_for(algo, env_id)
        threshold = gym.spec(env_id).reward_threshold if env_id in gym.registry else None
        finite = iqms[np.isfinite(iqms)]
        if declared is not None:
            reference, source = declared, "the config's scores.reference"
        elif threshold is not None:
            reference, source = float(threshold), f"{env_id}'s reward threshold"
        elif finite.size:
            reference, source = float(finite.max()), "the best variant's IQM on the task"
        else:
            reference, source = math.nan, "no finished run"
        scales[algo, env_id] = TaskScale(randoms[env_id], reference, source, scores.failure_below)
    return scales
