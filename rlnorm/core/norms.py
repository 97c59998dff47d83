"""Normalization layers and their registry.

Every norm is placed after a hidden ``nn.Linear`` (or, in an image features extractor, an ``nn.Conv2d``) and
before its activation (docs/method.md#norms), except
``pnorm``, which divides the last hidden layer's activations by their norm right before the output
layer. The output layer itself is never normalized.

A norm is registered with a *factory*. For ``placement="hidden"`` the factory receives the hidden
``nn.Linear`` (or ``nn.Conv2d``, for a norm registered with ``conv=True``) and returns the module that replaces
it (usually a :class:`NormalizedLayer`). For
``placement="penultimate"`` it receives the number of features of the last hidden layer and returns a
module appended after that layer's activation. Keyword arguments of the factory are the norm's options
(``norm_kwargs``); anything else is rejected by name.

Layers that keep running statistics name their buffers ``running_*`` and update them in place: SB3
copies exactly those buffers to target networks, by reference, collected once at set-up
(docs/method.md#sb3-and-the-norms).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _WeightNorm, weight_norm

Placement = Literal["hidden", "penultimate"]


def _check_batch_statistics_possible(layer: str, x: torch.Tensor) -> None:
    # torch's own message ("Expected more than 1 value per channel") does not say what to change, and a
    # mean-only layer would silently output its bias for a batch of one.
    if x.shape[0] < 2:
        raise ValueError(
            f"{layer} normalizes with the statistics of the batch in train mode, and a batch of "
            f"{x.shape[0]} sample has none. Use batches of at least 2 samples (for PPO/A2C, choose "
            "n_steps * n_envs and batch_size so that no minibatch holds a single sample), or put the "
            "network in eval mode (model.policy.set_training_mode(False)) to use running statistics."
        )


#: Where a batch-statistics layer takes its statistics from in train mode (eval mode always uses the
#: running ones): ``batch``, updating the running ones (SB3's BN); ``batch_only``, leaving them alone
#: (a target network scoring its own batch); ``running``, which batches only update (no minibatch
#: noise, no mode switch); ``fixed``, set from the first train-mode batch and never updated.
STATISTICS_SOURCES = ("batch", "batch_only", "running", "fixed")


def check_ghost_batches(ghost_batches: Any) -> int:
    """:param ghost_batches: the number of ghost batches a batch is split into
    :return: it, checked: an integer of at least 1 (1 is the plain layer)"""
    if isinstance(ghost_batches, bool) or not isinstance(ghost_batches, int) or ghost_batches < 1:
        raise ValueError(f"ghost_batches must be an integer >= 1 (1: the plain layer), got {ghost_batches!r}")
    return ghost_batches


def check_injected_noise(injected_noise: Any) -> float:
    """:param injected_noise: the dose d of noise injected into running or fixed statistics
    :return: it, checked: a finite number of at least 0 (0: none)"""
    if isinstance(injected_noise, bool) or not isinstance(injected_noise, int | float) or not (
        0 <= injected_noise < math.inf
    ):
        raise ValueError(f"injected_noise must be a finite number >= 0 (0: none), got {injected_noise!r}")
    return float(injected_noise)


def moments(
    x: torch.Tensor, dim: int | tuple[int, ...], correction: int = 0, keepdim: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and the variance of ``x`` along ``dim`` (one dimension or several), in two passes.

    Not ``torch.var_mean``: on CPU it reduces along a batch dimension 20-60 times slower than a mean does
    (about 0.6 ms against 0.02 ms for 256 x 256 values, one thread), a visible share of an RL update.

    :param x: the values
    :param dim: the dimension (or dimensions) reduced
    :param correction: subtracted from the count in the variance's denominator (0: biased, 1: unbiased)
    :param keepdim: keep ``dim`` with size 1
    :return: (mean, variance)
    """
    dims = (dim,) if isinstance(dim, int) else dim
    count = math.prod(x.shape[d] for d in dims)
    mean = x.mean(dims, keepdim=True)
    variance = (x - mean).square().sum(dims, keepdim=keepdim) / (count - correction)
    return (mean if keepdim else mean.squeeze(dims)), variance


def _per_channel(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """:return: per-feature (or per-channel) ``values`` shaped to broadcast over ``x``, (N, F) or (N, C, H, W)"""
    return values if x.dim() == 2 else values.view(-1, *(1,) * (x.dim() - 2))


def _batch_dims(x: torch.Tensor) -> tuple[int, ...]:
    """:return: the dimensions a batch statistic of ``x`` reduces: the samples, and for images their pixels"""
    return (0,) if x.dim() == 2 else (0, *range(2, x.dim()))


def ghost_normalize(
    x: torch.Tensor,
    ghost_batches: int,
    normalize: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    correction: int | None = 0,
) -> torch.Tensor:
    """Normalize each ghost batch of ``x`` with its own statistics.

    The batch is split as ``torch.tensor_split(x, ghost_batches)`` splits it: consecutive parts whose sizes
    differ by at most one, the larger ones first. The parts are normalized as at most two reshaped views
    (parts x samples x features), not one by one, so that 16 ghost batches cost about what one does.

    :param x: a batch, one sample per row, features (or, for images, channels) last
    :param ghost_batches: k, the number of parts (1: the whole batch is one)
    :param normalize: ``normalize(parts, mean, variance)``, the parts with their per-part moments (kept
        dimensions), returns the normalized parts
    :param correction: of the variance (see :func:`moments`): 0 for batch norm, 1 for batch renorm; None when
        ``normalize`` needs no variance (mean-only BN), which is then not computed (None)
    :return: the normalized batch, rows in their order
    """
    size, larger = divmod(x.shape[0], ghost_batches)
    if size < 2:
        raise ValueError(
            f"ghost_batches={ghost_batches} splits a batch of {x.shape[0]} samples into ghost batches of {size}, "
            f"and a ghost batch needs at least 2 samples: use batches of at least {2 * ghost_batches} samples "
            "or fewer ghost batches"
        )
    outputs = []
    split = larger * (size + 1)
    for rows, parts in ((x[:split], larger), (x[split:], ghost_batches - larger)):
        if parts:
            grouped = rows.reshape(parts, -1, *x.shape[1:])
            # Statistics per part, over its samples (and their pixels): every dimension but the first and last.
            within = tuple(range(1, grouped.dim() - 1))
            if correction is None:
                mean, variance = grouped.mean(within, keepdim=True), None
            else:
                mean, variance = moments(grouped, within, correction, keepdim=True)
            outputs.append(normalize(grouped, mean, variance).reshape(rows.shape))
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


class BatchStatisticsNorm(nn.Module):
    """Base of the norms that keep running statistics (bn, mobn, brn): where train mode takes them from.

    With ``ghost_batches`` k > 1 (Hoffer et al. 2017's ghost batch normalization), a train-mode call that
    normalizes with batch statistics splits its batch into k consecutive, near-equal parts and normalizes
    each with its own statistics (:func:`ghost_normalize`); the running statistics are still updated once
    per call, from the whole batch, and eval mode is unchanged. This raises the minibatch noise about
    √k-fold and changes nothing else: a noise dose.

    With ``injected_noise`` d > 0, a train-mode call that normalizes with running or fixed statistics (the
    ``frozen`` and ``fixed`` norm modes) perturbs them as the statistics of its own batch would scatter around
    them, d times the variance: the mean by a normal shift of standard deviation √(d/n) times the batch's
    spread per feature (n values per feature), shared by the whole batch as a batch mean is, and a variance
    by a factor χ²(ν)/ν with ν = n/d - 1 (at least 1). For Gaussian features d = 1 is the noise of batch
    statistics at this batch size and d = k that of k ghost batches, but the perturbation's direction does not
    depend on which samples share the batch (only its size does, through their spread): a noise dose for a
    network without batch statistics. The numbers come
    from torch's global generator, so a seeded run repeats.

    Images (N, C, H, W), after a ``Conv2d``, are normalized per channel with statistics over the samples and
    their pixels, as ``BatchNorm2d`` does.

    Subclasses say how a batch is normalized given its moments (:meth:`_normalize_part`) and how eval mode
    normalizes (:meth:`eval_affine`).

    :param momentum: weight of the newest batch in the running statistics
    :param ghost_batches: k, the number of ghost batches (1: the plain layer)
    :param injected_noise: d, the dose of noise injected into running or fixed statistics (0: none)
    """

    #: The variance's correction (see :func:`moments`) in the normalization itself; None for a norm that uses
    #: no variance.
    variance_correction: int | None = 0

    def __init__(self, momentum: float, ghost_batches: int = 1, injected_noise: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{type(self).__name__} momentum must be in [0, 1], got {momentum}")
        self.momentum = momentum
        self.ghost_batches = check_ghost_batches(ghost_batches)
        self.injected_noise = check_injected_noise(injected_noise)
        self.statistics = "batch"
        # A buffer, so that a saved model keeps its fixed statistics fixed.
        self.register_buffer("statistics_fixed", torch.tensor(False))

    @property
    def injects_noise(self) -> bool:
        """Whether a train-mode call perturbs the statistics (``injected_noise`` with running or fixed ones)."""
        return bool(self.injected_noise) and self.statistics in ("running", "fixed")

    def set_statistics(self, source: str) -> None:
        """:param source: one of :data:`STATISTICS_SOURCES`"""
        if source not in STATISTICS_SOURCES:
            raise ValueError(f"statistics source must be one of {', '.join(STATISTICS_SOURCES)}; got {source!r}")
        self.statistics = source

    @property
    def _awaiting_first_batch(self) -> bool:
        # Read from the buffer, so that any restored state says it: a loaded model, a probe's draw undone.
        return self.statistics == "fixed" and not bool(self.statistics_fixed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > 2:  # channels last, so that per-channel statistics broadcast as per-feature ones do
            return self._forward_features_last(x.movedim(1, -1)).movedim(-1, 1)
        return self._forward_features_last(x)

    def _forward_features_last(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self._normalize_part(x, self.running_mean, self._running_var())
        _check_batch_statistics_possible(type(self).__name__, x)
        if self.statistics in ("batch", "batch_only"):
            normalized = ghost_normalize(x, self.ghost_batches, self._normalize_part, self.variance_correction)
            if self.statistics == "batch":
                self._update_running(*self._whole_batch_moments(x.detach()))
            return normalized
        mean, var = self._running_statistics_for(x)
        if self.injects_noise:
            mean, var = self._inject_noise(x, mean, var)
        return self._normalize_part(x, mean, var)

    def _inject_noise(
        self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:return: ``mean`` and ``var`` perturbed as ``injected_noise`` says (features last)"""
        values = x.detach().reshape(-1, x.shape[-1])
        count = values.shape[0]
        spread = moments(values, 0, correction=1)[1].sqrt()
        mean = mean + spread * math.sqrt(self.injected_noise / count) * torch.randn_like(mean)
        if self.variance_correction is not None:
            dof = max(count / self.injected_noise - 1.0, 1.0)
            # chi2(dof) = 2 Gamma(dof / 2); torch.distributions.Chi2 draws the same way at 6-8 times the cost.
            var = var * torch._standard_gamma(torch.full_like(var, dof / 2)) * (2 / dof)
        return mean, var

    def _normalize_part(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def _whole_batch_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:return: the batch's mean and unbiased variance (features last), which update the running statistics"""
        return moments(x, tuple(range(x.dim() - 1)), correction=1)

    def _running_statistics_for(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The running statistics a train-mode call normalizes with (``running`` or ``fixed``), after updating
        them as ``statistics`` says. Returned as copies: the in-place update of a later call must not touch a
        tensor this call's backward pass needs.
        """
        if self.statistics == "running" or self._awaiting_first_batch:
            with torch.no_grad():
                batch_mean, batch_var = self._whole_batch_moments(x)
                if self._awaiting_first_batch:
                    self.running_mean.copy_(batch_mean)
                    self._copy_running_var(batch_var)
                    self.statistics_fixed.fill_(True)
                    return self.running_mean.clone(), self._running_var().clone()
                mean, var = self.running_mean.clone(), self._running_var().clone()
                self._update_running(batch_mean, batch_var)
                return mean, var
        return self.running_mean.clone(), self._running_var().clone()

    def _running_var(self) -> torch.Tensor:
        return self.running_var

    def _copy_running_var(self, batch_var: torch.Tensor | None) -> None:
        self.running_var.copy_(batch_var)

    @torch.no_grad()
    def _update_running(self, batch_mean: torch.Tensor, batch_var: torch.Tensor) -> None:
        self.running_mean.lerp_(batch_mean, self.momentum)
        self.running_var.lerp_(batch_var, self.momentum)


class BatchNorm(BatchStatisticsNorm):
    """Batch normalization, as ``torch.nn.BatchNorm1d`` computes it, with a clear error for a train-mode
    batch of one sample, a choice of statistics for train mode (:data:`STATISTICS_SOURCES`) and ghost batches.

    SB3's usual case calls ``F.batch_norm`` directly: ``BatchNorm1d.forward`` adds Python work and a
    counter update to every call, a visible share of a small RL network's step.

    :param num_features: number of features
    :param momentum: weight of the newest batch in the running statistics
    :param eps: added to the variance before the square root
    :param ghost_batches: ghost batches per train-mode batch (see :class:`BatchStatisticsNorm`)
    :param injected_noise: noise dose of running or fixed statistics (see :class:`BatchStatisticsNorm`)
    """

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5, ghost_batches: int = 1,
                 injected_noise: float = 0.0) -> None:
        super().__init__(momentum, ghost_batches, injected_noise)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or (self.statistics == "batch" and self.ghost_batches == 1):
            if self.training:
                _check_batch_statistics_possible("bn", x)
            # In train mode torch updates the running statistics in place (unbiased variance).
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                                self.momentum, self.eps)
        return super().forward(x)

    def _normalize_part(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias

    def eval_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:return: (scale, shift) such that the eval-mode output is ``x * scale + shift``."""
        scale = self.weight / torch.sqrt(self.running_var + self.eps)
        return scale, self.bias - self.running_mean * scale

    def extra_repr(self) -> str:
        return (f"{self.weight.shape[0]}, momentum={self.momentum}, eps={self.eps}, "
                f"ghost_batches={self.ghost_batches}, injected_noise={self.injected_noise}")


class MeanOnlyBatchNorm(BatchStatisticsNorm):
    """Salimans & Kingma's mean-only batch normalization: ``x - mean + bias``, no division.

    Train mode subtracts the batch mean and updates ``running_mean`` in place (or, with another
    statistics source, see :data:`STATISTICS_SOURCES`); eval mode subtracts ``running_mean``.

    :param num_features: number of features
    :param momentum: weight of the newest batch in the running mean
    :param ghost_batches: ghost batches per train-mode batch (see :class:`BatchStatisticsNorm`)
    :param injected_noise: noise dose of running or fixed statistics (see :class:`BatchStatisticsNorm`)
    """

    def __init__(self, num_features: int, momentum: float = 0.1, ghost_batches: int = 1,
                 injected_noise: float = 0.0) -> None:
        super().__init__(momentum, ghost_batches, injected_noise)
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One pass over the batch: the shift (bias - mean) is a vector.
        if not self.training:
            return x + _per_channel(self.bias - self.running_mean, x)
        if self.statistics == "batch" and self.ghost_batches == 1:
            _check_batch_statistics_possible("mobn", x)
            batch_mean = x.mean(dim=_batch_dims(x))
            # detach() rather than a no_grad block: the same update, without a context manager per call.
            self.running_mean.lerp_(batch_mean.detach(), self.momentum)
            return x + _per_channel(self.bias - batch_mean, x)
        return super().forward(x)

    variance_correction = None

    def _normalize_part(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor | None) -> torch.Tensor:
        return x + (self.bias - mean)

    def _whole_batch_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return x.mean(tuple(range(x.dim() - 1))), None

    def _running_var(self) -> torch.Tensor:
        return self.running_mean  # no variance kept; the value is never used

    def _copy_running_var(self, batch_var: torch.Tensor | None) -> None:
        pass

    @torch.no_grad()
    def _update_running(self, batch_mean: torch.Tensor, batch_var: torch.Tensor | None) -> None:
        self.running_mean.lerp_(batch_mean, self.momentum)

    def eval_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:return: (scale, shift) such that the eval-mode output is ``x * scale + shift``."""
        return torch.ones_like(self.bias), self.bias - self.running_mean

    def extra_repr(self) -> str:
        return (f"{self.bias.shape[0]}, momentum={self.momentum}, ghost_batches={self.ghost_batches}, "
                f"injected_noise={self.injected_noise}")


class BatchRenorm(BatchStatisticsNorm):
    """Batch Renormalization (Ioffe 2017) as CrossQ (Bhatt et al. 2024) uses it.

    Same arithmetic and defaults as sb3-contrib's ``BatchRenorm``, but with the running statistics
    named ``running_mean`` / ``running_var`` so that SB3 copies them to target networks (sb3-contrib
    names them ``ra_*``, which SB3 never syncs). During the first ``warmup_steps`` train-mode calls it
    is batch norm; afterwards batch statistics are corrected towards the running ones with r clipped to
    [1/r_max, r_max] and d to [-d_max, d_max].

    The count of updates is a float buffer, ``running_batches``, rather than torch's int64
    ``num_batches_tracked``: SB3 copies ``running_*`` buffers to a target network with a Polyak update,
    which cannot write into an integer tensor, and a target that scores its own batch (``consistent``
    mode) must leave warm-up when its online network does.

    :param num_features: number of features
    :param momentum: weight of the newest batch in the running statistics
    :param eps: added to the variance before the square root
    :param warmup_steps: train-mode calls that behave as plain batch norm
    :param r_max: clip of the scale correction
    :param d_max: clip of the shift correction
    :param ghost_batches: ghost batches per train-mode batch (see :class:`BatchStatisticsNorm`)
    """

    variance_correction = 1

    def __init__(
        self,
        num_features: int,
        momentum: float = 0.01,
        eps: float = 0.001,
        warmup_steps: int = 100_000,
        r_max: float = 3.0,
        d_max: float = 5.0,
        ghost_batches: int = 1,
    ) -> None:
        super().__init__(momentum, ghost_batches)
        self.eps, self.warmup_steps = eps, warmup_steps
        self.r_max, self.d_max = r_max, d_max
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        # float64 counts exactly far beyond any training run's number of updates.
        self.register_buffer("running_batches", torch.tensor(0.0, dtype=torch.float64))

    def _normalize_part(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        # Batch statistics (in train mode with a batch source) are renormalized towards the running ones once
        # warm-up is over; running statistics are used as they are.
        if self.training and self.statistics in ("batch", "batch_only") and self.running_batches > self.warmup_steps:
            running_std = (self.running_var + self.eps).sqrt()
            r = ((var + self.eps).sqrt() / running_std).detach().clamp(1 / self.r_max, self.r_max)
            d = ((mean - self.running_mean) / running_std).detach().clamp(-self.d_max, self.d_max)
            mean, var = mean - d * var.sqrt() / r, var / r**2
        return (x - mean) / (var + self.eps).sqrt() * self.weight + self.bias

    @torch.no_grad()
    def _update_running(self, batch_mean: torch.Tensor, batch_var: torch.Tensor) -> None:
        super()._update_running(batch_mean, batch_var)
        self.running_batches.add_(1)

    def eval_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:return: (scale, shift) such that the eval-mode output is ``x * scale + shift``."""
        scale = self.weight / torch.sqrt(self.running_var + self.eps)
        return scale, self.bias - self.running_mean * scale


class SpectralNormWeight(nn.Module):
    """Parametrization ``W / sigma(W)`` with sigma from power iteration, as torch's spectral norm.

    Unlike torch's, the power-iteration vectors are buffers named ``running_u`` / ``running_v`` and are
    updated in place, so SB3 hard-copies them to target networks; with torch's ``_u`` / ``_v`` a target
    network in eval mode keeps its initial vectors and its spectral norm drifts (docs/method.md#sb3-and-the-norms).

    :param weight: the weight being parametrized (to size and warm up the vectors)
    :param n_power_iterations: power iterations per train-mode forward
    :param eps: numerical floor of the normalizations
    """

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, eps: float = 1e-12) -> None:
        super().__init__()
        if n_power_iterations < 1:
            raise ValueError(f"sn n_power_iterations must be >= 1, got {n_power_iterations}")
        self.n_power_iterations, self.eps = n_power_iterations, eps
        rows, cols = weight.shape
        self.register_buffer("running_u", F.normalize(weight.new_empty(rows).normal_(), dim=0, eps=eps))
        self.register_buffer("running_v", F.normalize(weight.new_empty(cols).normal_(), dim=0, eps=eps))
        self._power_iteration(weight, 15)

    @torch.no_grad()
    def _power_iteration(self, weight: torch.Tensor, n_iterations: int) -> None:
        for _ in range(n_iterations):
            F.normalize(torch.mv(weight, self.running_v), dim=0, eps=self.eps, out=self.running_u)
            F.normalize(torch.mv(weight.T, self.running_u), dim=0, eps=self.eps, out=self.running_v)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._power_iteration(weight, self.n_power_iterations)
        # Cloned so that a later in-place update cannot invalidate this forward's graph.
        u, v = self.running_u.clone(), self.running_v.clone()
        return weight / torch.vdot(u, torch.mv(weight, v))


class PenultimateNorm(nn.Module):
    """Divide each sample's features by their L2 norm (Bjorck et al. 2022).

    :param eps: floor of the norm
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1, eps=self.eps)


Layer = nn.Linear | nn.Conv2d
"""The layers a norm follows: a hidden ``nn.Linear``, or an ``nn.Conv2d`` of an image features extractor."""


def layer_width(layer: Layer) -> int:
    """:return: the features (Linear) or channels (Conv2d) a layer outputs: the size of the norm after it"""
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


class NormalizedLayer(nn.Module):
    """A hidden ``nn.Linear`` or ``nn.Conv2d`` (possibly reparametrized) followed by a normalization layer.

    With ``data_init=True`` the weight-normalized ``layer`` gets Salimans & Kingma's data-dependent
    initialization on its first train-mode batch: with t = v·x/‖v‖ (per output unit or channel; for a
    convolution over samples and pixels), g ← 1/σ(t) and (unless a mean-only BN follows, which takes care
    of the mean) b ← -μ(t)/σ(t).

    Folding: in eval mode an affine norm (bn, mobn, brn, or none after a reparametrized weight) is one
    Linear (or convolution). When :meth:`start_folding` has been called (SB3 policies here do it when a
    rollout starts), eval-mode calls without gradients use that layer, computed once and cached until the
    layer next runs in train mode or with gradients, or :meth:`stop_folding` is called, or any of its
    parameters or buffers changes: replaced (``policy.load_from_vector``, ``load_state_dict``) or edited in
    place by a torch operation. The output is the same up to float rounding; the rollout no longer pays for
    the norm.

    :param layer: the hidden layer
    :param norm: the layer after it (``nn.Identity`` for weight-only norms)
    :param data_init: initialize the weight norm from the first train-mode batch
    """

    def __init__(self, layer: Layer, norm: nn.Module | None = None, data_init: bool = False) -> None:
        super().__init__()
        self.layer = layer
        self.norm = norm if norm is not None else nn.Identity()
        self.data_init = data_init
        # A buffer so that it is saved and loaded with the model: a loaded model is not re-initialized.
        self.register_buffer("data_initialized", torch.tensor(not data_init))
        self._awaiting_data = data_init
        # Layers (of a target network) that must start from the same data-dependent initialization.
        self.copies_to: list[NormalizedLayer] = []
        # (g, v) of a weight-normalized Linear, held in a tuple so that they are not registered twice; the
        # parameter objects survive load_state_dict and .to(), which update them in place.
        self._weight_norm_parameters: tuple[nn.Parameter, nn.Parameter] | None = None
        if parametrize.is_parametrized(layer, "weight") and isinstance(layer.parametrizations.weight[0], _WeightNorm):
            weight = layer.parametrizations.weight
            self._weight_norm_parameters = (weight.original0, weight.original1)
        self._foldable = isinstance(self.norm, nn.Identity) or hasattr(self.norm, "eval_affine")
        self._folding = False
        self._folded: tuple[torch.Tensor, torch.Tensor | None] | None = None
        # What the fold is computed from, and their (storage, version) when it was: a replaced tensor has a
        # new data_ptr(), an in-place edit a new _version, either of which makes the fold stale.
        self._fold_sources = [*self.parameters(), *self.buffers()]
        self._folded_from: list[tuple[int, int]] = []
        # This layer and its submodules (3 to 6 with a parametrization), in a plain list: see train().
        self._layer_modules = list(self.modules())

    def train(self, mode: bool = True) -> NormalizedLayer:
        # SB3 switches modes twice per environment step, and nn.Module.train's recursion over this layer's
        # submodules costs more than a small norm does. Setting the flags directly is what it does for
        # modules that keep nn.Module.train; any other keeps its own train().
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be boolean, got {mode!r}")
        for module in self._layer_modules:
            if type(module).train is nn.Module.train or module is self:
                module.__dict__["training"] = mode
            else:
                module.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            if self._folded is not None:
                self._folded = None
            if self.training and self._awaiting_data:
                self._initialize_from(x)
        elif self._folding:
            sources = [(tensor.data_ptr(), tensor._version) for tensor in self._fold_sources]
            if self._folded is None or sources != self._folded_from:
                self._folded, self._folded_from = self._fold(), sources
            return self._apply_layer(x, *self._folded)
        # .forward rather than __call__: the wrapper's own call already pays for hooks and dispatch.
        return self.norm.forward(self._apply_layer(x, self.effective_weight(), self.layer.bias))

    def _apply_layer(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The hidden layer's operation with this weight and bias (a convolution keeps its stride, padding...)."""
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, weight, bias)
        return self.layer._conv_forward(x, weight, bias)

    def effective_weight(self) -> torch.Tensor:
        """:return: the weight the layer applies (after weight or spectral normalization)."""
        if self._weight_norm_parameters is not None:
            # The fused op the parametrization would call, without its Python machinery.
            g, v = self._weight_norm_parameters
            return torch._weight_norm(v, g, 0)
        return self.layer.weight

    @torch.no_grad()
    def _fold(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        weight, bias = self.effective_weight(), self.layer.bias
        if isinstance(self.norm, nn.Identity):
            return weight.clone(), None if bias is None else bias.clone()
        scale, shift = self.norm.eval_affine()
        folded_bias = shift if bias is None else bias * scale + shift
        # One scale per output unit or channel: along the weight's first dimension.
        return weight * scale.view(-1, *(1,) * (weight.dim() - 1)), folded_bias

    def start_folding(self) -> None:
        """Use the folded Linear for eval-mode calls without gradients (no-op for non-affine norms)."""
        if not self._folding:
            self._folding = self._foldable
            self._folded = None

    def stop_folding(self) -> None:
        """Compute every call through the layers again."""
        self._folding = False
        self._folded = None

    def drop_folded(self) -> None:
        """Forget the folded Linear (after parameters or statistics were overwritten in place)."""
        self._folded = None

    def hold_data_init(self, hold: bool) -> None:
        """:param hold: whether to suspend data-dependent initialization (the probe must not trigger it)."""
        self._awaiting_data = not hold and not bool(self.data_initialized)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._folded = None
        self._awaiting_data = not bool(self.data_initialized)

    @torch.no_grad()
    def _initialize_from(self, x: torch.Tensor) -> None:
        _check_batch_statistics_possible("wn with init='data'", x)
        g, v = self.layer.parametrizations.weight.original0, self.layer.parametrizations.weight.original1
        direction = v / v.flatten(1).norm(dim=1).view(-1, *(1,) * (v.dim() - 1))
        t = self._apply_layer(x, direction, None)
        mean, variance = moments(t, _batch_dims(t), correction=1)
        std = variance.sqrt() + 1e-8
        g.copy_((1.0 / std).view_as(g))
        if self.layer.bias is not None:
            self.layer.bias.copy_(0.0 if isinstance(self.norm, MeanOnlyBatchNorm) else -mean / std)
        self.data_initialized.fill_(True)
        self._awaiting_data = False
        for twin in self.copies_to:
            twin.load_state_dict(self.state_dict())


def _weight_normalized(layer: Layer, init: str) -> Layer:
    if init not in ("default", "data"):
        raise ValueError(f"wn init must be 'default' or 'data', got {init!r}")
    if init == "data":
        # Salimans & Kingma draw the direction v ~ N(0, 0.05^2); g and b are then set from data.
        with torch.no_grad():
            layer.weight.normal_(0.0, 0.05)
    # Registered after any initialization of the plain weight, so g = the norms of that weight per output unit
    # (or channel) and the effective initial weight is exactly the one SB3 set (docs/method.md#sb3-and-the-norms).
    return weight_norm(layer)


def no_norm(layer: Layer) -> nn.Module:
    """:return: the layer unchanged."""
    return layer


def _without_bias(layer: Layer) -> Layer:
    # A batch-statistics norm subtracts the batch mean, which cancels a bias before it (Ioffe & Szegedy 2015,
    # §3.2): in sb3 mode that bias would learn only float rounding, which Adam's small eps turns into a
    # random walk, and in frozen or fixed mode it would learn the same shift as the norm's own bias.
    layer.register_parameter("bias", None)
    return layer


def batch_norm(layer: Layer, momentum: float = 0.1, eps: float = 1e-5, ghost_batches: int = 1,
               injected_noise: float = 0.0) -> nn.Module:
    """:return: ``layer``, without its bias, followed by batch norm (per channel after a convolution)."""
    norm = BatchNorm(layer_width(layer), momentum=momentum, eps=eps, ghost_batches=ghost_batches,
                     injected_noise=injected_noise)
    return NormalizedLayer(_without_bias(layer), norm)


def mean_only_batch_norm(layer: Layer, momentum: float = 0.1, ghost_batches: int = 1,
                         injected_noise: float = 0.0) -> nn.Module:
    """:return: ``layer``, without its bias, followed by mean-only batch norm."""
    norm = MeanOnlyBatchNorm(layer_width(layer), momentum=momentum, ghost_batches=ghost_batches,
                             injected_noise=injected_noise)
    return NormalizedLayer(_without_bias(layer), norm)


def weight_norm_layer(layer: Layer, init: str = "default") -> nn.Module:
    """:return: ``layer`` with weight normalization ``w = g v / ‖v‖`` per output unit (or channel)."""
    return NormalizedLayer(_weight_normalized(layer, init), data_init=init == "data")


def weight_norm_mean_only_batch_norm(
    layer: Layer, init: str = "default", momentum: float = 0.1, ghost_batches: int = 1, injected_noise: float = 0.0
) -> nn.Module:
    """:return: weight-normalized ``layer``, without its bias, followed by mean-only batch norm (Salimans &
    Kingma's pair)."""
    norm = MeanOnlyBatchNorm(layer_width(layer), momentum=momentum, ghost_batches=ghost_batches,
                             injected_noise=injected_noise)
    return NormalizedLayer(_weight_normalized(_without_bias(layer), init), norm, data_init=init == "data")


class ImageRMSNorm(nn.Module):
    """RMSNorm of an image: each sample divided by the root mean square over its channels and pixels, then a
    per-channel gain (RMSNorm's counterpart of GroupNorm with one group).

    :param num_channels: channels
    :param eps: added to the mean square
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.rsqrt(x.square().mean(tuple(range(1, x.dim())), keepdim=True) + self.eps)
        return x * scale * _per_channel(self.weight, x)


def layer_norm(layer: Layer, eps: float = 1e-5) -> nn.Module:
    """:return: ``layer`` followed by layer norm over each sample's features; after a convolution, over each
    sample's channels and pixels with a per-channel affine (``GroupNorm`` with one group)."""
    width = layer_width(layer)
    norm = nn.LayerNorm(width, eps=eps) if isinstance(layer, nn.Linear) else nn.GroupNorm(1, width, eps=eps)
    return NormalizedLayer(layer, norm)


def rms_norm(layer: Layer, eps: float = 1e-6) -> nn.Module:
    """:return: ``layer`` followed by RMSNorm over each sample's features (after a convolution: channels and
    pixels, :class:`ImageRMSNorm`)."""
    width = layer_width(layer)
    norm = nn.RMSNorm(width, eps=eps) if isinstance(layer, nn.Linear) else ImageRMSNorm(width, eps=eps)
    return NormalizedLayer(layer, norm)


def batch_renorm(
    layer: Layer,
    momentum: float = 0.01,
    eps: float = 0.001,
    warmup_steps: int = 100_000,
    r_max: float = 3.0,
    d_max: float = 5.0,
    ghost_batches: int = 1,
) -> nn.Module:
    """:return: ``layer``, without its bias, followed by batch renormalization (CrossQ's defaults)."""
    norm = BatchRenorm(layer_width(layer), momentum, eps, warmup_steps, r_max, d_max, ghost_batches)
    return NormalizedLayer(_without_bias(layer), norm)


def spectral_norm(linear: nn.Linear, n_power_iterations: int = 1, eps: float = 1e-12) -> nn.Module:
    """:return: ``linear`` with its weight divided by its spectral norm."""
    parametrize.register_parametrization(
        linear, "weight", SpectralNormWeight(linear.weight, n_power_iterations, eps)
    )
    return NormalizedLayer(linear)


def penultimate_norm(num_features: int, eps: float = 1e-8) -> nn.Module:
    """:return: a layer dividing the last hidden activations by their L2 norm."""
    return PenultimateNorm(eps)


@dataclass(frozen=True)
class NormSpec:
    """A registered norm: how to build it and which options it takes."""

    name: str
    factory: Callable[..., nn.Module]
    description: str
    placement: Placement
    options: tuple[str, ...] = field(default=())
    batch_statistics: bool = False
    conv: bool = False


_REGISTRY: dict[str, NormSpec] = {}


def register_norm(
    name: str,
    factory: Callable[..., nn.Module],
    description: str,
    placement: Placement = "hidden",
    batch_statistics: bool = False,
    conv: bool = False,
) -> None:
    """Make a norm available to the policies as ``policy_kwargs=dict(norm=name)``.

    :param name: the name users pass as ``norm``
    :param factory: ``factory(layer, **options) -> module replacing layer`` for ``placement="hidden"``;
        ``factory(num_features, **options) -> module after the last hidden activation`` for
        ``placement="penultimate"``. Its keyword parameters are the norm's ``norm_kwargs``.
    :param description: one line, shown by ``rlnorm norms``
    :param placement: ``"hidden"`` (after every hidden Linear) or ``"penultimate"`` (once, before the
        output layer)
    :param batch_statistics: whether the norm normalizes with batch statistics through
        :class:`BatchStatisticsNorm` layers, and so takes a ``norm_mode``
    :param conv: whether ``factory`` also handles an ``nn.Conv2d`` (a layer of an image features extractor)
    """
    if placement not in ("hidden", "penultimate"):
        raise ValueError(f"placement must be 'hidden' or 'penultimate', got {placement!r}")
    parameters = list(inspect.signature(factory).parameters.values())[1:]
    options = tuple(p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
    _REGISTRY[name] = NormSpec(name, factory, description, placement, options, batch_statistics, conv)


def available_norms() -> list[str]:
    """:return: the registered norm names, in registration order."""
    return list(_REGISTRY)


def describe_norms() -> dict[str, str]:
    """:return: each registered norm name with its one-line description."""
    return {name: spec.description for name, spec in _REGISTRY.items()}


def get_norm(name: str) -> NormSpec:
    """:param name: a registered norm name
    :return: its specification
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown norm {name!r}; registered norms: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def validate_norm(name: str, norm_kwargs: dict[str, Any] | None = None) -> NormSpec:
    """Check a norm name and its options without building anything.

    :param name: a registered norm name
    :param norm_kwargs: options of that norm
    :return: its specification
    """
    spec = get_norm(name)
    for key, value in (norm_kwargs or {}).items():
        if key not in spec.options:
            allowed = ", ".join(spec.options) if spec.options else "none"
            hint = ""
            if key == "ghost_batches":
                with_statistics = ", ".join(n for n, s in _REGISTRY.items() if s.batch_statistics)
                hint = f" (ghost batches split the batch of norms with batch statistics: {with_statistics})"
            if key == "injected_noise":
                injecting = ", ".join(n for n, s in _REGISTRY.items() if "injected_noise" in s.options)
                hint = f" (noise is injected into the statistics of {injecting})"
            raise ValueError(f"norm {name!r} has no option {key!r}; its options: {allowed}{hint}")
        if key == "ghost_batches":
            check_ghost_batches(value)
        if key == "injected_noise":
            check_injected_noise(value)
    return spec


def normalize_mlp(net: nn.Sequential, norm: str, norm_kwargs: dict[str, Any] | None = None,
                  has_output_layer: bool = False) -> nn.Sequential:
    """Insert a norm into an SB3 network, in place (so every reference to ``net`` sees the change): after each
    hidden ``Linear`` or ``Conv2d``, before its activation.

    :param net: a ``Sequential`` of ``Linear`` (or ``Conv2d``) and activation modules, as SB3's ``create_mlp``,
        ``MlpExtractor`` and ``NatureCNN`` build them
    :param norm: a registered norm name
    :param norm_kwargs: that norm's options
    :param has_output_layer: whether the last ``Linear`` of ``net`` is an output layer (never normalized)
    :return: ``net``
    :raises ValueError: for a layer the norm cannot handle (a ``Conv2d`` and a norm registered without
        ``conv``, or another convolution), naming the layer and the norm
    """
    spec = validate_norm(norm, norm_kwargs)
    kwargs = norm_kwargs or {}
    modules = list(net)
    for i, module in enumerate(modules):
        convolution = isinstance(module, nn.modules.conv._ConvNd)
        if convolution and (not isinstance(module, nn.Conv2d) or not spec.conv or spec.placement != "hidden"):
            handles = ", ".join(name for name, other in _REGISTRY.items() if other.conv)
            raise ValueError(f"norm {norm!r} cannot normalize layer {i} of the network, {module}: norms go after "
                             f"Linear and Conv2d layers, and the norms that handle Conv2d are {handles}")
    positions = [i for i, module in enumerate(modules) if isinstance(module, nn.Linear | nn.Conv2d)]
    hidden = positions[:-1] if has_output_layer else positions
    if not hidden:
        return net
    if spec.placement == "hidden":
        for i in hidden:
            modules[i] = spec.factory(modules[i], **kwargs)
    else:
        # After the last hidden layer's activation: the input of the output layer, or the end of the net.
        position = positions[-1] if has_output_layer else len(modules)
        modules.insert(position, spec.factory(modules[hidden[-1]].out_features, **kwargs))
    for key in list(net._modules):
        del net._modules[key]
    for i, module in enumerate(modules):
        net.add_module(str(i), module)
    return net


register_norm("none", no_norm, "no normalization: exactly SB3's network", conv=True)
register_norm("bn", batch_norm, "BatchNorm: (x - batch mean) / batch std, affine; running stats in eval",
              batch_statistics=True, conv=True)
register_norm("mobn", mean_only_batch_norm, "mean-only BatchNorm (Salimans & Kingma): x - batch mean + b",
              batch_statistics=True, conv=True)
register_norm("wn", weight_norm_layer, "weight normalization: w = g v / |v| per unit; batch-independent",
              conv=True)
register_norm("wn+mobn", weight_norm_mean_only_batch_norm, "weight norm, then mean-only BatchNorm (the paper's pair)",
              batch_statistics=True, conv=True)
register_norm("ln", layer_norm, "LayerNorm over each sample's features (images: GroupNorm, 1 group)", conv=True)
register_norm("brn", batch_renorm, "Batch Renormalization as CrossQ uses it (r_max 3, d_max 5, warm-up)",
              batch_statistics=True, conv=True)
register_norm("rms", rms_norm, "RMSNorm over each sample's features; batch-independent", conv=True)
register_norm("sn", spectral_norm, "spectral normalization of each hidden weight (power iteration)")
register_norm("pnorm", penultimate_norm, "divide the last hidden activations by their L2 norm", "penultimate")
