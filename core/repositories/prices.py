"""Daily prices and corporate actions: bulk upserts and aligned price matrices."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from core import calendar
from core.db.models import CorporateAction, Price
from core.db.upsert import upsert_rows

P = Price.__table__  # type: ignore[attr-defined]
A = CorporateAction.__table__  # type: ignore[attr-defined]
_IN_CHUNK = 900  # symbols per IN (...) list: below SQLite's bound-parameter limit


def _none_if_nan(values: np.ndarray) -> list:
    return [None if v != v else float(v) for v in values.tolist()]


async def upsert_bars(conn: AsyncConnection, bars: pd.DataFrame) -> int:
    """Upsert validated bars (``core.providers.base.BAR_COLUMNS``); returns rows written.

    Prices are rounded to 6 decimals, the precision of the ``prices`` columns.
    """
    if bars.empty:
        return 0
    n = len(bars)
    days = pd.to_datetime(bars["date"]).dt.date.tolist()
    cols = {c: _none_if_nan(np.round(bars[c].to_numpy(dtype=float), 6)) for c in
            ("open", "high", "low", "close", "adj_close")}
    vol = _none_if_nan(bars["volume"].to_numpy(dtype=float))
    syms = bars["symbol"].tolist()
    rows = (
        {
            "symbol": syms[i], "date": days[i], "open": cols["open"][i], "high": cols["high"][i],
            "low": cols["low"][i], "close": cols["close"][i], "adj_close": cols["adj_close"][i],
            "volume": vol[i],
        }
        for i in range(n)
    )
    return await upsert_rows(conn, P, rows, key=["symbol", "date"])


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
    return await upsert_rows(conn, A, rows, key=["symbol", "date", "kind"])


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

    def column(self, symbol: str) -> int:
        return self.symbols.index(symbol)


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
    col = {s: j for j, s in enumerate(syms)}
    first = calendar.session_positions([sessions[0]])[0]
    for i in range(0, n, _IN_CHUNK):
        part = syms[i : i + _IN_CHUNK]
        stmt = sa.select(
            P.c.symbol, P.c.date,
            sa.type_coerce(P.c.close, sa.Float), sa.type_coerce(P.c.adj_close, sa.Float),
        ).where(P.c.symbol.in_(part), P.c.date >= start, P.c.date <= end)
        rows = (await conn.execute(stmt)).all()
        if rows:
            s_col, d_col, c_col, a_col = zip(*rows, strict=True)
            rows_idx = calendar.session_positions(d_col) - first
            cols_idx = np.fromiter((col[s] for s in s_col), dtype=np.int64, count=len(s_col))
            ok = (rows_idx >= 0) & (rows_idx < t)
            close[rows_idx[ok], cols_idx[ok]] = np.asarray(c_col, dtype=float)[ok]
            adj[rows_idx[ok], cols_idx[ok]] = np.asarray(a_col, dtype=float)[ok]
        astmt = sa.select(A.c.symbol, A.c.date, A.c.value).where(
            A.c.symbol.in_(part), A.c.kind == "split", A.c.date >= start, A.c.date <= end
        )
        for s, d, v in (await conn.execute(astmt)).all():
            pos = calendar.session_positions([d])[0] - first
            if 0 <= pos < t and v > 0:
                split[pos, col[s]] = float(v)
    return PriceMatrix(sessions, syms, close, adj, split)


async def last_price_dates(conn: AsyncConnection, symbols: Sequence[str]) -> dict[str, dt.date]:
    """Latest stored price date per symbol (symbols without prices are absent)."""
    out: dict[str, dt.date] = {}
    for i in range(0, len(symbols), _IN_CHUNK):
        part = list(symbols[i : i + _IN_CHUNK])
        stmt = (
            sa.select(P.c.symbol, sa.func.max(P.c.date))
            .where(P.c.symbol.in_(part))
            .group_by(P.c.symbol)
        )
        out.update({s: d for s, d in (await conn.execute(stmt)).all()})
    return out


async def count_rows(conn: AsyncConnection) -> int:
    """Number of stored price rows."""
    return int((await conn.execute(sa.select(sa.func.count()).select_from(P))).scalar_one())
