"""Policy aliases for the RL Zoo (rl_zoo3): ``"NormMlpPolicy"`` for PPO, A2C, DQN, SAC and TD3.

Importing this module registers the alias, so the RL Zoo can load it as a gym package and train any of
these algorithms with a normalized policy (``pip install rlnorm[zoo]``)::

    python -m rl_zoo3.train --algo ppo --env CartPole-v1 --gym-packages rlnorm.zoo \\
        -params policy:"'NormMlpPolicy'" policy_kwargs:"dict(norm='bn')" -n 2000

``policy_kwargs`` take every option of the policy classes in :mod:`rlnorm.core.policies` (``norm``,
``norm_kwargs``, ``norm_in``, ``norm_mode``) besides SB3's own. The same works without the RL Zoo::

    import rlnorm.zoo  # noqa: F401
    PPO("NormMlpPolicy", "CartPole-v1", policy_kwargs=dict(norm="bn"))

The alias is only looked up when a model is built: a saved model records its policy class, so
``PPO.load`` does not need this module. DDPG, which uses TD3's aliases, gets the alias as well.
"""

from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy

from rlnorm.core.policies import NormActorCriticPolicy, NormDQNPolicy, NormSACPolicy, NormTD3Policy

ALIAS = "NormMlpPolicy"
#: The policy class :data:`ALIAS` stands for, per algorithm.
NORM_POLICIES: dict[type[BaseAlgorithm], type[BasePolicy]] = {
    PPO: NormActorCriticPolicy,
    A2C: NormActorCriticPolicy,
    DQN: NormDQNPolicy,
    SAC: NormSACPolicy,
    TD3: NormTD3Policy,
}


def register_policy_aliases() -> None:
    """Add :data:`ALIAS` to the ``policy_aliases`` of every algorithm in :data:`NORM_POLICIES`, next to
    SB3's own aliases, which keep their meaning. Calling it again changes nothing.
    """
    for algorithm, policy in NORM_POLICIES.items():
        if algorithm.policy_aliases.get(ALIAS) is policy:
            continue
        # A new dict set on the class itself rather than an update in place: the same dict object may be
        # set on other algorithm classes too, whose aliases must stay as they are. (Subclasses without
        # their own dict, such as DDPG of TD3, look it up on the class and so get the alias.)
        algorithm.policy_aliases = {**algorithm.policy_aliases, ALIAS: policy}


register_policy_aliases()
