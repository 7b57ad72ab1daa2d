"""The portfolio flow end to end on a real Prefect test server and a migrated database (SQLite,
and PostgreSQL when configured).

Every stored number is recomputed here from rows read back with plain SQL: snapshot P&L
by hand with Decimal (a short, a position opened mid-range, an exit, a private position, a
missing price), factor aggregation from the stored symbol betas, correlations with pandas,
and stress P&L with the direct conditional-expectation formula on an EWMA covariance
computed here with an explicit loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from core import calendar
from core.db.engine import transaction
from core.portfolio_steps import SymbolBatchNotReady
from core.repositories import portfolios as repo
from core.repositories import users as user_repo
from core.symbol_steps import register_universe
from tests.flows.helpers import adj_close_matrix, query, table_rows
from tests.flows.test_symbol_batch import _wait_for_event

D0 = dt.date(2026, 11, 10)
D1, D2, D3 = dt.date(2026, 11, 17), dt.date(2026, 11, 18), dt.date(2026, 11, 19)
Q = Decimal("0.0001")
ETFS = ["SPY", "TLT", "VTV", "VUG", "MTUM", "QUAL", "IWM", "USMV"]
STYLE = {"value": "VTV", "growth": "VUG", "momentum": "MTUM", "quality": "QUAL", "size": "IWM",
         "low_volatility": "USMV"}

pytestmark = pytest.mark.usefixtures("prefect_harness")


def close(url: str, symbol: str, day: dt.date) -> Decimal:
    v = query(url, "SELECT close FROM prices WHERE symbol=? AND date=?",
              (symbol, day.isoformat())).close[0]
    return Decimal(str(round(float(v), 6)))


def m(x: Decimal) -> Decimal:
    return x.quantize(Q)


async def _seed(url: str) -> dict[str, str]:
    async with transaction() as conn:
        u1 = await user_repo.create_user(conn, "alice", "h1")
        u2 = await user_repo.create_user(conn, "bob", "h2")
        p1 = await repo.create_portfolio(conn, u1, "book", Decimal("10000"), [
            {"id": "A", "symbol": "MKTA", "quantity": Decimal(100), "entry_date": D0,
             "entry_price": Decimal("50")},
            {"id": "B", "symbol": "MKTB", "quantity": Decimal(-40), "entry_date": D0,
             "entry_price": Decimal("80")},
            {"id": "C", "symbol": "ABCD", "quantity": Decimal(30), "entry_date": D2,
             "entry_price": Decimal("20.5")},
            {"id": "D", "symbol": "EFGH", "quantity": Decimal(10), "entry_date": D0,
             "entry_price": Decimal("30"), "exit_date": D2, "exit_price": Decimal("33.3")},
            {"id": "E", "symbol": "PRIVATE_FUND_A", "quantity": Decimal(1), "entry_date": D0,
             "entry_price": Decimal("25000"), "investment_class": "PRIVATE",
             "manual_value": Decimal("27500")},
            {"id": "F", "symbol": "NOPX.X", "quantity": Decimal(10), "entry_date": D0,
             "entry_price": Decimal("12.5")},
        ])
        p2 = await repo.create_portfolio(conn, u2, "simple", Decimal("500"), [
            {"id": "G", "symbol": "MKTA", "quantity": Decimal(50), "entry_date": D0,
             "entry_price": Decimal("49")}])
        p3 = await repo.create_portfolio(conn, u2, "broken", Decimal("0"), [
            {"id": "H", "symbol": "MKTB", "quantity": Decimal(5), "entry_date": D2,
             "entry_price": Decimal("10"), "exit_date": D1}])  # exit before entry
    return {"p1": p1, "p2": p2, "p3": p3}


@pytest.fixture
def seeded(database_url: str) -> dict[str, str]:
    from flows.symbol_batch import symbol_batch

    asyncio.run(register_universe(["MKTA", "MKTB", "ABCD", "EFGH", "NOPX.X", "PRIVATE_FUND_A"]))
    symbol_batch(start=D1, end=D3)
    return asyncio.run(_seed(database_url))


def snap(url: str, pid: str, day: dt.date) -> pd.Series:
    return query(url, "SELECT * FROM portfolio_snapshots WHERE portfolio_id=? AND date=?",
                 (pid, day.isoformat())).iloc[0]


def test_snapshots_backfill_and_hand_computed_pnl(database_url: str, seeded: dict) -> None:
    from flows.portfolio_refresh import portfolio_refresh

    url, p1 = database_url, seeded["p1"]
    first = portfolio_refresh(as_of=D1)
    # the broken portfolio fails alone, with its reason; 1 of 3 > 10 %: degraded alert
    assert first["counts"]["refreshed"] == 2 and first["counts"]["failed"] == 1
    assert "exit" in first["errors"]["portfolios"][seeded["p3"]]
    assert first["degraded"] is True
    event = _wait_for_event("factorflow.portfolio-refresh.degraded", first["run_id"])
    assert event.payload["failed"] == 1 and event.payload["total"] == 3

    c = {(s, d): close(url, s, d) for s in ("MKTA", "MKTB", "ABCD", "EFGH") for d in (D1, D2, D3)}
    a1, b1, d1 = m(100 * c["MKTA", D1]), m(-40 * c["MKTB", D1]), m(10 * c["EFGH", D1])
    e = Decimal("27500")
    s1 = snap(url, p1, D1)
    assert Decimal(s1.equity) == Decimal("10000") + a1 + b1 + d1 + e
    assert Decimal(s1.cost_basis) == Decimal(5000 - 3200 + 300 + 25000)
    assert Decimal(s1.unrealized_pnl) == a1 + b1 + d1 + e - Decimal(5000 - 3200 + 300 + 25000)
    assert s1.daily_pnl is None and s1.partial == 1 and "NOPX.X" in s1.missing_symbols
    assert Decimal(s1.long_exposure) == a1 + d1 + e and Decimal(s1.short_exposure) == b1
    assert Decimal(s1.gross_exposure) == a1 + d1 + e - b1

    second = portfolio_refresh(as_of=D3)  # backfills D2 and D3
    assert second["counts"]["snapshots"] == 4  # p1 and p2, two days each
    dates = set(query(url, "SELECT date FROM portfolio_snapshots WHERE portfolio_id=?",
                      (p1,)).date)
    assert dates == {D1.isoformat(), D2.isoformat(), D3.isoformat()}

    s2 = snap(url, p1, D2)
    pnl2 = (m(100 * c["MKTA", D2]) - a1) + (m(-40 * c["MKTB", D2]) - b1) \
        + (m(30 * c["ABCD", D2]) - m(Decimal(30) * Decimal("20.5"))) \
        + (m(Decimal(10) * Decimal("33.3")) - d1)
    assert Decimal(s2.daily_pnl) == pnl2
    assert s2.daily_return == pytest.approx(float(pnl2 / Decimal(s1.equity)), rel=1e-12)
    assert Decimal(s2.equity) == Decimal("10000") + m(100 * c["MKTA", D2]) \
        + m(-40 * c["MKTB", D2]) + m(30 * c["ABCD", D2]) + e
    s3 = snap(url, p1, D3)
    pnl3 = sum((m(q * c[s, D3]) - m(q * c[s, D2]) for s, q in
                (("MKTA", 100), ("MKTB", -40), ("ABCD", 30))), Decimal(0))
    assert Decimal(s3.daily_pnl) == pnl3

    # position market values are those of the last snapshot
    pos = query(url, "SELECT id, market_value, market_value_date FROM positions "
                "WHERE portfolio_id=?", (p1,)).set_index("id")
    assert Decimal(pos.loc["A", "market_value"]) == m(100 * c["MKTA", D3])
    assert pos.loc["A", "market_value_date"] == D3.isoformat()
    assert Decimal(pos.loc["E", "market_value"]) == e

    _check_factor_aggregation(url, p1)
    _check_correlations(url, p1)
    _check_stress(url, p1)

    # idempotent: a rerun changes no row
    before = _portfolio_tables(url)
    third = portfolio_refresh(as_of=D3)
    assert third["counts"]["up_to_date"] == 2 and third["counts"]["refreshed"] == 0
    assert _portfolio_tables(url) == before


def _portfolio_tables(url: str) -> dict[str, list]:
    return table_rows(url, (
        "portfolio_snapshots", "portfolio_factor_exposures", "portfolio_sector_exposures",
        "portfolio_correlations", "stress_test_results", "positions"))


def _valued_positions(url: str, pid: str) -> pd.DataFrame:
    return query(url, "SELECT id, symbol, investment_class, market_value FROM positions WHERE "
                 "portfolio_id=? AND market_value_date=?", (pid, D3.isoformat()))


def _check_factor_aggregation(url: str, pid: str) -> None:
    pos = _valued_positions(url, pid)
    pos = pos[pos.market_value.notna()]  # the position without a price counts nowhere
    equity = float(snap(url, pid, D3).equity)
    betas = query(url, "SELECT symbol, factor, beta FROM symbol_factor_exposures WHERE date=?",
                  (D3.isoformat(),)).pivot(index="symbol", columns="factor", values="beta")
    stored = query(url, "SELECT * FROM portfolio_factor_exposures WHERE portfolio_id=? AND "
                   "date=?", (pid, D3.isoformat())).set_index("factor")
    mv = pos.market_value.astype(float).to_numpy()
    for factor in ("market_beta", "value", "size_spread"):
        b = np.array([betas.loc[s, factor] if (cls == "PUBLIC" and s in betas.index) else np.nan
                      for s, cls in zip(pos.symbol, pos.investment_class, strict=True)])
        covered = np.isfinite(b)
        assert stored.loc[factor, "beta"] == pytest.approx(
            float(np.sum(mv[covered] / equity * b[covered])), rel=1e-12)
        assert stored.loc[factor, "dollar_exposure"] == pytest.approx(
            float(np.sum(mv[covered] * b[covered])), rel=1e-12)
        assert stored.loc[factor, "covered_share"] == pytest.approx(
            float(np.abs(mv[covered]).sum() / np.abs(mv).sum()), rel=1e-12)
    sectors = query(url, "SELECT sector, value FROM portfolio_sector_exposures WHERE "
                    "portfolio_id=? AND date=?", (pid, D3.isoformat())).set_index("sector")
    assert sectors.loc["Private", "value"] == pytest.approx(27500.0)


def _check_correlations(url: str, pid: str) -> None:
    row = query(url, "SELECT * FROM portfolio_correlations WHERE portfolio_id=? AND date=?",
                (pid, D3.isoformat())).iloc[0]
    import json

    symbols = json.loads(row.symbols)
    assert symbols == ["ABCD", "MKTA", "MKTB"]
    sessions = calendar.sessions_ending_at(D3, 91)
    prices = adj_close_matrix(url, symbols, sessions)
    expected = np.log(prices / prices.shift(1)).corr(min_periods=20).to_numpy()
    assert np.allclose(np.array(json.loads(row.matrix)), expected, atol=1e-9)
    assert not row.repaired


def _ewma_cov(returns: np.ndarray, lam: float = 0.94) -> np.ndarray:
    r = returns[-252:]
    r = r[np.isfinite(r).all(axis=1)]
    n = len(r)
    w = np.array([lam ** (n - 1 - t) for t in range(n)])
    w /= w.sum()
    mean = sum(w[t] * r[t] for t in range(n))
    return sum(w[t] * np.outer(r[t] - mean, r[t] - mean) for t in range(n))


def _check_stress(url: str, pid: str) -> None:
    sessions = calendar.sessions_ending_at(D3, 253)
    prices = adj_close_matrix(url, ETFS, sessions).to_numpy()
    cov = _ewma_cov(prices[1:] / prices[:-1] - 1)
    dollars = query(url, "SELECT factor, dollar_exposure FROM portfolio_factor_exposures "
                    "WHERE portfolio_id=? AND date=?", (pid, D3.isoformat())).set_index(
                        "factor").dollar_exposure.fillna(0)
    x = np.zeros(8)
    for f, etf in STYLE.items():
        x[ETFS.index(etf)] = dollars[f]
    t = ETFS.index("TLT")
    x[t] = dollars["ir_beta"] - sum(x[ETFS.index(e)] * cov[ETFS.index(e), t] / cov[t, t]
                                    for e in STYLE.values())
    stored = query(url, "SELECT scenario, pnl, available FROM stress_test_results WHERE "
                   "portfolio_id=? AND date=?", (pid, D3.isoformat())).set_index("scenario")
    # market -10 %: unshocked ETFs move by Σ_os Σ_ss⁻¹ s
    s_idx = [ETFS.index("SPY")]
    o_idx = [i for i in range(8) if i not in s_idx]
    moves = np.zeros(8)
    moves[s_idx] = -0.10
    moves[o_idx] = cov[np.ix_(o_idx, s_idx)] @ np.linalg.inv(cov[np.ix_(s_idx, s_idx)]) @ [-0.10]
    assert stored.loc["market_down_10", "pnl"] == pytest.approx(float(x @ moves), rel=1e-6)
    # value rotation: two shocked factors
    s_idx = [ETFS.index("VTV"), ETFS.index("VUG")]
    o_idx = [i for i in range(8) if i not in s_idx]
    shock = np.array([0.05, -0.05])
    moves = np.zeros(8)
    moves[s_idx] = shock
    moves[o_idx] = cov[np.ix_(o_idx, s_idx)] @ np.linalg.inv(cov[np.ix_(s_idx, s_idx)]) @ shock
    assert stored.loc["value_rotation", "pnl"] == pytest.approx(float(x @ moves), rel=1e-6)
    # the Covid replay uses the ETFs' actual returns over the window
    window = calendar.trading_days_between(dt.date(2020, 2, 19), dt.date(2020, 3, 23))
    replay = adj_close_matrix(url, ETFS, [window[0], window[-1]]).to_numpy()
    assert stored.loc["covid_crash_2020", "pnl"] == pytest.approx(
        float(x @ (replay[1] / replay[0] - 1)), rel=1e-6)
    # synthetic history starts in 2015: the 2008 replay is unavailable, with a reason
    assert not stored.loc["gfc_2008", "available"]


def test_refresh_refuses_a_date_without_symbol_batch(database_url: str, seeded: dict) -> None:
    from flows.portfolio_refresh import portfolio_refresh

    with pytest.raises(SymbolBatchNotReady, match="2026-11-20"):
        portfolio_refresh(as_of=dt.date(2026, 11, 20))
    run = query(database_url, "SELECT status, error_summary FROM batch_runs WHERE "
                "job_type='portfolio-refresh'").iloc[0]
    assert run.status == "failed" and "SymbolBatchNotReady" in run.error_summary
    assert query(database_url, "SELECT COUNT(*) AS n FROM portfolio_snapshots").n[0] == 0
