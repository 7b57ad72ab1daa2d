"""The answers of ``core/services/performance.py`` from planted snapshots, risk records and
prices, against figures computed by hand: a deposit is not a return, the peak of a drawdown
that starts the window is the close before the first return, the window bounds, the
risk-free rate's check, the attribution of one day from a compact and from an older risk
record, a day without a risk row left unattributed or attributed from a rebuilt record."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import numpy as np
import pytest

from core import calendar
from core.errors import InvalidInput
from core.risk.model import RISK_FACTORS
from core.services.performance import (
    PerformanceQuery,
    attribution_payload,
    performance_payload,
    performance_query,
    window_bounds,
)

DAYS = calendar.sessions_ending_at(dt.date(2026, 11, 20), 5)
# equity 1000 → 900 (a loss of 100) → 1900 (a deposit of 1000, no P&L) → 1995 → 2094.75
ROWS = [(DAYS[0], Decimal("1000"), None), (DAYS[1], Decimal("900"), Decimal("-100")),
        (DAYS[2], Decimal("1900"), Decimal("0")), (DAYS[3], Decimal("1995"), Decimal("95")),
        (DAYS[4], Decimal("2094.75"), Decimal("99.75"))]
BENCH = np.array([100.0, 99.0, 99.0, 100.0, 101.0])


def _query(**kw: object) -> PerformanceQuery:
    return PerformanceQuery(**{"window": None, "start": None, "end": None,  # type: ignore[arg-type]
                               "benchmark": "SPY", "risk_free": 0.0, **kw})


def test_a_deposit_is_not_a_return_and_the_start_is_the_peak() -> None:
    body = performance_payload(_query(), DAYS[0], DAYS[4], ROWS, DAYS, BENCH)
    # r = -0.1, 0, 0.05, 0.05: wealth 0.9, 0.9, 0.945, 0.99225 (equity doubled by the deposit)
    assert body["n_returns"] == 4 and body["first_return_date"] == DAYS[1].isoformat()
    assert body["cumulative_return"] == pytest.approx(0.9 * 1.05 * 1.05 - 1, abs=1e-15)
    assert body["max_drawdown"] == pytest.approx(-0.1, abs=1e-15)
    assert body["max_drawdown_peak_date"] == DAYS[0].isoformat()  # the close before r_1
    assert body["max_drawdown_trough_date"] == DAYS[1].isoformat()
    assert body["max_drawdown_recovery_date"] is None
    assert body["reasons"] == {"max_drawdown_recovery_date": f"not recovered by {DAYS[4]}"}
    assert (body["best_day"], body["best_day_date"]) == (0.05, DAYS[3].isoformat())
    assert (body["worst_day"], body["worst_day_date"]) == (-0.1, DAYS[1].isoformat())
    assert body["hit_rate"] == 0.5 and body["n_benchmark_pairs"] == 4
    assert body["annualized_return"] == pytest.approx(0.99225 ** (252 / 4) - 1, rel=1e-12)
    mean = (-0.1 + 0.05 + 0.05) / 4
    std = math.sqrt(sum((x - mean) ** 2 for x in (-0.1, 0, 0.05, 0.05)) / 3)
    assert body["annualized_volatility"] == pytest.approx(std * math.sqrt(252), rel=1e-12)
    assert body["sharpe_ratio"] == pytest.approx(mean / std * math.sqrt(252), rel=1e-12)


def test_a_window_after_the_loss_has_no_drawdown() -> None:
    body = performance_payload(_query(start=DAYS[3]), DAYS[3], DAYS[4], ROWS[2:], DAYS, BENCH)
    assert body["n_returns"] == 2 and body["first_return_date"] == DAYS[3].isoformat()
    assert body["cumulative_return"] == pytest.approx(1.05 ** 2 - 1, abs=1e-15)
    assert body["max_drawdown"] == 0.0 and body["max_drawdown_peak_date"] is None
    assert body["reasons"]["max_drawdown_peak_date"] == "no drawdown"
    assert body["calmar_ratio"] is None and body["reasons"]["calmar_ratio"] == "no drawdown"
    assert body["sortino_ratio"] is None and "downside" in body["reasons"]["sortino_ratio"]
    assert body["sharpe_ratio"] is None and "zero volatility" in body["reasons"]["sharpe_ratio"]
    assert body["hit_rate"] == 1.0 and body["window"] is None
    # the benchmark over the same intervals (99 → 100 → 101) moves; the portfolio does not
    assert body["beta"] == pytest.approx(0.0, abs=1e-9) and body["n_benchmark_pairs"] == 2


@pytest.mark.parametrize("window,end,start", [
    ("1M", dt.date(2026, 3, 31), dt.date(2026, 3, 1)),   # Feb 28 + 1 day
    ("3M", dt.date(2026, 5, 31), dt.date(2026, 3, 1)),
    ("1Y", dt.date(2024, 2, 29), dt.date(2023, 3, 1)),
    ("1M", dt.date(2026, 11, 20), dt.date(2026, 10, 21)),
    ("YTD", dt.date(2026, 11, 20), dt.date(2026, 1, 1)),
    ("ITD", dt.date(2026, 11, 20), dt.date(2026, 6, 1)),
])
def test_window_bounds(window: str, end: dt.date, start: dt.date) -> None:
    q = performance_query(window=window)
    assert window_bounds(q, end, dt.date(2026, 6, 1)) == (start, end)


def test_explicit_bounds_are_clamped_to_the_data_date() -> None:
    q = performance_query(start=dt.date(2026, 1, 5), end=dt.date(2030, 1, 1))
    assert window_bounds(q, dt.date(2026, 11, 20), None) == (dt.date(2026, 1, 5),
                                                            dt.date(2026, 11, 20))
    assert window_bounds(performance_query(), dt.date(2026, 11, 20), None) == (
        dt.date(2026, 11, 20), dt.date(2026, 11, 20))  # no snapshot yet: an empty window
    with pytest.raises(InvalidInput, match="after the data date") as err:
        window_bounds(performance_query(start=dt.date(2026, 11, 23)), dt.date(2026, 11, 20),
                      None)
    assert err.value.field == "start"


@pytest.mark.parametrize("rate,hint", [(2, "give 0.02"), (5.0, "give 0.05"), (0.3, None),
                                       (-0.06, None), (math.nan, None), (math.inf, None)])
def test_risk_free_in_percent_is_refused_with_a_hint(rate: float, hint: str | None) -> None:
    with pytest.raises(InvalidInput) as exc:
        performance_query(risk_free=rate)
    assert exc.value.field == "risk_free" and "0.02 = 2 %" in exc.value.message
    if hint:
        assert hint in exc.value.message
    assert performance_query(risk_free=0.25).risk_free == 0.25
    assert performance_query(risk_free=-0.05).risk_free == -0.05


def test_attribution_from_compact_and_older_records() -> None:
    days = calendar.sessions_ending_at(dt.date(2026, 11, 20), 4)
    rows = [(days[0], Decimal("10000"), None), (days[1], Decimal("10050"), Decimal("50")),
            (days[2], Decimal("10030"), Decimal("-20")), (days[3], Decimal("10040"),
                                                          Decimal("10"))]
    k = len(RISK_FACTORS)
    e0 = [0.0] * k
    e0[RISK_FACTORS.index("VTV")], e0[RISK_FACTORS.index("TLT")] = 1000.0, -500.0
    compact = {"format": 2, "factor_exposure": e0, "model": {"factors": list(RISK_FACTORS)}}
    older = {"factor_contributions": [  # format 1: the answer itself, in another order
        *({"factor": f, "exposure": 200.0 if f == "IWM" else 0.0}
          for f in reversed(RISK_FACTORS)), {"factor": "specific", "exposure": None}]}
    closes = np.full((4, k), 100.0)
    closes[:, RISK_FACTORS.index("VTV")] = [100.0, 102.0, 102.0, 102.0]
    closes[:, RISK_FACTORS.index("TLT")] = [50.0, 49.0, 49.0, 49.0]
    closes[:, RISK_FACTORS.index("IWM")] = [80.0, 80.0, 84.0, 84.0]
    body = attribution_payload(days[0], days[3], rows, [(days[0], compact), (days[1], older)],
                               days, closes)
    d1, d2, d3 = body["days"]
    # d1: VTV 1000 × 2 % = 20, TLT -500 × -2 % = 10, specific 50 - 30 = 20
    assert d1["factors"]["VTV"] == pytest.approx(20.0, abs=1e-12)
    assert d1["factors"]["TLT"] == pytest.approx(10.0, abs=1e-12)
    assert d1["specific"] == pytest.approx(20.0, abs=1e-12)
    # d2: IWM 200 × 5 % = 10 from the older record, specific -30
    assert d2["factors"]["IWM"] == pytest.approx(10.0, abs=1e-12)
    assert d2["specific"] == pytest.approx(-30.0, abs=1e-12)
    # d3: no risk row on d2
    assert d3["attributed"] is False and d3["factors"] is None
    assert days[2].isoformat() in d3["reason"]
    totals = {r["factor"]: r["pnl"] for r in body["factors"]}
    assert totals["VTV"] == pytest.approx(20.0) and totals["IWM"] == pytest.approx(10.0)
    assert body["specific_pnl"] == pytest.approx(-10.0, abs=1e-12)
    assert (body["attributed_pnl"], body["unattributed_pnl"], body["total_pnl"]) == (
        pytest.approx(30.0), pytest.approx(10.0), pytest.approx(40.0))
    assert (body["n_days"], body["n_attributed"], body["n_unattributed"]) == (3, 2, 1)
    assert [d["exposure_source"] for d in body["days"]] == ["nightly", "nightly", None]
    # d2's close rebuilt (no nightly row): IWM -100 × +5 % on d3, the other factors flat
    e2 = [0.0] * k
    e2[RISK_FACTORS.index("IWM")] = -100.0
    rebuilt = {days[2]: {"format": 2, "factor_exposure": e2,
                         "model": {"factors": list(RISK_FACTORS)}},
               days[0]: {"format": 2, "factor_exposure": [9e9] * k,  # a nightly row wins
                         "model": {"factors": list(RISK_FACTORS)}}}
    closes[3, RISK_FACTORS.index("IWM")] = 88.2  # +5 % on d3
    again = attribution_payload(days[0], days[3], rows,
                                [(days[0], compact), (days[1], older)], days, closes,
                                rebuilt, days[3])
    d1, _, d3 = again["days"]
    assert d1["factors"]["VTV"] == pytest.approx(20.0, abs=1e-12)
    assert d3["attributed"] and d3["exposure_source"] == "rebuilt"
    assert d3["factors"]["IWM"] == pytest.approx(-5.0, abs=1e-12)
    assert d3["specific"] == pytest.approx(15.0, abs=1e-12)
    assert (again["n_attributed"], again["n_unattributed"], again["n_rebuilt"]) == (3, 0, 1)
    assert days[3].isoformat() in again["conventions"]["exposure"]


def test_an_empty_window_answers_nulls() -> None:
    later = dt.date(2026, 12, 1)
    body = performance_payload(_query(start=later), later, DAYS[4], [], [], np.zeros(0))
    assert body["n_returns"] == 0 and body["cumulative_return"] is None
    assert set(body["reasons"]) >= {"cumulative_return", "beta", "best_day_date"}
    empty = attribution_payload(later, DAYS[4], [], [], [], np.zeros((0, len(RISK_FACTORS))))
    assert empty["days"] == [] and empty["total_pnl"] == 0.0 and empty["n_days"] == 0
