"""Price windows read through ``price_blocks`` (core/repositories/price_blocks.py) equal the
rows read one by one, bit for bit, whatever wrote the rows: planted prices on a migrated
SQLite file, the blocks stored, then writes behind the blocks' back (an UPDATE, a DELETE, an
INSERT in an old month, a row on a holiday, plain SQL as an operator would) and a random
sequence of such writes (hypothesis). The reference is a plain ``SELECT`` of the rows placed
by hand."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import calendar
from tests.conftest import sqlite_url

SYMBOLS = ["AAA", "BBB", "CCC"]
SESSIONS = calendar.trading_days_between(dt.date(2026, 6, 1), dt.date(2026, 9, 30))


def _migrated(tmp_path: Path) -> tuple[str, str]:
    from core.db import migrate

    path = tmp_path / "blocks.db"
    url = sqlite_url(path)
    migrate.upgrade(url)
    con = sqlite3.connect(path)
    with con:
        rng = np.random.default_rng(5)
        rows = [(s, d.isoformat(), round(float(c), 6), round(float(c * 0.98), 6))
                for j, s in enumerate(SYMBOLS) for d, c in zip(
                    SESSIONS, 50 + j * 10 + np.cumsum(rng.normal(0, 1, len(SESSIONS))),
                    strict=True)
                if not (s == "CCC" and d < dt.date(2026, 7, 15))]  # CCC starts mid-July
        con.executemany("INSERT INTO prices (symbol, date, close, adj_close) VALUES "
                        "(?, ?, ?, ?)", rows)
    con.close()
    return str(path), url


def _load(url: str, start: dt.date, end: dt.date, store: bool) -> object:
    from core.db.engine import create_engine, reading, transaction
    from core.repositories import price_blocks
    from core.repositories import prices as price_repo

    async def run() -> object:
        engine = create_engine(url)
        try:
            async with reading(engine) as conn:
                pm = await price_repo.load_price_matrix(conn, SYMBOLS, start, end)
            if store and pm.rebuilt_blocks:
                async with transaction(engine) as conn:
                    await price_blocks.store_blocks(conn, pm.rebuilt_blocks)
            return pm
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _reference(path: str, start: dt.date, end: dt.date) -> tuple[np.ndarray, np.ndarray]:
    """The rows placed by hand on the sessions (a row off a session is not placed)."""
    days = calendar.trading_days_between(start, end)
    row = {d.isoformat(): i for i, d in enumerate(days)}
    close = np.full((len(days), len(SYMBOLS)), np.nan)
    adj = close.copy()
    con = sqlite3.connect(path)
    for s, d, c, a in con.execute("SELECT symbol, date, close, adj_close FROM prices"):
        if d in row and s in SYMBOLS:
            close[row[d], SYMBOLS.index(s)] = c
            adj[row[d], SYMBOLS.index(s)] = a
    con.close()
    return close, adj


def _same(pm: object, ref: tuple[np.ndarray, np.ndarray]) -> None:
    assert np.array_equal(pm.close, ref[0], equal_nan=True)  # type: ignore[attr-defined]
    assert np.array_equal(pm.adj_close, ref[1], equal_nan=True)  # type: ignore[attr-defined]


def _blocks(path: str) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT count(*) FROM price_blocks").fetchone()[0]
    finally:
        con.close()


def test_a_window_through_blocks_equals_the_rows_and_a_write_behind_them_is_seen(
        tmp_path: Path) -> None:
    path, url = _migrated(tmp_path)
    start, end = dt.date(2026, 6, 10), dt.date(2026, 9, 20)  # months cut at both ends
    first = _load(url, start, end, store=True)
    _same(first, _reference(path, start, end))
    # 4 months × 3 symbols, CCC from July: 11 blocks built from the rows, then stored
    assert len(first.rebuilt_blocks) == 11 and _blocks(path) == 11  # type: ignore[attr-defined]
    again = _load(url, start, end, store=True)
    assert again.rebuilt_blocks == []  # type: ignore[attr-defined]
    _same(again, _reference(path, start, end))

    con = sqlite3.connect(path)
    with con:  # behind the blocks' back, as an operator's SQL would
        con.execute("UPDATE prices SET close = 61.5 WHERE symbol = 'BBB' AND date = ?",
                    (SESSIONS[30].isoformat(),))
        con.execute("DELETE FROM prices WHERE symbol = 'AAA' AND date = ?",
                    (SESSIONS[5].isoformat(),))
        con.execute("INSERT INTO prices (symbol, date, close, adj_close) VALUES "
                    "('CCC', ?, 7.25, 7.0)", (SESSIONS[3].isoformat(),))  # June: no block yet
        con.execute("INSERT INTO prices (symbol, date, close, adj_close) VALUES "
                    "('AAA', '2026-07-04', 1.0, 1.0)")  # a holiday: counted, never placed
        # two days of one month swapped: the count and rowids unchanged, the values not
        a, b = (SESSIONS[60].isoformat(), SESSIONS[61].isoformat())
        (ca, aa), = con.execute("SELECT close, adj_close FROM prices WHERE symbol = 'CCC' "
                                "AND date = ?", (a,)).fetchall()
        (cb, ab), = con.execute("SELECT close, adj_close FROM prices WHERE symbol = 'CCC' "
                                "AND date = ?", (b,)).fetchall()
        con.execute("UPDATE prices SET close = ?, adj_close = ? WHERE symbol = 'CCC' AND "
                    "date = ?", (cb, ab, a))
        con.execute("UPDATE prices SET close = ?, adj_close = ? WHERE symbol = 'CCC' AND "
                    "date = ?", (ca, aa, b))
        # a row replaced whole (SQLite deletes and inserts it, firing no delete trigger):
        # same count, a new rowid
        con.execute("INSERT OR REPLACE INTO prices (symbol, date, close, adj_close) VALUES "
                    "('AAA', ?, 3.5, 3.25)", (SESSIONS[70].isoformat(),))
    con.close()
    after = _load(url, start, end, store=True)
    _same(after, _reference(path, start, end))
    rebuilt = {(b["symbol"], b["month"]) for b in after.rebuilt_blocks}  # type: ignore[attr-defined]
    month = SESSIONS[30].isoformat()[:7]
    assert rebuilt == {("BBB", month), ("AAA", "2026-06"), ("CCC", "2026-06"),
                       ("AAA", "2026-07"), ("CCC", SESSIONS[60].isoformat()[:7]),
                       ("AAA", SESSIONS[70].isoformat()[:7])}
    assert _load(url, start, end, store=False).rebuilt_blocks == []  # type: ignore[attr-defined]


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["update", "delete", "insert", "read"]),
                          st.integers(0, len(SESSIONS) - 1), st.sampled_from(SYMBOLS),
                          st.floats(1.0, 500.0)), min_size=1, max_size=8))
def test_any_sequence_of_writes_and_reads_reads_the_rows(
        tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, str, float]]
) -> None:
    path, url = _migrated(tmp_path_factory.mktemp("blocks"))
    start, end = SESSIONS[2], SESSIONS[-3]
    _load(url, start, end, store=True)
    for op, i, sym, value in ops:
        day = SESSIONS[i].isoformat()
        con = sqlite3.connect(path)
        with con:
            if op == "update":
                con.execute("UPDATE prices SET adj_close = ? WHERE symbol = ? AND date = ?",
                            (value, sym, day))
            elif op == "delete":
                con.execute("DELETE FROM prices WHERE symbol = ? AND date = ?", (sym, day))
            elif op == "insert":
                con.execute("INSERT OR REPLACE INTO prices (symbol, date, close, adj_close) "
                            "VALUES (?, ?, ?, ?)", (sym, day, value, value))
        con.close()
        if op == "read":
            _same(_load(url, start, end, store=True), _reference(path, start, end))
    _same(_load(url, start, end, store=True), _reference(path, start, end))
