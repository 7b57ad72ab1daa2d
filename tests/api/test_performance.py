"""``GET /v1/portfolios/{id}/performance`` and ``/attribution`` on the seeded SQLite database.

A portfolio's history is written by the real nightly refresh step (``refresh_chunk``): its
snapshots over the last ``SESSIONS`` sessions, and the nightly risk rows of some of them
(the others are left without one, so their next day's exposure is rebuilt). Every figure is then
checked against an independent reference: the returns and the benchmark's are rebuilt here
from the stored rows with plain SQL, and empyrical-reloaded (a test-only dependency)
computes the metrics; the drawdown dates by a loop over the wealth; the attribution from
the stored risk payloads and the stored factor-ETF prices.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import sqlite3
from decimal import Decimal
from typing import Any

import empyrical as ep
import numpy as np
import pytest
from litestar.testing import TestClient

from tests.api.conftest import Seed, assert_error, auth, position, risk_data

SESSIONS = 30
"""Sessions of history written by the refresh."""
RISK_DAYS = slice(6, 24)
"""Which of them (by index) also get a nightly risk row."""
GAP = 14
"""A session inside RISK_DAYS left without a risk row."""
PPY = 252
BOOK = [position("MKTA", quantity="30"), position("MKTB", quantity="-12"),
        position("MKTC", quantity="7"), position("SPY", quantity="2")]


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def _create(client: TestClient, seed: Seed, positions: list[dict[str, Any]],
            cash: str = "1000", name: str = "perf") -> str:
    resp = client.post("/v1/portfolios", json={"name": name, "cash": cash,
                                               "positions": positions}, headers=auth(seed))
    assert resp.status_code == 201, resp.text
    return resp.json()["portfolio"]["id"]


def _history(db_url: str, seed: Seed, pid: str, cash: str = "1000") -> list[dt.date]:
    """Snapshots of the last SESSIONS sessions (one refresh over all of them), then the
    nightly risk rows of the RISK_DAYS sessions but GAP (one refresh of each day, with the
    snapshot before it, as a night does); returns the sessions."""
    from core import calendar
    from core.db.engine import create_engine
    from core.portfolio_steps import PortfolioWork, refresh_chunk
    from core.symbol_data import build_scenarios

    days = calendar.sessions_ending_at(seed.as_of, SESSIONS)
    risk_days = [i for i in range(len(days))[RISK_DAYS] if i != GAP]

    async def run() -> None:
        engine = create_engine(db_url)
        try:
            scenarios = await build_scenarios(seed.as_of, engine)
            report = await refresh_chunk([PortfolioWork(pid, Decimal(cash), tuple(days), None,
                                                        None)], seed.as_of, scenarios, None,
                                         engine)
            assert report.refreshed == 1 and not report.failed, report
            for i in risk_days:
                prev = _equity(db_url, pid, days[i - 1])
                report = await refresh_chunk(
                    [PortfolioWork(pid, Decimal(cash), (days[i],), days[i - 1], prev)],
                    days[i], scenarios, None, engine)
                assert report.refreshed == 1 and not report.failed, report
                assert pid in report.risk
        finally:
            await engine.dispose()

    _run(run())
    return days


def _sql(db_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    from tests.flows.helpers import db_path

    con = sqlite3.connect(db_path(db_url))
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def _equity(db_url: str, pid: str, day: dt.date) -> Decimal:
    (eq,), = _sql(db_url, "SELECT equity FROM portfolio_snapshots WHERE portfolio_id = ? AND "
                          "date = ?", (pid, day.isoformat()))
    return Decimal(eq)


def _returns(db_url: str, pid: str, benchmark: str = "SPY"
             ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(dates, r, b) rebuilt with plain SQL: r_t = daily_pnl_t / equity of the previous
    snapshot, b_t = the benchmark's adj_close at t over that at the previous snapshot's
    date, minus 1 (NaN where undefined)."""
    rows = _sql(db_url, "SELECT s.date, s.equity, s.daily_pnl, p.adj_close FROM "
                        "portfolio_snapshots s LEFT JOIN prices p ON p.symbol = ? AND "
                        "p.date = s.date WHERE s.portfolio_id = ? ORDER BY s.date",
                (benchmark, pid))
    dates = [r[0] for r in rows]
    r = np.full(len(rows), np.nan)
    b = np.full(len(rows), np.nan)
    for t in range(1, len(rows)):
        prev_eq, pnl = float(rows[t - 1][1]), rows[t][2]
        if pnl is not None and prev_eq > 0:
            r[t] = float(pnl) / prev_eq
        if rows[t][3] is not None and rows[t - 1][3] is not None:
            b[t] = float(rows[t][3]) / float(rows[t - 1][3]) - 1.0
    return dates, r, b


def _drawdown_dates(dates: list[str], r: np.ndarray) -> tuple[str | None, ...]:
    """Peak, trough and recovery dates of the maximum drawdown by a loop over the wealth
    (1 at the close before the first return)."""
    first = next(i for i in range(len(r)) if math.isfinite(r[i]))
    wealth, peak_w, peak_i = 1.0, 1.0, first - 1
    worst, best_peak, trough = 0.0, None, None
    path = [(first - 1, 1.0)]
    for i in range(first, len(r)):
        if not math.isfinite(r[i]):
            continue
        wealth *= 1.0 + r[i]
        path.append((i, wealth))
        if wealth >= peak_w:
            peak_w, peak_i = wealth, i
        dd = wealth / peak_w - 1.0
        if dd < worst:
            worst, best_peak, trough = dd, (peak_i, peak_w), i
    if trough is None:
        return None, None, None
    recovery = next((i for i, w in path if i > trough and w >= best_peak[1]), None)
    return (dates[best_peak[0]], dates[trough],
            dates[recovery] if recovery is not None else None)


def _reference(dates: list[str], r: np.ndarray, b: np.ndarray, rf_annual: float
               ) -> dict[str, Any]:
    rf = (1.0 + rf_annual) ** (1.0 / PPY) - 1.0
    ok = np.isfinite(r)
    x = r[ok]
    both = ok & np.isfinite(b)
    xr, br = r[both], b[both]
    alpha, beta = ep.alpha_beta(xr, br, risk_free=rf)
    valid_dates = [d for d, v in zip(dates, ok, strict=True) if v]
    peak, trough, recovery = _drawdown_dates(dates, r)
    return {
        "cumulative_return": ep.cum_returns_final(x),
        "annualized_return": ep.annual_return(x),
        "annualized_volatility": ep.annual_volatility(x),
        "sharpe_ratio": ep.sharpe_ratio(x, risk_free=rf),
        "sortino_ratio": ep.sortino_ratio(x, required_return=rf),
        "max_drawdown": ep.max_drawdown(x), "calmar_ratio": ep.calmar_ratio(x),
        "best_day": x.max(), "worst_day": x.min(), "hit_rate": float(np.mean(x > 0)),
        "best_day_date": valid_dates[int(np.argmax(x))],
        "worst_day_date": valid_dates[int(np.argmin(x))],
        "max_drawdown_peak_date": peak, "max_drawdown_trough_date": trough,
        "max_drawdown_recovery_date": recovery,
        "alpha": alpha, "beta": beta, "tracking_error": ep.annual_volatility(xr - br),
        "information_ratio": ep.excess_sharpe(xr, br) * math.sqrt(PPY),
        "up_capture": ep.up_capture(xr, br), "down_capture": ep.down_capture(xr, br),
        "n_returns": int(ok.sum()), "n_benchmark_pairs": int(both.sum()),
        "first_return_date": valid_dates[0], "last_return_date": valid_dates[-1],
    }


def _check(answer: dict[str, Any], expected: dict[str, Any]) -> None:
    for name, want in expected.items():
        got = answer[name]
        if isinstance(want, float | np.floating):
            assert got == pytest.approx(float(want), rel=1e-9, abs=1e-12), name
        else:
            assert got == want, name


def _months_before(day: dt.date, months: int) -> dt.date:
    y, m = divmod(day.year * 12 + day.month - 1 - months, 12)
    for d in range(day.day, 27, -1):
        try:
            return dt.date(y, m + 1, d)
        except ValueError:
            continue
    return dt.date(y, m + 1, min(day.day, 28))


def test_performance_is_empyrical_on_the_stored_returns(client: TestClient, seed: Seed,
                                                        db_url: str) -> None:
    pid = _create(client, seed, BOOK)
    _history(db_url, seed, pid)
    base, h = f"/v1/portfolios/{pid}", auth(seed)
    dates, r, b = _returns(db_url, pid)
    assert len(dates) == SESSIONS and np.isfinite(r[1:]).all()

    resp = client.get(f"{base}/performance?risk_free=0.03", headers=h)
    assert resp.status_code == 200, resp.text
    assert "NaN" not in resp.text and "Infinity" not in resp.text
    answer = resp.json()
    assert answer["window"] == "ITD" and answer["cached"] is False
    assert answer["start"] == dates[0] and answer["end"] == seed.as_of.isoformat()
    assert answer["data_as_of"] == seed.as_of.isoformat() and answer["stale"] is False
    _check(answer, _reference(dates, r, b, 0.03))
    assert answer["max_drawdown"] < 0 and answer["reasons"] == (
        {} if answer["max_drawdown_recovery_date"] else
        {"max_drawdown_recovery_date": f"not recovered by {seed.as_of.isoformat()}"})

    # the conventions, by hand
    conv = answer["conventions"]
    assert conv["periods_per_year"] == 252 and conv["ddof"] == 1
    assert conv["risk_free_annual"] == 0.03
    assert conv["risk_free_per_period"] == pytest.approx(1.03 ** (1 / 252) - 1, rel=1e-12)
    # geometric, by hand: 1.03 ** (1 / 252) - 1 = 0.0001173..., not 0.03 / 252 = 0.0001190...
    assert round(conv["risk_free_per_period"], 7) == 0.0001173
    assert conv["benchmark"] == "SPY" and "adj" in conv["benchmark_source"]
    assert "deposits" in conv["cash_flows"] and "not returns" in conv["cash_flows"]
    # the first return by hand: daily_pnl / the previous snapshot's equity
    (pnl1,), = _sql(db_url, "SELECT daily_pnl FROM portfolio_snapshots WHERE portfolio_id = ? "
                            "AND date = ?", (pid, dates[1]))
    assert r[1] == pytest.approx(
        float(Decimal(pnl1) / _equity(db_url, pid, dt.date.fromisoformat(dates[0]))), rel=1e-15)

    # a hit: the same answer; other parameters are never served from it
    again = client.get(f"{base}/performance?risk_free=0.03", headers=h).json()
    assert again["cached"] is True
    assert {**again, "cached": False} == answer
    other = client.get(f"{base}/performance?risk_free=0.01", headers=h).json()
    assert other["cached"] is False and other["sharpe_ratio"] != answer["sharpe_ratio"]
    _check(other, _reference(dates, r, b, 0.01))

    # an explicit range: the returns dated start..end, the first from the close before
    start, end = dates[10], dates[20]
    part = client.get(f"{base}/performance?start={start}&end={end}", headers=h).json()
    keep = np.array([start <= d <= end for d in dates])
    _check(part, _reference(dates, np.where(keep, r, np.nan), b, 0.0))
    assert (part["start"], part["end"], part["window"]) == (start, end, None)

    # another benchmark (any stored symbol)
    dates_m, r_m, b_m = _returns(db_url, pid, "MKTB")
    mk = client.get(f"{base}/performance?benchmark=mktb", headers=h).json()
    assert mk["benchmark"] == "MKTB"
    _check(mk, _reference(dates_m, r_m, b_m, 0.0))

    # younger than the window: its own life, the window's start reported
    for window, months in (("1M", 1), ("1Y", 12)):
        w = client.get(f"{base}/performance?window={window}", headers=h).json()
        start_w = _months_before(seed.as_of, months) + dt.timedelta(days=1)
        assert w["start"] == start_w.isoformat() and w["window"] == window
        keep = np.array([d >= w["start"] for d in dates])
        _check(w, _reference(dates, np.where(keep, r, np.nan), b, 0.0))
    ytd = client.get(f"{base}/performance?window=YTD", headers=h).json()
    assert ytd["start"] == f"{seed.as_of.year}-01-01"

    # a benchmark missing a day: that pair is dropped from the relative figures only
    missing = dates[12]
    _sql_exec(db_url, "DELETE FROM prices WHERE symbol = 'SPY' AND date = ?", (missing,))
    _sql_exec(db_url, "DELETE FROM portfolio_analytics_cache WHERE portfolio_id = ?", (pid,))
    dates, r, b = _returns(db_url, pid)
    assert np.isnan(b[12]) and np.isnan(b[13])
    gap = client.get(f"{base}/performance", headers=h).json()
    _check(gap, _reference(dates, r, b, 0.0))
    assert gap["n_benchmark_pairs"] == gap["n_returns"] - 2


def _sql_exec(db_url: str, sql: str, params: tuple = ()) -> None:
    from tests.flows.helpers import db_path

    con = sqlite3.connect(db_path(db_url))
    try:
        con.execute(sql, params)
        con.commit()
    finally:
        con.close()


def test_a_rewritten_snapshot_is_never_served_from_the_cache(client: TestClient, seed: Seed,
                                                             db_url: str) -> None:
    """A snapshot rewritten without the cache being dropped (a recompute, the instant
    snapshot of an onboarded symbol) is a miss: the cache is keyed by the stored history."""
    pid = _create(client, seed, BOOK)
    _history(db_url, seed, pid)
    base, h = f"/v1/portfolios/{pid}", auth(seed)
    first = client.get(f"{base}/performance", headers=h).json()
    attribution = client.get(f"{base}/attribution", headers=h).json()
    assert client.get(f"{base}/attribution", headers=h).json()["cached"] is True
    day = seed.as_of.isoformat()
    _sql_exec(db_url, "UPDATE portfolio_snapshots SET daily_pnl = '12.3400' WHERE "
                      "portfolio_id = ? AND date = ?", (pid, day))
    after = client.get(f"{base}/performance", headers=h).json()
    assert after["cached"] is False and after["last_return_date"] == day
    assert after["cumulative_return"] != first["cumulative_return"]
    dates, r, b = _returns(db_url, pid)
    _check(after, _reference(dates, r, b, 0.0))
    again = client.get(f"{base}/attribution", headers=h).json()
    assert again["cached"] is False and again["days"][-1]["pnl"] == 12.34
    assert again["total_pnl"] != attribution["total_pnl"]
    # a change through the API drops every cached answer of the portfolio
    assert client.get(f"{base}/performance", headers=h).json()["cached"] is True
    client.patch(base, json={"cash": "1500"}, headers=h)
    assert _sql(db_url, "SELECT count(*) FROM portfolio_analytics_cache WHERE portfolio_id = ? "
                        "AND kind LIKE 'performance:%'", (pid,))[0][0] == 0


def test_attribution_identity_and_factor_pnl(client: TestClient, seed: Seed,
                                             db_url: str) -> None:
    from core.risk.model import RISK_FACTORS

    pid = _create(client, seed, BOOK)
    days = _history(db_url, seed, pid)
    base, h = f"/v1/portfolios/{pid}", auth(seed)
    resp = client.get(f"{base}/attribution", headers=h)
    assert resp.status_code == 200, resp.text
    assert "NaN" not in resp.text and "Infinity" not in resp.text
    body = resp.json()
    assert body["start"] == days[0].isoformat() and body["end"] == seed.as_of.isoformat()
    assert body["data_as_of"] == seed.as_of.isoformat() and body["cached"] is False

    risk = {d: json.loads(p) for d, p in _sql(
        db_url, "SELECT date, payload FROM portfolio_risk WHERE portfolio_id = ?", (pid,))}
    prices = {(s, d): float(c) for s, d, c in _sql(
        db_url, f"SELECT symbol, date, adj_close FROM prices WHERE symbol IN "
                f"({','.join('?' * len(RISK_FACTORS))})", tuple(RISK_FACTORS))}
    pnl = {d: float(p) for d, p in _sql(
        db_url, "SELECT date, daily_pnl FROM portfolio_snapshots WHERE portfolio_id = ? AND "
                "daily_pnl IS NOT NULL", (pid,))}
    iso = [d.isoformat() for d in days]
    assert [d["date"] for d in body["days"]] == iso[1:]  # the first snapshot has no P&L
    # a close without a nightly risk row: the book valued at that close (quantity × raw
    # close, the valuation's rounding: the close to 6 places, the value to 4) times each
    # symbol's betas in the data date's model
    model = risk_data(db_url, [p["symbol"] for p in BOOK], seed.as_of)
    raw = {(s, d): float(c) for s, d, c in _sql(
        db_url, f"SELECT symbol, date, close FROM prices WHERE symbol IN "
                f"({','.join('?' * len(BOOK))})", tuple(p["symbol"] for p in BOOK))}

    def rebuilt(prev: str) -> dict[str, float]:
        total = np.zeros(len(RISK_FACTORS))
        for p in BOOK:
            j = model.symbols.index(p["symbol"])
            if math.isfinite(model.specific_var[j]):
                value = (Decimal(p["quantity"]) * Decimal(str(round(raw[(p["symbol"], prev)],
                                                                     6))))
                total += float(value.quantize(Decimal("0.0001"))) * model.beta[j]
        return dict(zip(RISK_FACTORS, total.tolist(), strict=True))

    attributed = 0
    for row in body["days"]:
        i = iso.index(row["date"])
        prev = iso[i - 1]
        assert row["pnl"] == pnl[row["date"]]
        assert row["attributed"], row
        assert row["exposure_source"] == ("nightly" if prev in risk else "rebuilt"), row
        attributed += 1
        if prev in risk:
            record = risk[prev]
            exposure = dict(zip(record["model"]["factors"], record["factor_exposure"],
                                strict=True))
        else:
            exposure = rebuilt(prev)
        for f in RISK_FACTORS:
            ret = prices[(f, row["date"])] / prices[(f, prev)] - 1.0
            assert row["factors"][f] == pytest.approx(exposure[f] * ret, rel=1e-9, abs=1e-9)
        assert sum(row["factors"].values()) + row["specific"] == pytest.approx(
            row["pnl"], abs=1e-9)
        assert any(abs(v) > 1e-6 for v in row["factors"].values())
    # risk rows on RISK_DAYS but GAP: the next day of each from its row, every other day
    # from a rebuilt exposure
    nightly = len(risk) - (days[-1].isoformat() in risk)
    assert attributed == body["n_attributed"] == body["n_days"] == SESSIONS - 1
    assert body["n_rebuilt"] == SESSIONS - 1 - nightly > 0
    assert body["n_unattributed"] == 0 and body["unattributed_pnl"] == 0
    totals = {r["factor"]: r["pnl"] for r in body["factors"]}
    assert list(totals) == list(RISK_FACTORS)
    assert sum(totals.values()) + body["specific_pnl"] == pytest.approx(
        body["attributed_pnl"], abs=1e-9)
    assert body["attributed_pnl"] + body["unattributed_pnl"] == pytest.approx(
        body["total_pnl"], abs=1e-9)
    assert body["total_pnl"] == pytest.approx(sum(pnl.values()), abs=1e-9)
    assert body["unattributed_pnl"] == pytest.approx(
        sum(r["pnl"] for r in body["days"] if not r["attributed"]), abs=1e-9)
    for f in RISK_FACTORS:
        assert totals[f] == pytest.approx(sum(r["factors"][f] for r in body["days"]
                                              if r["attributed"]), rel=1e-9, abs=1e-9)

    # a window: only its days
    part = client.get(f"{base}/attribution?start={iso[10]}&end={iso[15]}", headers=h).json()
    assert [d["date"] for d in part["days"]] == iso[10:16]
    assert client.get(f"{base}/attribution", headers=h).json()["cached"] is True
    assert_error(client.get(f"{base}/attribution?start={iso[5]}&end={iso[4]}", headers=h),
                 400, "before start", field="end")
    assert_error(client.get(f"{base}/attribution", headers=auth(seed, "bob")), 404)


def test_one_snapshot_gives_nulls_with_reasons(client: TestClient, seed: Seed) -> None:
    pid = _create(client, seed, BOOK[:1], name="new")
    base, h = f"/v1/portfolios/{pid}", auth(seed)
    resp = client.get(f"{base}/performance?window=3M", headers=h)
    assert resp.status_code == 200, resp.text
    assert "NaN" not in resp.text and "Infinity" not in resp.text
    body = resp.json()
    assert body["n_returns"] == 0 and body["first_return_date"] is None
    figures = ["cumulative_return", "annualized_return", "annualized_volatility",
               "sharpe_ratio", "sortino_ratio", "max_drawdown", "calmar_ratio", "best_day",
               "worst_day", "hit_rate", "alpha", "beta", "tracking_error",
               "information_ratio", "up_capture", "down_capture", "max_drawdown_peak_date",
               "max_drawdown_trough_date", "max_drawdown_recovery_date", "best_day_date",
               "worst_day_date"]
    for name in figures:
        assert body[name] is None, name
        assert body["reasons"][name], name
    assert "fewer than 2" in body["reasons"]["sharpe_ratio"]
    attribution = client.get(f"{base}/attribution", headers=h).json()
    assert attribution["days"] == [] and attribution["total_pnl"] == 0.0


def test_bad_queries_name_the_field(client: TestClient, seed: Seed) -> None:
    pid = _create(client, seed, BOOK[:1], name="bad")
    base, h = f"/v1/portfolios/{pid}", auth(seed)
    day = seed.as_of.isoformat()
    earlier = (seed.as_of - dt.timedelta(days=5)).isoformat()
    body = assert_error(client.get(f"{base}/performance?risk_free=2", headers=h), 400,
                        field="risk_free")
    assert "0.02" in body["message"]
    for q, field in ((f"window=1M&start={earlier}", "window"), ("window=2W", "window"),
                     (f"start={day}&end={earlier}", "end"), ("benchmark=NOPE", "benchmark"),
                     ("benchmark=a%20b", "benchmark"), ("risk_free=nan", "risk_free"),
                     ("risk_free=-0.2", "risk_free"), ("risk_free=abc", "risk_free"),
                     ("start=yesterday", "start"),
                     (f"start={(seed.as_of + dt.timedelta(days=3)).isoformat()}", "start")):
        assert_error(client.get(f"{base}/performance?{q}", headers=h), 400, field=field)
    later = (seed.as_of + dt.timedelta(days=3)).isoformat()  # no data yet: not an empty answer
    assert_error(client.get(f"{base}/attribution?start={later}", headers=h), 400,
                 "after the data date", field="start")
    assert client.get(f"{base}/performance?risk_free=0.25", headers=h).status_code == 200
    assert_error(client.get(f"{base}/performance", headers=auth(seed, "bob")), 404)
    assert client.get(f"{base}/performance").status_code == 401
