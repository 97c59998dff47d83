"""Metrics of one run, computed on its evaluation curve: mean returns y_t at environment steps x_t.

Pure functions on numpy arrays, with the definitions of docs/method.md#metrics so two people compute the same
number. The dispersion and risk metrics follow Chan et al. (2020) and are divided by the curve's range
(95th percentile of y minus y_0) so runs that learn to different levels can be compared. A run whose
range is zero or negative (a flat curve, or one that never rose above its start) has no scale to divide
by: those metrics return nan for it, and callers aggregate with nan-aware functions or report it apart.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from rlnorm.analysis.stats import as_sample, cvar

DEFAULT_DISPERSION_WINDOW = 5
"""Slopes per sliding window of the within-run dispersion: enough for an interquartile range to mean
something, few enough that the learning trend inside a window stays small (curves have tens of points)."""


def _require_length(curve: np.ndarray, minimum: int, metric: str) -> None:
    if curve.size < minimum:
        raise ValueError(f"{metric} needs a curve of at least {minimum} points, got {curve.size}")


def _curve(steps: ArrayLike, returns: ArrayLike, minimum: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = as_sample(steps, "steps"), as_sample(returns, "returns")
    if x.size != y.size:
        raise ValueError(f"steps and returns must have the same length, got {x.size} and {y.size}")
    _require_length(y, minimum, metric)
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"steps must be strictly increasing, got {x}")
    return x, y


def _per_range(value: float, returns: np.ndarray) -> float:
    scale = return_range(returns)
    return value / scale if scale > 0 else math.nan


def final_return(returns: ArrayLike, k: int = 3) -> float:
    """
    Final performance: the mean of the last ``k`` evaluation points.

    :param returns: mean evaluation return at each evaluation, in step order
    :param k: number of final points averaged, at least 1
    :return: the mean of the last ``k`` returns
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    y = as_sample(returns, "returns")
    _require_length(y, k, f"final_return with k={k}")
    return float(np.mean(y[-k:]))


def auc(returns: ArrayLike) -> float:
    """
    Area under the learning curve, as the mean of all evaluation points (so it is on the return scale).

    :param returns: mean evaluation return at each evaluation
    :return: the mean of the curve
    """
    return float(np.mean(as_sample(returns, "returns")))


def derivative(steps: ArrayLike, returns: ArrayLike) -> np.ndarray:
    """
    Slope of the curve between consecutive evaluations, Δy_t = (y_t - y_{t-1}) / (x_t - x_{t-1}).

    :param steps: environment step of each evaluation, strictly increasing
    :param returns: mean evaluation return at each evaluation
    :return: the n - 1 slopes, in return per environment step
    """
    x, y = _curve(steps, returns, 2, "derivative")
    return np.diff(y) / np.diff(x)


def return_range(returns: ArrayLike) -> float:
    """
    Range of the curve: its 95th percentile minus its first point, the scale of the normalized metrics.

    :param returns: mean evaluation return at each evaluation
    :return: the range; zero for a flat curve and negative for one that ends below where it started
    """
    y = as_sample(returns, "returns")
    return float(np.percentile(y, 95) - y[0])


def slope_dispersion(steps: ArrayLike, returns: ArrayLike, window: int = DEFAULT_DISPERSION_WINDOW) -> float:
    """
    Dispersion across time (Chan et al. 2020) in the returns' own units: the IQR of the slopes Δy in each
    sliding window of ``window`` consecutive slopes (stride 1), averaged over windows. On normalized returns
    it compares runs of one task without dividing by each run's range, so flat failing curves keep their
    (small) dispersion instead of dropping out.

    :param steps: environment step of each evaluation, strictly increasing
    :param returns: return at each evaluation, at least ``window + 1`` points
    :param window: number of slopes per window, at least 2
    :return: the dispersion, in return units per environment step
    """
    if window < 2:
        raise ValueError(f"window must be at least 2 slopes, got {window}")
    x, y = _curve(steps, returns, window + 1, f"within-run dispersion with window={window}")
    windows = np.lib.stride_tricks.sliding_window_view(derivative(x, y), window)
    return float(np.mean(sps.iqr(windows, axis=1)))


def within_run_dispersion(
    steps: ArrayLike, returns: ArrayLike, window: int = DEFAULT_DISPERSION_WINDOW
) -> float:
    """
    :func:`slope_dispersion` divided by the curve's range.

    :param steps: environment step of each evaluation, strictly increasing
    :param returns: mean evaluation return at each evaluation, at least ``window + 1`` points
    :param window: number of slopes per window, at least 2
    :return: the normalized dispersion, in 1 / environment step; nan when the range is not positive
    """
    return _per_range(slope_dispersion(steps, returns, window), as_sample(returns, "returns"))


def short_term_risk(steps: ArrayLike, returns: ArrayLike, alpha: float = 0.05) -> float:
    """
    Short-term risk across time: CVaR_alpha of the slopes Δy (the mean of the worst, most negative,
    ``ceil(alpha * (n - 1))`` slopes), divided by the range.

    :param steps: environment step of each evaluation, strictly increasing
    :param returns: mean evaluation return at each evaluation, at least 2 points
    :param alpha: fraction of the slopes in the tail, in (0, 1]
    :return: the normalized CVaR, in 1 / environment step: more negative means sharper drops; nan when
        the range is not positive
    """
    x, y = _curve(steps, returns, 2, "short_term_risk")
    return _per_range(cvar(derivative(x, y), alpha), y)


def drawdowns(returns: ArrayLike) -> np.ndarray:
    """
    Drawdown at each evaluation, D_t = max_{t' <= t} y_t' - y_t: how far the curve is below its best.

    :param returns: mean evaluation return at each evaluation
    :return: the drawdowns, each >= 0
    """
    y = as_sample(returns, "returns")
    return np.maximum.accumulate(y) - y


def long_term_risk(returns: ArrayLike, alpha: float = 0.05) -> float:
    """
    Long-term risk across time: the mean of the worst (largest) ``ceil(alpha * n)`` drawdowns, divided by
    the range.

    :param returns: mean evaluation return at each evaluation, at least 2 points
    :param alpha: fraction of the drawdowns in the tail, in (0, 1]
    :return: the normalized drawdown CVaR, >= 0, larger meaning deeper collapses; nan when the range is
        not positive
    """
    y = as_sample(returns, "returns")
    _require_length(y, 2, "long_term_risk")
    # cvar averages the lowest values; the worst drawdowns are the largest ones.
    return _per_range(-cvar(-drawdowns(y), alpha), y)


def eval_episode_spread(episode_returns: ArrayLike) -> np.ndarray:
    """
    Spread of the evaluation episodes: the standard deviation (ddof=0, as SB3's ``evaluate_policy``
    reports it) of the episode returns at each evaluation.

    :param episode_returns: 2-D array, one row per evaluation, one column per evaluation episode
    :return: one standard deviation per evaluation
    """
    episodes = np.asarray(episode_returns, dtype=float)
    if episodes.ndim != 2 or episodes.size == 0:
        raise ValueError(
            "episode_returns must be a non-empty 2-D array (evaluations x episodes), "
            f"got shape {episodes.shape}"
        )
    if not np.all(np.isfinite(episodes)):
        bad = episodes[~np.isfinite(episodes)][:3]
        raise ValueError(f"episode_returns contains non-finite values ({bad}); all must be finite")
    return np.std(episodes, axis=1)
