"""API tests: the real app on a real migrated SQLite database with stored synthetic prices.

The database is built once per session (migrations, ~1 year of synthetic prices for a few
symbols and the reference ETFs, their factors, a completed symbol-batch row, three users)
and copied for each test. The onboarding flow and Prefect are not started: ``dispatch``
and ``resume`` are replaced by recorders (the API's contract is to request them).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.conftest import sqlite_url
from tests.recording_launcher import RecordingLauncher, record_launches

TICKERS = ["MKTA", "MKTB", "MKTC", "DIVY", "GAPY"]
"""Priced synthetic symbols (MKTx: market loading only)."""


@dataclass(frozen=True)
class Seed:
    path: Path
    as_of: dt.date
    tokens: dict[str, str]
    user_ids: dict[str, str]
    tickers: tuple[str, ...]


async def seed_symbol_data(engine: Any, tickers: Sequence[str], as_of: dt.date) -> None:
    """The symbol layer of a test database: ``tickers`` and the reference ETFs registered,
    ~420 days of synthetic prices through ``as_of``, their factors at ``as_of`` and a
    completed symbol batch of ``as_of`` (the data date of every answer)."""
    from core.db.engine import transaction
    from core.db.models import RunStatus
    from core.factors.definitions import REFERENCE_ETFS
    from core.providers.synthetic import SyntheticProvider
    from core.repositories import batch_runs
    from core.settings import get_settings
    from core.symbol_steps import (
        FetchRequest,
        compute_and_store_factors,
        fetch_and_store,
        register_universe,
    )

    settings = get_settings()
    await register_universe(list(tickers), engine)
    symbols = tuple([*REFERENCE_ETFS, *tickers])
    req = FetchRequest(symbols, as_of - dt.timedelta(days=420), as_of)
    await fetch_and_store(req, SyntheticProvider(seed=settings.synthetic_seed), settings,
                          as_of, engine)
    await compute_and_store_factors(list(symbols), [as_of], settings, engine)
    async with transaction(engine) as conn:
        run = await batch_runs.start_run(conn, "symbol-batch", as_of)
        await batch_runs.finish_run(conn, run, RunStatus.completed, {}, {}, {})


async def _build(url: str, as_of: dt.date) -> tuple[dict[str, str], dict[str, str]]:
    from core.db.engine import create_engine
    from core.services import users

    engine = create_engine(url)
    try:
        await seed_symbol_data(engine, TICKERS, as_of)
        tokens, ids = {}, {}
        for name, admin in (("alice", False), ("bob", False), ("root", True)):
            ids[name], tokens[name] = await users.create_user(engine, name, admin)
        return tokens, ids
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    """The template database (built once per session)."""
    from core import calendar
    from core.db import migrate

    path = tmp_path_factory.mktemp("api-template") / "factorflow.db"
    url = sqlite_url(path)
    migrate.upgrade(url)
    as_of = calendar.latest_completed_session()
    tokens, ids = asyncio.run(_build(url, as_of))
    return Seed(path, as_of, tokens, ids, tuple(TICKERS))


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> RecordingLauncher:
    """The app's flow launcher replaced by one that records (no flow starts)."""
    return record_launches(monkeypatch)


def private_copy(template: Path, tmp_path: Path, settings_env: pytest.MonkeyPatch) -> str:
    """A copy of a template database in ``tmp_path``, configured as FACTORFLOW_DATABASE_URL;
    returns its URL."""
    target = tmp_path / "factorflow.db"
    shutil.copyfile(template, target)
    url = sqlite_url(target)
    settings_env.setenv("FACTORFLOW_DATABASE_URL", url)
    return url


@pytest.fixture
def db_url(seed: Seed, tmp_path: Path, settings_env: pytest.MonkeyPatch) -> str:
    """A private copy of the template database, configured as FACTORFLOW_DATABASE_URL."""
    return private_copy(seed.path, tmp_path, settings_env)


@pytest.fixture
def client(db_url: str, dispatched: RecordingLauncher) -> Iterator[TestClient]:
    """The real app over the test's database (lifespan run), no credentials set."""
    from api.app import create_app

    with TestClient(create_app(db_url)) as c:
        yield c


def auth(seed: Seed, user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {seed.tokens[user]}"}


def risk_data(db_url: str, symbols: list[str], day: dt.date) -> Any:
    """The risk model's data at ``day`` read from the test database (its regressions are
    checked against statsmodels in tests/core/risk)."""
    from core.db.engine import create_engine
    from core.symbol_data import load_risk_data

    async def run() -> Any:
        engine = create_engine(db_url)
        try:
            return await load_risk_data(symbols, day, engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def position(symbol: str = "MKTA", **kw: Any) -> dict[str, Any]:
    """A valid PUBLIC position body (override any field)."""
    body: dict[str, Any] = {"symbol": symbol, "quantity": "10", "entry_date": "2025-06-02",
                            "entry_price": "100.5"}
    body.update(kw)
    return body


def assert_error(resp: Any, status: int, *fragments: str, field: str | None = None) -> dict:
    """``resp`` is an error body with ``status``, naming ``field`` and every fragment."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body = resp.json()
    assert set(body) == {"type", "title", "status", "detail", "instance", "error", "message",
                         "field"}, body  # RFC 9457 members + the extension members
    assert body["status"] == status and body["detail"] == body["message"]
    for frag in fragments:
        assert frag in body["message"], (frag, body)
    if field is not None:
        assert body["field"] == field, body
    return body


def store_factors(db_url: str, day: dt.date, symbols: list[str]) -> None:
    """The symbol flow's factor phase for ``day`` (the real code) on a test database."""
    from core.db.engine import create_engine
    from core.settings import get_settings
    from core.symbol_steps import compute_and_store_factors

    async def run() -> None:
        engine = create_engine(db_url)
        try:
            await compute_and_store_factors(symbols, [day], get_settings(), engine)
        finally:
            await engine.dispose()

    asyncio.run(run())


def stored_close(db_url: str, symbol: str, day: str) -> Decimal:
    """The raw close stored for ``symbol`` on ``day`` (ISO date), as an exact Decimal."""
    import sqlite3

    from tests.flows.helpers import db_path

    con = sqlite3.connect(db_path(db_url))
    try:
        (close,) = con.execute("SELECT close FROM prices WHERE symbol = ? AND date = ?",
                               (symbol, day)).fetchone()
    finally:
        con.close()
    return Decimal(str(close))
