"""SB3 policy classes with a normalization layer in their hidden layers.

Each class extends SB3's own policy and only inserts the norm after SB3 has built (and, for
actor-critic policies, orthogonally initialized) the network, so ``norm="none"`` is exactly SB3's
network and every usual SB3 policy kwarg keeps working::

    PPO(NormActorCriticPolicy, "CartPole-v1", policy_kwargs=dict(norm="wn+mobn"))
    SAC(NormSACPolicy, "Pendulum-v1", policy_kwargs=dict(norm="bn", norm_in="critic"))

Modes are SB3's: rollouts and ``predict`` run in eval mode, gradient steps in train mode, target
networks always in eval mode (DESIGN §4.1–4.3).
"""

from __future__ import annotations

from typing import Any

import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy, ContinuousCritic
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from stable_baselines3.sac.policies import Actor as SACActor
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import Actor as TD3Actor
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

from rlnorm.norms import NormalizedLinear, normalize_mlp, validate_norm

NORM_IN = ("both", "actor", "critic")


class _NormConfigured:
    """The three norm options every policy here takes, validated before SB3 builds anything."""

    def _set_norm(self, norm: str, norm_kwargs: dict[str, Any] | None, norm_in: str) -> None:
        validate_norm(norm, norm_kwargs)
        if norm_in not in NORM_IN:
            raise ValueError(f"norm_in must be one of {', '.join(NORM_IN)}; got {norm_in!r}")
        self.norm = norm
        self.norm_kwargs = dict(norm_kwargs or {})
        self.norm_in = norm_in

    def _normalizes(self, role: str) -> bool:
        return self.norm != "none" and self.norm_in in ("both", role)

    def _normalize(self, net: nn.Sequential, has_output_layer: bool) -> None:
        normalize_mlp(net, self.norm, self.norm_kwargs, has_output_layer=has_output_layer)

    def set_training_mode(self, mode: bool) -> None:
        super().set_training_mode(mode)  # type: ignore[misc]
        # Parameters only change in train mode (SB3 switches to it before every update), so between two
        # updates each online layer can act as one folded Linear. Target networks never fold: SB3 moves
        # their weights while they stay in eval mode.
        for layer in self._online_norm_layers():
            if mode:
                layer.stop_folding()
            else:
                layer.start_folding()

    def _online_norm_layers(self) -> list[NormalizedLinear]:
        if not hasattr(self, "_online_layers"):
            self._online_layers = [
                module for name, module in self.named_modules()  # type: ignore[attr-defined]
                if isinstance(module, NormalizedLinear) and not name.split(".")[0].endswith("_target")
            ]
        return self._online_layers

    def _use_multi_tensor_optimizers(self, *optimizers: th.optim.Optimizer) -> None:
        """Switch the optimizers to their multi-tensor ("foreach") implementation: the same update rule,
        with less per-tensor overhead. On CPU PyTorch loops over parameters in Python by default, and
        the norms add parameter tensors. Set on the built optimizers, not through ``optimizer_kwargs``,
        whose presence would drop SB3's own defaults (Adam ``eps=1e-5`` for actor-critic policies).
        ``norm="none"`` keeps SB3's optimizer exactly.
        """
        if self.norm == "none":
            return
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                if "foreach" in group and group["foreach"] is None:
                    group["foreach"] = True

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()  # type: ignore[misc]
        data.update(norm=self.norm, norm_kwargs=self.norm_kwargs, norm_in=self.norm_in)
        return data


def share_data_init_with_target(online: nn.Module, target: nn.Module) -> None:
    """Let each data-initialized layer of ``online`` copy itself to its twin in ``target`` once it has
    seen its first batch, so that a target network does not start from the pre-initialization weights.

    :param online: a network built by one of SB3's ``make_*`` hooks
    :param target: its target network, built by the same hook
    """
    online_layers = [m for m in online.modules() if isinstance(m, NormalizedLinear)]
    target_layers = [m for m in target.modules() if isinstance(m, NormalizedLinear)]
    for layer, twin in zip(online_layers, target_layers, strict=True):
        layer.copies_to = [twin]


class NormActorCriticPolicy(_NormConfigured, ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` (PPO, A2C) with a norm in the hidden layers of ``mlp_extractor``.

    The norm is inserted after SB3's orthogonal initialization, so weight norm starts from exactly the
    weight SB3 chose; the optimizer is then rebuilt over the new parameters.

    Every update, the first call of :meth:`evaluate_actions` also measures the train/eval mode mismatch:
    the deviation from 1 of the probability ratio between train mode (how PPO/A2C learn) and eval mode
    (how the rollout was collected), with unchanged parameters. It is kept in ``mode_mismatch``
    (mean |r - 1|) and ``mode_mismatch_max``, counted in ``mode_mismatch_updates``;
    :class:`rlnorm.callbacks.ModeMismatchCallback` logs it.

    :param norm: a registered norm name (``rlnorm norms`` lists them)
    :param norm_kwargs: that norm's options
    :param norm_in: ``"both"``, ``"actor"`` (policy network) or ``"critic"`` (value network)
    :param args: positional arguments of ``ActorCriticPolicy``
    :param kwargs: keyword arguments of ``ActorCriticPolicy``
    """

    def __init__(
        self,
        *args: Any,
        norm: str = "none",
        norm_kwargs: dict[str, Any] | None = None,
        norm_in: str = "both",
        **kwargs: Any,
    ) -> None:
        self._set_norm(norm, norm_kwargs, norm_in)
        self.mode_mismatch: float | None = None
        self.mode_mismatch_max: float | None = None
        self.mode_mismatch_updates = 0
        self._measure_mode_mismatch = False
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        if self.norm == "none":
            return
        if self._normalizes("actor"):
            self._normalize(self.mlp_extractor.policy_net, has_output_layer=False)
        if self._normalizes("critic"):
            self._normalize(self.mlp_extractor.value_net, has_output_layer=False)
        self.mlp_extractor.to(self.device)
        # The norm replaced parameters (weight norm) or added new ones: an optimizer built before would
        # leave them untrained.
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)
        self._use_multi_tensor_optimizers(self.optimizer)

    def set_training_mode(self, mode: bool) -> None:
        # PPO and A2C switch to train mode once at the start of every update.
        if mode and not self.training:
            self._measure_mode_mismatch = True
        super().set_training_mode(mode)

    def evaluate_actions(self, obs: PyTorchObs, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        if self._measure_mode_mismatch:
            self._measure_mode_mismatch = False
            # Before the train-mode pass, which moves running statistics away from the rollout's.
            self.train(False)
            with th.no_grad():
                _, eval_log_prob, _ = super().evaluate_actions(obs, actions)
            self.train(True)
            values, log_prob, entropy = super().evaluate_actions(obs, actions)
            deviation = (th.exp(log_prob.detach() - eval_log_prob) - 1.0).abs()
            self.mode_mismatch, self.mode_mismatch_max = deviation.mean().item(), deviation.max().item()
            self.mode_mismatch_updates += 1
            return values, log_prob, entropy
        return super().evaluate_actions(obs, actions)


class NormDQNPolicy(_NormConfigured, DQNPolicy):
    """SB3's ``DQNPolicy`` with a norm in the hidden layers of the Q-network (and its target).

    DQN has one network, so ``norm_in`` can only be ``"both"``.

    :param norm: a registered norm name (``rlnorm norms`` lists them)
    :param norm_kwargs: that norm's options
    :param norm_in: must be ``"both"``
    :param args: positional arguments of ``DQNPolicy``
    :param kwargs: keyword arguments of ``DQNPolicy``
    """

    def __init__(
        self,
        *args: Any,
        norm: str = "none",
        norm_kwargs: dict[str, Any] | None = None,
        norm_in: str = "both",
        **kwargs: Any,
    ) -> None:
        if norm_in != "both":
            raise ValueError(f"DQN has a single Q-network: norm_in must be 'both', got {norm_in!r}")
        self._set_norm(norm, norm_kwargs, norm_in)
        super().__init__(*args, **kwargs)

    def make_q_net(self) -> QNetwork:
        q_net = super().make_q_net()
        if self.norm != "none":
            self._normalize(q_net.q_net, has_output_layer=True)
        return q_net.to(self.device)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        share_data_init_with_target(self.q_net, self.q_net_target)
        self._use_multi_tensor_optimizers(self.optimizer)


class _NormContinuousCritic(_NormConfigured):
    """The critic part shared by SAC and TD3: both build ``ContinuousCritic`` the same way."""

    def make_critic(self, features_extractor: Any = None) -> ContinuousCritic:
        critic = super().make_critic(features_extractor)  # type: ignore[misc]
        if self._normalizes("critic"):
            for q_net in critic.q_networks:
                self._normalize(q_net, has_output_layer=True)
        return critic.to(self.device)  # type: ignore[attr-defined]


class NormSACPolicy(_NormContinuousCritic, SACPolicy):
    """SB3's ``SACPolicy`` with a norm in the hidden layers of the actor and/or the critics.

    Note SB3's SAC computes the next action with the actor in train mode (DESIGN §4.3).

    :param norm: a registered norm name (``rlnorm norms`` lists them)
    :param norm_kwargs: that norm's options
    :param norm_in: ``"both"``, ``"actor"`` or ``"critic"``
    :param args: positional arguments of ``SACPolicy``
    :param kwargs: keyword arguments of ``SACPolicy``
    """

    def __init__(
        self,
        *args: Any,
        norm: str = "none",
        norm_kwargs: dict[str, Any] | None = None,
        norm_in: str = "both",
        **kwargs: Any,
    ) -> None:
        self._set_norm(norm, norm_kwargs, norm_in)
        super().__init__(*args, **kwargs)

    def make_actor(self, features_extractor: Any = None) -> SACActor:
        actor = super().make_actor(features_extractor)
        if self._normalizes("actor"):
            self._normalize(actor.latent_pi, has_output_layer=False)
        return actor.to(self.device)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        share_data_init_with_target(self.critic, self.critic_target)
        self._use_multi_tensor_optimizers(self.actor.optimizer, self.critic.optimizer)


class NormTD3Policy(_NormContinuousCritic, TD3Policy):
    """SB3's ``TD3Policy`` with a norm in the hidden layers of the actor and/or the critics.

    :param norm: a registered norm name (``rlnorm norms`` lists them)
    :param norm_kwargs: that norm's options
    :param norm_in: ``"both"``, ``"actor"`` or ``"critic"``
    :param args: positional arguments of ``TD3Policy``
    :param kwargs: keyword arguments of ``TD3Policy``
    """

    def __init__(
        self,
        *args: Any,
        norm: str = "none",
        norm_kwargs: dict[str, Any] | None = None,
        norm_in: str = "both",
        **kwargs: Any,
    ) -> None:
        self._set_norm(norm, norm_kwargs, norm_in)
        super().__init__(*args, **kwargs)

    def make_actor(self, features_extractor: Any = None) -> TD3Actor:
        actor = super().make_actor(features_extractor)
        if self._normalizes("actor"):
            self._normalize(actor.mu, has_output_layer=True)
        return actor.to(self.device)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        share_data_init_with_target(self.actor, self.actor_target)
        share_data_init_with_target(self.critic, self.critic_target)
        self._use_multi_tensor_optimizers(self.actor.optimizer, self.critic.optimizer)
