"""Price windows read through ``price_blocks``: a columnar copy of ``prices`` per symbol and month.

Reading a year of prices for 10,000 symbols row by row costs seconds of Python objects (2.6
million rows of four values); the same window as 130,000 month blocks of float64 arrays
costs a tenth of that. The ``prices`` rows stay the truth and the blocks a cache that is
verified on every read:

1. In one read transaction, each month's ``count(*)`` and ``max(rowid)`` per symbol are
   taken over the whole months the window touches (one query a month, answered from the
   primary-key index alone: no table row is visited, no row reaches Python), and the
   months' ``price_month_edits`` counters, which SQLite triggers move on every update and
   delete of a ``prices`` row (migration 0011).
2. A stored block is used only when its ``n_rows``, ``max_rowid`` and ``edits`` equal
   those exactly. Whatever the path (the price store, a migration, an operator's SQL): an
   insert changes the count or brings a rowid above the block's (``INSERT OR REPLACE``
   deletes and inserts, with a new rowid), an update or a delete moves the counter (two
   days' values swapped included). Inserts fire no trigger, so a first load's millions of
   rows cost nothing more. (A write that names an existing rowid explicitly while
   replacing that very row would not be seen: nothing in factorflow writes rowids.)
3. Every other month is read row by row, as before, and returned as a new block (with the
   figures of step 1) for the caller to store; only the symbol flow stores them
   (:func:`store_blocks`), so the cache fills once a night, written by one writer.

The values placed in the window are the stored REAL values themselves (a block holds their
exact float64 bits), so a window read through blocks equals one read row by row, bit for bit.
A row on a date that is not an NYSE session counts in the figures but, as in the row
read, is not placed.

SQLite only (the stdlib driver on a read-only connection, run in a worker thread);
PostgreSQL reads its window with one array query per chunk and needs no blocks.

May import: ``core.db``, ``core.calendar``, numpy. Not: services, flows, api, cli.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from core import calendar
from core.db.models import PriceBlock
from core.db.upsert import upsert_rows

_blocks = PriceBlock.__table__  # type: ignore[attr-defined]


@dataclass
class BlockWindow:
    """Closes and adjusted closes of some symbols on consecutive sessions, and the blocks
    rebuilt from rows while reading them (for :func:`store_blocks`)."""

    close: np.ndarray
    adj_close: np.ndarray
    rebuilt: list[dict[str, Any]] = field(default_factory=list)
    blocks_used: int = 0


@lru_cache(maxsize=512)
def month_sessions(month: str) -> tuple[dt.date, ...]:
    """The NYSE sessions of a calendar month ``YYYY-MM``, in order."""
    first = dt.date(int(month[:4]), int(month[5:7]), 1)
    last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    return tuple(calendar.trading_days_between(first, last))


def read_window(database: str, symbols: Sequence[str], sessions: Sequence[dt.date]
                ) -> BlockWindow:
    """The closes and adjusted closes of ``symbols`` on ``sessions`` (consecutive NYSE
    sessions), read through the blocks (see the module's notes). Blocking: run it in a
    worker thread.

    Parameters
    ----------
    database : str
        Path of the SQLite database file.
    symbols : sequence of str
        At most 900 (one ``IN`` list).
    sessions : sequence of date
        Consecutive sessions, oldest first.

    Returns
    -------
    BlockWindow
        ``close`` and ``adj_close`` of shape (len(sessions), len(symbols)), NaN where no row
        is stored; ``rebuilt``: the blocks read from rows (rows for :func:`store_blocks`).
    """
    syms = list(symbols)
    t, n = len(sessions), len(syms)
    out = BlockWindow(np.full((t, n), np.nan), np.full((t, n), np.nan))
    if not t or not n:
        return out
    row_of = {d: i for i, d in enumerate(sessions)}
    col_of = {s: j for j, s in enumerate(syms)}
    months = sorted({d.isoformat()[:7] for d in sessions})
    marks = ",".join("?" * n)
    con = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=60)
    try:
        con.execute("BEGIN")  # one snapshot for the figures, the blocks and the rows
        edits = {(s, m): e for s, m, e in con.execute(
            f"SELECT symbol, month, edits FROM price_month_edits WHERE symbol IN ({marks}) "
            f"AND month >= ? AND month <= ?", (*syms, months[0], months[-1]))}
        live: dict[tuple[str, str], tuple[int, int, int]] = {}
        for m in months:  # one query a month: grouped by symbol, it streams in index order
            live.update(((s, m), (k, r, edits.get((s, m), 0))) for s, k, r in con.execute(
                f"SELECT symbol, count(*), max(rowid) FROM prices "
                f"WHERE symbol IN ({marks}) AND date >= ? AND date <= ? GROUP BY symbol",
                (*syms, f"{m}-01", f"{m}-31")))
        trusted: dict[str, list[tuple[int, bytes, bytes]]] = {}
        for s, m, k, r, e, close, adj in con.execute(
                f"SELECT symbol, month, n_rows, max_rowid, edits, close, adj_close "
                f"FROM price_blocks WHERE symbol IN ({marks}) AND month >= ? AND "
                f"month <= ?", (*syms, months[0], months[-1])):
            if live.get((s, m)) == (k, r, e):
                trusted.setdefault(m, []).append((col_of[s], close, adj))
                del live[(s, m)]  # verified: nothing left to read for it
        for m, found in trusted.items():
            _place(out, row_of, m, [j for j, _, _ in found],
                   b"".join(c for _, c, _ in found), b"".join(a for _, _, a in found))
            out.blocks_used += len(found)
        stale: dict[str, list[str]] = {}
        for s, m in live:
            stale.setdefault(m, []).append(s)
        for m, month_syms in sorted(stale.items()):
            _rebuild_month(con, out, m, month_syms, live, row_of, col_of)
    finally:
        con.close()
    return out


def _place(out: BlockWindow, row_of: dict[dt.date, int], month: str, cols: list[int],
           close: bytes, adj: bytes) -> None:
    """Copy blocks of one month (their float64 arrays concatenated, in ``cols`` order) into
    the window's columns ``cols``, on the window's sessions."""
    days = month_sessions(month)
    pairs = [(i, row_of[d]) for i, d in enumerate(days) if d in row_of]
    if not pairs or not cols:
        return
    src = np.array([i for i, _ in pairs], dtype=np.intp)
    dst = np.array([r for _, r in pairs], dtype=np.intp)
    j = np.array(cols, dtype=np.intp)
    for target, raw in ((out.close, close), (out.adj_close, adj)):
        values = np.frombuffer(raw, dtype=np.float64).reshape(len(cols), len(days))
        target[dst[:, None], j[None, :]] = values[:, src].T


def _rebuild_month(con: sqlite3.Connection, out: BlockWindow, month: str, syms: list[str],
                   live: dict[tuple[str, str], tuple], row_of: dict[dt.date, int],
                   col_of: dict[str, int]) -> None:
    """Read the rows of ``syms`` in ``month``, place them, and add their blocks to
    ``out.rebuilt`` (with the figures ``live`` holds for them)."""
    days = month_sessions(month)
    day_of = {d.isoformat(): i for i, d in enumerate(days)}
    k = {s: i for i, s in enumerate(syms)}
    close = np.full((len(syms), len(days)), np.nan)
    adj = np.full((len(syms), len(days)), np.nan)
    for i in range(0, len(syms), 900):
        part = syms[i : i + 900]
        for s, d, c, a in con.execute(
                f"SELECT symbol, date, close, adj_close FROM prices WHERE symbol IN "
                f"({','.join('?' * len(part))}) AND date >= ? AND date <= ?",
                (*part, f"{month}-01", f"{month}-31")):
            at = day_of.get(d)
            if at is not None:
                close[k[s], at] = c
                adj[k[s], at] = a
    _place(out, row_of, month, [col_of[s] for s in syms], close.tobytes(), adj.tobytes())
    for s in syms:
        n_rows, max_rowid, edits = live[(s, month)]
        out.rebuilt.append({"symbol": s, "month": month, "n_rows": n_rows,
                            "max_rowid": max_rowid, "edits": edits,
                            "close": close[k[s]].tobytes(), "adj_close": adj[k[s]].tobytes()})


async def store_blocks(conn: AsyncConnection, blocks: Sequence[dict[str, Any]]) -> int:
    """Upsert blocks returned in :attr:`BlockWindow.rebuilt`; returns the rows sent. A block
    whose month changed since it was read is stored with the old figures, so the next read
    finds it stale and rebuilds it: storing never makes a read wrong."""
    return await upsert_rows(conn, _blocks, blocks, key=["symbol", "month"])
