"""Image observations: the norm inside SB3's NatureCNN features extractor (``norm_features``), for every
algorithm, with norm none training exactly as SB3's CnnPolicy does."""

import pytest
import torch
from stable_baselines3 import DQN, PPO, SAC, TD3
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, NatureCNN
from torch import nn

from rlnorm.core.norms import NormalizedLayer, normalize_mlp
from rlnorm.core.policies import NormActorCriticPolicy, NormDQNPolicy, NormSACPolicy, NormTD3Policy

CNN = {"features_extractor_class": NatureCNN}


def image_env(discrete: bool = True) -> FakeImageEnv:
    # 36 x 36 is the smallest image NatureCNN's three convolutions accept. The env draws its images from its
    # observation space, which the model's seed does not reach: seeded here.
    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, discrete=discrete)
    env.observation_space.seed(0)
    env.action_space.seed(0)
    return env


def normalized(module: nn.Module) -> list[str]:
    return [type(m.layer).__name__.removeprefix("Parametrized") for m in module.modules()
            if isinstance(m, NormalizedLayer)]


def test_norm_none_trains_exactly_as_sb3s_cnn_policy():
    models = []
    for policy, kwargs in (("CnnPolicy", {}), (NormActorCriticPolicy, {**CNN, "norm": "none"})):
        model = PPO(policy, image_env(), n_steps=32, batch_size=16, n_epochs=2, seed=3, policy_kwargs=kwargs)
        models.append(model.learn(64))
    sb3, ours = (model.policy.state_dict() for model in models)
    assert sb3.keys() == ours.keys()
    assert all(torch.equal(sb3[key], ours[key]) for key in sb3)


@pytest.mark.parametrize("norm", ["bn", "mobn", "wn", "wn+mobn", "ln"])
def test_the_norm_goes_after_every_convolution_and_linear_of_the_extractor(norm):
    model = PPO(NormActorCriticPolicy, image_env(), n_steps=32, batch_size=16, n_epochs=1, seed=0,
                policy_kwargs={**CNN, "norm": norm, "net_arch": [16]})
    assert normalized(model.policy.features_extractor) == ["Conv2d", "Conv2d", "Conv2d", "Linear"]
    # The optimizer trains the norm's parameters too.
    optimized = {id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in model.policy.parameters()}
    model.learn(64)
    plain = PPO(NormActorCriticPolicy, image_env(), policy_kwargs={**CNN, "norm": norm, "norm_features": False})
    assert normalized(plain.policy.features_extractor) == []


def test_off_policy_networks_and_their_targets_get_the_norm_in_their_extractors():
    dqn = DQN(NormDQNPolicy, image_env(), buffer_size=64, learning_starts=16, batch_size=8, seed=0,
              policy_kwargs={**CNN, "norm": "bn", "net_arch": [16]})
    for q_net in (dqn.q_net, dqn.q_net_target):
        assert normalized(q_net.features_extractor) == ["Conv2d", "Conv2d", "Conv2d", "Linear"]
    # SB3 copies the running_* buffers it finds to the target: the convolutions' statistics are among them.
    for online, target in ((dqn.batch_norm_stats, dqn.q_net.features_extractor),
                           (dqn.batch_norm_stats_target, dqn.q_net_target.features_extractor)):
        assert any(buffer.data_ptr() == target.cnn[0].norm.running_mean.data_ptr() for buffer in online)
    dqn.learn(32)
    for algo, policy in ((SAC, NormSACPolicy), (TD3, NormTD3Policy)):
        model = algo(policy, image_env(discrete=False), buffer_size=64, learning_starts=16, batch_size=8, seed=0,
                     policy_kwargs={**CNN, "norm": "wn+mobn", "net_arch": [16], "norm_in": "critic"})
        assert normalized(model.actor.features_extractor) == []
        assert normalized(model.critic.features_extractor)[:3] == ["Conv2d"] * 3
        model.learn(24)


def test_a_saved_image_policy_loads_with_its_norm_and_acts_the_same(tmp_path):
    model = PPO(NormActorCriticPolicy, image_env(), n_steps=32, batch_size=16, n_epochs=1, seed=0,
                policy_kwargs={**CNN, "norm": "bn", "net_arch": [16]})
    model.learn(64)
    model.save(tmp_path / "model")
    loaded = PPO.load(tmp_path / "model")
    observations = torch.stack([torch.as_tensor(image_env().observation_space.sample()) for _ in range(4)]).numpy()
    assert (model.predict(observations, deterministic=True)[0] == loaded.predict(observations,
                                                                                 deterministic=True)[0]).all()
    assert loaded.policy.norm_features and normalized(loaded.policy.features_extractor)[0] == "Conv2d"


class LooseLayers(BaseFeaturesExtractor):
    """An extractor whose Linear sits outside any nn.Sequential."""

    def __init__(self, observation_space, features_dim: int = 8) -> None:
        super().__init__(observation_space, features_dim)
        self.flatten = nn.Flatten()
        self.project = nn.Linear(36 * 36, features_dim)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.project(self.flatten(observations)))


def test_an_extractor_without_a_place_for_the_norm_names_its_layer():
    with pytest.raises(ValueError, match=r"norm_features: layer 'project' of LooseLayers, Linear\(in_features=1296"):
        PPO(NormActorCriticPolicy, image_env(), policy_kwargs={"features_extractor_class": LooseLayers, "norm": "bn"})
    PPO(NormActorCriticPolicy, image_env(),
        policy_kwargs={"features_extractor_class": LooseLayers, "norm": "bn", "norm_features": False})


@pytest.mark.parametrize("norm", ["bn", "mobn", "wn+mobn"])
def test_an_image_batch_of_one_in_train_mode_is_the_mlps_clear_error(norm):
    convolutions = nn.Sequential(nn.Conv2d(1, 4, kernel_size=3), nn.ReLU())
    normalize_mlp(convolutions, norm, has_output_layer=False)
    with pytest.raises(ValueError, match="a batch of 1 sample has none. Use batches of at least 2 samples"):
        convolutions.train()(torch.zeros(1, 1, 6, 6))
    assert convolutions.eval()(torch.zeros(1, 1, 6, 6)).shape == (1, 4, 4, 4)  # running statistics: fine
