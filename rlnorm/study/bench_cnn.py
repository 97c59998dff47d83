"""Compute cost of each norm in convolutional networks, where the claim "WN is cheaper to compute than BN" is
argued (docs/method.md#compute-cost-in-convolutional-networks).

A convolution has few weights and many activations. Weight normalization's extra work grows with the weights
(‖v‖ per output channel, once per forward), BatchNorm's and LayerNorm's with the activations (moments and the
normalization of every output). Two measurements:

- **workloads**: the update and the rollout forward of SB3's PPO and DQN on NatureCNN at Atari's shape
  (84 x 84 x 4; DQN's batch 32, PPO's minibatch 256, PPO's 8 envs, DQN's 1) and on MinAtar's network, each
  norm against SB3's own ``CnnPolicy`` and against norm none;
- **the ratio sweep**: forward + backward (train mode) of NatureCNN's three convolutions alone over batch sizes,
  so that the activations-to-weights ratio runs from about 1 to about 70, beside each norm's FLOPs relative to
  the convolutions' (:func:`norm_flops`).

Every comparison is paired as in :mod:`rlnorm.study.bench`: within one repeat all variants run back to back in a
rotated order, one torch thread, and a ratio is taken inside the repeat.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.torch_layers import NatureCNN
from torch import nn

from rlnorm.analysis.results import CNN_BENCH_REFERENCE
from rlnorm.core.envs import make_env
from rlnorm.core.extractors import FEATURES_EXTRACTORS
from rlnorm.core.norms import normalize_mlp
from rlnorm.core.policies import NormActorCriticPolicy, NormDQNPolicy
from rlnorm.study.bench import CORE_NORMS, median_ratio_cis, paired_times, silent_logger

MINATAR_ENV = "MinAtar/Breakout-v1"
ATARI_SHAPE = (4, 84, 84)
"""Atari's frames as SB3's zoo feeds them: four stacked 84 x 84 grey frames, channels first."""
SWEEP_BATCHES = (2, 4, 8, 16, 32, 64, 128, 256)
TARGET_MEASUREMENT_S = 0.25
"""Calls per measurement are chosen so that one measurement of the reference takes about this long."""


@dataclass(frozen=True)
class Workload:
    """One operation training repeats, timed per call.

    :param algo: ``ppo`` or ``dqn``
    :param extractor: ``NatureCNN`` (at :data:`ATARI_SHAPE`, uint8 frames) or ``MinAtarCNN`` (on MinAtar Breakout)
    :param step: ``update``: one gradient step of the algorithm's own ``train`` (PPO: one minibatch of one epoch;
        DQN: one gradient step with its target network); ``rollout``: ``policy.predict`` on one observation
        per env, in eval mode
    :param batch: the minibatch (update) or the number of envs (rollout)
    """

    algo: str
    extractor: str
    step: str
    batch: int

    @property
    def name(self) -> str:
        """``algo/extractor shape step xbatch``: the scope "WN is cheaper to compute than BN" is decided on, for an
        update"""
        shape = "4x84x84" if self.extractor == "NatureCNN" else "MinAtar Breakout"
        return f"{self.algo}/{self.extractor} {shape} {self.step} x{self.batch}"


WORKLOADS = (
    Workload("dqn", "NatureCNN", "update", 32),
    Workload("ppo", "NatureCNN", "update", 256),
    Workload("dqn", "NatureCNN", "rollout", 1),
    Workload("ppo", "NatureCNN", "rollout", 8),
    Workload("dqn", "MinAtarCNN", "update", 32),
    Workload("ppo", "MinAtarCNN", "update", 256),
    Workload("dqn", "MinAtarCNN", "rollout", 1),
    Workload("ppo", "MinAtarCNN", "rollout", 8),
)
"""Atari's settings in SB3's zoo (DQN: batch 32, one env; PPO: 8 envs, minibatches of 256) and MinAtar's."""


def _image_env(workload: Workload, seed: int):
    if workload.extractor == "MinAtarCNN":
        return make_vec_env(make_env, n_envs=workload.batch if workload.step == "rollout" else 1, seed=seed,
                            env_kwargs={"env_id": MINATAR_ENV})
    channels, height, width = ATARI_SHAPE

    def fake_atari() -> FakeImageEnv:
        env = FakeImageEnv(screen_height=height, screen_width=width, n_channels=channels)
        env.observation_space.seed(seed)
        return env

    return make_vec_env(fake_atari, n_envs=workload.batch if workload.step == "rollout" else 1, seed=seed)


def build_model(workload: Workload, variant: str, seed: int = 0) -> BaseAlgorithm:
    """
    The algorithm with SB3's ``CnnPolicy`` (``variant`` :data:`CNN_BENCH_REFERENCE`) or rlnorm's policy with the norm
    ``variant`` in its features extractor, the update's buffer filled.

    :param workload: what will be timed
    :param variant: :data:`CNN_BENCH_REFERENCE` or a norm
    :param seed: the model's seed
    :return: the model, ready for :func:`time_workload`
    """
    env = _image_env(workload, seed)
    policy_kwargs: dict[str, Any] = {"features_extractor_class": FEATURES_EXTRACTORS[workload.extractor]}
    if workload.extractor == "MinAtarCNN":
        policy_kwargs["net_arch"] = []
    if workload.algo == "ppo":
        algo, policy = PPO, NormActorCriticPolicy
        kwargs = {"n_steps": max(workload.batch // env.num_envs, 2), "batch_size": workload.batch, "n_epochs": 1}
    else:
        algo, policy = DQN, NormDQNPolicy
        kwargs = {"buffer_size": 2 * workload.batch, "learning_starts": 2 * workload.batch,
                  "batch_size": workload.batch}
    if variant == CNN_BENCH_REFERENCE:
        policy = CNN_BENCH_REFERENCE
    else:
        policy_kwargs["norm"] = variant
    model = algo(policy, env, seed=seed, device="cpu", verbose=0, policy_kwargs=policy_kwargs, **kwargs)
    model.set_logger(silent_logger())
    if workload.step == "update":
        # One rollout (PPO) or learning_starts random steps (DQN) fill the buffer; no update yet for DQN.
        model.learn(kwargs.get("n_steps", 0) * env.num_envs + kwargs.get("learning_starts", 0))
    return model


def _timed_call(workload: Workload, model: BaseAlgorithm) -> Callable[[], None]:
    if workload.step == "rollout":
        observations = np.stack([model.observation_space.sample() for _ in range(workload.batch)])
        return lambda: model.policy.predict(observations, deterministic=True)
    if workload.algo == "dqn":
        return lambda: model.train(gradient_steps=1, batch_size=workload.batch)
    return model.train  # one epoch of one minibatch: the rollout is one minibatch long


def time_workload(workload: Workload, variants: Sequence[str], repeats: int) -> dict[str, list[float]]:
    """
    Seconds per call of the workload's operation, each variant in paired repeats.

    :param workload: the operation
    :param variants: :data:`CNN_BENCH_REFERENCE` and norms
    :param repeats: paired repeats
    :return: variant -> seconds per call, one per repeat
    """
    models = {variant: build_model(workload, variant) for variant in variants}
    return time_calls({variant: _timed_call(workload, model) for variant, model in models.items()}, repeats)


def time_calls(calls: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """
    Seconds per call of each function, in paired repeats of about :data:`TARGET_MEASUREMENT_S` each.

    :param calls: variant -> the operation (the first is the reference the number of calls is set by)
    :param repeats: paired repeats
    :return: variant -> seconds per call, one per repeat
    """
    for call in calls.values():
        call()  # warm-up: lazy allocations, the first optimizer step, data-dependent init
    reference = next(iter(calls.values()))
    start = time.perf_counter()
    reference()
    count = max(1, math.ceil(TARGET_MEASUREMENT_S / (time.perf_counter() - start)))

    def per_call(variant: str) -> float:
        call = calls[variant]
        start = time.perf_counter()
        for _ in range(count):
            call()
        return (time.perf_counter() - start) / count

    return paired_times(list(calls), repeats, per_call)


# ------------------------------------------------------------------------------------------ the ratio sweep


@dataclass(frozen=True)
class ConvSize:
    """What a stack of convolutions computes on one batch.

    :param activations: outputs of all its convolutions (batch x channels x height x width, summed)
    :param weights: their weights
    :param conv_flops: their forward FLOPs (a multiply-add counts two)
    """

    activations: int
    weights: int
    conv_flops: int


def conv_size(convolutions: Sequence[nn.Conv2d], batch: int, shape: tuple[int, int, int]) -> ConvSize:
    """:param convolutions: the convolutions, in order, each taking the previous one's output
    :param batch: the batch size
    :param shape: (C, H, W) of one input
    :return: what they compute on a batch"""
    activations = weights = flops = 0
    _, height, width = shape
    for conv in convolutions:
        (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
        height, width = (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
        outputs = batch * conv.out_channels * height * width
        activations += outputs
        weights += conv.weight.numel()
        flops += 2 * outputs * conv.in_channels * kh * kw // conv.groups
    return ConvSize(activations, weights, flops)


NORM_FLOPS: dict[str, tuple[int, int]] = {
    "none": (0, 0),
    "bn": (6, 0),
    "mobn": (2, 0),
    "wn": (0, 3),
    "wn+mobn": (2, 3),
    "ln": (7, 0),
}
"""Forward FLOPs a norm adds in train mode, (per activation, per weight), against norm none's convolution with its
bias: BatchNorm's mean, centring, square, sum, scale and affine (7) less the bias it removes; mean-only BN's
mean, centring and bias (3) less that bias; weight normalization's ‖v‖ (square, sum) and the rescaling of v (3
per weight, independent of the batch); LayerNorm (GroupNorm with one group) as BatchNorm, keeping the bias."""


def norm_flops(norm: str, size: ConvSize) -> float:
    """:param norm: a core norm
    :param size: what the convolutions compute
    :return: the norm's forward FLOPs relative to the convolutions' (0.01: 1 % more work)"""
    per_activation, per_weight = NORM_FLOPS[norm]
    return (per_activation * size.activations + per_weight * size.weights) / size.conv_flops


def nature_convolutions(norm: str, shape: tuple[int, int, int] = ATARI_SHAPE) -> nn.Sequential:
    """:param norm: a norm
    :param shape: (C, H, W) images
    :return: NatureCNN's three convolutions and their ReLUs, with the norm after each convolution"""
    space = spaces.Box(0, 255, shape, np.uint8)
    convolutions = nn.Sequential(*[m for m in NatureCNN(space).cnn if not isinstance(m, nn.Flatten)])
    if norm != "none":
        normalize_mlp(convolutions, norm, has_output_layer=False)
    return convolutions


@dataclass(frozen=True)
class SweepPoint:
    """The ratio sweep at one batch size.

    :param batch: the batch size
    :param size: what NatureCNN's convolutions compute on it
    :param times: norm -> seconds of one forward + backward in train mode, one per paired repeat
    """

    batch: int
    size: ConvSize
    times: dict[str, list[float]]

    @property
    def ratio(self) -> float:
        """activations per weight"""
        return self.size.activations / self.size.weights


def ratio_sweep(norms: Sequence[str] = CORE_NORMS, batches: Sequence[int] = SWEEP_BATCHES,
                repeats: int = 12) -> list[SweepPoint]:
    """
    Time forward + backward of NatureCNN's convolutions with each norm, in train mode, over batch sizes.

    :param norms: the norms (none first: the reference)
    :param batches: batch sizes (at least 2: batch statistics need two samples)
    :param repeats: paired repeats per batch size
    :return: one point per batch size
    """
    torch.manual_seed(0)
    networks = {norm: nature_convolutions(norm).train() for norm in norms}
    points = []
    convolutions = [m for m in networks["none"] if isinstance(m, nn.Conv2d)]
    for batch in batches:
        images = torch.rand(batch, *ATARI_SHAPE)

        def step(network: nn.Module, images: torch.Tensor = images) -> None:
            network(images).sum().backward()
            network.zero_grad(set_to_none=True)

        times = time_calls({norm: partial(step, network) for norm, network in networks.items()}, repeats)
        points.append(SweepPoint(batch, conv_size(convolutions, batch, ATARI_SHAPE), times))
    return points


# ----------------------------------------------------------------------------------------------- the report


def run_cnn_bench(norms: Sequence[str] = CORE_NORMS, repeats: int = 12, workloads: Sequence[Workload] | None = None,
                  batches: Sequence[int] | None = None) -> tuple[str, dict[str, Any]]:
    """
    Time every workload and the ratio sweep, and format them as Markdown tables.

    :param norms: the norms (none is always included)
    :param repeats: paired repeats (12 or more can reach significance after correction)
    :param workloads: the workloads (None: :data:`WORKLOADS`)
    :param batches: the sweep's batch sizes (None: :data:`SWEEP_BATCHES`; empty: no sweep)
    :return: the report, and the record's CNN part (``cnn_time_s`` and ``conv_sweep``,
        :func:`rlnorm.study.bench.write_bench_record`)
    """
    torch.set_num_threads(1)
    workloads = WORKLOADS if workloads is None else workloads
    batches = SWEEP_BATCHES if batches is None else batches
    norms = ["none", *[n for n in norms if n != "none"]]
    variants = [CNN_BENCH_REFERENCE, *norms]
    record: dict[str, Any] = {"cnn_time_s": {}, "conv_sweep": []}
    lines = [f"Convolutional workloads, time per call relative to SB3's {CNN_BENCH_REFERENCE} and to norm none "
             f"(median of {repeats} paired ratios, 95 % bootstrap CI; above 1.00: faster):", "",
             "| workload | norm | ms per call | vs CnnPolicy | 95 % CI | vs none | 95 % CI |",
             "|---|---|---|---|---|---|---|"]
    for workload in workloads:
        times = time_workload(workload, variants, repeats)
        record["cnn_time_s"][workload.name] = {**asdict(workload), "times": times}
        against_sb3, against_none = median_ratio_cis(times, CNN_BENCH_REFERENCE), median_ratio_cis(times, "none")
        for variant in variants:
            sb3, none = against_sb3[variant], against_none[variant]
            lines.append(f"| {workload.name} | {variant} | {np.median(times[variant]) * 1e3:.2f} | {sb3.value:.3f} "
                         f"| [{sb3.low:.3f}, {sb3.high:.3f}] | {none.value:.3f} | [{none.low:.3f}, {none.high:.3f}] |")
    if batches:
        lines += ["", "NatureCNN's convolutions, forward + backward in train mode: time relative to none (above "
                  "1.00: slower) against activations per weight, beside the norm's FLOPs relative to the "
                  "convolutions':", "",
                  "| batch | activations / weights | norm | time / none | 95 % CI | FLOPs / conv |",
                  "|---|---|---|---|---|---|"]
        for point in ratio_sweep(norms, batches, repeats):
            flops = {norm: norm_flops(norm, point.size) if norm in NORM_FLOPS else math.nan for norm in norms}
            record["conv_sweep"].append({"batch": point.batch, **asdict(point.size), "norm_flops": flops,
                                         "times": point.times})
            cost = median_ratio_cis({n: [1 / t for t in ts] for n, ts in point.times.items()}, "none")
            for norm in norms:
                lines.append(f"| {point.batch} | {point.ratio:.1f} | {norm} | {cost[norm].value:.3f} "
                             f"| [{cost[norm].low:.3f}, {cost[norm].high:.3f}] | {1 + flops[norm]:.4f} |")
    return "\n".join(lines), record
