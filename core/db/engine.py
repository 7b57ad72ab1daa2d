"""Async SQLAlchemy engines for SQLite (aiosqlite, the embedded default) and PostgreSQL (asyncpg).

Flows run tasks in worker threads, each with its own event loop, so their engine uses
``NullPool``: no pooled connection ever crosses event loops. The API, which lives in
one event loop, asks for a pooled engine.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from core.db.types import json_text
from core.settings import get_settings

SQLITE_BUSY_TIMEOUT_MS = 60_000
T = TypeVar("T")
log = logging.getLogger(__name__)


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
    kwargs: dict[str, Any] = {"echo": echo, "json_serializer": json_text}
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
    """A connection in a transaction, committed on success and rolled back on error.

    On SQLite the transaction takes the database's write lock at once (``BEGIN
    IMMEDIATE``, waiting up to the busy timeout): the driver would otherwise begin it only
    at the first write, leaving the reads before it outside the transaction (a check and
    the write it guards would not be atomic). On PostgreSQL a write transaction that must
    not interleave with another one locks the rows it depends on first (e.g. the portfolio
    row, :func:`core.repositories.portfolios.lock_portfolios`).
    """
    engine = engine or flow_engine()
    async with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn


RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
"""PostgreSQL's serialization failure and deadlock: the transaction was rolled back and may
simply run again."""
TRANSACTION_ATTEMPTS = 6


def is_retryable(exc: BaseException) -> bool:
    """True when ``exc`` rolled its transaction back for a reason that running it again
    resolves: a deadlock or serialization failure (PostgreSQL), a busy database (SQLite)."""
    for e in _causes(exc):
        code = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if code in RETRYABLE_SQLSTATES:
            return True
        if type(e).__name__ == "OperationalError" and "database is locked" in str(e):
            return True
    return False


async def run_transaction(
    work: Callable[[AsyncConnection], Awaitable[T]], engine: AsyncEngine | None = None,
    *, attempts: int = TRANSACTION_ATTEMPTS,
) -> T:
    """``await work(conn)`` in a :func:`transaction`, run again from the start (a new
    transaction) when it fails with a deadlock or serialization failure
    (:func:`is_retryable`), up to ``attempts`` times with a short random back-off. ``work``
    must do nothing outside the database that a second run would repeat wrongly."""
    for attempt in range(1, attempts + 1):
        try:
            async with transaction(engine) as conn:
                return await work(conn)
        except DBAPIError as exc:
            if attempt >= attempts or not is_retryable(exc):
                raise
            log.info("transaction retried after %s (attempt %d)", type(exc.orig).__name__,
                     attempt)
            await asyncio.sleep(random.uniform(0, 0.01 * 2 ** attempt))
    raise AssertionError("unreachable")


@asynccontextmanager
async def reading(engine: AsyncEngine | None = None) -> AsyncIterator[AsyncConnection]:
    """A connection for reads (its transaction is rolled back at the end)."""
    engine = engine or flow_engine()
    async with engine.connect() as conn:
        yield conn


# --- one-line messages for a database that is misconfigured or unreachable -------------------

SUPPORTED_URLS = ("sqlite+aiosqlite:///PATH or "
                  "postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE")


def database_url_variable() -> str:
    """The variable an operator fixes when the database is wrong: ``FACTORFLOW_DATABASE_URL``,
    or ``FACTORFLOW_HOME`` when the URL is the default SQLite file under it."""
    return "FACTORFLOW_DATABASE_URL" if get_settings().database_url else "FACTORFLOW_HOME"


def shown_url(url: str) -> str:
    """``url`` fit for printing: the password replaced by ``***`` (never the raw text of a
    URL that does not parse: it may hold a password)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable URL)"


def database_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` itself (syntax, database, driver), without connecting;
    None when it is usable. The message never contains the password."""
    try:
        u = make_url(url)
        port = u.port
    except Exception:
        return f"not a database URL (expected {SUPPORTED_URLS})"
    if u.get_backend_name() not in ("sqlite", "postgresql"):
        return f"unsupported database {u.get_backend_name()!r} (expected {SUPPORTED_URLS})"
    if port is not None and not 1 <= port <= 65535:
        return f"port {port} out of range (1-65535) in {shown_url(url)}"
    try:
        dialect = u.get_dialect()
    except Exception:  # NoSuchModuleError, ImportError
        return f"unknown driver {u.drivername!r} (expected {SUPPORTED_URLS})"
    if not getattr(dialect, "is_async", False):
        return f"driver {u.drivername!r} is not asynchronous (expected {SUPPORTED_URLS})"
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        return f"the driver of {u.drivername!r} is not installed ({exc})"
    return None


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it was raised from (causes, contexts, wrapped DBAPI errors)."""
    seen: set[int] = set()
    queue: list[Any] = [exc]
    out: list[BaseException] = []
    while queue:
        e = queue.pop(0)
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        out.append(e)
        queue += [e.__cause__, e.__context__, getattr(e, "orig", None)]
    return out


def _raised_in(exc: BaseException, *path_parts: str) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename.replace("\\", "/")
        if any(part in filename for part in path_parts):
            return True
        tb = tb.tb_next
    return False


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _connect_reason(exc: BaseException, u: URL) -> str | None:
    """Why connecting to ``u`` failed, if ``exc`` is a failure to connect."""
    for e in _causes(exc):
        module = type(e).__module__
        if module.startswith("asyncpg") and _raised_in(e, "asyncpg/connect_utils.py"):
            return _one_line(str(e))  # wrong password, missing database, too many clients…
        if isinstance(e, OSError) and _raised_in(e, "asyncpg/", "aiosqlite/"):
            if isinstance(e, ConnectionRefusedError):
                return "connection refused"
            if isinstance(e, socket.gaierror):
                return f"unknown host {u.host!r}"
            if isinstance(e, TimeoutError):
                return "timed out"
            return _one_line(e.strerror or str(e))
        if "unable to open database file" in str(e):
            return "unable to open the database file"
    return None


def database_error_message(exc: BaseException, url: str) -> str | None:
    """One line saying what is wrong with the configured database, naming the variable to
    fix, if ``exc`` comes from a bad URL or a failure to reach or open the database;
    None for any other error. The password is never part of it.

    e.g. ``FACTORFLOW_DATABASE_URL: cannot connect to postgresql+asyncpg://u:***@db:5432/ff:
    connection refused``.
    """
    variable = database_url_variable()
    chain = _causes(exc)
    from_database = any(
        type(e).__module__.split(".")[0] in ("sqlalchemy", "asyncpg", "aiosqlite", "sqlite3")
        or isinstance(e, ImportError | ValueError)
        or _raised_in(e, "sqlalchemy/", "asyncpg/", "aiosqlite/") for e in chain)
    problem = database_url_problem(url)
    if problem is not None:
        return f"{variable}: {problem}" if from_database else None
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        parent = Path(u.database).parent
        for e in chain:  # the directory of the database file could not be created
            if (isinstance(e, OSError) and e.filename is not None
                    and _raised_in(e, "core/db/")
                    and Path(str(e.filename)) in (parent, *parent.parents)):
                return (f"{variable}: cannot create directory {parent} for the SQLite "
                        f"database: {e.strerror or e}")
    reason = _connect_reason(exc, u)
    if reason is None:
        return None
    return f"{variable}: cannot connect to {shown_url(url)}: {reason}"
