"""Async SQLAlchemy engines for SQLite (aiosqlite, the embedded default) and PostgreSQL (asyncpg).

Flows run tasks in worker threads, each with its own event loop, so their engine uses
``NullPool``: no pooled connection ever crosses event loops. The API, which lives in
one event loop, asks for a pooled engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from core.settings import get_settings

SQLITE_BUSY_TIMEOUT_MS = 60_000


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def is_sqlite(url: str) -> bool:
    """True for a SQLite URL."""
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(
    url: str | None = None, *, pooled: bool = False, echo: bool = False
) -> AsyncEngine:
    """An async engine for ``url`` (default: the configured database).

    SQLite gets WAL, a 60 s busy timeout and its parent directory created.
    ``pooled=False`` (flows) uses NullPool; ``pooled=True`` (API) a connection pool.
    """
    url = url or get_settings().resolved_database_url
    kwargs: dict[str, Any] = {"echo": echo}
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    if not pooled:
        kwargs["poolclass"] = NullPool
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    return engine


_flow_engines: dict[str, AsyncEngine] = {}


def flow_engine(url: str | None = None) -> AsyncEngine:
    """The process-wide NullPool engine for ``url`` (safe across threads and event loops)."""
    url = url or get_settings().resolved_database_url
    engine = _flow_engines.get(url)
    if engine is None:
        engine = _flow_engines[url] = create_engine(url, pooled=False)
    return engine


@asynccontextmanager
async def transaction(engine: AsyncEngine | None = None) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction, committed on success and rolled back on error."""
    engine = engine or flow_engine()
    async with engine.begin() as conn:
        yield conn


@asynccontextmanager
async def reading(engine: AsyncEngine | None = None) -> AsyncIterator[AsyncConnection]:
    """A connection for reads (its transaction is rolled back at the end)."""
    engine = engine or flow_engine()
    async with engine.connect() as conn:
        yield conn
