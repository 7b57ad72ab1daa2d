"""Concurrent writes to one portfolio, through the real app and its pooled engine, on SQLite
and PostgreSQL: whatever the interleaving, the stored snapshot (``latest_snapshot``, the
list's ``latest_equity``, ``/snapshots``), the position values and the analytics equal those
of a portfolio built one write at a time with the same final state, and no request answers
5xx (a deadlock or serialization failure is retried inside the server)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.api.conftest import Seed, _build, position
from tests.recording_launcher import RecordingLauncher

ROUNDS = 2
"""Rounds of concurrent writes, each on a new portfolio (every round interleaves anew)."""
CENT = Decimal("0.0001")
"""Money is stored to 4 places, each position rounded half-even before summing."""
SNAPSHOT_MONEY = ("equity", "market_value", "cash", "cost_basis", "unrealized_pnl",
                  "long_exposure", "short_exposure", "gross_exposure", "net_exposure")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, seed: Seed, tmp_path: Path,
           settings_env: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, str]]]:
    """(database URL, tokens): a copy of the SQLite template, or a seeded PostgreSQL
    database."""
    if request.param == "sqlite":
        import shutil

        from tests.conftest import sqlite_url

        shutil.copyfile(seed.path, tmp_path / "factorflow.db")
        url = sqlite_url(tmp_path / "factorflow.db")
        settings_env.setenv("FACTORFLOW_DATABASE_URL", url)
        yield url, seed.tokens
        return
    from core import calendar
    from core.db import migrate
    from tests.conftest import fresh_postgres_database

    with fresh_postgres_database() as url:
        migrate.upgrade(url)
        tokens, _ = asyncio.run(_build(url, calendar.latest_completed_session()))
        settings_env.setenv("FACTORFLOW_DATABASE_URL", url)
        yield url, tokens


def _closes(url: str, as_of: dt.date) -> dict[str, Decimal]:
    """Raw closes of ``as_of`` read straight from the prices table (independent of the app)."""
    from core.db.engine import create_engine

    async def read() -> dict[str, Decimal]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                rows = (await conn.execute(sa.text(
                    "SELECT symbol, close FROM prices WHERE date = :d"), {"d": as_of})).all()
        finally:
            await engine.dispose()
        return {s: Decimal(str(c)) for s, c in rows}

    return asyncio.run(read())


def _numbers(snap: dict[str, Any]) -> dict[str, Any]:
    """A snapshot's values, money as Decimal (text formats differ between answers)."""
    out = {k: (Decimal(snap[k]) if snap[k] is not None else None) for k in SNAPSHOT_MONEY}
    out.update(date=snap["date"], position_count=snap["position_count"],
               partial=snap["partial"])
    return out


def _position_key(p: dict[str, Any]) -> tuple[Any, ...]:
    return (p["symbol"], Decimal(p["quantity"]), p["entry_date"], Decimal(p["entry_price"]))


async def _state(c: httpx.AsyncClient, h: dict[str, str], pid: str) -> dict[str, Any]:
    """Everything stored or answered about ``pid`` that must be consistent."""
    pf = (await c.get(f"/v1/portfolios/{pid}", headers=h)).json()
    listed = next(i for i in (await c.get("/v1/portfolios?limit=200", headers=h)).json()[
        "items"] if i["id"] == pid)
    snaps = (await c.get(f"/v1/portfolios/{pid}/snapshots", headers=h)).json()["items"]
    overview = (await c.get(f"/v1/portfolios/{pid}/overview", headers=h)).json()
    return {"portfolio": pf, "listed": listed, "snapshots": snaps, "overview": overview}


async def _check_against_reference(c: httpx.AsyncClient, h: dict[str, str], pid: str,
                                   closes: dict[str, Decimal], name: str) -> None:
    """``pid``'s stored snapshot, positions and analytics equal those of a new portfolio
    created one write at a time with the same cash and positions."""
    got = await _state(c, h, pid)
    pf = got["portfolio"]
    ref = await c.post("/v1/portfolios", headers=h, json={"name": name, "cash": pf["cash"]})
    assert ref.status_code == 201, ref.text
    rid = ref.json()["portfolio"]["id"]
    for p in pf["positions"]:  # one at a time, as a careful client would
        resp = await c.post(f"/v1/portfolios/{rid}/positions", headers=h, json={
            k: p[k] for k in ("symbol", "quantity", "entry_date", "entry_price")})
        assert resp.status_code == 201, resp.text
    want = await _state(c, h, rid)

    stored = _numbers(pf["latest_snapshot"])
    assert stored == _numbers(want["portfolio"]["latest_snapshot"])
    assert stored["position_count"] == len(pf["positions"])
    assert Decimal(got["listed"]["latest_equity"]) == stored["equity"]
    assert len(got["snapshots"]) == 1 and _numbers(got["snapshots"][-1]) == stored
    assert _numbers(got["overview"]["snapshot"]) == stored
    assert got["overview"]["market_beta"] == pytest.approx(want["overview"]["market_beta"])
    # every position valued at quantity × the stored close, as in the reference
    mine = sorted((_position_key(p), Decimal(p["market_value"])) for p in pf["positions"])
    theirs = sorted((_position_key(p), Decimal(p["market_value"]))
                    for p in want["portfolio"]["positions"])
    assert mine == theirs
    for p in pf["positions"]:
        exact = Decimal(p["quantity"]) * closes[p["symbol"]]
        assert Decimal(p["market_value"]) == exact.quantize(CENT, ROUND_HALF_EVEN), p
    total = sum((Decimal(p["market_value"]) for p in pf["positions"]), Decimal(0))
    assert stored["market_value"] == total
    assert stored["equity"] == Decimal(pf["cash"]) + total


def _ok(responses: list[Any]) -> None:
    bad = [(r.status_code, r.text[:300]) for r in responses if r.status_code >= 300]
    assert not bad, bad


async def _scenario(url: str, tokens: dict[str, str], closes: dict[str, Decimal],
                    tickers: tuple[str, ...]) -> None:
    from api.app import create_app

    h = {"Authorization": f"Bearer {tokens['alice']}"}
    app = create_app(url)
    # httpx over the ASGI app in this event loop (litestar's httpx.AsyncClient runs requests
    # one at a time): the requests interleave as on a real server, over the pooled engine
    async with app.lifespan(), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=120) as c:
        for rnd in range(ROUNDS):
            created = await c.post("/v1/portfolios", headers=h, json={
                "name": f"race-{rnd}", "cash": "1000"})
            assert created.status_code == 201, created.text
            pid = created.json()["portfolio"]["id"]
            base = f"/v1/portfolios/{pid}"

            # 20 positions added at once (distinct quantities: each one is recognisable)
            _ok(await asyncio.gather(*[
                c.post(f"{base}/positions", headers=h, json=position(
                    tickers[i % len(tickers)], quantity=str(i + 1), entry_price="50"))
                for i in range(20)]))
            await _check_against_reference(c, h, pid, closes, f"ref-add-{rnd}")

            # 20 PATCHes of one position's quantity at once
            positions = (await c.get(base, headers=h)).json()["positions"]
            one = positions[0]["id"]
            _ok(await asyncio.gather(*[
                c.patch(f"{base}/positions/{one}", headers=h, json={"quantity": str(100 + i)})
                for i in range(20)]))
            await _check_against_reference(c, h, pid, closes, f"ref-patch-{rnd}")

            # a mix: cash changes, PATCHes of other positions, deletes and adds
            others = [p["id"] for p in positions[1:]]
            writes = (
                [c.patch(base, headers=h, json={"cash": str(500 + i)}) for i in range(4)]
                + [c.patch(f"{base}/positions/{p}", headers=h, json={"quantity": "-7"})
                   for p in others[:6]]
                + [c.delete(f"{base}/positions/{p}", headers=h) for p in others[6:10]]
                + [c.post(f"{base}/positions", headers=h, json=position(
                    tickers[i % len(tickers)], quantity=str(200 + i))) for i in range(6)])
            _ok(await asyncio.gather(*writes))
            await _check_against_reference(c, h, pid, closes, f"ref-mix-{rnd}")


@pytest.fixture
def jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """A random pause (0-30 ms) between an instant analysis's read of the portfolio and its
    write, where a real server's requests interleave: the race is then met every round,
    not only under a real server's load."""
    import random

    from core.services import analytics as analytics_service
    real = analytics_service.load_symbol_data
    rng = random.Random(12)

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(rng.random() * 0.03)
        return await real(*args, **kwargs)

    monkeypatch.setattr(analytics_service, "load_symbol_data", slow)


def test_concurrent_writes_leave_the_snapshot_of_the_sequential_writes(
        target: tuple[str, dict[str, str]], seed: Seed, dispatched: RecordingLauncher,
        jitter: None) -> None:
    url, tokens = target
    closes = _closes(url, seed.as_of)
    asyncio.run(_scenario(url, tokens, closes, seed.tickers))


def test_the_refresh_never_stores_an_analysis_outdated_by_an_api_write(
        target: tuple[str, dict[str, str]], seed: Seed, dispatched: RecordingLauncher,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A position added through the API while the nightly refresh analyses the portfolio
    (after it read the positions, before it writes): the refresh analyses it again, and
    the stored snapshot and position values are those of the portfolio with the new
    position, checked against quantity × close."""
    from core import portfolio_steps as portfolio_refresh
    from core.db.engine import create_engine
    from core.portfolio_steps import PortfolioWork, refresh_chunk
    from core.services import portfolios as svc
    from core.services import users
    from core.services.validation import PositionInput
    from core.symbol_data import build_scenarios

    url, tokens = target
    closes = _closes(url, seed.as_of)
    entry = dt.date(2025, 6, 2)
    real = portfolio_refresh.load_symbol_data

    async def run() -> None:
        engine = create_engine(url, pooled=True)
        try:
            user = await users.authenticate(engine, tokens["alice"])
            assert user is not None
            made = await svc.create_portfolio(engine, user.id, name="nightly", cash=Decimal(
                "1000"), positions=[PositionInput("MKTA", Decimal(10), entry, Decimal(50))])
            pid = made.portfolio.id
            added: list[str] = []

            async def api_write_meanwhile(*args: Any, **kwargs: Any) -> Any:
                if not added:  # the first analysis only: the second one must see it
                    changed = await svc.add_position(engine, user.id, pid, PositionInput(
                        "MKTB", Decimal(-7), entry, Decimal(40)))
                    added.append(changed.position.id)
                return await real(*args, **kwargs)

            monkeypatch.setattr(portfolio_refresh, "load_symbol_data", api_write_meanwhile)
            scenarios = await build_scenarios(seed.as_of, engine)
            report = await refresh_chunk([PortfolioWork(
                pid, Decimal("1000"), (seed.as_of,), None, None)], seed.as_of, scenarios,
                None, engine)
            assert added and report.refreshed == 1 and not report.failed, report
            assert report.snapshots == 1
            view = await svc.get_portfolio(engine, user.id, pid)
        finally:
            await engine.dispose()
        values = {p.symbol: p.market_value for p in view.positions}
        want = {"MKTA": (10 * closes["MKTA"]).quantize(CENT, ROUND_HALF_EVEN),
                "MKTB": (-7 * closes["MKTB"]).quantize(CENT, ROUND_HALF_EVEN)}
        assert values == want
        snap = view.latest_snapshot
        assert snap is not None and snap["date"] == seed.as_of.isoformat()
        assert snap["position_count"] == 2
        assert Decimal(snap["equity"]) == Decimal(1000) + sum(want.values())

    asyncio.run(run())
