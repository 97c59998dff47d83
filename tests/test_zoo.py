"""rlnorm.zoo: the "NormMlpPolicy" alias on SB3's algorithms, and training through the RL Zoo."""

import importlib
import os
import subprocess
import sys

import pytest
import stable_baselines3
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.policies import ActorCriticPolicy

import rlnorm.zoo
from rlnorm.core.norms import BatchNorm
from rlnorm.core.policies import NormActorCriticPolicy, NormDQNPolicy, NormSACPolicy, NormTD3Policy

# Buffers and learning starts small enough that building a model allocates next to nothing.
OFF_POLICY = dict(buffer_size=64, learning_starts=16, batch_size=16)
ALGOS = {
    "ppo": (PPO, NormActorCriticPolicy, ActorCriticPolicy, "CartPole-v1", dict(n_steps=16, batch_size=16)),
    "a2c": (A2C, NormActorCriticPolicy, ActorCriticPolicy, "CartPole-v1", dict(n_steps=8)),
    "dqn": (DQN, NormDQNPolicy, stable_baselines3.dqn.MlpPolicy, "CartPole-v1", OFF_POLICY),
    "sac": (SAC, NormSACPolicy, stable_baselines3.sac.MlpPolicy, "Pendulum-v1", OFF_POLICY),
    "td3": (TD3, NormTD3Policy, stable_baselines3.td3.MlpPolicy, "Pendulum-v1", OFF_POLICY),
}


def build(algo: str, policy: str, **policy_kwargs):
    cls, _, _, env, kwargs = ALGOS[algo]
    return cls(policy, env, seed=0, policy_kwargs=dict(net_arch=[8, 8], **policy_kwargs), **kwargs)


@pytest.mark.parametrize("algo", list(ALGOS))
def test_norm_mlp_policy_builds_the_normalized_policy(algo):
    model = build(algo, "NormMlpPolicy", norm="bn")
    assert type(model.policy) is ALGOS[algo][1]
    assert model.policy.norm == "bn"
    assert any(isinstance(module, BatchNorm) for module in model.policy.modules())
    model.learn(32)


@pytest.mark.parametrize("algo", list(ALGOS))
def test_sb3_aliases_keep_their_meaning(algo):
    cls, _, sb3_policy, _, _ = ALGOS[algo]
    assert cls.policy_aliases["MlpPolicy"] is sb3_policy
    model = build(algo, "MlpPolicy")
    assert type(model.policy) is sb3_policy
    assert not any(isinstance(module, BatchNorm) for module in model.policy.modules())


def test_registration_is_idempotent():
    before = {cls: cls.policy_aliases for cls, *_ in ALGOS.values()}
    snapshot = {cls: dict(aliases) for cls, aliases in before.items()}
    rlnorm.zoo.register_policy_aliases()
    importlib.reload(rlnorm.zoo)
    for cls, aliases in before.items():
        assert cls.policy_aliases is aliases
        assert cls.policy_aliases == snapshot[cls]


def test_a_dict_shared_between_algorithms_is_not_mutated(monkeypatch):
    shared = {"MlpPolicy": ActorCriticPolicy}
    monkeypatch.setattr(PPO, "policy_aliases", shared)
    monkeypatch.setattr(A2C, "policy_aliases", shared)
    rlnorm.zoo.register_policy_aliases()
    assert shared == {"MlpPolicy": ActorCriticPolicy}
    assert PPO.policy_aliases is not A2C.policy_aliases
    for cls in (PPO, A2C):
        assert cls.policy_aliases == {"MlpPolicy": ActorCriticPolicy, "NormMlpPolicy": NormActorCriticPolicy}


@pytest.mark.slow
def test_rl_zoo_trains_a_normalized_policy(tmp_path):
    # Only this test needs the zoo extra: the aliases themselves are plain SB3.
    pytest.importorskip("rl_zoo3")
    command = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", "CartPole-v1",
        "--gym-packages", "rlnorm.zoo",
        "-params", "policy:'NormMlpPolicy'", "policy_kwargs:dict(norm='bn')",
        # The Zoo's CartPole settings: 8 envs x 32 steps, so one rollout and one update.
        "-n", "256", "--eval-freq", "-1", "--seed", "0", "--num-threads", "1", "--verbose", "0",
        "--log-folder", str(tmp_path / "logs"),
    ]
    # Offline: the Zoo imports the Hugging Face hub client, which must not reach for the network.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    saved = list((tmp_path / "logs" / "ppo").glob("CartPole-v1_*/CartPole-v1.zip"))
    assert len(saved) == 1, saved
    model = PPO.load(saved[0])
    assert type(model.policy) is NormActorCriticPolicy
    assert model.policy.norm == "bn"
    assert model.num_timesteps == 256
