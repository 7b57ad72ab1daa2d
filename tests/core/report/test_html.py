"""The report page (core/report/html.py) on planted answers: self-contained (no script, no
external reference), every figure beside its chart as text, the series helpers against
pandas / hand references, nothing undefined shown as NaN."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from core.report.html import (
    ReportInput,
    ReportSeries,
    drawdown,
    render_report,
    rolling_volatility,
    wealth,
)


def _input(n: int = 120, **answers: object) -> ReportInput:
    rng = np.random.default_rng(4)
    dates = [dt.date(2025, 1, 2) + dt.timedelta(days=i) for i in range(n)]
    r = rng.normal(0.0005, 0.01, n)
    r[:2] = np.nan
    ex = np.full(n, np.nan)
    ex[n // 2:] = 0.15
    base: dict[str, object] = {
        "overview": {"snapshot": {"equity": "10500.25", "daily_pnl": "-12.5"}},
        "performance": {"cumulative_return": 0.0512, "sharpe_ratio": 1.234,
                        "max_drawdown": -0.0731, "beta": None},
        "attribution": {"factors": [{"factor": "VTV", "pnl": 321.5},
                                    {"factor": "TLT", "pnl": -20.0}],
                        "specific_pnl": 10.0, "total_pnl": 311.5, "unattributed_pnl": 0.0,
                        "start": "2025-01-02", "end": "2025-05-01"},
        "risk": {"volatility": {"daily": 0.01, "annual": 0.1587, "dollar_daily": 105.0},
                 "variance_split": {"factor_share": 0.7}, "predicted_beta": 0.93,
                 "position_contributions": [{"symbol": "AAA", "percent": 0.6,
                                             "contribution": 0.006},
                                            {"symbol": "BBB", "percent": 0.4,
                                             "contribution": 0.004}],
                 "factor_contributions": [{"factor": "VTV", "percent": 0.5, "exposure": 5e3},
                                          {"factor": "specific", "percent": 0.5,
                                           "exposure": None}],
                 "var": [{"measure": "var", "method": "historical", "confidence": 0.99,
                          "horizon_days": 1, "value": 250.75, "pct": 0.0239}],
                 "model": {"coverage": {"covered_share": 1.0}, "ten_day": "overlapping"},
                 "reason": None},
        "factor_exposures": {"portfolio": [{"factor": "market_beta", "beta": 0.98,
                                            "dollar_exposure": 10290.0,
                                            "covered_share": 1.0}]},
        "stress": {"scenarios": [{"name": "m10", "title": "Market −10 %", "available": True,
                                  "pnl": -1020.0, "pnl_pct": -0.0971},
                                 {"name": "gfc", "title": "2008", "available": False,
                                  "pnl": None, "pnl_pct": None,
                                  "reason": "window ends after 2007-01-01"}]},
    }
    base.update(answers)
    return ReportInput("p-42", "Growth <&> \"income\"", "SPY", "2025-05-01",
                       ReportSeries(dates, r, rng.normal(0.0004, 0.009, n), ex),
                       **base)  # type: ignore[arg-type]


def test_the_page_is_self_contained_and_shows_its_numbers() -> None:
    page = render_report(_input())
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:|//)""", page, re.I)
    assert not re.search(r"url\((?!#)", page) and "@import" not in page  # url(#id): in page
    # equity, drawdown, volatility, exposures, 2 risk, stress, attribution
    assert page.count("<svg") == 8
    for text in ("5.12 %", "1.23", "-7.31 %", "10,500.25", "250.75", "2.39 %", "321.50",
                 "window ends after 2007-01-01", "Market −10 %", "15.87 %"):
        assert text in page, text
    assert "Growth &lt;&amp;&gt; &quot;income&quot;" in page and "<&>" not in page
    assert not re.search(r"\bnan\b|\binf\b", page, re.I)


def test_a_new_portfolio_gets_a_page_without_charts_it_cannot_draw() -> None:
    one = _input(n=2, performance=None, attribution=None, risk=None, stress=None,
                 factor_exposures=None)
    page = render_report(one)
    assert "fewer than 2 daily returns" in page and "<svg" not in page
    assert not re.search(r"\bnan\b", page, re.I)


def test_series_helpers_against_references() -> None:
    r = np.array([0.1, np.nan, -0.5, 0.5, 0.25])
    np.testing.assert_allclose(wealth(r), [1.1, 1.1, 0.55, 0.825, 1.03125])
    np.testing.assert_allclose(drawdown(r), [0.0, 0.0, -0.5, -0.25, -0.0625])
    assert drawdown(np.array([-0.1]))[0] == pytest.approx(-0.1)  # the start is a peak
    x = np.random.default_rng(2).normal(0, 0.01, 200)
    x[50] = np.nan
    ref = pd.Series(x).rolling(63).std(ddof=1).to_numpy() * np.sqrt(252)
    got = rolling_volatility(x)
    # a window with a missing day has no figure (pandas' rolling gives NaN there too)
    np.testing.assert_allclose(got, ref, rtol=1e-12, equal_nan=True)
    assert np.isnan(got[:62]).all() and np.isfinite(got[113:]).all()
