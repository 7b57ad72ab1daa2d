"""Performance metrics (core/performance/metrics.py) against empyrical-reloaded (test-only),
called here per portfolio on that portfolio's valid returns, against hand-computed cases and
a pyfolio-style drawdown loop; invariances by hypothesis; wrong conventions shown to differ."""

from __future__ import annotations

import math

import empyrical as ep
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.performance.metrics import (
    METRICS,
    RELATIVE_METRICS,
    cumulative_returns,
    performance,
    previous_equity,
    risk_free_per_period,
    time_weighted_returns,
)

PPY = 252
TOL = {"rtol": 1e-12, "atol": 1e-9}


def _planted(t: int = 300, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Returns (T, 8) and a benchmark (T,): asymmetric (drift, betas, skewed noise), with a
    portfolio younger than the window, a missing day, one return only, none at all, and a
    day the benchmark lacks."""
    rng = np.random.default_rng(seed)
    bench = 0.0004 + 0.011 * rng.standard_t(5, size=t) / math.sqrt(5 / 3)
    betas = np.array([1.0, 0.6, 1.4, -0.3, 0.9, 1.1, 0.8, 0.2])
    noise = rng.normal(0, 0.006, (t, 8)) + 0.004 * (rng.exponential(1, (t, 8)) - 1)
    r = 0.0003 + bench[:, None] * betas + noise
    r[:90, 1] = np.nan  # younger than the window
    r[[17, 150], 2] = np.nan  # missing snapshots
    r[:, 4] = np.nan
    r[200, 4] = 0.01  # a single return
    r[:, 5] = np.nan  # no return at all
    bench[123] = np.nan  # the benchmark lacks a day
    return r, bench


def _reference(x: np.ndarray, b: np.ndarray | None, rf: float) -> dict[str, float]:
    """empyrical's figures for one portfolio: its valid returns; the relative ones on the
    sessions both series have."""
    xv = x[np.isfinite(x)]
    out = {
        "cumulative_return": ep.cum_returns_final(xv),
        "annualized_return": ep.annual_return(xv),
        "annualized_volatility": ep.annual_volatility(xv),
        "sharpe_ratio": ep.sharpe_ratio(xv, risk_free=rf),
        "sortino_ratio": ep.sortino_ratio(xv, required_return=rf),
        "max_drawdown": ep.max_drawdown(xv),
        "calmar_ratio": ep.calmar_ratio(xv),
        "best_day": xv.max(),
        "worst_day": xv.min(),
        "hit_rate": float(np.mean(xv > 0)),
    }
    if b is not None:
        both = np.isfinite(x) & np.isfinite(b)
        xr, br = x[both], b[both]
        alpha, beta = ep.alpha_beta(xr, br, risk_free=rf)
        out.update(alpha=alpha, beta=beta,
                   tracking_error=ep.annual_volatility(xr - br),
                   information_ratio=ep.excess_sharpe(xr, br) * math.sqrt(PPY),
                   up_capture=ep.up_capture(xr, br), down_capture=ep.down_capture(xr, br))
    return {k: float(v) for k, v in out.items()}


def _drawdown_loop(x: np.ndarray) -> tuple[float, int, int, int]:
    """Max drawdown and its rows, pyfolio's ``get_max_drawdown_underwater`` way: wealth from a
    start of 1 (on the row before the first return), the peak the last row at 0 underwater
    before the valley, the recovery the first one after it (-1: never)."""
    rows = [i for i in range(len(x)) if math.isfinite(x[i])]
    points = [(rows[0] - 1, 1.0)]
    for i in rows:
        points.append((i, points[-1][1] * (1.0 + x[i])))
    top, under = 1.0, []
    for row, w in points:
        top = max(top, w)
        under.append((row, w / top - 1.0))
    valley = min(range(len(under)), key=lambda i: (under[i][1], i))
    if under[valley][1] == 0:
        return 0.0, -1, -1, -1
    peak = max(i for i in range(valley) if under[i][1] == 0)
    rec = [i for i in range(valley + 1, len(under)) if under[i][1] == 0]
    return under[valley][1], under[peak][0], under[valley][0], under[rec[0]][0] if rec else -1


@pytest.mark.parametrize("rf_annual", [0.0, 0.043])
def test_every_metric_equals_empyrical(rf_annual: float) -> None:
    r, bench = _planted()
    perf = performance(r, bench, risk_free_annual=rf_annual)
    rf = (1 + rf_annual) ** (1 / PPY) - 1
    assert perf.risk_free_per_period == pytest.approx(rf, rel=1e-15)
    for j in (0, 1, 2, 3, 6, 7):
        ref = _reference(r[:, j], bench, rf)
        for name, value in ref.items():
            assert getattr(perf, name)[j] == pytest.approx(value, rel=TOL["rtol"],
                                                           abs=TOL["atol"]), (j, name)
        assert set(ref) == set(METRICS + RELATIVE_METRICS)
        assert perf.null_reasons(j) == {}


def test_drawdown_dates_equal_a_loop_and_empyrical_drawdown() -> None:
    r, _ = _planted()
    rng = np.random.default_rng(11)
    recovering = rng.normal(0.002, 0.01, 300)
    recovering[50:60] = -0.03  # a drawdown it recovers from
    r = np.column_stack([r, recovering])
    perf = performance(r)
    for j in (0, 1, 2, 3, 6, 7, 8):
        dd, peak, trough, rec = _drawdown_loop(r[:, j])
        assert perf.max_drawdown[j] == pytest.approx(dd, abs=1e-12)
        assert (perf.peak_index[j], perf.trough_index[j], perf.recovery_index[j]) == (
            peak, trough, rec), j
    assert perf.recovery_index[8] > perf.trough_index[8] > perf.peak_index[8] >= 0


def test_hand_computed_small_case() -> None:
    perf = performance(np.array([0.1, -0.5, 0.5]))
    assert perf.cumulative_return[0] == pytest.approx(1.1 * 0.5 * 1.5 - 1)  # -0.175
    assert perf.annualized_return[0] == pytest.approx(0.825 ** (252 / 3) - 1)
    # mean 1/30; deviations 1/15, -8/15, 7/15: variance (1 + 64 + 49) / 225 / 2
    assert perf.annualized_volatility[0] == pytest.approx(math.sqrt(57) / 15 * math.sqrt(252))
    assert perf.max_drawdown[0] == pytest.approx(-0.5)  # 1.1 → 0.55
    assert (perf.peak_index[0], perf.trough_index[0], perf.recovery_index[0]) == (0, 1, -1)
    assert perf.calmar_ratio[0] == pytest.approx((0.825 ** 84 - 1) / 0.5)
    assert (perf.best_day[0], perf.best_index[0]) == (0.5, 2)
    assert (perf.worst_day[0], perf.worst_index[0]) == (-0.5, 1)
    assert perf.hit_rate[0] == pytest.approx(2 / 3)
    assert perf.n_returns[0] == 3


def test_drawdown_peak_conventions() -> None:
    nan = np.nan
    cases = np.array([
        [-0.1, 0.2, -0.05, 0.0],  # a first-day loss: the peak is the start (row -1)
        [nan, -0.1, 0.2, -0.05],  # the same one row later: the start is row 0
        [0.1, 0.0, -0.2, 0.3],  # the wealth stays at the peak on row 1: the peak is row 1
        [0.1, nan, -0.2, 0.01],  # a missing day is never the peak
        [0.01, 0.02, 0.0, 0.03],  # no drawdown
    ]).T
    perf = performance(cases)
    got = list(zip(perf.peak_index, perf.trough_index, perf.recovery_index, strict=True))
    assert got == [(-1, 0, 1), (0, 1, 2), (1, 2, 3), (0, 2, -1), (-1, -1, -1)]
    assert perf.max_drawdown[:4] == pytest.approx([-0.1, -0.1, -0.2, -0.2])
    assert perf.max_drawdown[4] == 0.0
    assert math.isnan(perf.calmar_ratio[4])
    assert perf.null_reasons(4) == {"calmar_ratio": "no drawdown",
                                    "sortino_ratio": ("no return below the risk-free rate "
                                                      "(zero downside deviation)"),
                                    **{k: "no benchmark given" for k in RELATIVE_METRICS}}


def test_younger_portfolio_uses_its_own_returns_only() -> None:
    r, bench = _planted()
    full = performance(r, bench)
    trimmed = performance(r[90:, 1], bench[90:])
    for name in METRICS + RELATIVE_METRICS:
        assert getattr(full, name)[1] == pytest.approx(getattr(trimmed, name)[0], rel=1e-12)
    assert full.n_returns[1] == 210
    assert full.peak_index[1] == trimmed.peak_index[0] + 90


def test_missing_benchmark_day_dropped_for_relative_metrics_only() -> None:
    r, bench = _planted()
    filled = bench.copy()
    filled[123] = 0.002
    gap, whole = performance(r, bench), performance(r, filled)
    for name in METRICS:
        np.testing.assert_array_equal(getattr(gap, name), getattr(whole, name))
    assert gap.n_relative[0] == whole.n_relative[0] - 1 == 299
    assert gap.beta[0] != whole.beta[0]
    # and the gap is what empyrical computes on the paired days
    both = np.isfinite(bench)
    assert gap.beta[0] == pytest.approx(ep.beta(r[both, 0], bench[both]), rel=1e-12)
    # a benchmark per portfolio (T, P) equals the shared one broadcast
    per_column = performance(r, np.repeat(bench[:, None], r.shape[1], axis=1))
    np.testing.assert_array_equal(per_column.beta, gap.beta)


def test_fewer_than_two_returns_gives_nan_with_a_reason() -> None:
    r, bench = _planted()
    perf = performance(r, bench)
    for j, n in ((4, 1), (5, 0)):
        assert perf.n_returns[j] == n
        for name in METRICS + RELATIVE_METRICS:
            assert math.isnan(getattr(perf, name)[j]), name
        reasons = perf.null_reasons(j)
        assert set(reasons) == set(METRICS + RELATIVE_METRICS)
        assert reasons["sharpe_ratio"] == f"fewer than 2 valid returns ({n})"
        assert perf.peak_index[j] == perf.trough_index[j] == perf.recovery_index[j] == -1
    # one return is enough for empyrical's cumulative return; not here (documented)
    assert ep.cum_returns_final(np.array([0.01])) == pytest.approx(0.01)


def test_degenerate_ratios_are_nan_not_inf_with_reasons() -> None:
    flat = np.full((20, 1), 0.001)
    bench = np.full(20, 0.0005)
    perf = performance(np.column_stack([flat, flat * 2]), bench)
    assert perf.annualized_volatility[0] == 0.0
    with np.errstate(divide="ignore"):
        assert math.isinf(ep.sharpe_ratio(flat[:, 0]))  # empyrical: inf
    assert math.isnan(perf.sharpe_ratio[0])
    reasons = perf.null_reasons(0)
    assert reasons["sharpe_ratio"] == "zero volatility (every return equal)"
    assert reasons["beta"] == reasons["alpha"] == "zero benchmark variance"
    assert reasons["information_ratio"] == "zero tracking error (constant active return)"
    assert reasons["down_capture"] == "no session with a negative benchmark return"
    assert perf.up_capture[0] == pytest.approx(ep.up_capture(flat[:, 0], bench))
    assert perf.n_up[0] == 20 and perf.n_down[0] == 0
    short = performance(np.array([0.01, 0.02, -0.01]), np.array([np.nan, 0.01, np.nan]))
    assert short.null_reasons(0)["beta"] == (
        "fewer than 2 sessions with both a portfolio and a benchmark return (1)")


def test_wrong_conventions_would_fail() -> None:
    r, bench = _planted()
    x = r[:, 0]
    ours = performance(x, risk_free_annual=0.04).sharpe_ratio[0]
    geometric = (1.04) ** (1 / PPY) - 1
    assert ours == pytest.approx(ep.sharpe_ratio(x, risk_free=geometric), rel=1e-12)
    # the annual rate passed as if it were per session: a very different Sharpe
    assert abs(ep.sharpe_ratio(x, risk_free=0.04) - ours) > 10
    # simple division by 252 instead of the geometric conversion: off by far more than 1e-9
    assert abs(ep.sharpe_ratio(x, risk_free=0.04 / PPY) - ours) > 1e-6
    # annualizing over 365 days instead of 252 sessions
    assert abs(performance(x, periods_per_year=365).annualized_volatility[0]
               - performance(x).annualized_volatility[0]) > 1e-3
    # information ratio is annualized: empyrical's excess_sharpe is per session
    ir = performance(r, bench).information_ratio[0]
    both = np.isfinite(bench)
    assert abs(ir - ep.excess_sharpe(x[both], bench[both])) > 0.1
    # a rate in percent is refused
    with pytest.raises(ValueError, match="fraction per year"):
        performance(x, risk_free_annual=2)
    with pytest.raises(ValueError, match="fraction per year"):
        risk_free_per_period(float("nan"))
    with pytest.raises(ValueError, match="benchmark must have shape"):
        performance(r, bench[:-1])


def test_inputs_are_not_mutated() -> None:
    r, bench = _planted()
    r0, b0 = r.copy(), bench.copy()
    performance(r, bench, risk_free_annual=0.02)
    np.testing.assert_array_equal(r, r0)
    np.testing.assert_array_equal(bench, b0)


def test_time_weighted_returns_ignore_cash_moves() -> None:
    nan = np.nan
    # day 1 starts with 100; a deposit of 50 on day 2 (P&L +10 → equity 160); day 3 loses 16
    equity = np.array([100.0, 160.0, 144.0, 0.0, 10.0, 12.0])
    pnl = np.array([nan, 10.0, -16.0, -144.0, 0.0, 2.0])
    prev = previous_equity(equity)
    np.testing.assert_array_equal(prev[:, 0], [nan, 100, 160, 144, 0, 10])
    r = time_weighted_returns(pnl, prev)[:, 0]
    # day 5 follows a zero-equity day: no return (undefined), day 6 is one again
    np.testing.assert_allclose(r, [nan, 0.1, -0.1, -1.0, nan, 0.2])
    assert cumulative_returns(r[:3])[-1, 0] == pytest.approx(1.1 * 0.9 - 1)  # not +44 %
    # a missing snapshot: the next P&L runs from the last snapshot, and so does the return
    prev = previous_equity(np.array([[100.0], [nan], [110.0]]))
    np.testing.assert_array_equal(prev[:, 0], [nan, 100.0, 100.0])
    assert time_weighted_returns([[1.0]], [[-5.0]])[0, 0] != time_weighted_returns(
        [[1.0]], [[5.0]])[0, 0]
    with pytest.raises(ValueError, match="same shape"):
        time_weighted_returns(np.zeros((3, 2)), np.ones((3, 1)))


# returns of at least 1e-6 in size (or 0): squares of 1e-200 underflow, not a convention
finite_returns = arrays(np.float64, st.tuples(st.integers(2, 40), st.integers(1, 4)),
                        elements=st.one_of(st.just(0.0), st.floats(1e-6, 0.2),
                                           st.floats(-0.2, -1e-6)))


@settings(max_examples=60, deadline=None)
@given(finite_returns)
def test_cumulative_return_is_the_chain_linked_product(r: np.ndarray) -> None:
    perf = performance(r)
    np.testing.assert_allclose(perf.cumulative_return, np.prod(1 + r, axis=0) - 1,
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(cumulative_returns(r)[-1], perf.cumulative_return,
                               rtol=1e-12, atol=1e-15)


@settings(max_examples=60, deadline=None)
@given(finite_returns, st.floats(0.05, 20), st.data())
def test_sharpe_and_sortino_are_scale_invariant_and_columns_independent(
        r: np.ndarray, c: float, data: st.DataObject) -> None:
    base = performance(r)
    scaled = performance(r * c)
    np.testing.assert_allclose(scaled.sharpe_ratio, base.sharpe_ratio, rtol=1e-8,
                               equal_nan=True)
    np.testing.assert_allclose(scaled.sortino_ratio, base.sortino_ratio, rtol=1e-8,
                               equal_nan=True)
    np.testing.assert_allclose(performance(-r).sharpe_ratio, -base.sharpe_ratio, rtol=1e-8,
                               equal_nan=True)
    order = data.draw(st.permutations(range(r.shape[1])))
    np.testing.assert_array_equal(performance(r[:, order]).max_drawdown,
                                  base.max_drawdown[order])
