"""Independent readers for flow tests: plain SQL + pandas, not factorflow's repositories.

SQLite is read with the stdlib ``sqlite3``; PostgreSQL with a bare ``asyncpg`` connection
(no SQLAlchemy). Queries are written once, in SQLite's dialect with ``?`` placeholders, and
PostgreSQL results come back the way SQLite's do, so a test body holds on both: dates as ISO
text, timestamps as SQLite's UTC text (``2026-01-02 03:04:05.000000``), exact-money columns
(``core.db.types.Money``, text on SQLite) as their decimal text, other numerics as float,
JSON columns as the stored JSON text and booleans as 0/1. Date parameters may be ISO strings
on both. (SQLite returns a whole NUMERIC value such as 12.0 as the integer 12: equal.)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.engine import make_url

DATA_TABLES = (
    "symbols", "prices", "corporate_actions", "symbol_profiles", "symbol_factor_exposures",
    "symbol_daily_metrics", "data_check_findings",
)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def db_path(url: str) -> Path:
    """The SQLite file of ``url`` (SQLite only)."""
    assert is_sqlite(url), f"not a SQLite URL: {url}"
    return Path(make_url(url).database or "")


# --- PostgreSQL through asyncpg, shaped like sqlite3 results ------------------------------------

@cache
def _money_columns() -> frozenset[str]:
    """Names of exact-decimal columns (text on SQLite, NUMERIC on PostgreSQL)."""
    from sqlmodel import SQLModel

    import core.db.models  # noqa: F401
    from core.db.types import Money

    money, other = set(), set()
    for table in SQLModel.metadata.tables.values():
        for c in table.columns:
            (money if isinstance(c.type, Money) else other).add(c.name)
    assert not money & other, f"a column name is Money in one table only: {money & other}"
    return frozenset(money)


def _pg_sql(sql: str) -> str:
    """``?`` placeholders as ``$1, $2, …`` (the tests never put ``?`` inside literals)."""
    n = 0

    def number(_: re.Match) -> str:
        nonlocal n
        n += 1
        return f"${n}"

    return re.sub(r"\?", number, sql)


def _pg_value(value: Any, money: bool) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, _NumericText):
        return str(value) if money else float(value)
    return value


class _NumericText(str):
    """A NUMERIC value as PostgreSQL prints it (decided per column: text or float)."""


def _sqlite_stamp(text: str) -> str:
    """A timestamp as SQLAlchemy stores it on SQLite: UTC, no offset, microseconds."""
    stamp = dt.datetime.fromisoformat(text)
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(dt.UTC).replace(tzinfo=None)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.%f")


async def _pg_connect(url: str) -> Any:
    import asyncpg

    u = make_url(url)
    con = await asyncpg.connect(user=u.username, password=u.password, host=u.host, port=u.port,
                                database=u.database, server_settings={"timezone": "UTC"})
    await con.set_type_codec("date", schema="pg_catalog", encoder=str, decoder=str,
                             format="text")
    for name in ("timestamp", "timestamptz"):
        await con.set_type_codec(name, schema="pg_catalog", encoder=str, decoder=_sqlite_stamp,
                                 format="text")
    await con.set_type_codec("numeric", schema="pg_catalog", encoder=str,
                             decoder=_NumericText, format="text")
    return con


async def _pg_fetch(url: str, sql: str, params: Sequence) -> tuple[list[str], list[tuple]]:
    con = await _pg_connect(url)
    try:
        stmt = await con.prepare(_pg_sql(sql))
        names = [a.name for a in stmt.get_attributes()]
        rows = await stmt.fetch(*params)
    finally:
        await con.close()
    money = _money_columns()
    flags = [n in money for n in names]
    return names, [tuple(_pg_value(v, m) for v, m in zip(r, flags, strict=True)) for r in rows]


@contextmanager
def sqlite_connection(path: Path | str) -> Iterator[sqlite3.Connection]:
    """A stdlib connection, committed and **closed** on exit (``with sqlite3.connect()``
    alone only commits: the connection then lives until the garbage collector frees it, and
    a test that later copies the file closes a descriptor of it, which drops that
    connection's POSIX locks — SQLite then misreads a WAL left by a killed writer)."""
    con = sqlite3.connect(path)
    try:
        with con:
            yield con
    finally:
        con.close()


def _fetch(url: str, sql: str, params: Sequence = ()) -> tuple[list[str], list[tuple]]:
    if is_sqlite(url):
        with sqlite_connection(db_path(url)) as con:
            cur = con.execute(sql, tuple(params))
            names = [d[0] for d in cur.description or ()]
            return names, cur.fetchall()
    return asyncio.run(_pg_fetch(url, sql, params))


def query(url: str, sql: str, params: tuple = ()) -> pd.DataFrame:
    """Rows of ``sql`` (SQLite dialect, ``?`` placeholders) as a DataFrame."""
    if is_sqlite(url):
        with sqlite_connection(db_path(url)) as con:
            return pd.read_sql_query(sql, con, params=params)
    names, rows = _fetch(url, sql, params)
    return pd.DataFrame.from_records(rows, columns=names, coerce_float=True)


def execute(url: str, sql: str, params: tuple = ()) -> None:
    """Run one statement and commit (e.g. a row inserted behind the application's back)."""
    if is_sqlite(url):
        with sqlite_connection(db_path(url)) as con:
            con.execute(sql, params)
        return

    async def run() -> None:
        con = await _pg_connect(url)
        try:
            await con.execute(_pg_sql(sql), *params)
        finally:
            await con.close()

    asyncio.run(run())


def scalar(url: str, sql: str, params: tuple = ()) -> Any:
    """The first column of the first row of ``sql``."""
    return _fetch(url, sql, params)[1][0][0]


def table_rows(url: str, tables: Sequence[str]) -> dict[str, list[tuple]]:
    """Every row of each of ``tables``, sorted (an order-free picture of their content)."""
    return {t: sorted(_fetch(url, f"SELECT * FROM {t}")[1], key=repr) for t in tables}


def snapshot(url: str) -> dict[str, list[tuple]]:
    """Every row of every data table (batch_runs is a log and excluded), sorted."""
    return table_rows(url, DATA_TABLES)


def adj_close_matrix(url: str, symbols: list[str], sessions: list) -> pd.DataFrame:
    """Stored adjusted closes as a (sessions × symbols) frame, NaN where no row."""
    marks = ",".join("?" * len(symbols))
    df = query(url, f"SELECT symbol, date, adj_close FROM prices WHERE symbol IN ({marks})",
               tuple(symbols))
    df["date"] = pd.to_datetime(df["date"]).dt.date
    wide = df.pivot(index="date", columns="symbol", values="adj_close")
    return wide.reindex(index=sessions, columns=symbols).astype(float)


# --- comparing whole databases ------------------------------------------------------------------

LOG_TABLES = ("batch_runs", "run_locks", "alembic_version", "price_month_edits")
"""Tables that log what happened (run records, locks, how often price rows were edited):
not part of a database's content."""
VOLATILE_COLUMNS = frozenset({
    "created_at", "updated_at", "recorded_at", "acquired_at", "expires_at", "requested_at",
    "started_at", "finished_at", "id", "max_rowid", "edits",
})
"""Columns whose value is a wall-clock time, a generated id or a row's history (the price
blocks' rowid and edit count: where and how often rows were written), not data."""


def _tables(url: str) -> list[str]:
    if is_sqlite(url):
        names = _fetch(url, "SELECT name FROM sqlite_master WHERE type='table' "
                            "AND name NOT LIKE 'sqlite_%'")[1]
    else:
        names = _fetch(url, "SELECT tablename FROM pg_tables WHERE schemaname='public'")[1]
    return sorted(n[0] for n in names if n[0] not in LOG_TABLES)


def table_signature(url: str, keep: frozenset[str] = frozenset()) -> dict[str, list[tuple]]:
    """Every row of every table but the logs, sorted, without volatile columns (times,
    generated ids) unless named in ``keep``: two databases with equal signatures hold the
    same data. Tables whose key is a generated id (``price_revisions``) keep their other
    columns."""
    out: dict[str, list[tuple]] = {}
    for table in _tables(url):
        names, rows = _fetch(url, f"SELECT * FROM {table}")
        cols = [i for i, n in enumerate(names) if n not in VOLATILE_COLUMNS or n in keep
                or (n == "id" and table in ("portfolios", "positions", "users"))]
        out[table] = sorted((tuple(r[i] for i in cols) for r in rows), key=repr)
    return out


def signature_diff(a: dict[str, list[tuple]], b: dict[str, list[tuple]], limit: int = 5) -> str:
    """A short description of how two signatures differ ('' when equal)."""
    lines = []
    for table in sorted(set(a) | set(b)):
        ra, rb = a.get(table, []), b.get(table, [])
        if ra != rb:
            sa_, sb_ = set(ra), set(rb)
            lines.append(f"{table}: {len(ra)} vs {len(rb)} rows; only first: "
                         f"{sorted(sa_ - sb_, key=repr)[:limit]}; only second: "
                         f"{sorted(sb_ - sa_, key=repr)[:limit]}")
    return "\n".join(lines)


def clone_database(url: str, suffix: str) -> str:
    """A copy of the database at ``url`` (a file copy on SQLite, ``CREATE DATABASE …
    TEMPLATE`` on PostgreSQL, dropped with the original's test server); returns its URL."""
    if is_sqlite(url):
        import shutil

        src = db_path(url)
        dst = src.with_name(f"{src.stem}-{suffix}{src.suffix}")
        with sqlite_connection(src) as con:  # closed before the copy opens the file
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copyfile(src, dst)
        return f"sqlite+aiosqlite:///{dst}"
    u = make_url(url)
    name = f"{u.database}_{suffix}"[:63]

    async def run() -> None:
        import asyncpg

        con = await asyncpg.connect(user=u.username, password=u.password, host=u.host,
                                    port=u.port, database="postgres")
        try:
            await con.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await con.execute(f'CREATE DATABASE "{name}" TEMPLATE "{u.database}"')
        finally:
            await con.close()

    asyncio.run(run())
    return u.set(database=name).render_as_string(hide_password=False)


def drop_clone(url: str) -> None:
    """Remove a database made by :func:`clone_database`."""
    if is_sqlite(url):
        path = db_path(url)
        for extra in ("", "-wal", "-shm", ".migrate-lock"):
            path.with_name(path.name + extra).unlink(missing_ok=True)
        return
    u = make_url(url)

    async def run() -> None:
        import asyncpg

        con = await asyncpg.connect(user=u.username, password=u.password, host=u.host,
                                    port=u.port, database="postgres")
        try:
            await con.execute(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)')
        finally:
            await con.close()

    asyncio.run(run())
