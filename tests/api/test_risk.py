"""The risk routes: ``GET /v1/portfolios/{id}/risk``, ``/risk/history`` and
``/stress-tests/reverse``, on the seeded SQLite database.

The risk answer is recomputed here with ``risk_report`` from ``load_risk_data`` for the
positions the overview reports, σ once more from the dense position covariance
(B Σ Bᵀ + D); the nightly rows are written by the real refresh step; the reverse stress
move is applied through the stress tests' conditional expectation and must lose exactly
the asked share of equity.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient

from tests.api.conftest import Seed, assert_error, auth, position, risk_data


def _create(client: TestClient, seed: Seed, positions: list[dict[str, Any]],
            cash: str = "1000") -> str:
    resp = client.post("/v1/portfolios", json={"name": "risky", "cash": cash,
                                               "positions": positions}, headers=auth(seed))
    assert resp.status_code == 201, resp.text
    return resp.json()["portfolio"]["id"]


BOOK = [position("MKTA", quantity="30"), position("MKTB", quantity="-12"),
        position("MKTC", quantity="7"),
        position("SPY", quantity="2"),  # an ETF held is also one of the model's factors
        position("PRIVATE_FUND_A", investment_class="PRIVATE", manual_value="2500",
                 entry_price="2000", quantity="1")]


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _with_engine(db_url: str, fn: Any) -> Any:
    from core.db.engine import create_engine

    engine = create_engine(db_url)
    try:
        return await fn(engine)
    finally:
        await engine.dispose()


def _close(a: Any, b: Any, path: str = "") -> None:
    """Equal JSON values, floats to 1e-9 relative."""
    if isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float | int):
        assert b == pytest.approx(a, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


def test_risk_answer_is_the_model_of_the_positions(client: TestClient, seed: Seed,
                                                   db_url: str) -> None:
    from core.portfolio.risk import RiskPosition, risk_report

    pid = _create(client, seed, BOOK)
    base, h = f"/v1/portfolios/{pid}", auth(seed)
    resp = client.get(f"{base}/risk", headers=h)
    assert resp.status_code == 200, resp.text
    assert "NaN" not in resp.text and "Infinity" not in resp.text
    answer = resp.json()
    assert answer["data_as_of"] == seed.as_of.isoformat() and answer["stale"] is False
    assert answer["cached"] is True  # computed with the instant snapshot at creation

    overview = client.get(f"{base}/overview", headers=h).json()
    equity = float(overview["snapshot"]["equity"])
    positions = [RiskPosition(p["position_id"], p["symbol"], float(p["quantity"]),
                              float(p["market_value"]),
                              modelled=p["investment_class"] == "PUBLIC")
                 for p in overview["positions"]]
    data = risk_data(db_url, ["MKTA", "MKTB", "MKTC", "SPY"], seed.as_of)
    expected = risk_report(positions, equity, data)
    expected["model"]["factors"] = list(expected["model"]["factors"])
    _close(expected, {k: v for k, v in answer.items()
                      if k not in ("data_as_of", "stale", "cached")})

    # σ from the dense covariance of the covered positions
    col = data.column
    covered = [p for p in positions if p.modelled]
    cols = [col[p.symbol] for p in covered]
    w = np.array([p.market_value for p in covered])
    b = data.beta[cols]
    cov = b @ data.factor_cov @ b.T + np.diag(data.specific_var[cols])
    sigma = math.sqrt(float(w @ cov @ w))
    assert answer["volatility"]["dollar_daily"] == pytest.approx(sigma, rel=1e-10)
    assert answer["volatility"]["daily"] == pytest.approx(sigma / equity, rel=1e-10)
    for rows in (answer["factor_contributions"], answer["position_contributions"]):
        assert sum(r["contribution"] for r in rows) == pytest.approx(
            answer["volatility"]["daily"], rel=1e-10)
    assert answer["model"]["coverage"]["uncovered"] == ["PRIVATE_FUND_A"]
    assert {r["measure"] for r in answer["var"]} == {"var", "es"}
    assert client.get(f"{base}/risk", headers=auth(seed, "bob")).status_code == 404


def test_a_change_is_answered_by_a_new_risk(client: TestClient, seed: Seed) -> None:
    pid = _create(client, seed, BOOK[:1])
    base, h = f"/v1/portfolios/{pid}", auth(seed)
    first = client.get(f"{base}/risk", headers=h).json()
    assert [p["symbol"] for p in first["position_contributions"]] == ["MKTA"]
    client.post(f"{base}/positions", json=position("MKTB", quantity="-5"), headers=h)
    second = client.get(f"{base}/risk", headers=h).json()
    assert [p["symbol"] for p in second["position_contributions"]] == ["MKTA", "MKTB"]


@pytest.mark.parametrize("positions,cash", [
    ([BOOK[-1]], "0"),  # only a private holding: nothing to model
    ([], "0"),          # nothing at all: zero equity
])
def test_books_without_a_model_answer_without_nan(
    client: TestClient, seed: Seed, positions: list[dict[str, Any]], cash: str,
) -> None:
    pid = _create(client, seed, positions, cash)
    base, h = f"/v1/portfolios/{pid}", auth(seed)
    resp = client.get(f"{base}/risk", headers=h)
    assert resp.status_code == 200, resp.text
    assert "NaN" not in resp.text and "Infinity" not in resp.text
    body = resp.json()
    assert body["position_contributions"] == []
    assert body["volatility"]["dollar_daily"] == 0.0
    if cash == "0" and not positions:
        assert body["volatility"]["daily"] is None and body["reason"]
    reverse = client.get(f"{base}/stress-tests/reverse", headers=h)
    assert reverse.status_code == 200, reverse.text
    assert all(r["etf_move"] is None and r["reason"] for r in reverse.json()["losses"])


def _refresh(db_url: str, day: dt.date, pid: str, cash: str) -> Any:
    """The nightly refresh step of ``day`` for one portfolio (its snapshot of the day is
    written again: the instant path already wrote one, so a plan would skip it)."""
    from decimal import Decimal

    from core.portfolio_steps import PortfolioWork, refresh_chunk
    from core.symbol_data import build_scenarios

    async def run(engine: Any) -> Any:
        scenarios = await build_scenarios(day, engine)
        work = [PortfolioWork(pid, Decimal(cash), (day,), None, None)]
        return await refresh_chunk(work, day, scenarios, None, engine)

    return _run(_with_engine(db_url, run))


def test_nightly_rows_are_the_history_and_the_answer(client: TestClient, seed: Seed,
                                                     db_url: str) -> None:
    from tests.flows.helpers import query

    pid = _create(client, seed, BOOK)
    base, h = f"/v1/portfolios/{pid}", auth(seed)
    instant = client.get(f"{base}/risk", headers=h).json()
    report = _refresh(db_url, seed.as_of, pid, "1000")
    assert pid in report.risk and not report.failed
    rows = query(db_url, "SELECT * FROM portfolio_risk WHERE portfolio_id = ?", (pid,))
    assert len(rows) == 1 and rows.date[0] == seed.as_of.isoformat()
    # the refresh dropped the cached answers; the nightly row answers as a hit
    after = client.get(f"{base}/risk", headers=h).json()
    assert after["cached"] is True
    strip = ("data_as_of", "stale", "cached")
    _close({k: v for k, v in instant.items() if k not in strip},
           {k: v for k, v in after.items() if k not in strip})

    history = client.get(f"{base}/risk/history", headers=h)
    assert history.status_code == 200, history.text
    items = history.json()["items"]
    assert [i["date"] for i in items] == [seed.as_of.isoformat()]
    var = next(r for r in after["var"] if (r["measure"], r["method"], r["confidence"],
                                           r["horizon_days"]) == ("var", "parametric", 0.99, 1))
    assert items[0]["var_99_1d"] == pytest.approx(var["value"], rel=1e-12)
    assert items[0]["var_99_1d_pct"] == pytest.approx(var["pct"], rel=1e-12)
    assert items[0]["volatility"] == pytest.approx(after["volatility"], rel=1e-12)
    assert float(rows.var_99_1d[0]) == pytest.approx(var["value"], rel=1e-12)

    # a second refresh of the day leaves the same row
    before = query(db_url, "SELECT * FROM portfolio_risk ORDER BY portfolio_id")
    _refresh(db_url, seed.as_of, pid, "1000")
    assert query(db_url, "SELECT * FROM portfolio_risk ORDER BY portfolio_id").equals(before)

    day = seed.as_of.isoformat()
    later = (seed.as_of + dt.timedelta(days=1)).isoformat()
    assert client.get(f"{base}/risk/history?start={later}", headers=h).json()["items"] == []
    assert len(client.get(f"{base}/risk/history?start={day}&end={day}",
                          headers=h).json()["items"]) == 1
    assert_error(client.get(f"{base}/risk/history?start=yesterday", headers=h), 400,
                 field="start")
    assert_error(client.get(f"{base}/risk/history?start={later}&end={day}", headers=h), 400,
                 field="end")
    assert_error(client.get(f"{base}/risk/history", headers=auth(seed, "bob")), 404)

    # deleting the portfolio for good deletes its risk rows
    from core.services.portfolios import discard_portfolio

    _run(_with_engine(db_url, lambda e: discard_portfolio(e, pid)))
    assert len(query(db_url, "SELECT * FROM portfolio_risk WHERE portfolio_id = ?",
                     (pid,))) == 0


def test_reverse_stress_loses_exactly_the_share_asked(client: TestClient, seed: Seed,
                                                      db_url: str) -> None:
    from core.risk.stress import ETF_INDEX, FACTOR_ETFS, conditional_moves, stress_exposures
    from core.symbol_data import scenarios_at

    pid = _create(client, seed, BOOK)
    base, h = f"/v1/portfolios/{pid}", auth(seed)
    resp = client.get(f"{base}/stress-tests/reverse", headers=h)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["etf"] == "SPY" and [r["loss"] for r in body["losses"]] == [0.1, 0.2]

    equity = float(client.get(f"{base}/overview", headers=h).json()["snapshot"]["equity"])
    fx = client.get(f"{base}/factor-exposures", headers=h).json()["portfolio"]
    cov = _run(_with_engine(db_url, lambda e: scenarios_at(seed.as_of, e))).cov
    dollars = stress_exposures({r["factor"]: r["dollar_exposure"] for r in fx
                                if r["dollar_exposure"] is not None}, cov)
    for etf in ("SPY", "IWM", "TLT"):
        body = client.get(f"{base}/stress-tests/reverse?etf={etf}&loss=0.05&loss=0.3",
                          headers=h).json()
        assert [r["loss"] for r in body["losses"]] == [0.05, 0.3]
        for row in body["losses"]:
            if row["etf_move"] is None:
                assert row["reason"] == "no such move"
                continue
            assert row["loss_amount"] == pytest.approx(row["loss"] * equity, rel=1e-12)
            moves = conditional_moves(cov, {ETF_INDEX[etf]: row["etf_move"]})
            assert float(dollars @ moves) == pytest.approx(-row["loss"] * equity, rel=1e-9)
            assert [row["moves"][e] for e in FACTOR_ETFS] == pytest.approx(moves, rel=1e-12)

    for query_string, field in (("etf=XYZ", "etf"), ("loss=0", "loss"), ("loss=1.5", "loss"),
                                ("loss=nan", "loss"), ("loss=abc", "loss"),
                                ("loss=-0.1", "loss")):
        assert_error(client.get(f"{base}/stress-tests/reverse?{query_string}", headers=h),
                     400, field=field)
    assert client.get(f"{base}/stress-tests/reverse?loss=1", headers=h).status_code == 200
    assert_error(client.get(f"{base}/stress-tests/reverse", headers=auth(seed, "bob")), 404)


def test_a_portfolio_changed_during_the_refresh_is_not_stored_from_the_old_analysis(
        client: TestClient, seed: Seed, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A position added through the API after the refresh read the positions: the risk row
    written is the analysis of the portfolio with the new position (its hash and rows)."""
    from decimal import Decimal

    from core import portfolio_steps
    from core.portfolio_steps import PortfolioWork, refresh_chunk
    from core.symbol_data import build_scenarios
    from tests.flows.helpers import query

    pid = _create(client, seed, BOOK[:1])
    base, h = f"/v1/portfolios/{pid}", auth(seed)
    real = portfolio_steps.load_symbol_data
    added: list[int] = []

    async def api_write_meanwhile(*args: Any, **kwargs: Any) -> Any:
        if not added:  # the first analysis only: the second one must see it
            added.append(client.post(f"{base}/positions", json=position("MKTB", quantity="-5"),
                                     headers=h).status_code)
        return await real(*args, **kwargs)

    monkeypatch.setattr(portfolio_steps, "load_symbol_data", api_write_meanwhile)

    async def run(engine: Any) -> Any:
        scenarios = await build_scenarios(seed.as_of, engine)
        return await refresh_chunk([PortfolioWork(pid, Decimal("1000"), (seed.as_of,), None,
                                                  None)], seed.as_of, scenarios, None, engine)

    report = _run(_with_engine(db_url, run))
    assert added == [201] and report.refreshed == 1 and not report.failed, report
    monkeypatch.undo()
    rows = query(db_url, "SELECT payload FROM portfolio_risk WHERE portfolio_id = ?", (pid,))
    assert len(rows) == 1
    stored = json.loads(rows.payload[0])
    assert stored["positions"]["symbol"] == ["MKTA", "MKTB"]
    answer = client.get(f"{base}/risk", headers=h).json()
    assert [p["symbol"] for p in answer["position_contributions"]] == ["MKTA", "MKTB"]


def test_the_instant_risk_cache_reads_like_a_fresh_load_until_a_batch_completes(
        db_url: str, seed: Seed, monkeypatch: pytest.MonkeyPatch) -> None:
    """The instant path's cached risk columns equal an uncached read of the same symbols,
    whichever requests filled them; a price corrected by a symbol batch that then completes
    (a rerun of an older date) is read at once, never the stale column; the stress
    scenarios, kept the same way, are built again."""
    import sqlite3

    from core import symbol_data
    from core.symbol_data import load_risk_data
    from tests.flows.helpers import db_path

    monkeypatch.setattr(symbol_data, "DATA_DATE_TTL", 0.0)

    def load(symbols: list[str], cached: bool) -> Any:
        return _run(_with_engine(db_url, lambda e: load_risk_data(symbols, seed.as_of, e,
                                                                  cached=cached)))

    def same(a: Any, b: Any) -> None:
        assert a.symbols == b.symbols
        for name in ("beta", "specific_var", "history", "factor_history", "factor_cov",
                     "benchmark_beta", "adv"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-12,
                                       atol=1e-15, err_msg=name)
        assert a.benchmark_specific_var == pytest.approx(b.benchmark_specific_var, rel=1e-12)

    def scenarios() -> Any:
        from core.symbol_data import scenarios_at

        return _run(_with_engine(db_url, lambda e: scenarios_at(seed.as_of, e)))

    kept_scenarios = scenarios()
    assert scenarios() is kept_scenarios  # built once per data version
    load(["MKTA", "MKTB"], True)
    both = ["MKTA", "MKTC", "SPY", "NOSUCH"]  # half cached; one symbol without any price
    same(load(both, True), load(both, False))
    again = load(both, True)
    assert math.isnan(again.specific_var[again.symbols.index("NOSUCH")])

    con = sqlite3.connect(db_path(db_url))
    try:
        day = con.execute("SELECT max(date) FROM prices WHERE symbol = 'MKTA' AND date < ?",
                          (seed.as_of.isoformat(),)).fetchone()[0]
        con.execute("UPDATE prices SET adj_close = adj_close * 1.25 WHERE symbol = 'MKTA' "
                    "AND date = ?", (day,))
        con.commit()
        stale = load(["MKTA"], True)  # no batch completed since: the kept column
        con.execute("UPDATE batch_runs SET finished_at = ? WHERE id = (SELECT id FROM "
                    "batch_runs WHERE job_type = 'symbol-batch' ORDER BY finished_at DESC "
                    "LIMIT 1)", (dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(
                        sep=" "),))
        con.commit()
    finally:
        con.close()
    fresh = load(["MKTA"], False)
    assert not np.allclose(stale.history, fresh.history, equal_nan=True)
    same(load(["MKTA"], True), fresh)
    assert scenarios() is not kept_scenarios  # the scenarios are built again too
