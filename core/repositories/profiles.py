"""Symbol profiles (name, sector, industry, market cap, …) for dashboards and sector exposure.

May import: ``core.db``, pandas. Not: services, flows, api, cli.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.models import SymbolProfile
from core.db.upsert import upsert_rows

_profiles = SymbolProfile.__table__  # type: ignore[attr-defined]
_TEXT = ("name", "sector", "industry")
_FLOAT = ("pe_ratio", "provider_beta")
_DECIMAL = {"market_cap": "0.01", "week52_high": "0.000001", "week52_low": "0.000001"}


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value


def profile_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows for ``symbol_profiles`` from a provider frame (``PROFILE_COLUMNS``)."""
    now = dt.datetime.now(dt.UTC)
    rows = []
    for rec in frame.to_dict("records"):
        row: dict[str, Any] = {"symbol": rec["symbol"], "updated_at": now}
        for c in _TEXT:
            v = _clean(rec.get(c))
            row[c] = None if v is None else str(v)[: 128 if c == "industry" else 64 if c ==
                                                   "sector" else 10_000]
        for c in _FLOAT:
            v = _clean(rec.get(c))
            row[c] = None if v is None else float(v)
        for c, q in _DECIMAL.items():
            v = _clean(rec.get(c))
            row[c] = None if v is None else Decimal(str(float(v))).quantize(Decimal(q))
        rows.append(row)
    return rows


async def upsert_profiles(conn: AsyncConnection, frame: pd.DataFrame) -> int:
    """Store provider profiles (rows with no data at all are skipped)."""
    if frame is None or frame.empty:
        return 0
    rows = [r for r in profile_rows(frame) if any(r[c] is not None for c in _TEXT + _FLOAT)]
    return await upsert_rows(conn, _profiles, rows, key=["symbol"])


async def symbols_without_profile(conn: AsyncConnection, symbols: Sequence[str]) -> list[str]:
    """Those of ``symbols`` that have no profile row yet."""
    have: set[str] = set()
    for i in range(0, len(symbols), 900):
        part = list(symbols[i : i + 900])
        have.update(r[0] for r in (await conn.execute(
            sa.select(_profiles.c.symbol).where(_profiles.c.symbol.in_(part)))).all())
    return [s for s in symbols if s not in have]


async def load_sectors(conn: AsyncConnection, symbols: Sequence[str]) -> dict[str, str | None]:
    """Sector per symbol (None when unknown)."""
    out: dict[str, str | None] = {}
    for i in range(0, len(symbols), 900):
        part = list(symbols[i : i + 900])
        out.update({s: sec for s, sec in (await conn.execute(
            sa.select(_profiles.c.symbol,
                      _profiles.c.sector).where(_profiles.c.symbol.in_(part)))).all()})
    return out


async def profile_row(conn: AsyncConnection, symbol: str) -> sa.Row | None:
    """The stored profile of ``symbol`` (None without one)."""
    return (await conn.execute(sa.select(_profiles).where(_profiles.c.symbol == symbol))).first()
