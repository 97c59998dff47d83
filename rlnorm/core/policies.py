"""SB3 policy classes with a normalization layer in their hidden layers.

Each class extends SB3's own policy and only inserts the norm after SB3 has built (and, for
actor-critic policies, orthogonally initialized) the network, so ``norm="none"`` is exactly SB3's
network and every usual SB3 policy kwarg keeps working::

    PPO(NormActorCriticPolicy, "CartPole-v1", policy_kwargs=dict(norm="wn+mobn"))
    SAC(NormSACPolicy, "Pendulum-v1", policy_kwargs=dict(norm="bn", norm_in="critic"))
    PPO(NormActorCriticPolicy, image_env, policy_kwargs=dict(norm="bn", features_extractor_class=NatureCNN))

With image observations the norm also goes inside the features extractor (``norm_features=True``, the
default): after each ``Conv2d`` and ``Linear`` of its ``nn.Sequential`` parts, as in SB3's ``NatureCNN``.

Modes are SB3's: rollouts and ``predict`` run in eval mode, gradient steps in train mode, target
networks always in eval mode (docs/method.md#sb3-and-the-norms). For the norms with batch statistics, ``norm_mode``
takes apart the three mechanisms behind "BN hurts RL" (docs/method.md#mechanisms-and-norm-modes):

- ``"sb3"`` (default): exactly SB3 — minibatch noise, the train/eval mode switch, and running
  statistics that chase the state distribution the policy makes;
- ``"consistent"``: no mode switch in the update — PPO's ratio compares against log-probs of the
  pre-update parameters in train mode on the same minibatch (values and the value loss are sb3 mode's);
  DQN/SAC/TD3 target networks normalize with the statistics of the batch they score — noise and chasing
  statistics remain. Acting stays in eval mode, so the switch is removed from the update only. A2C has no
  ratio, and its update has no old outputs to make consistent: the mode is refused there;
- ``"frozen"``: layers normalize with their running statistics in every mode, batches only update them
  — only chasing statistics remain;
- ``"fixed"``: statistics set from the first training batch and never updated — none of the three.
"""

from __future__ import annotations

import sys
from typing import Any

import torch as th
from stable_baselines3 import A2C
from stable_baselines3.common.policies import ActorCriticPolicy, ContinuousCritic
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from stable_baselines3.sac.policies import Actor as SACActor
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import Actor as TD3Actor
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

from rlnorm.core.norms import (
    BatchStatisticsNorm,
    NormalizedLayer,
    available_norms,
    get_norm,
    normalize_mlp,
    validate_norm,
)
from rlnorm.study.algorithms import NORM_IN
from rlnorm.study.records import NORM_MODES

#: The statistics source (see :data:`rlnorm.core.norms.STATISTICS_SOURCES`) of online layers in train mode.
_ONLINE_STATISTICS = {"sb3": "batch", "consistent": "batch", "frozen": "running", "fixed": "fixed"}


def validate_norm_mode(norm: str, norm_mode: str, norm_kwargs: dict[str, Any] | None = None) -> None:
    """:param norm: a registered norm name
    :param norm_mode: one of :data:`NORM_MODES`; anything but ``"sb3"`` needs a batch-statistics norm
    :param norm_kwargs: the norm's options; ``injected_noise`` needs a mode without batch statistics
    """
    if norm_mode not in NORM_MODES:
        raise ValueError(f"norm_mode must be one of {', '.join(NORM_MODES)}; got {norm_mode!r}")
    if norm_mode != "sb3" and not get_norm(norm).batch_statistics:
        with_statistics = [name for name in available_norms() if get_norm(name).batch_statistics]
        raise ValueError(
            f"norm_mode {norm_mode!r} applies to norms with batch statistics ({', '.join(with_statistics)}); "
            f"norm {norm!r} has none, so its only mode is 'sb3'"
        )
    injected = (norm_kwargs or {}).get("injected_noise", 0)
    if injected and _ONLINE_STATISTICS[norm_mode] == "batch":
        # Batch statistics carry their own noise; ghost batches dose that one.
        raise ValueError(
            f"injected_noise={injected!r} needs norm_mode 'frozen' or 'fixed', whose layers normalize with running "
            f"or fixed statistics; in norm_mode {norm_mode!r} they normalize with the batch's own statistics, "
            "whose noise ghost_batches doses"
        )


def use_fast_optimizers(*optimizers: th.optim.Optimizer) -> None:
    """Switch optimizers to their fused implementation (Adam, AdamW, SGD: one kernel per step), or else
    their multi-tensor ("foreach") one: the same update rule up to float rounding, with a fraction of the
    per-tensor overhead. On CPU PyTorch otherwise loops over the parameters in Python, and the norms add
    parameter tensors. Set on built optimizers, not through ``optimizer_kwargs``, whose presence would
    drop SB3's own defaults (Adam ``eps=1e-5`` for actor-critic policies).

    :param optimizers: optimizers that have not stepped yet
    """
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            if group.get("fused", False) is None and not group.get("foreach"):
                group["fused"], group["foreach"] = True, False
            elif group.get("foreach", False) is None:
                group["foreach"] = True


def _is_target(module_name: str) -> bool:
    return module_name.split(".")[0].endswith("_target")


class _NormConfigured:
    """What every policy here shares: the norm options, validated before SB3 builds anything, and the
    handling of modes once it has.
    """

    def __init__(
        self,
        *args: Any,
        norm: str = "none",
        norm_kwargs: dict[str, Any] | None = None,
        norm_in: str = "both",
        norm_mode: str = "sb3",
        norm_features: bool = True,
        **kwargs: Any,
    ) -> None:
        validate_norm(norm, norm_kwargs)
        if norm_in not in NORM_IN:
            raise ValueError(f"norm_in must be one of {', '.join(NORM_IN)}; got {norm_in!r}")
        validate_norm_mode(norm, norm_mode, norm_kwargs)
        self.norm = norm
        self.norm_kwargs = dict(norm_kwargs or {})
        self.norm_in = norm_in
        self.norm_mode = norm_mode
        self.norm_features = norm_features
        super().__init__(*args, **kwargs)

    def _normalizes(self, role: str) -> bool:
        return self.norm != "none" and self.norm_in in ("both", role)

    def _normalize(self, net: nn.Sequential, has_output_layer: bool) -> None:
        normalize_mlp(net, self.norm, self.norm_kwargs, has_output_layer=has_output_layer)

    def _normalize_features(self, extractor: nn.Module, role: str) -> None:
        """Put the norm in a features extractor's hidden layers (``norm_features``): after each ``Conv2d`` and
        ``Linear`` of its ``nn.Sequential`` parts (SB3's ``NatureCNN``: ``cnn`` and ``linear``), before their
        activations. A flatten of vector observations has none.

        :param extractor: the features extractor
        :param role: ``actor``, ``critic`` or ``both`` (an extractor the actor and the critic share)
        :raises ValueError: for a ``Linear`` or ``Conv2d`` outside an ``nn.Sequential``, which has no place to
            insert a norm: naming it
        """
        wanted = self.norm_in == "both" if role == "both" else self._normalizes(role)
        if not self.norm_features or self.norm == "none" or not wanted:
            return
        parts = [m for m in extractor.modules() if isinstance(m, nn.Sequential)]
        # Layers in a Sequential have their place; so do those a norm already wraps (a shared extractor).
        inside = {id(layer) for part in parts for layer in part}
        inside |= {id(m.layer) for m in extractor.modules() if isinstance(m, NormalizedLayer)}
        for name, module in extractor.named_modules():
            if isinstance(module, nn.Linear | nn.Conv2d) and id(module) not in inside:
                raise ValueError(
                    f"norm_features: layer {name!r} of {type(extractor).__name__}, {module}, is not in an "
                    "nn.Sequential with its activation, so there is no place for the norm after it; build the "
                    "extractor from nn.Sequential parts, or pass norm_features=False"
                )
        for part in parts:
            self._normalize(part, has_output_layer=False)

    def _finish_build(self, *optimizers: th.optim.Optimizer) -> None:
        """After SB3's ``_build``: statistics sources for ``norm_mode``, and fast optimizers."""
        modules = list(self.named_modules())  # type: ignore[attr-defined]
        self._online_layers = [m for name, m in modules if isinstance(m, NormalizedLayer) and not _is_target(name)]
        for name, module in modules:
            if isinstance(module, BatchStatisticsNorm):
                consistent_target = _is_target(name) and self.norm_mode == "consistent"
                module.set_statistics("batch_only" if consistent_target else _ONLINE_STATISTICS[self.norm_mode])
        self._consistent_targets = [
            m for name, m in modules
            if isinstance(m, BatchStatisticsNorm) and _is_target(name) and self.norm_mode == "consistent"
        ]
        self._use_fast_optimizers(*optimizers)

    def set_training_mode(self, mode: bool) -> None:
        super().set_training_mode(mode)  # type: ignore[misc]
        # Parameters only change in train mode (SB3 switches to it before every update), so between two
        # updates each online layer can act as one folded Linear. Target networks never fold: SB3 moves
        # their weights while they stay in eval mode.
        for layer in self._online_layers:
            if mode:
                layer.stop_folding()
            else:
                layer.start_folding()
        # A consistent target normalizes with the statistics of the batch it scores: train mode for its
        # norm layers only (which update nothing there), whatever mode SB3 leaves the target in.
        for layer in self._consistent_targets:
            layer.train(True)

    def _use_fast_optimizers(self, *optimizers: th.optim.Optimizer) -> None:
        # norm="none" keeps SB3's optimizer exactly, bit for bit.
        if self.norm != "none":
            use_fast_optimizers(*optimizers)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()  # type: ignore[misc]
        data.update(norm=self.norm, norm_kwargs=self.norm_kwargs, norm_in=self.norm_in, norm_mode=self.norm_mode,
                    norm_features=self.norm_features)
        return data


def share_data_init_with_target(online: nn.Module, target: nn.Module) -> None:
    """Let each data-initialized layer of ``online`` copy itself to its twin in ``target`` once it has
    seen its first batch, so that a target network does not start from the pre-initialization weights.

    :param online: a network built by one of SB3's ``make_*`` hooks
    :param target: its target network, built by the same hook
    """
    online_layers = [m for m in online.modules() if isinstance(m, NormalizedLayer)]
    target_layers = [m for m in target.modules() if isinstance(m, NormalizedLayer)]
    for layer, twin in zip(online_layers, target_layers, strict=True):
        layer.copies_to = [twin]


class NormActorCriticPolicy(_NormConfigured, ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` (PPO, A2C) with a norm in the hidden layers of ``mlp_extractor``.

    The norm is inserted after SB3's orthogonal initialization, so weight norm starts from exactly the
    weight SB3 chose; the optimizer is then rebuilt over the new parameters.

    Every update, the first call of :meth:`evaluate_actions` also measures the train/eval mode mismatch:
    the deviation from 1 of the probability ratio PPO sees on its first minibatch, before any gradient
    step (eval-mode log-probs, as in the rollout, against what :meth:`evaluate_actions` returns). It is
    kept in ``mode_mismatch`` (mean |r - 1|) and ``mode_mismatch_max``, counted in
    ``mode_mismatch_updates``; :class:`rlnorm.study.callbacks.ModeMismatchCallback` logs it.

    With ``norm_mode="consistent"`` (PPO only), :meth:`evaluate_actions` returns log-probs shifted by the
    (eval - train) log-probs of the pre-update parameters on the same minibatch: the ratio PPO forms with
    the rollout's log-probs becomes train(θ) / train(θ_old), exactly 1 before the first step. The shift is
    a constant, so the log-probs' gradients are unchanged; values, and so the value loss and its gradient,
    are exactly sb3 mode's. It costs two extra forward passes per minibatch. A2C, which forms no ratio, is
    refused at its first update.

    :param norm: a registered norm name (``rlnorm norms`` lists them)
    :param norm_kwargs: that norm's options
    :param norm_in: ``"both"``, ``"actor"`` (policy network) or ``"critic"`` (value network)
    :param norm_mode: ``"sb3"``, ``"consistent"``, ``"frozen"`` or ``"fixed"`` (see the module doc)
    :param norm_features: also normalize the features extractor's ``Conv2d`` and ``Linear`` layers (image
        observations; an extractor shared by actor and critic only with ``norm_in="both"``)
    :param args: positional arguments of ``ActorCriticPolicy``
    :param kwargs: keyword arguments of ``ActorCriticPolicy``
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.mode_mismatch: float | None = None
        self.mode_mismatch_max: float | None = None
        self.mode_mismatch_updates = 0
        self._measure_mode_mismatch = False
        self._pre_update: NormActorCriticPolicy | None = None
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        if self.norm != "none":
            if self.share_features_extractor:
                self._normalize_features(self.features_extractor, "both")
            else:
                self._normalize_features(self.pi_features_extractor, "actor")
                self._normalize_features(self.vf_features_extractor, "critic")
            if self._normalizes("actor"):
                self._normalize(self.mlp_extractor.policy_net, has_output_layer=False)
            if self._normalizes("critic"):
                self._normalize(self.mlp_extractor.value_net, has_output_layer=False)
            self.to(self.device)
            # The norm replaced parameters (weight norm) or added new ones: an optimizer built before
            # would leave them untrained.
            self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)
        self._finish_build(self.optimizer)

    def set_training_mode(self, mode: bool) -> None:
        # PPO and A2C switch to train mode once at the start of every update.
        if mode and not self.training:
            self._measure_mode_mismatch = True
            if self.norm_mode == "consistent":
                self._keep_pre_update_parameters()
        super().set_training_mode(mode)

    def _keep_pre_update_parameters(self) -> None:
        if self._pre_update is None:
            # Built once, off the global generator (its own init must not shift the training run's
            # random numbers); its batch-statistics layers never update their statistics.
            with th.random.fork_rng():
                copy = type(self)(**{**self._get_constructor_parameters(), "norm_mode": "sb3"}).to(self.device)
            for module in copy.modules():
                if isinstance(module, BatchStatisticsNorm):
                    module.set_statistics("batch_only")
            # Not a submodule: it must stay out of parameters(), the state dict and the optimizer.
            self.__dict__["_pre_update"] = copy
        self._pre_update.load_state_dict(self.state_dict())

    def evaluate_actions(self, obs: PyTorchObs, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        measuring = self._measure_mode_mismatch
        if measuring:
            self._measure_mode_mismatch = False
            # Before the train-mode pass, which moves running statistics away from the rollout's.
            self.train(False)
            with th.no_grad():
                _, eval_log_prob, _ = super().evaluate_actions(obs, actions)
            self.train(True)
        values, log_prob, entropy = super().evaluate_actions(obs, actions)
        if self.norm_mode == "consistent":
            _refuse_a2c(sys._getframe(1).f_locals.get("self"))
            with th.no_grad():
                self._pre_update.train(True)
                _, train_log_prob, _ = self._pre_update.evaluate_actions(obs, actions)
                self._pre_update.train(False)
                _, eval_log_prob_before, _ = self._pre_update.evaluate_actions(obs, actions)
            log_prob = log_prob - train_log_prob + eval_log_prob_before
        if measuring:
            deviation = (th.exp(log_prob.detach() - eval_log_prob) - 1.0).abs()
            self.mode_mismatch, self.mode_mismatch_max = deviation.mean().item(), deviation.max().item()
            self.mode_mismatch_updates += 1
        return values, log_prob, entropy


def _refuse_a2c(caller: Any) -> None:
    # The policy is built without a reference to its algorithm, so the update that calls it is asked.
    if isinstance(caller, A2C):
        raise ValueError(
            "norm_mode 'consistent' makes PPO's probability ratio compare train-mode outputs; A2C forms no "
            "ratio, so it has nothing to make consistent: use norm_mode 'sb3', 'frozen' or 'fixed' with A2C"
        )


class NormDQNPolicy(_NormConfigured, DQNPolicy):
    """SB3's ``DQNPolicy`` with a norm in the hidden layers of the Q-network (and its target).

    DQN has one network, so ``norm_in`` can only be ``"both"``.

    :param norm: a registered norm name (``rlnorm norms`` lists them)
    :param norm_kwargs: that norm's options
    :param norm_in: must be ``"both"``
    :param norm_mode: ``"sb3"``, ``"consistent"``, ``"frozen"`` or ``"fixed"`` (see the module doc)
    :param norm_features: also normalize the features extractor's ``Conv2d`` and ``Linear`` layers (image
        observations; an extractor shared by actor and critic only with ``norm_in="both"``)
    :param args: positional arguments of ``DQNPolicy``
    :param kwargs: keyword arguments of ``DQNPolicy``
    """

    def __init__(self, *args: Any, norm_in: str = "both", **kwargs: Any) -> None:
        if norm_in != "both":
            raise ValueError(f"DQN has a single Q-network: norm_in must be 'both', got {norm_in!r}")
        super().__init__(*args, norm_in=norm_in, **kwargs)

    def make_q_net(self) -> QNetwork:
        q_net = super().make_q_net()
        if self.norm != "none":
            self._normalize_features(q_net.features_extractor, "both")
            self._normalize(q_net.q_net, has_output_layer=True)
        return q_net.to(self.device)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        share_data_init_with_target(self.q_net, self.q_net_target)
        self._finish_build(self.optimizer)


class _NormActorCritics(_NormConfigured):
    """What SAC and TD3 share: the critics are built the same way, and so are the optimizers."""

    def make_critic(self, features_extractor: Any = None) -> ContinuousCritic:
        critic = super().make_critic(features_extractor)  # type: ignore[misc]
        # A features extractor shared with the actor already has its norm: a normalized layer is not normalized
        # again.
        self._normalize_features(critic.features_extractor, "critic")
        if self._normalizes("critic"):
            for q_net in critic.q_networks:
                self._normalize(q_net, has_output_layer=True)
        return critic.to(self.device)  # type: ignore[attr-defined]

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)  # type: ignore[misc]
        share_data_init_with_target(self.critic, self.critic_target)  # type: ignore[attr-defined]
        if hasattr(self, "actor_target"):
            share_data_init_with_target(self.actor, self.actor_target)  # type: ignore[attr-defined]
        self._finish_build(self.actor.optimizer, self.critic.optimizer)  # type: ignore[attr-defined]

    def _normalize_actor(self, actor: Any, net: nn.Sequential, has_output_layer: bool) -> Any:
        """:param actor: the actor SB3 built
        :param net: its MLP (SAC's ``latent_pi``, TD3's ``mu``)
        :param has_output_layer: whether ``net`` ends with the output layer, which keeps no norm
        :return: the actor with the norm in its features extractor and its MLP, as ``norm_in`` says"""
        self._normalize_features(actor.features_extractor, "actor")
        if self._normalizes("actor"):
            self._normalize(net, has_output_layer=has_output_layer)
        return actor.to(self.device)  # type: ignore[attr-defined]


class NormSACPolicy(_NormActorCritics, SACPolicy):
    """SB3's ``SACPolicy`` with a norm in the hidden layers of the actor and/or the critics.

    Note SB3's SAC computes the next action with the actor in train mode (docs/method.md#sb3-and-the-norms).

    :param norm: a registered norm name (``rlnorm norms`` lists them)
    :param norm_kwargs: that norm's options
    :param norm_in: ``"both"``, ``"actor"`` or ``"critic"``
    :param norm_mode: ``"sb3"``, ``"consistent"``, ``"frozen"`` or ``"fixed"`` (see the module doc)
    :param norm_features: also normalize the features extractor's ``Conv2d`` and ``Linear`` layers (image
        observations; an extractor shared by actor and critic only with ``norm_in="both"``)
    :param args: positional arguments of ``SACPolicy``
    :param kwargs: keyword arguments of ``SACPolicy``
    """

    def make_actor(self, features_extractor: Any = None) -> SACActor:
        actor = super().make_actor(features_extractor)
        return self._normalize_actor(actor, actor.latent_pi, has_output_layer=False)


class NormTD3Policy(_NormActorCritics, TD3Policy):
    """SB3's ``TD3Policy`` with a norm in the hidden layers of the actor and/or the critics.

    :param norm: a registered norm name (``rlnorm norms`` lists them)
    :param norm_kwargs: that norm's options
    :param norm_in: ``"both"``, ``"actor"`` or ``"critic"``
    :param norm_mode: ``"sb3"``, ``"consistent"``, ``"frozen"`` or ``"fixed"`` (see the module doc)
    :param norm_features: also normalize the features extractor's ``Conv2d`` and ``Linear`` layers (image
        observations; an extractor shared by actor and critic only with ``norm_in="both"``)
    :param args: positional arguments of ``TD3Policy``
    :param kwargs: keyword arguments of ``TD3Policy``
    """

    def make_actor(self, features_extractor: Any = None) -> TD3Actor:
        actor = super().make_actor(features_extractor)
        return self._normalize_actor(actor, actor.mu, has_output_layer=True)
