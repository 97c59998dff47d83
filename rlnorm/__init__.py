"""rlnorm: normalization layers for Stable-Baselines3 agents, and studies of what they do to RL."""

__version__ = "0.1.0"
