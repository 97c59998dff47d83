"""Features extractors for image observations, beside SB3's ``NatureCNN``, and their names in agents files."""

from __future__ import annotations

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, NatureCNN
from torch import nn


class MinAtarCNN(BaseFeaturesExtractor):
    """Young & Tian's network body for MinAtar: one convolution of 16 3 x 3 filters (stride 1) and a ReLU, then
    128 units and a ReLU (their DQN adds the output layer: ``net_arch=[]``). Built from ``nn.Sequential`` parts,
    so that ``norm_features`` puts the norm after the convolution and after the Linear::

        DQN(NormDQNPolicy, make_env("MinAtar/Breakout-v1"),
            policy_kwargs=dict(norm="wn+mobn", features_extractor_class=MinAtarCNN, net_arch=[]))

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


FEATURES_EXTRACTORS: dict[str, type[BaseFeaturesExtractor]] = {"NatureCNN": NatureCNN, "MinAtarCNN": MinAtarCNN}
"""``policy_kwargs.features_extractor_class`` by name, as an agents file writes it."""
