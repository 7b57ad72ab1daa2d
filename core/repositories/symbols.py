"""The symbol universe: which symbols exist, their kind, status and data dates.

May import: ``core.db``. Not: services, flows, api, cli.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.models import Symbol, SymbolKind, SymbolStatus
from core.db.upsert import upsert_rows

_symbols = Symbol.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SymbolState:
    """A row of the universe as the batch needs it."""

    symbol: str
    kind: SymbolKind
    status: SymbolStatus
    first_price_date: dt.date | None
    last_price_date: dt.date | None
    last_factor_date: dt.date | None
    error_reason: str | None = None


def _state(row: sa.Row) -> SymbolState:
    return SymbolState(
        symbol=row.symbol,
        kind=SymbolKind(row.kind),
        status=SymbolStatus(row.status),
        first_price_date=row.first_price_date,
        last_price_date=row.last_price_date,
        last_factor_date=row.last_factor_date,
        error_reason=row.error_reason,
    )


async def add_symbols(
    conn: AsyncConnection,
    symbols: Iterable[tuple[str, SymbolKind]],
    status: SymbolStatus = SymbolStatus.pending,
) -> int:
    """Insert symbols that are not in the universe yet (existing rows are left alone)."""
    now = dt.datetime.now(dt.UTC)
    rows = [
        {"symbol": s, "kind": k.value, "status": status.value, "created_at": now}
        for s, k in symbols
    ]
    return await upsert_rows(conn, _symbols, rows, key=["symbol"], update=())


async def get_states(
    conn: AsyncConnection,
    symbols: Sequence[str] | None = None,
    statuses: Sequence[SymbolStatus] | None = None,
) -> list[SymbolState]:
    """Universe rows, optionally only ``symbols`` and/or ``statuses``, ordered by symbol."""
    stmt = sa.select(_symbols).order_by(_symbols.c.symbol)
    if statuses is not None:
        stmt = stmt.where(_symbols.c.status.in_([s.value for s in statuses]))
    if symbols is None:
        return [_state(r) for r in (await conn.execute(stmt)).all()]
    out: list[SymbolState] = []
    wanted = list(symbols)
    for i in range(0, len(wanted), 900):  # SQLite's bound-parameter limit
        chunk = stmt.where(_symbols.c.symbol.in_(wanted[i : i + 900]))
        out.extend(_state(r) for r in (await conn.execute(chunk)).all())
    return sorted(out, key=lambda s: s.symbol)


FORWARD_ONLY = ("last_price_date", "last_factor_date")
"""Latest-state dates: an update only moves them forward (a backfill writes history)."""
BACKWARD_ONLY = ("first_price_date",)


def _bounded(column: sa.Column, value: sa.BindParameter, later: bool) -> sa.Case:
    newer = value > column if later else value < column
    return sa.case((sa.or_(column.is_(None), newer), value), else_=column)


async def update_states(conn: AsyncConnection, updates: Sequence[dict]) -> None:
    """Bulk-update symbol rows. Each dict holds ``symbol`` plus the columns to set.

    ``last_price_date`` and ``last_factor_date`` only move forward and
    ``first_price_date`` only backward, whatever order runs commit in. Dicts are grouped
    by their key set so each group is one executemany.
    """
    groups: dict[tuple[str, ...], list[dict]] = {}
    for u in updates:
        cols = tuple(sorted(k for k in u if k != "symbol"))
        if cols:
            groups.setdefault(cols, []).append({**u, "_symbol": u["symbol"]})
    for cols, rows in groups.items():
        stmt = (
            sa.update(_symbols)
            .where(_symbols.c.symbol == sa.bindparam("_symbol"))
            .values({c: _bounded(_symbols.c[c], sa.bindparam(c), c in FORWARD_ONLY)
                     if c in FORWARD_ONLY + BACKWARD_ONLY else sa.bindparam(c) for c in cols})
        )
        payload = [{"_symbol": r["_symbol"], **{c: r[c] for c in cols}} for r in rows]
        await conn.execute(stmt, payload)


async def count_by_status(conn: AsyncConnection) -> dict[str, int]:
    """Number of symbols per status."""
    rows = (await conn.execute(sa.select(_symbols.c.status,
                                         sa.func.count()).group_by(_symbols.c.status))).all()
    return {r[0]: int(r[1]) for r in rows}


async def symbol_row(conn: AsyncConnection, symbol: str) -> sa.Row | None:
    """The universe row of ``symbol`` (None when it is not in the universe)."""
    return (await conn.execute(sa.select(_symbols).where(_symbols.c.symbol == symbol))).first()
