"""Per-run metrics against values worked out by hand (docs/method.md#metrics)."""

import math

import numpy as np
import pytest

from rlnorm.analysis import metrics

# A curve used by several tests, evaluated every 2 steps.
STEPS = [0, 2, 4, 6, 8]
RETURNS = [0.0, 1.0, 3.0, 4.0, 10.0]
# sorted [0, 1, 3, 4, 10]; 95th percentile at position 0.95 * 4 = 3.8: 4 + 0.8 * (10 - 4) = 8.8; y_0 = 0
RANGE = 8.8


def test_final_return_averages_last_k_points():
    # (3 + 4 + 10) / 3
    assert metrics.final_return(RETURNS) == pytest.approx(17 / 3)
    assert metrics.final_return(RETURNS, k=1) == 10.0


def test_final_return_rejects_short_curve_and_bad_k():
    with pytest.raises(ValueError, match="at least 3 points, got 2"):
        metrics.final_return([1.0, 2.0])
    with pytest.raises(ValueError, match="k must be at least 1, got 0"):
        metrics.final_return(RETURNS, k=0)


def test_auc_is_mean_of_curve():
    # (0 + 1 + 3 + 4 + 10) / 5
    assert metrics.auc(RETURNS) == pytest.approx(3.6)


def test_derivative_divides_by_step_gaps():
    # (5 - 0) / (10 - 0) = 0.5; (1 - 5) / (30 - 10) = -0.2
    np.testing.assert_allclose(metrics.derivative([0, 10, 30], [0.0, 5.0, 1.0]), [0.5, -0.2])


@pytest.mark.parametrize(
    ("steps", "returns", "message"),
    [
        ([0, 1], [1.0, 2.0, 3.0], "same length, got 2 and 3"),
        ([0, 2, 2], [1.0, 2.0, 3.0], "strictly increasing"),
        ([0], [1.0], "at least 2 points, got 1"),
        ([], [], "steps is empty"),
        ([0, 1], [1.0, np.nan], "non-finite"),
    ],
)
def test_derivative_rejects_bad_curves(steps, returns, message):
    with pytest.raises(ValueError, match=message):
        metrics.derivative(steps, returns)


def test_return_range_is_95th_percentile_minus_start():
    assert metrics.return_range(RETURNS) == pytest.approx(RANGE)
    # sorted [0, 2, 4, 6, 10]: 6 + 0.8 * 4 = 9.2; minus y_0 = 2
    assert metrics.return_range([2.0, 0.0, 4.0, 10.0, 6.0]) == pytest.approx(7.2)


def test_within_run_dispersion_window_2():
    # slopes [0.5, 1, 0.5, 3]; the IQR of two values a, b is |b - a| / 2: windows give 0.25, 0.25, 1.25,
    # mean 7/12
    assert metrics.within_run_dispersion(STEPS, RETURNS, window=2) == pytest.approx(7 / 12 / RANGE)


def test_within_run_dispersion_window_3():
    # IQR of three sorted values a <= b <= c is (c - a) / 2:
    # windows (0.5, 1, 0.5) -> 0.25, (1, 0.5, 3) -> 1.25, mean 0.75
    assert metrics.within_run_dispersion(STEPS, RETURNS, window=3) == pytest.approx(0.75 / RANGE)


def test_within_run_dispersion_needs_window_plus_one_points():
    window = metrics.DEFAULT_DISPERSION_WINDOW
    steps = np.arange(window)
    with pytest.raises(ValueError, match=f"at least {window + 1} points, got {window}"):
        metrics.within_run_dispersion(steps, steps * 1.0)
    with pytest.raises(ValueError, match="window must be at least 2 slopes, got 1"):
        metrics.within_run_dispersion(STEPS, RETURNS, window=1)


def test_short_term_risk_is_worst_slope_over_range():
    # slopes [4, -2, 4, 4]; ceil(0.05 * 4) = 1 slope in the tail: -2; range 9.2 (see test_return_range)
    steps, returns = [0, 1, 2, 3, 4], [0.0, 4.0, 2.0, 6.0, 10.0]
    assert metrics.short_term_risk(steps, returns) == pytest.approx(-2 / 9.2)
    # alpha 0.5: ceil(2) = 2 slopes, mean of -2 and 4 = 1
    assert metrics.short_term_risk(steps, returns, alpha=0.5) == pytest.approx(1 / 9.2)


def test_drawdowns_from_running_maximum():
    # running max [1, 3, 3, 5, 5]
    np.testing.assert_allclose(metrics.drawdowns([1.0, 3.0, 2.0, 5.0, 1.0]), [0, 0, 1, 0, 4])


def test_long_term_risk_is_worst_drawdowns_over_range():
    returns = [1.0, 3.0, 2.0, 5.0, 1.0]
    # drawdowns [0, 0, 1, 0, 4]; sorted y [1, 1, 2, 3, 5]: 95th pct 3 + 0.8 * 2 = 4.6, range 4.6 - 1 = 3.6
    assert metrics.long_term_risk(returns) == pytest.approx(4 / 3.6)
    # alpha 0.4: ceil(2) = 2 largest drawdowns, (4 + 1) / 2
    assert metrics.long_term_risk(returns, alpha=0.4) == pytest.approx(2.5 / 3.6)
    with pytest.raises(ValueError, match="at least 2 points, got 1"):
        metrics.long_term_risk([1.0])
    with pytest.raises(ValueError, match="alpha must be in"):
        metrics.long_term_risk(returns, alpha=0.0)


@pytest.mark.parametrize("returns", [[3.0] * 8, [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
def test_normalized_metrics_are_nan_without_positive_range(returns):
    # flat: range 0; falling: the 95th percentile is below y_0, range negative
    steps = np.arange(len(returns))
    assert metrics.return_range(returns) <= 0
    assert math.isnan(metrics.within_run_dispersion(steps, returns))
    assert math.isnan(metrics.short_term_risk(steps, returns))
    assert math.isnan(metrics.long_term_risk(returns))


def test_eval_episode_spread_is_population_std_per_evaluation():
    # [1, 3]: mean 2, std 1; [2, 2]: 0; [0, 6]: mean 3, std 3
    np.testing.assert_allclose(metrics.eval_episode_spread([[1.0, 3.0], [2.0, 2.0], [0.0, 6.0]]), [1, 0, 3])


@pytest.mark.parametrize("bad", [[1.0, 2.0], np.empty((0, 3)), [[1.0, np.inf]]])
def test_eval_episode_spread_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="episode_returns"):
        metrics.eval_episode_spread(bad)
