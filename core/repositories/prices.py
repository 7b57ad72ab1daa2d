"""Daily prices and corporate actions: bulk upserts and aligned price matrices.

May import: ``core.db``, ``core.calendar``, numpy, pandas. Not: services, flows, api, cli.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from core import calendar
from core.db.models import CorporateAction, KnownMissingPrice, Price, PriceRevision
from core.db.upsert import upsert_columns, upsert_rows
from core.repositories import price_blocks

_prices = Price.__table__  # type: ignore[attr-defined]
_actions = CorporateAction.__table__  # type: ignore[attr-defined]
_revisions = PriceRevision.__table__  # type: ignore[attr-defined]
_known_missing = KnownMissingPrice.__table__  # type: ignore[attr-defined]
FIELDS = ("open", "high", "low", "close", "adj_close", "volume")
_IN_CHUNK = 900  # symbols per IN (...) list: below SQLite's bound-parameter limit
_PG_SYMBOLS_PER_READ = 5000  # PostgreSQL: one array parameter, any length; bounds memory


def _none_if_nan(values: np.ndarray) -> list:
    """``values`` (float64) as Python floats, None where NaN (NaNs found by numpy: a Python
    test per value cost ~1 s of a 10,000-symbol first load)."""
    out = values.tolist()
    for i in np.flatnonzero(np.isnan(values)).tolist():
        out[i] = None
    return out


async def upsert_bars(conn: AsyncConnection, bars: pd.DataFrame) -> int:
    """Upsert validated bars (``core.providers.base.BAR_COLUMNS``, plus an optional
    ``provider`` column naming who delivered each row); returns rows written.

    Prices are rounded to 6 decimals, the precision of the ``prices`` columns. Callers
    decide which rows may be written (``core.redelivery_review.review_redelivery``).
    """
    if bars.empty:
        return 0
    n = len(bars)
    columns: dict[str, list] = {
        "symbol": bars["symbol"].tolist(),
        "date": calendar.as_dates(bars["date"]),
        **{c: _none_if_nan(np.round(bars[c].to_numpy(dtype=float), 6))
           for c in ("open", "high", "low", "close", "adj_close")},
        "volume": _none_if_nan(bars["volume"].to_numpy(dtype=float)),
        "provider": bars["provider"].tolist() if "provider" in bars.columns else [None] * n,
    }
    return await upsert_columns(conn, _prices, columns, key=["symbol", "date"])


@dataclass(frozen=True)
class StoredPrices:
    """Stored price rows aligned on consecutive NYSE sessions.

    ``fields`` maps each of ``FIELDS`` to a (T, N) float64 array (NaN: no row or no
    value); ``provider`` is (T, N) object (None where unknown or no row).
    """

    sessions: list[dt.date]
    symbols: list[str]
    fields: dict[str, np.ndarray]
    provider: np.ndarray


async def load_stored_prices(
    conn: AsyncConnection, symbols: Sequence[str], start: dt.date, end: dt.date
) -> StoredPrices:
    """Every field of the stored rows of ``symbols`` on sessions in [start, end]."""
    sessions = calendar.trading_days_between(start, end)
    syms = list(symbols)
    t, n = len(sessions), len(syms)
    fields = {f: np.full((t, n), np.nan) for f in FIELDS}
    provider = np.full((t, n), None, dtype=object)
    if t and n:
        row_of = {d: i for i, d in enumerate(sessions)}
        col_of = {s: j for j, s in enumerate(syms)}
        cols = [sa.type_coerce(_prices.c[f], sa.Float) for f in FIELDS]
        for k in range(0, n, _IN_CHUNK):
            stmt = sa.select(_prices.c.symbol, _prices.c.date, _prices.c.provider, *cols).where(
                _prices.c.symbol.in_(syms[k : k + _IN_CHUNK]), _prices.c.date >= start,
                _prices.c.date <= end)
            for row in (await conn.execute(stmt)).all():
                i, j = row_of.get(row[1]), col_of.get(row[0])
                if i is None or j is None:
                    continue
                provider[i, j] = row[2]
                for f, v in zip(FIELDS, row[3:], strict=True):
                    if v is not None:
                        fields[f][i, j] = v
    return StoredPrices(sessions, syms, fields, provider)


async def load_actions(conn: AsyncConnection, symbols: Sequence[str]) -> pd.DataFrame:
    """Every stored corporate action of ``symbols`` (``ACTION_COLUMNS``, date as datetime64)."""
    rows: list[tuple] = []
    for i in range(0, len(symbols), _IN_CHUNK):
        stmt = sa.select(_actions.c.symbol, _actions.c.date, _actions.c.kind,
                         _actions.c.value).where(
            _actions.c.symbol.in_(list(symbols[i : i + _IN_CHUNK])))
        rows.extend(tuple(r) for r in (await conn.execute(stmt)).all())
    frame = pd.DataFrame(rows, columns=["symbol", "date", "kind", "value"])
    frame["date"] = pd.to_datetime(frame["date"])
    frame["value"] = frame["value"].astype(float)
    return frame


async def insert_revisions(conn: AsyncConnection, rows: Sequence[dict]) -> int:
    """Append audit rows of ``price_revisions``; a rejection already recorded with the same
    offered values for that (symbol, date) is not recorded again (reruns add nothing)."""
    if not rows:
        return 0
    rejected = [r for r in rows if r["outcome"] == "rejected"]
    seen: set[tuple] = set()
    for i in range(0, len(rejected), _IN_CHUNK):
        part = rejected[i : i + _IN_CHUNK]
        stmt = sa.select(_revisions.c.symbol, _revisions.c.date,
                         sa.type_coerce(_revisions.c.offered_close, sa.Float),
                         sa.type_coerce(_revisions.c.offered_adj_close, sa.Float)).where(
            _revisions.c.outcome == "rejected",
            _revisions.c.symbol.in_({r["symbol"] for r in part}),
            _revisions.c.date.in_({r["date"] for r in part}))
        seen.update((s, d, round(float(c), 6), round(float(a), 6))
                    for s, d, c, a in (await conn.execute(stmt)).all())
    fresh = [r for r in rows if r["outcome"] != "rejected" or (
        r["symbol"], r["date"], round(float(r["offered_close"]), 6),
        round(float(r["offered_adj_close"]), 6)) not in seen]
    if fresh:
        await conn.execute(sa.insert(_revisions), fresh)
    return len(fresh)


async def known_missing(
    conn: AsyncConnection, symbols: Sequence[str], start: dt.date
) -> set[tuple[str, dt.date]]:
    """(symbol, date) of the sessions recorded as known-missing on or after ``start``."""
    out: set[tuple[str, dt.date]] = set()
    for i in range(0, len(symbols), _IN_CHUNK):
        stmt = sa.select(_known_missing.c.symbol, _known_missing.c.date).where(
            _known_missing.c.symbol.in_(list(symbols[i : i + _IN_CHUNK])),
            _known_missing.c.date >= start)
        out.update((s, d) for s, d in (await conn.execute(stmt)).all())
    return out


async def mark_known_missing(conn: AsyncConnection, rows: Sequence[dict]) -> int:
    """Record sessions as known-missing (``symbol``, ``date``, ``marked_as_of``, ``detail``);
    an existing record is kept as it is."""
    return await upsert_rows(conn, _known_missing, rows, key=["symbol", "date"], update=())


async def forget_known_missing(conn: AsyncConnection, pairs: Sequence[tuple[str, dt.date]]) -> None:
    """Drop known-missing records of sessions that now have a stored price."""
    for symbol, day in pairs:
        await conn.execute(sa.delete(_known_missing).where(_known_missing.c.symbol == symbol,
                                                           _known_missing.c.date == day))


async def upsert_actions(conn: AsyncConnection, actions: pd.DataFrame) -> int:
    """Upsert splits and dividends (``ACTION_COLUMNS``)."""
    if actions.empty:
        return 0
    rows = [
        {"symbol": s, "date": d, "kind": k, "value": float(v)}
        for s, d, k, v in zip(
            actions["symbol"], pd.to_datetime(actions["date"]).dt.date, actions["kind"],
            actions["value"], strict=True,
        )
    ]
    return await upsert_rows(conn, _actions, rows, key=["symbol", "date", "kind"])


@dataclass(frozen=True)
class PriceMatrix:
    """Prices aligned on consecutive NYSE sessions.

    ``close`` and ``adj_close`` are (T, N) float64 with NaN where no row is stored;
    ``split_ratio`` is (T, N), 1.0 except on split dates (new shares per old).
    """

    sessions: list[dt.date]
    symbols: list[str]
    close: np.ndarray
    adj_close: np.ndarray
    split_ratio: np.ndarray
    rebuilt_blocks: list[dict] = field(default_factory=list)
    """SQLite: the ``price_blocks`` rows rebuilt from ``prices`` rows by this read (the symbol
    flow stores them: :func:`core.repositories.price_blocks.store_blocks`)."""

    def column(self, symbol: str) -> int:
        return self.symbols.index(symbol)


def _sqlite_rows(database: str, sql: str, params: Sequence) -> list[tuple]:
    con = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=60)
    try:
        return con.execute(sql, tuple(params)).fetchall()
    finally:
        con.close()


async def _sqlite_split_rows(database: str, symbols: Sequence[str], start: dt.date,
                             end: dt.date) -> list[tuple]:
    """(symbol, date as ISO text, ratio) of the splits of ``symbols`` in [start, end], read
    through the stdlib driver on a read-only connection."""
    return await asyncio.to_thread(
        _sqlite_rows, database,
        f"SELECT symbol, date, value FROM corporate_actions WHERE symbol IN "
        f"({','.join('?' * len(symbols))}) AND kind = 'split' AND date >= ? AND date <= ?",
        (*symbols, start.isoformat(), end.isoformat()))


async def _price_rows(
    conn: AsyncConnection, symbols: list[str], start: dt.date, end: dt.date
) -> tuple[list[tuple], list[tuple]]:
    """(symbol, date, close, adj_close) rows and (symbol, date, split ratio) rows.

    On SQLite the bulk read goes through the stdlib driver on a read-only connection
    (about 3x faster than through aiosqlite for hundreds of thousands of rows); dates
    then come back as ISO strings.
    """
    database = conn.engine.url.database
    if conn.dialect.name == "sqlite" and database and database != ":memory:":
        marks = ",".join("?" * len(symbols))
        bounds = (start.isoformat(), end.isoformat())
        prices = await asyncio.to_thread(
            _sqlite_rows, database,
            f"SELECT symbol, date, close, adj_close FROM prices WHERE symbol IN ({marks}) "
            "AND date >= ? AND date <= ?", (*symbols, *bounds),
        )
        return prices, await _sqlite_split_rows(database, symbols, start, end)
    stmt = sa.select(
        _prices.c.symbol, _prices.c.date,
        sa.type_coerce(_prices.c.close, sa.Float), sa.type_coerce(_prices.c.adj_close, sa.Float),
    ).where(_prices.c.symbol.in_(symbols), _prices.c.date >= start, _prices.c.date <= end)
    astmt = sa.select(_actions.c.symbol, _actions.c.date, _actions.c.value).where(
        _actions.c.symbol.in_(symbols), _actions.c.kind == "split", _actions.c.date >= start,
        _actions.c.date <= end
    )
    prices_rows = [tuple(r) for r in (await conn.execute(stmt)).all()]
    split_rows = [tuple(r) for r in (await conn.execute(astmt)).all()]
    return prices_rows, split_rows


async def _pg_price_columns(
    conn: AsyncConnection, symbols: list[str], start: dt.date, end: dt.date
) -> tuple[list[Sequence], list[tuple]]:
    """PostgreSQL: (symbols, dates, closes, adjusted closes) as columns, and split rows.

    One row per symbol with its dates and float8 closes aggregated into arrays: asyncpg
    decodes arrays in C, so this is ~4x faster than a row per price through the ORM layer
    (and no ``Decimal`` is made per value).
    """
    stmt = sa.text(
        "SELECT symbol, array_agg(date), array_agg(close::float8), "
        "array_agg(adj_close::float8) FROM prices "
        "WHERE symbol = ANY(:symbols) AND date >= :start AND date <= :end GROUP BY symbol"
    ).bindparams(
        sa.bindparam("symbols", type_=postgresql.ARRAY(sa.String)),
        sa.bindparam("start", type_=sa.Date), sa.bindparam("end", type_=sa.Date),
    )
    rows = (await conn.execute(stmt, {"symbols": symbols, "start": start, "end": end})).all()
    columns: list[Sequence] = []
    if rows:
        columns = [
            [r[0] for r in rows for _ in range(len(r[1]))],
            list(chain.from_iterable(r[1] for r in rows)),
            list(chain.from_iterable(r[2] for r in rows)),
            list(chain.from_iterable(r[3] for r in rows)),
        ]
    astmt = sa.select(_actions.c.symbol, _actions.c.date, _actions.c.value).where(
        _actions.c.symbol.in_(symbols), _actions.c.kind == "split", _actions.c.date >= start,
        _actions.c.date <= end
    )
    return columns, [tuple(r) for r in (await conn.execute(astmt)).all()]


async def load_price_matrix(
    conn: AsyncConnection, symbols: Sequence[str], start: dt.date, end: dt.date
) -> PriceMatrix:
    """Raw and adjusted closes and split ratios of ``symbols`` on sessions in [start, end]."""
    sessions = calendar.trading_days_between(start, end)
    syms = list(symbols)
    t, n = len(sessions), len(syms)
    close = np.full((t, n), np.nan)
    adj = np.full((t, n), np.nan)
    split = np.ones((t, n))
    if t == 0 or n == 0:
        return PriceMatrix(sessions, syms, close, adj, split)
    symbol_index = pd.Index(syms)
    by_date = pd.Index(sessions)
    by_iso = pd.Index([d.isoformat() for d in sessions])
    postgres = conn.dialect.name == "postgresql"
    database = conn.engine.url.database or ""
    blocks = not postgres and database not in ("", ":memory:")
    rebuilt: list[dict] = []
    chunk = _PG_SYMBOLS_PER_READ if postgres else _IN_CHUNK
    for i in range(0, n, chunk):
        part = syms[i : i + chunk]
        if blocks:
            window = await asyncio.to_thread(price_blocks.read_window, database, part, sessions)
            close[:, i : i + len(part)] = window.close
            adj[:, i : i + len(part)] = window.adj_close
            rebuilt.extend(window.rebuilt)
            price_cols: list[Sequence] = []
            split_rows = await _sqlite_split_rows(database, part, start, end)
        elif postgres:
            price_cols, split_rows = await _pg_price_columns(conn, part, start, end)
        else:
            price_rows, split_rows = await _price_rows(conn, part, start, end)
            price_cols = list(zip(*price_rows, strict=True)) if price_rows else []
        split_cols = list(zip(*split_rows, strict=True)) if split_rows else []
        for cols, kind in ((price_cols, "price"), (split_cols, "split")):
            if not cols:
                continue
            dates = by_iso if isinstance(cols[1][0], str) else by_date
            r = dates.get_indexer(cols[1])
            c = symbol_index.get_indexer(cols[0])
            ok = (r >= 0) & (c >= 0)
            if kind == "price":
                close[r[ok], c[ok]] = np.asarray(cols[2], dtype=float)[ok]
                adj[r[ok], c[ok]] = np.asarray(cols[3], dtype=float)[ok]
            else:
                ratio = np.asarray(cols[2], dtype=float)
                ok &= ratio > 0
                split[r[ok], c[ok]] = ratio[ok]
    return PriceMatrix(sessions, syms, close, adj, split, rebuilt)


async def last_price_dates(conn: AsyncConnection, symbols: Sequence[str]) -> dict[str, dt.date]:
    """Latest stored price date per symbol (symbols without prices are absent)."""
    out: dict[str, dt.date] = {}
    for i in range(0, len(symbols), _IN_CHUNK):
        part = list(symbols[i : i + _IN_CHUNK])
        stmt = (
            sa.select(_prices.c.symbol, sa.func.max(_prices.c.date))
            .where(_prices.c.symbol.in_(part))
            .group_by(_prices.c.symbol)
        )
        out.update({s: d for s, d in (await conn.execute(stmt)).all()})
    return out


async def average_volumes(
    conn: AsyncConnection, symbols: Sequence[str], start: dt.date, end: dt.date
) -> dict[str, float]:
    """Mean stored daily volume (shares) per symbol over sessions in [start, end]; symbols
    without a positive stored volume there are absent."""
    out: dict[str, float] = {}
    for i in range(0, len(symbols), _IN_CHUNK):
        part = list(symbols[i : i + _IN_CHUNK])
        stmt = (
            sa.select(_prices.c.symbol, sa.func.avg(_prices.c.volume))
            .where(_prices.c.symbol.in_(part), _prices.c.date >= start, _prices.c.date <= end,
                   _prices.c.volume > 0)
            .group_by(_prices.c.symbol)
        )
        out.update({s: float(v) for s, v in (await conn.execute(stmt)).all() if v is not None})
    return out


async def count_rows(conn: AsyncConnection) -> int:
    """Number of stored price rows."""
    return int((await conn.execute(sa.select(sa.func.count()).select_from(_prices))).scalar_one())


async def load_splits(
    conn: AsyncConnection, symbols: Sequence[str]
) -> dict[str, list[tuple[dt.date, float]]]:
    """Every stored split of ``symbols``: symbol → [(date, new shares per old)], by date."""
    out: dict[str, list[tuple[dt.date, float]]] = {}
    for i in range(0, len(symbols), _IN_CHUNK):
        part = list(symbols[i : i + _IN_CHUNK])
        stmt = sa.select(_actions.c.symbol, _actions.c.date, _actions.c.value).where(
            _actions.c.symbol.in_(part), _actions.c.kind == "split").order_by(_actions.c.symbol,
                                                                              _actions.c.date)
        for s, d, v in (await conn.execute(stmt)).all():
            out.setdefault(s, []).append((d, float(v)))
    return out


async def load_dividends(
    conn: AsyncConnection, symbols: Sequence[str], start: dt.date | None = None,
    end: dt.date | None = None,
) -> dict[str, list[tuple[dt.date, float]]]:
    """Stored cash dividends of ``symbols`` with ``start <= ex-date <= end`` (None:
    unbounded): symbol → [(ex-date, cash per share)], by date. Symbols without one are
    absent."""
    out: dict[str, list[tuple[dt.date, float]]] = {}
    for i in range(0, len(symbols), _IN_CHUNK):
        stmt = sa.select(_actions.c.symbol, _actions.c.date, _actions.c.value).where(
            _actions.c.symbol.in_(list(symbols[i : i + _IN_CHUNK])),
            _actions.c.kind == "dividend")
        if start is not None:
            stmt = stmt.where(_actions.c.date >= start)
        if end is not None:
            stmt = stmt.where(_actions.c.date <= end)
        for s, d, v in (await conn.execute(stmt.order_by(_actions.c.symbol,
                                                         _actions.c.date))).all():
            out.setdefault(s, []).append((d, float(v)))
    return out


async def sessions_with_price(
    conn: AsyncConnection, symbol: str, start: dt.date, end: dt.date
) -> list[dt.date]:
    """Dates in [start, end] on which ``symbol`` has a stored price, ascending."""
    stmt = sa.select(_prices.c.date).where(
        _prices.c.symbol == symbol, _prices.c.date >= start,
        _prices.c.date <= end).order_by(_prices.c.date)
    return [r[0] for r in (await conn.execute(stmt)).all()]


async def exit_inputs(
    conn: AsyncConnection, exits: Sequence[tuple[str, dt.date]]
) -> tuple[dict[tuple[str, dt.date], float], dict[str, list[tuple[dt.date, float]]]]:
    """What realized P&L needs for positions closed on ``(symbol, exit_date)``: the raw
    close of each pair that has one, and every stored split of those symbols (date, new
    shares per old), oldest first."""
    closes: dict[tuple[str, dt.date], float] = {}
    splits: dict[str, list[tuple[dt.date, float]]] = {}
    wanted = set(exits)
    symbols = sorted({s for s, _ in wanted})
    for i in range(0, len(symbols), _IN_CHUNK):
        part = symbols[i : i + _IN_CHUNK]
        days = sorted({d for s, d in wanted if s in part})
        rows = await conn.execute(sa.select(
            _prices.c.symbol, _prices.c.date, sa.type_coerce(_prices.c.close, sa.Float)).where(
            _prices.c.symbol.in_(part), _prices.c.date.in_(days)))
        closes.update({(s, d): c for s, d, c in rows if (s, d) in wanted})
        rows = await conn.execute(sa.select(_actions.c.symbol, _actions.c.date,
                                            _actions.c.value).where(
            _actions.c.symbol.in_(part), _actions.c.kind == "split").order_by(_actions.c.symbol,
                                                                              _actions.c.date))
        for s, d, ratio in rows:
            splits.setdefault(s, []).append((d, ratio))
    return closes, splits
