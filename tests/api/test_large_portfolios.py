"""Large portfolios through the real app: a 1,000-position create answers correctly, the
correlations answer stays a sensible size (the full matrix on request), the event loop keeps
answering while a large create is computed (the instant answers against the nightly
refresh's rows: tests/flows/test_instant_equals_nightly.py, which uses this module's data).

Every number is checked against an independent computation from rows read back with plain
SQL: equity as a Decimal sum of quantity × stored close, factor betas as value-weighted sums
of the stored symbol betas, correlations with ``numpy.corrcoef`` of the stored closes' log
returns. The database (1,010 synthetic symbols, ~1 year of prices, their factors, a
completed symbol batch) is built once per module and copied for each test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import threading
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient

from tests.api.conftest import seed_symbol_data
from tests.conftest import sqlite_url
from tests.flows.helpers import query

UNIVERSE = 1010
POSITIONS = 1000
Q4 = Decimal("0.0001")


async def _build(url: str, as_of: dt.date) -> str:
    from core.db.engine import create_engine
    from core.providers.synthetic import SyntheticProvider
    from core.services import users

    engine = create_engine(url)
    try:
        await seed_symbol_data(engine, SyntheticProvider().universe(UNIVERSE), as_of)
        _, token = await users.create_user(engine, "alice")
        return token
    finally:
        await engine.dispose()


class Large:
    """The module's template database and what the tests need of it."""

    def __init__(self, path: Path, as_of: dt.date, token: str) -> None:
        self.path, self.as_of, self.token = path, as_of, token
        url = sqlite_url(path)
        self.sessions = _window_sessions(as_of)
        prices = query(url, "SELECT symbol, date, close, adj_close FROM prices WHERE date >= ?",
                       (self.sessions[0].isoformat(),))
        self.adj = prices.pivot(index="date", columns="symbol", values="adj_close")
        self.adj = self.adj.reindex([d.isoformat() for d in self.sessions])
        closes = prices[prices.date == as_of.isoformat()]
        self.close = dict(zip(closes.symbol, closes.close, strict=True))
        betas = query(url, "SELECT symbol, factor, beta FROM symbol_factor_exposures "
                      "WHERE date = ? AND beta IS NOT NULL", (as_of.isoformat(),))
        self.betas = betas.pivot(index="symbol", columns="factor", values="beta")
        equities = set(query(url, "SELECT symbol FROM symbols WHERE kind = 'equity' "
                                  "AND status = 'active'").symbol)
        complete = self.adj.columns[self.adj.notna().all()]
        # 1,000 symbols with a close, a market beta and every price of the 90-day window
        self.symbols = sorted(s for s in complete if s in equities and s in self.close
                              and s in self.betas.index
                              and np.isfinite(self.betas.loc[s, "market_beta"]))[:POSITIONS]
        gappy = [s for s in self.adj.columns if s in equities and s not in complete
                 and s in self.close and s in self.betas.index]
        self.gappy = sorted(gappy)


def _window_sessions(as_of: dt.date) -> list[dt.date]:
    from core import calendar
    from core.portfolio.analytics import CORRELATION_WINDOW

    return calendar.trading_days_between(calendar.sessions_back(as_of, CORRELATION_WINDOW),
                                         as_of)


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Large:
    from core import calendar
    from core.db import migrate

    path = tmp_path_factory.mktemp("large-template") / "factorflow.db"
    migrate.upgrade(sqlite_url(path))
    as_of = calendar.latest_completed_session()
    token = asyncio.run(_build(sqlite_url(path), as_of))
    seed = Large(path, as_of, token)
    assert len(seed.symbols) == POSITIONS, len(seed.symbols)
    assert seed.gappy, "the synthetic universe has a symbol with gaps (GAPY)"
    return seed


@pytest.fixture
def large_url(large: Large, tmp_path: Path, settings_env: pytest.MonkeyPatch) -> str:
    from tests.api.conftest import private_copy

    return private_copy(large.path, tmp_path, settings_env)


@pytest.fixture
def large_client(large_url: str, dispatched: Any) -> Iterator[TestClient]:
    from api.app import create_app

    with TestClient(create_app(large_url), timeout=300) as c:
        yield c


def _body(large: Large, symbols: list[str], name: str, seed: int = 3) -> dict[str, Any]:
    """Long and short positions entered on the data date (no split between entry and it)."""
    rng = random.Random(seed)
    return {"name": name, "cash": "250000.5", "positions": [
        {"symbol": s, "quantity": str(rng.randint(1, 400) * (-1 if rng.random() < 0.25 else 1)),
         "entry_date": large.as_of.isoformat(), "entry_price": f"{rng.uniform(5, 300):.2f}"}
        for s in symbols]}


def _h(large: Large) -> dict[str, str]:
    return {"Authorization": f"Bearer {large.token}"}


def _money(x: Decimal) -> Decimal:
    return x.quantize(Q4, rounding=ROUND_HALF_EVEN)


class Independent:
    """The portfolio's numbers computed here from the stored closes and betas."""

    def __init__(self, large: Large, body: dict[str, Any]) -> None:
        self.cash = Decimal(body["cash"])
        qty: dict[str, Decimal] = {}
        for p in body["positions"]:
            qty[p["symbol"]] = qty.get(p["symbol"], Decimal(0)) + Decimal(p["quantity"])
        self.mv = {s: _money(q * Decimal(str(round(float(large.close[s]), 6))))
                   for s, q in qty.items()}
        self.market_value = sum(self.mv.values(), Decimal(0))
        self.equity = self.cash + self.market_value
        self.long = sum((v for v in self.mv.values() if v > 0), Decimal(0))
        self.short = sum((v for v in self.mv.values() if v < 0), Decimal(0))
        self.cost = sum((_money(Decimal(p["quantity"]) * Decimal(p["entry_price"]))
                         for p in body["positions"]), Decimal(0))
        self.symbols = sorted(self.mv)
        mv = np.array([float(self.mv[s]) for s in self.symbols])
        eq = float(self.equity)
        self.betas = {}
        self.dollars = {}
        for f in large.betas.columns:
            b = large.betas.reindex(self.symbols)[f].to_numpy(dtype=float)
            ok = np.isfinite(b)
            self.dollars[f] = float(np.sum(mv[ok] * b[ok]))
            self.betas[f] = self.dollars[f] / eq
        prices = large.adj[self.symbols].to_numpy(dtype=float)  # shape: (91, P)
        rets = np.diff(np.log(prices), axis=0)
        self.corr = np.corrcoef(rets, rowvar=False)
        aw = np.abs(mv) / eq
        ww = np.outer(aw, aw)
        np.fill_diagonal(ww, 0.0)
        self.average = float((ww * self.corr).sum() / ww.sum())
        a = aw / aw.sum()
        self.effective = float(1.0 / np.sum(a * a))


def test_thousand_position_create_answers_the_independent_numbers(
    large_client: TestClient, large: Large
) -> None:
    body = _body(large, large.symbols, "big")
    resp = large_client.post("/v1/portfolios", json=body, headers=_h(large))
    assert resp.status_code == 201, resp.text[:500]
    created = resp.json()
    want = Independent(large, body)
    snap = created["snapshot"]
    assert snap["date"] == large.as_of.isoformat()
    assert snap["position_count"] == POSITIONS and snap["partial"] is False
    assert Decimal(snap["equity"]) == want.equity
    assert Decimal(snap["market_value"]) == want.market_value
    assert Decimal(snap["long_exposure"]) == want.long
    assert Decimal(snap["short_exposure"]) == want.short
    assert Decimal(snap["cost_basis"]) == want.cost
    assert created["pending_symbols"] == []
    factors = {r["factor"]: r for r in created["factor_exposures"]["portfolio"]}
    assert set(factors) == set(want.betas)
    for f, row in factors.items():
        assert row["beta"] == pytest.approx(want.betas[f], rel=1e-9, abs=1e-12), f
        assert row["dollar_exposure"] == pytest.approx(want.dollars[f], rel=1e-9, abs=1e-9), f
    assert factors["market_beta"]["covered_share"] == pytest.approx(1.0)

    base = f"/v1/portfolios/{created['portfolio']['id']}"
    overview = large_client.get(f"{base}/overview", headers=_h(large)).json()
    assert overview["cached"] is True
    assert overview["market_beta"] == pytest.approx(want.betas["market_beta"], rel=1e-9)
    by_symbol = {p["symbol"]: Decimal(p["market_value"]) for p in overview["positions"]}
    assert by_symbol == want.mv

    # the default correlations answer: summary and clusters, no matrix; computed on the
    # first request (the create does not wait for it), cached after
    default = large_client.get(f"{base}/correlations", headers=_h(large))
    assert default.status_code == 200
    summary = default.json()
    assert summary["cached"] is False
    again = large_client.get(f"{base}/correlations", headers=_h(large)).json()
    assert again["cached"] is True and again["symbols"] == summary["symbols"]
    assert summary["matrix"] is None and summary["symbols"] == want.symbols
    assert len(default.content) < 100_000  # the full answer is ~13 MB
    assert summary["repaired"] is False and summary["insufficient_pairs"] == []
    assert summary["average_correlation"] == pytest.approx(want.average, rel=1e-9)
    assert summary["effective_positions"] == pytest.approx(want.effective, rel=1e-9)
    # the full matrix on request, equal to numpy's of the stored prices
    full = large_client.get(f"{base}/correlations?matrix=full", headers=_h(large)).json()
    assert full["symbols"] == want.symbols
    np.testing.assert_allclose(np.array(full["matrix"], dtype=float), want.corr,
                               rtol=0, atol=1e-9)
    for key in ("average_correlation", "effective_positions", "clusters", "repaired"):
        assert full[key] == summary[key], key
    assert large_client.get(f"{base}/correlations?matrix=none",
                            headers=_h(large)).json()["matrix"] is None
    bad = large_client.get(f"{base}/correlations?matrix=half", headers=_h(large))
    assert bad.status_code == 400 and bad.json()["field"] == "matrix", bad.text


def test_small_portfolio_keeps_its_matrix_by_default(large_client: TestClient,
                                                     large: Large) -> None:
    body = _body(large, large.symbols[:5], "small")
    pid = large_client.post("/v1/portfolios", json=body, headers=_h(large)).json()[
        "portfolio"]["id"]
    want = Independent(large, body)
    corr = large_client.get(f"/v1/portfolios/{pid}/correlations", headers=_h(large)).json()
    np.testing.assert_allclose(np.array(corr["matrix"]), want.corr, rtol=0, atol=1e-9)
    none = large_client.get(f"/v1/portfolios/{pid}/correlations?matrix=none",
                            headers=_h(large)).json()
    assert none["matrix"] is None and none["symbols"] == want.symbols


def test_the_event_loop_answers_while_a_large_create_is_computed(
    large_client: TestClient, large: Large, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The analysis of a 1,000-position create is held until /health/live has answered: on
    the event loop it would hold the loop, /health/live could not answer, and the gate would
    only open on its deadline (the test then fails: ``released_by_live`` is False)."""
    from core.services import analytics as analytics_service
    analysing = threading.Event()
    live_answered = threading.Event()
    released_by_live: list[bool] = []
    real = analytics_service.analyse_portfolio

    def gated(*args: Any, **kwargs: Any) -> Any:
        analysing.set()
        released_by_live.append(live_answered.wait(timeout=60))
        return real(*args, **kwargs)

    monkeypatch.setattr(analytics_service, "analyse_portfolio", gated)
    done: list[str] = []
    result: dict[str, Any] = {}

    def create() -> None:
        result["resp"] = large_client.post("/v1/portfolios", json=_body(large, large.symbols,
                                                                        "gated"),
                                           headers=_h(large))
        done.append("create")

    worker = threading.Thread(target=create)
    worker.start()
    try:
        assert analysing.wait(timeout=120), "the create never reached its analysis"
        live = large_client.get("/health/live")
        done.append("live")
        live_answered.set()
    finally:
        live_answered.set()
        worker.join(timeout=300)
    assert live.status_code == 200
    assert result["resp"].status_code == 201, result["resp"].text[:300]
    assert released_by_live == [True]  # /health/live answered while the create was held
    assert done == ["live", "create"]
