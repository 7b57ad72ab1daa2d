"""Tests of core.metrics.symbol_daily_metrics on tiny planted series with hand-computed answers."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from core.metrics import symbol_daily_metrics


def _weekdays(end: date, count: int) -> list[date]:
    """``count`` consecutive weekdays ending at ``end`` (a stand-in for NYSE sessions)."""
    days: list[date] = []
    d = end
    while len(days) < count:
        if d.weekday() < 5:
            days.append(d)
        d -= timedelta(days=1)
    return days[::-1]


SESSIONS = _weekdays(date(2024, 1, 10), 300)  # as_of Wed 2024-01-10, 2023 ends Fri 12-29
N_ROWS = len(SESSIONS)
LAST_2023 = SESSIONS.index(date(2023, 12, 29))
T = N_ROWS - 1


def _prices() -> np.ndarray:
    """Four planted symbols (columns):

    0: grows exactly 0.1 % a session from 100.
    1: the same, a gap 5 sessions ago, a spike 200 sessions ago and a dip 260
       sessions ago (outside the 52-week window).
    2: listed 40 sessions ago at 20, alternating returns +2 % / -1 %.
    3: 90-day volatility coverage just below 75 % (67 of 90 returns valid).
    """
    g = 1.001 ** np.arange(N_ROWS)
    p = np.column_stack([100.0 * g, 100.0 * g, np.full(N_ROWS, np.nan), 50.0 * g])
    p[T - 5, 1] = np.nan
    p[T - 200, 1] = 500.0
    p[T - 260, 1] = 1.0
    rets = np.tile([0.02, -0.01], 20)[:39]
    p[T - 39 :, 2] = 20.0 * np.concatenate([[1.0], np.cumprod(1 + rets)])
    p[T - 89 : T - 89 + 12, 3] = np.nan  # 12 missing prices break 13 returns ...
    p[T - 40 : T - 40 + 9, 3] = np.nan  # ... and 9 break 10 more: 67 of 90 valid
    return p


def test_trailing_returns() -> None:
    m = symbol_daily_metrics(_prices(), SESSIONS)
    assert m.as_of == date(2024, 1, 10)
    assert_allclose(m.last_close[0], 100.0 * 1.001**T, rtol=1e-13)
    for field, k in (
        ("return_1d", 1),
        ("return_5d", 5),
        ("return_1m", 21),
        ("return_3m", 63),
        ("return_1y", 252),
    ):
        assert_allclose(getattr(m, field)[0], 1.001**k - 1, rtol=1e-10, err_msg=field)
    # a missing price 5 sessions ago kills only the 5-day return
    assert np.isnan(m.return_5d[1]) and np.isfinite(m.return_1d[1])
    # a spike 200 sessions ago is not a lookback point of any return
    assert_allclose(m.return_1y[1], 1.001**252 - 1, rtol=1e-10)
    # listed 40 sessions ago: 1m return known, 3m / 1y not
    assert np.isfinite(m.return_1m[2]) and np.isnan(m.return_3m[2]) and np.isnan(m.return_1y[2])


def test_ytd_across_the_year_boundary() -> None:
    m = symbol_daily_metrics(_prices(), SESSIONS)
    # 2024-01-10 is 8 sessions after 2023-12-29 (Jan 1 is a weekday in the stand-in)
    assert T - LAST_2023 == 8
    assert_allclose(m.return_ytd[0], 1.001**8 - 1, rtol=1e-10)
    # symbol 2 listed before the year end: its YTD is the return since 12-29
    p2 = _prices()[:, 2]
    assert_allclose(m.return_ytd[2], p2[T] / p2[LAST_2023] - 1, rtol=1e-13)
    # as of the last 2023 session the YTD looks back to the end of 2022
    m23 = symbol_daily_metrics(_prices(), SESSIONS, as_of_index=LAST_2023)
    last_2022 = SESSIONS.index(date(2022, 12, 30))
    assert m23.as_of == date(2023, 12, 29)
    assert_allclose(m23.return_ytd[0], 1.001 ** (LAST_2023 - last_2022) - 1, rtol=1e-10)


def test_ytd_not_covered_is_nan() -> None:
    start = SESSIONS.index(date(2024, 1, 2))
    m = symbol_daily_metrics(_prices()[start:], SESSIONS[start:])
    assert np.isnan(m.return_ytd).all()


def test_volatility_90d() -> None:
    m = symbol_daily_metrics(_prices(), SESSIONS)
    # constant growth: zero volatility
    assert m.volatility_90d[0] < 1e-12
    # symbol 2: only 39 returns in the window: below the 68 required
    assert np.isnan(m.volatility_90d[2])
    # symbol 3: 67 valid returns of 90 -> NaN; one price back -> 68 -> value
    assert np.isnan(m.volatility_90d[3])
    p = _prices()
    p[T - 40, 3] = 50.0 * 1.001 ** (T - 40)
    assert np.isfinite(symbol_daily_metrics(p, SESSIONS).volatility_90d[3])


def test_volatility_90d_hand_computed() -> None:
    rets = np.array([0.01, -0.02, 0.015, 0.0, 0.03, -0.01] * 15)  # 90 returns
    prices = 10.0 * np.concatenate([[1.0], np.cumprod(1 + rets)])
    sessions = _weekdays(date(2024, 6, 28), prices.size)
    m = symbol_daily_metrics(prices[:, None], sessions)
    mean = rets.sum() / 90
    expected = math.sqrt(((rets - mean) ** 2).sum() / 89) * math.sqrt(252)
    assert_allclose(m.volatility_90d[0], expected, rtol=1e-12)


def test_52_week_high_low() -> None:
    m = symbol_daily_metrics(_prices(), SESSIONS)
    assert_allclose(m.high_52w[0], 100.0 * 1.001**T, rtol=1e-13)
    assert_allclose(m.low_52w[0], 100.0 * 1.001 ** (T - 251), rtol=1e-13)
    assert m.high_52w[1] == 500.0  # the spike 200 sessions ago is inside the window
    assert_allclose(m.low_52w[1], 100.0 * 1.001 ** (T - 251), rtol=1e-13)  # dip is not
    p2 = _prices()[:, 2]
    assert m.high_52w[2] == np.nanmax(p2) and m.low_52w[2] == np.nanmin(p2)


def test_all_missing_symbol_and_invalid_prices() -> None:
    p = _prices()
    p[:, 0] = np.nan
    p[T - 1, 3] = -2.0  # a non-positive price counts as missing
    m = symbol_daily_metrics(p, SESSIONS)
    for field in ("last_close", "return_1d", "return_ytd", "volatility_90d", "high_52w", "low_52w"):
        assert np.isnan(getattr(m, field)[0]), field
    assert np.isnan(m.return_1d[3]) and np.isfinite(m.return_5d[3])
    assert m.low_52w[3] > 0


def test_as_of_in_the_middle_ignores_later_rows() -> None:
    p = _prices()
    m = symbol_daily_metrics(p, SESSIONS, as_of_index=T - 10)
    later = p.copy()
    later[T - 9 :] = 1e6
    assert_array_equal(
        symbol_daily_metrics(later, SESSIONS, as_of_index=T - 10).high_52w, m.high_52w
    )
    assert m.as_of == SESSIONS[T - 10]


def test_input_not_mutated() -> None:
    p = _prices()
    before = p.copy()
    symbol_daily_metrics(p, SESSIONS)
    assert_array_equal(p, before)


def test_caller_mistakes_raise() -> None:
    p = _prices()
    with pytest.raises(ValueError, match="sessions"):
        symbol_daily_metrics(p, SESSIONS[1:])
    with pytest.raises(ValueError, match="ascending"):
        symbol_daily_metrics(p, SESSIONS[::-1])
    with pytest.raises(ValueError, match="as_of_index"):
        symbol_daily_metrics(p, SESSIONS, as_of_index=N_ROWS)
    with pytest.raises(ValueError, match="2-D"):
        symbol_daily_metrics(p[:, 0], SESSIONS)
