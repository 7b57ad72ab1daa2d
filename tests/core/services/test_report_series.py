"""The report's daily series (core/services/report.report_series) from snapshot rows, by hand:
the base snapshot first (every curve starts at 0 there), returns daily P&L over the previous
equity, the benchmark over the same two dates, the stored ex-ante volatility by date."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pytest

from core.report.html import wealth
from core.services.report import report_series

D0, D1, D2, D3 = (dt.date(2026, 11, d) for d in (23, 24, 25, 27))  # the 26th: Thanksgiving


def test_series_by_hand() -> None:
    rows = [(D0, Decimal("1000"), None), (D1, Decimal("1010"), Decimal("10")),
            (D3, Decimal("1005"), Decimal("-5"))]  # D2's snapshot is missing
    sessions = [D0, D1, D2, D3]
    closes = np.array([100.0, 101.0, np.nan, 99.0])
    s = report_series(rows, sessions, closes, {D1: 0.2, D2: 0.3})
    assert list(s.dates) == [D0, D1, D3]
    np.testing.assert_allclose(s.portfolio_return, [np.nan, 0.01, -5 / 1010], rtol=1e-15)
    np.testing.assert_allclose(s.benchmark_return, [np.nan, 0.01, 99 / 101 - 1], rtol=1e-15)
    np.testing.assert_array_equal(s.exante_volatility, [np.nan, 0.2, np.nan])
    # the curve ends where the equity did: 1005 / 1000 - 1
    assert wealth(s.portfolio_return)[-1] - 1 == pytest.approx(0.005, rel=1e-12)


def test_one_snapshot_has_no_return() -> None:
    s = report_series([(D0, Decimal("1000"), None)], [D0], np.array([100.0]), {})
    assert list(s.dates) == [D0] and np.isnan(s.portfolio_return).all()
