"""Users, portfolios, positions and the portfolio analytics tables."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.models import (
    Portfolio,
    PortfolioAnalyticsCache,
    PortfolioCorrelation,
    PortfolioFactorExposure,
    PortfolioSectorExposure,
    PortfolioSnapshot,
    Position,
    StressTestResult,
    User,
)
from core.db.upsert import upsert_rows
from core.portfolio.valuation import Holding, InvestmentClass

U = User.__table__  # type: ignore[attr-defined]
PF = Portfolio.__table__  # type: ignore[attr-defined]
POS = Position.__table__  # type: ignore[attr-defined]
SNAP = PortfolioSnapshot.__table__  # type: ignore[attr-defined]
PFE = PortfolioFactorExposure.__table__  # type: ignore[attr-defined]
PSE = PortfolioSectorExposure.__table__  # type: ignore[attr-defined]
PCOR = PortfolioCorrelation.__table__  # type: ignore[attr-defined]
STRESS = StressTestResult.__table__  # type: ignore[attr-defined]
CACHE = PortfolioAnalyticsCache.__table__  # type: ignore[attr-defined]
_IN = 900


def new_id() -> str:
    """A new random identifier (UUID4 text)."""
    return str(uuid.uuid4())


def _chunks(items: Sequence[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), _IN):
        yield list(items[i : i + _IN])


async def create_user(
    conn: AsyncConnection, name: str, token_hash: str, is_admin: bool = False
) -> str:
    """Insert a user; returns its id."""
    uid = new_id()
    await conn.execute(sa.insert(U).values(
        id=uid, name=name, token_hash=token_hash, is_admin=is_admin,
        created_at=dt.datetime.now(dt.UTC)))
    return uid


async def create_portfolio(
    conn: AsyncConnection,
    owner_id: str,
    name: str,
    cash: Decimal,
    positions: Sequence[dict[str, Any]] = (),
    portfolio_id: str | None = None,
) -> str:
    """Insert a portfolio with its positions (dicts of ``Position`` columns); returns its id."""
    pid = portfolio_id or new_id()
    now = dt.datetime.now(dt.UTC)
    await conn.execute(sa.insert(PF).values(
        id=pid, owner_id=owner_id, name=name, base_currency="USD", cash_balance=cash,
        created_at=now, updated_at=now))
    await add_positions(conn, pid, positions)
    return pid


@dataclass(frozen=True)
class PortfolioVersion:
    """What a portfolio's analyses depend on in its own row: the cash balance, and
    ``updated_at``, which every change of the portfolio or its positions moves."""

    cash: Decimal
    updated_at: dt.datetime
    deleted: bool


async def portfolio_versions(
    conn: AsyncConnection, portfolio_ids: Sequence[str], *, lock: bool = False
) -> dict[str, PortfolioVersion]:
    """The :class:`PortfolioVersion` of each existing portfolio in ``portfolio_ids``.

    ``lock``: the rows are also locked for this transaction, in id order. Every
    transaction that writes a portfolio's positions, snapshots, position values or
    analytics cache locks the portfolio row *first* (the API's writes, the instant
    snapshot, the nightly refresh): one order, so two of them wait for each other instead
    of deadlocking, and what is checked under the lock holds until the commit.
    PostgreSQL: ``SELECT … ORDER BY id FOR NO KEY UPDATE`` (the foreign-key checks of
    inserts still pass); SQLite: a write transaction holds the database's write lock from
    its start (:func:`core.db.engine.transaction`), which covers this.
    """
    out: dict[str, PortfolioVersion] = {}
    for part in _chunks(sorted(set(portfolio_ids))):
        stmt = (sa.select(PF.c.id, PF.c.cash_balance, PF.c.updated_at, PF.c.deleted_at)
                .where(PF.c.id.in_(part)).order_by(PF.c.id))
        rows = (await conn.execute(stmt.with_for_update(key_share=True) if lock else stmt))
        out.update({r.id: PortfolioVersion(r.cash_balance, r.updated_at,
                                           r.deleted_at is not None) for r in rows})
    return out


async def lock_portfolios(
    conn: AsyncConnection, portfolio_ids: Sequence[str]
) -> dict[str, PortfolioVersion]:
    """:func:`portfolio_versions` with the rows locked (the first step of a write)."""
    return await portfolio_versions(conn, portfolio_ids, lock=True)


async def add_positions(
    conn: AsyncConnection, portfolio_id: str, positions: Sequence[dict[str, Any]]
) -> list[str]:
    """Insert positions into a portfolio; returns their ids."""
    now = dt.datetime.now(dt.UTC)
    rows = [{
        "id": p.get("id") or new_id(), "portfolio_id": portfolio_id, "symbol": p["symbol"],
        "quantity": p["quantity"], "entry_date": p["entry_date"],
        "entry_price": p["entry_price"], "exit_date": p.get("exit_date"),
        "exit_price": p.get("exit_price"),
        "investment_class": str(p.get("investment_class", InvestmentClass.PUBLIC)),
        "manual_value": p.get("manual_value"), "market_value": None,
        "market_value_date": None, "created_at": now,
    } for p in positions]
    if rows:
        await conn.execute(sa.insert(POS), rows)
    return [r["id"] for r in rows]


@dataclass(frozen=True)
class PortfolioState:
    """What the refresh needs to know of a portfolio before valuing it: its first snapshot,
    the snapshots of the planning window and the last one before that window."""

    id: str
    cash: Decimal
    first_snapshot_date: dt.date | None
    window_snapshots: frozenset[dt.date]
    """Snapshot dates inside the window."""
    broken_chain: frozenset[dt.date]
    """Window snapshots after the portfolio's first one that lack a daily P&L (written
    while the session before them had no snapshot, e.g. by the API's instant snapshot)."""
    last_before_window: dt.date | None


async def active_portfolios(
    conn: AsyncConnection, window_start: dt.date, window_end: dt.date,
    ids: Sequence[str] | None = None,
) -> list[PortfolioState]:
    """Portfolios not soft-deleted, with their snapshot history around the window
    ``[window_start, window_end]``, ordered by id."""
    before = sa.case((SNAP.c.date < window_start, SNAP.c.date))
    summary = (
        sa.select(PF.c.id, PF.c.cash_balance, sa.func.min(SNAP.c.date), sa.func.max(before))
        .select_from(PF.outerjoin(SNAP, SNAP.c.portfolio_id == PF.c.id))
        .where(PF.c.deleted_at.is_(None))
        .group_by(PF.c.id, PF.c.cash_balance)
    )
    window = sa.select(SNAP.c.portfolio_id, SNAP.c.date, SNAP.c.daily_pnl.is_(None)).where(
        SNAP.c.date >= window_start, SNAP.c.date <= window_end)
    heads: list[sa.Row] = []
    rows: list[sa.Row] = []
    if ids is None:
        heads = list((await conn.execute(summary)).all())
        rows = list((await conn.execute(window)).all())
    else:
        for part in _chunks(ids):
            heads.extend((await conn.execute(summary.where(PF.c.id.in_(part)))).all())
            rows.extend((await conn.execute(
                window.where(SNAP.c.portfolio_id.in_(part)))).all())
    dates: dict[str, set[dt.date]] = {}
    no_pnl: dict[str, set[dt.date]] = {}
    for pid, day, pnl_missing in rows:
        dates.setdefault(pid, set()).add(day)
        if pnl_missing:
            no_pnl.setdefault(pid, set()).add(day)
    out = []
    for pid, cash, first, last_before in heads:
        out.append(PortfolioState(
            pid, cash, first, frozenset(dates.get(pid, ())),
            frozenset(d for d in no_pnl.get(pid, ()) if d != first), last_before))
    return sorted(out, key=lambda p: p.id)


async def snapshot_equities(
    conn: AsyncConnection, keys: Sequence[tuple[str, dt.date]]
) -> dict[tuple[str, dt.date], Decimal]:
    """Equity of the snapshots ``(portfolio_id, date)`` in ``keys`` that exist."""
    by_date: dict[dt.date, list[str]] = {}
    for pid, day in keys:
        by_date.setdefault(day, []).append(pid)
    out: dict[tuple[str, dt.date], Decimal] = {}
    for day, pids in by_date.items():
        for part in _chunks(pids):
            stmt = sa.select(SNAP.c.portfolio_id, SNAP.c.equity).where(
                SNAP.c.date == day, SNAP.c.portfolio_id.in_(part))
            out.update({(pid, day): equity for pid, equity in (await conn.execute(stmt)).all()})
    return out


def holding(r: sa.Row) -> Holding:
    """A ``positions`` row as a valuation ``Holding`` (ValueError for an invalid class)."""
    return Holding(
        position_id=r.id, symbol=r.symbol, quantity=r.quantity, entry_date=r.entry_date,
        entry_price=r.entry_price, exit_date=r.exit_date, exit_price=r.exit_price,
        investment_class=InvestmentClass(r.investment_class), manual_value=r.manual_value,
    )


async def load_holdings(
    conn: AsyncConnection, portfolio_ids: Sequence[str]
) -> tuple[dict[str, list[Holding]], dict[str, str]]:
    """Positions of each portfolio as valuation ``Holding``s (every portfolio gets a list),
    and the portfolios with a position that is not valid (portfolio → reason)."""
    out: dict[str, list[Holding]] = {pid: [] for pid in portfolio_ids}
    invalid: dict[str, str] = {}
    for part in _chunks(portfolio_ids):
        stmt = sa.select(POS).where(POS.c.portfolio_id.in_(part)).order_by(
            POS.c.portfolio_id, POS.c.symbol, POS.c.id)
        for r in (await conn.execute(stmt)).all():
            try:
                out[r.portfolio_id].append(holding(r))
            except ValueError as exc:
                invalid.setdefault(r.portfolio_id, f"invalid position: {exc}")
    return out, invalid


async def upsert_snapshots(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
    """Store snapshots (PK portfolio_id + date)."""
    return await upsert_rows(conn, SNAP, rows, key=["portfolio_id", "date"])


async def upsert_factor_exposures(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
    """Store portfolio factor exposures (PK portfolio_id + date + factor)."""
    return await upsert_rows(conn, PFE, rows, key=["portfolio_id", "date", "factor"])


async def replace_for_dates(
    conn: AsyncConnection, table_name: str, keys: Sequence[tuple[str, dt.date]],
    rows: Sequence[dict[str, Any]], key: Sequence[str],
) -> int:
    """Make the rows of ``table_name`` for each (portfolio, date) in ``keys`` exactly ``rows``
    (rows that no longer apply, e.g. a sector no longer held, disappear)."""
    table = {"portfolio_sector_exposures": PSE, "stress_test_results": STRESS}[table_name]
    by_date: dict[dt.date, list[str]] = {}
    for pid, day in keys:
        by_date.setdefault(day, []).append(pid)
    for day, pids in by_date.items():
        for part in _chunks(pids):
            await conn.execute(sa.delete(table).where(
                table.c.date == day, table.c.portfolio_id.in_(part)))
    return await upsert_rows(conn, table, rows, key=key)


async def upsert_correlations(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
    """Store correlation matrices (PK portfolio_id + date)."""
    return await upsert_rows(conn, PCOR, rows, key=["portfolio_id", "date"])


async def update_position_values(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Set ``market_value`` and ``market_value_date`` of positions (dicts with ``id``).

    The present only moves forward: a row whose date is before the stored
    ``market_value_date`` changes nothing (decided in SQL, whatever order runs commit in).
    """
    if not rows:
        return
    stored = POS.c.market_value_date
    day = sa.bindparam("mvd", type_=stored.type)
    current = sa.or_(stored.is_(None), day >= stored)
    stmt = (sa.update(POS).where(POS.c.id == sa.bindparam("_id")).values(
        market_value=sa.case(
            (current, sa.bindparam("mv", type_=POS.c.market_value.type)),
            else_=POS.c.market_value),
        market_value_date=sa.case((current, day), else_=stored)))
    await conn.execute(stmt, [
        {"_id": r["id"], "mv": r["market_value"], "mvd": r["market_value_date"]} for r in rows])


async def invalidate_cache(conn: AsyncConnection, portfolio_ids: Sequence[str]) -> None:
    """Drop every cached analytics entry of these portfolios."""
    for part in _chunks(portfolio_ids):
        await conn.execute(sa.delete(CACHE).where(CACHE.c.portfolio_id.in_(part)))


async def count_portfolios(conn: AsyncConnection) -> int:
    """Portfolios not soft-deleted."""
    stmt = sa.select(sa.func.count()).select_from(PF).where(PF.c.deleted_at.is_(None))
    return int((await conn.execute(stmt)).scalar_one())


async def held_symbols(conn: AsyncConnection) -> list[str]:
    """Distinct symbols of PUBLIC/OPTIONS positions in portfolios that are not deleted."""
    stmt = (
        sa.select(POS.c.symbol).distinct()
        .select_from(POS.join(PF, PF.c.id == POS.c.portfolio_id))
        .where(PF.c.deleted_at.is_(None),
               POS.c.investment_class != InvestmentClass.PRIVATE.value)
        .order_by(POS.c.symbol)
    )
    return [r[0] for r in (await conn.execute(stmt)).all()]
