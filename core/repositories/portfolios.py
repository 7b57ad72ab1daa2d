"""Portfolios, positions, snapshots and the portfolio analytics tables.

May import: ``core.db`` and the portfolio domain types (``core.portfolio.valuation``). Not:
services, flows, api, cli.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.models import (
    Portfolio,
    PortfolioAnalyticsCache,
    PortfolioCorrelation,
    PortfolioFactorExposure,
    PortfolioRisk,
    PortfolioSectorExposure,
    PortfolioSnapshot,
    Position,
    StressTestResult,
    User,
)
from core.db.upsert import UPSERT_CHUNK_ROWS, execute_many, upsert_rows
from core.portfolio.valuation import Holding, InvestmentClass

_portfolios = Portfolio.__table__  # type: ignore[attr-defined]
_snapshots = PortfolioSnapshot.__table__  # type: ignore[attr-defined]
_analytics_cache = PortfolioAnalyticsCache.__table__  # type: ignore[attr-defined]
_positions = Position.__table__  # type: ignore[attr-defined]
_factor_exposures = PortfolioFactorExposure.__table__  # type: ignore[attr-defined]
_sector_exposures = PortfolioSectorExposure.__table__  # type: ignore[attr-defined]
_correlations = PortfolioCorrelation.__table__  # type: ignore[attr-defined]
_stress_results = StressTestResult.__table__  # type: ignore[attr-defined]
_risk = PortfolioRisk.__table__  # type: ignore[attr-defined]
_users = User.__table__  # type: ignore[attr-defined]
_IN = 900
"""Ids per ``IN (...)`` query."""


def new_id() -> str:
    """A new random identifier (UUID4 text)."""
    return str(uuid.uuid4())


def _chunks(items: Sequence[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), _IN):
        yield list(items[i : i + _IN])


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
    await conn.execute(sa.insert(_portfolios).values(
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
        stmt = (sa.select(_portfolios.c.id, _portfolios.c.cash_balance, _portfolios.c.updated_at,
                          _portfolios.c.deleted_at)
                .where(_portfolios.c.id.in_(part)).order_by(_portfolios.c.id))
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
        await conn.execute(sa.insert(_positions), rows)
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
    before = sa.case((_snapshots.c.date < window_start, _snapshots.c.date))
    summary = (
        sa.select(_portfolios.c.id, _portfolios.c.cash_balance, sa.func.min(_snapshots.c.date),
                  sa.func.max(before))
        .select_from(_portfolios.outerjoin(_snapshots,
                                           _snapshots.c.portfolio_id == _portfolios.c.id))
        .where(_portfolios.c.deleted_at.is_(None))
        .group_by(_portfolios.c.id, _portfolios.c.cash_balance)
    )
    window = sa.select(_snapshots.c.portfolio_id, _snapshots.c.date,
                       _snapshots.c.daily_pnl.is_(None)).where(
        _snapshots.c.date >= window_start, _snapshots.c.date <= window_end)
    heads: list[sa.Row] = []
    rows: list[sa.Row] = []
    if ids is None:
        heads = list((await conn.execute(summary)).all())
        rows = list((await conn.execute(window)).all())
    else:
        for part in _chunks(ids):
            heads.extend((await conn.execute(summary.where(_portfolios.c.id.in_(part)))).all())
            rows.extend((await conn.execute(
                window.where(_snapshots.c.portfolio_id.in_(part)))).all())
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
            stmt = sa.select(_snapshots.c.portfolio_id, _snapshots.c.equity).where(
                _snapshots.c.date == day, _snapshots.c.portfolio_id.in_(part))
            out.update({(pid, day): equity for pid, equity in (await conn.execute(stmt)).all()})
    return out


def holding(r: sa.Row) -> Holding:
    """A ``positions`` row as a valuation ``Holding`` (ValueError for an invalid class)."""
    return Holding(
        position_id=r.id, symbol=r.symbol, quantity=r.quantity, entry_date=r.entry_date,
        entry_price=r.entry_price, exit_date=r.exit_date, exit_price=r.exit_price,
        investment_class=r.investment_class, manual_value=r.manual_value,
    )


_HOLDING_COLUMNS = (_positions.c.portfolio_id, _positions.c.id, _positions.c.symbol,
                    _positions.c.quantity, _positions.c.entry_date, _positions.c.entry_price,
                    _positions.c.exit_date, _positions.c.exit_price,
                    _positions.c.investment_class, _positions.c.manual_value)


async def load_holdings(
    conn: AsyncConnection, portfolio_ids: Sequence[str]
) -> tuple[dict[str, list[Holding]], dict[str, str]]:
    """Positions of each portfolio as valuation ``Holding``s (every portfolio gets a list),
    and the portfolios with a position that is not valid (portfolio → reason)."""
    out: dict[str, list[Holding]] = {pid: [] for pid in portfolio_ids}
    invalid: dict[str, str] = {}
    for part in _chunks(portfolio_ids):
        stmt = sa.select(*_HOLDING_COLUMNS).where(_positions.c.portfolio_id.in_(part)).order_by(
            _positions.c.portfolio_id, _positions.c.symbol, _positions.c.id)
        # plain tuples, fields by position: a Row's attribute lookups cost as much again
        for pid, *fields in (await conn.execute(stmt)).tuples():
            try:
                out[pid].append(Holding(*fields))
            except ValueError as exc:
                invalid.setdefault(pid, f"invalid position: {exc}")
    return out, invalid


async def upsert_snapshots(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
    """Store snapshots (PK portfolio_id + date)."""
    return await upsert_rows(conn, _snapshots, rows, key=["portfolio_id", "date"])


async def upsert_factor_exposures(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
    """Store portfolio factor exposures (PK portfolio_id + date + factor)."""
    return await upsert_rows(conn, _factor_exposures, rows, key=["portfolio_id", "date", "factor"])


async def replace_for_dates(
    conn: AsyncConnection, table_name: str, keys: Sequence[tuple[str, dt.date]],
    rows: Sequence[dict[str, Any]], key: Sequence[str],
) -> int:
    """Make the rows of ``table_name`` for each (portfolio, date) in ``keys`` exactly ``rows``
    (rows that no longer apply, e.g. a sector no longer held, disappear)."""
    table = {"portfolio_sector_exposures": _sector_exposures,
             "stress_test_results": _stress_results}[table_name]
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
    return await upsert_rows(conn, _correlations, rows, key=["portfolio_id", "date"])


async def upsert_risk(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
    """Store nightly risk answers (PK portfolio_id + date; see ``PortfolioRisk``)."""
    return await upsert_rows(conn, _risk, rows, key=["portfolio_id", "date"])


async def stored_risk(conn: AsyncConnection, portfolio_id: str, day: dt.date
                      ) -> tuple[str, dict[str, Any]] | None:
    """(positions hash, risk answer) stored for a portfolio at ``day``, or None."""
    row = (await conn.execute(sa.select(_risk.c.positions_hash, _risk.c.payload).where(
        _risk.c.portfolio_id == portfolio_id, _risk.c.date == day))).first()
    return None if row is None else (row[0], row[1])


async def risk_history(
    conn: AsyncConnection, portfolio_id: str, *, start: dt.date | None,
    end: dt.date | None, limit: int,
) -> list[sa.Row]:
    """At most ``limit`` ``portfolio_risk`` rows of a portfolio with ``start <= date <= end``
    (None: unbounded), newest first."""
    stmt = sa.select(_risk).where(_risk.c.portfolio_id == portfolio_id)
    if start is not None:
        stmt = stmt.where(_risk.c.date >= start)
    if end is not None:
        stmt = stmt.where(_risk.c.date <= end)
    return list((await conn.execute(stmt.order_by(_risk.c.date.desc()).limit(limit))).all())


async def update_position_values(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Set ``market_value`` and ``market_value_date`` of positions (dicts with ``id``).

    The present only moves forward: a row whose date is before the stored
    ``market_value_date`` changes nothing (decided in SQL, whatever order runs commit in).
    """
    if not rows:
        return
    stored = _positions.c.market_value_date
    ids = [r["id"] for r in rows]
    if conn.dialect.name == "postgresql" and len(set(ids)) == len(ids):
        await _pg_update_position_values(conn, ids, rows)
        return
    day = sa.bindparam("mvd", type_=stored.type)
    current = sa.or_(stored.is_(None), day >= stored)
    stmt = (sa.update(_positions).where(_positions.c.id == sa.bindparam("_id")).values(
        market_value=sa.case(
            (current, sa.bindparam("mv", type_=_positions.c.market_value.type)),
            else_=_positions.c.market_value),
        market_value_date=sa.case((current, day), else_=stored)))
    await execute_many(conn, stmt, {"_id": ids,
                                    "mv": [r["market_value"] for r in rows],
                                    "mvd": [r["market_value_date"] for r in rows]})


async def _pg_update_position_values(conn: AsyncConnection, ids: Sequence[str],
                                     rows: Sequence[dict[str, Any]]) -> None:
    """:func:`update_position_values` on PostgreSQL as one statement per chunk joining the
    positions to ``unnest`` of one array per column (an executemany took 10.5 s of the
    10,000-portfolio refresh's 29 s of writes). The same decision row by row: both CASEs
    see the stored row. ``ids`` must be distinct (``UPDATE … FROM`` applies one match).
    The positions' rows are locked in the plan's order, not the rows' order: the portfolio
    rows, locked first by every writer of positions, keep writers apart."""
    stored = _positions.c.market_value_date
    id_array = sa.bindparam("_ids", type_=postgresql.ARRAY(_positions.c.id.type))
    given = sa.func.unnest(
        id_array,
        sa.bindparam("_mv", type_=postgresql.ARRAY(_positions.c.market_value.type)),
        sa.bindparam("_mvd", type_=postgresql.ARRAY(stored.type)),
    ).table_valued(sa.column("id", _positions.c.id.type),
                   sa.column("mv", _positions.c.market_value.type),
                   sa.column("mvd", stored.type)).render_derived()
    current = sa.or_(stored.is_(None), given.c.mvd >= stored)
    # ``= ANY(ids)`` as well: else the planner hashes all positions for every chunk
    stmt = sa.update(_positions).where(
        _positions.c.id == given.c.id, _positions.c.id == sa.any_(id_array)).values(
        market_value=sa.case((current, given.c.mv), else_=_positions.c.market_value),
        market_value_date=sa.case((current, given.c.mvd), else_=stored))
    for i in range(0, len(ids), UPSERT_CHUNK_ROWS):
        part = rows[i : i + UPSERT_CHUNK_ROWS]
        await conn.execute(stmt, {"_ids": list(ids[i : i + UPSERT_CHUNK_ROWS]),
                                  "_mv": [r["market_value"] for r in part],
                                  "_mvd": [r["market_value_date"] for r in part]})


async def invalidate_cache(conn: AsyncConnection, portfolio_ids: Sequence[str]) -> None:
    """Drop every cached analytics entry of these portfolios."""
    for part in _chunks(portfolio_ids):
        await conn.execute(sa.delete(_analytics_cache).where(
            _analytics_cache.c.portfolio_id.in_(part)))


async def count_portfolios(conn: AsyncConnection) -> int:
    """Portfolios not soft-deleted."""
    stmt = sa.select(sa.func.count()).select_from(_portfolios).where(
        _portfolios.c.deleted_at.is_(None))
    return int((await conn.execute(stmt)).scalar_one())


async def held_symbols(conn: AsyncConnection) -> list[str]:
    """Distinct symbols of PUBLIC/OPTIONS positions in portfolios that are not deleted."""
    stmt = (
        sa.select(_positions.c.symbol).distinct()
        .select_from(_positions.join(_portfolios, _portfolios.c.id == _positions.c.portfolio_id))
        .where(_portfolios.c.deleted_at.is_(None),
               _positions.c.investment_class != InvestmentClass.PRIVATE.value)
        .order_by(_positions.c.symbol)
    )
    return [r[0] for r in (await conn.execute(stmt)).all()]


# --- one owner's portfolios and positions (the API's reads and writes) --------------------


def _live_of(owner_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(_portfolios.c.owner_id == owner_id, _portfolios.c.deleted_at.is_(None))


async def owned_portfolio(
    conn: AsyncConnection, owner_id: str, portfolio_id: str, *, lock: bool = False
) -> sa.Row | None:
    """The live ``portfolios`` row ``portfolio_id`` if ``owner_id`` owns it, else None.

    ``lock``: the row is locked for the transaction, like :func:`lock_portfolios`."""
    stmt = sa.select(_portfolios).where(_portfolios.c.id == portfolio_id, _live_of(owner_id))
    return (await conn.execute(stmt.with_for_update(key_share=True) if lock else stmt)).first()


async def owns_portfolio(conn: AsyncConnection, owner_id: str, portfolio_id: str) -> bool:
    """Whether ``owner_id`` owns the live portfolio ``portfolio_id``."""
    stmt = sa.select(_portfolios.c.id).where(_portfolios.c.id == portfolio_id, _live_of(owner_id))
    return (await conn.execute(stmt)).first() is not None


async def portfolio_ids_of_owner(conn: AsyncConnection, owner_id: str) -> set[str]:
    """Ids of every portfolio ``owner_id`` has, soft-deleted ones included."""
    return set((await conn.execute(sa.select(_portfolios.c.id).where(
        _portfolios.c.owner_id == owner_id))).scalars())


async def live_portfolio_ids(conn: AsyncConnection) -> list[str]:
    """Ids of the portfolios not soft-deleted (no order)."""
    return [r[0] for r in (await conn.execute(
        sa.select(_portfolios.c.id).where(_portfolios.c.deleted_at.is_(None)))).all()]


async def live_portfolio_name(conn: AsyncConnection, portfolio_id: str) -> str | None:
    """The name of the live portfolio ``portfolio_id``; None when there is none."""
    return (await conn.execute(sa.select(_portfolios.c.name).where(
        _portfolios.c.id == portfolio_id, _portfolios.c.deleted_at.is_(None)))).scalar()


async def portfolio_name_taken(
    conn: AsyncConnection, owner_id: str, name: str, except_id: str | None = None
) -> bool:
    """Whether a live portfolio of ``owner_id`` other than ``except_id`` is named ``name``."""
    stmt = sa.select(_portfolios.c.id).where(_portfolios.c.name == name, _live_of(owner_id))
    if except_id:
        stmt = stmt.where(_portfolios.c.id != except_id)
    return (await conn.execute(stmt)).first() is not None


async def mark_portfolio_changed(conn: AsyncConnection, portfolio_id: str,
                                 **values: Any) -> None:
    """Set ``updated_at`` to now (what every analysis of the portfolio depends on, see
    :class:`PortfolioVersion`) and the columns in ``values``."""
    await conn.execute(sa.update(_portfolios).where(_portfolios.c.id == portfolio_id).values(
        updated_at=dt.datetime.now(dt.UTC), **values))


async def owner_portfolio_page(
    conn: AsyncConnection, owner_id: str, *, limit: int, offset: int
) -> tuple[int, list[sa.Row]]:
    """The number of live portfolios of ``owner_id``, and one page of them by name: the
    ``portfolios`` columns plus ``n`` (positions), ``d`` (latest snapshot date) and
    ``equity`` (of that snapshot)."""
    counts = (sa.select(_positions.c.portfolio_id, sa.func.count().label("n"))
              .group_by(_positions.c.portfolio_id).subquery())
    last = (sa.select(_snapshots.c.portfolio_id, sa.func.max(_snapshots.c.date).label("d"))
            .group_by(_snapshots.c.portfolio_id).subquery())
    live = _live_of(owner_id)
    stmt = (
        sa.select(_portfolios, counts.c.n, last.c.d, _snapshots.c.equity)
        .select_from(
            _portfolios.outerjoin(counts, counts.c.portfolio_id == _portfolios.c.id)
            .outerjoin(last, last.c.portfolio_id == _portfolios.c.id)
            .outerjoin(_snapshots, sa.and_(_snapshots.c.portfolio_id == _portfolios.c.id,
                                           _snapshots.c.date == last.c.d)))
        .where(live).order_by(_portfolios.c.name, _portfolios.c.id).limit(limit).offset(offset)
    )
    total = int((await conn.execute(
        sa.select(sa.func.count()).select_from(_portfolios).where(live))).scalar_one())
    return total, list((await conn.execute(stmt)).all())


def _portfolio_children() -> list[sa.Table]:
    """Every table with rows of one portfolio (a foreign key to ``portfolios.id``)."""
    return [t for t in reversed(_portfolios.metadata.sorted_tables)
            if t is not _portfolios and any(fk.column is _portfolios.c.id for fk in t.foreign_keys)]


async def delete_portfolio_everywhere(conn: AsyncConnection, portfolio_id: str) -> None:
    """Delete a portfolio and every row of every table that hangs off it (hard delete)."""
    for table in _portfolio_children():
        await conn.execute(sa.delete(table).where(table.c.portfolio_id == portfolio_id))
    await conn.execute(sa.delete(_portfolios).where(_portfolios.c.id == portfolio_id))


async def position_count(conn: AsyncConnection, portfolio_id: str) -> int:
    """Number of positions of a portfolio (open and closed)."""
    return int((await conn.execute(sa.select(sa.func.count()).select_from(_positions).where(
        _positions.c.portfolio_id == portfolio_id))).scalar_one())


async def positions_of(conn: AsyncConnection, portfolio_id: str) -> list[sa.Row]:
    """The ``positions`` rows of a portfolio by symbol, entry date and id."""
    return list((await conn.execute(
        sa.select(_positions).where(_positions.c.portfolio_id == portfolio_id)
        .order_by(_positions.c.symbol, _positions.c.entry_date, _positions.c.id))).all())


async def position_in(conn: AsyncConnection, portfolio_id: str, position_id: str
                      ) -> sa.Row | None:
    """The ``positions`` row ``position_id`` if it belongs to ``portfolio_id``, else None."""
    return (await conn.execute(sa.select(_positions).where(
        _positions.c.id == position_id, _positions.c.portfolio_id == portfolio_id))).first()


async def update_position(conn: AsyncConnection, position_id: str, **values: Any) -> None:
    """Set the columns in ``values`` of position ``position_id``."""
    await conn.execute(sa.update(_positions).where(_positions.c.id == position_id)
                       .values(**values))


async def delete_position(conn: AsyncConnection, position_id: str) -> None:
    """Delete position ``position_id``."""
    await conn.execute(sa.delete(_positions).where(_positions.c.id == position_id))


async def stored_snapshots(conn: AsyncConnection, portfolio_ids: Sequence[str],
                           end: dt.date | None = None) -> list[sa.Row]:
    """Every ``portfolio_snapshots`` row of the portfolios dated up to ``end`` (None: all),
    by portfolio then date."""
    out: list[sa.Row] = []
    for part in _chunks(portfolio_ids):
        stmt = sa.select(_snapshots).where(_snapshots.c.portfolio_id.in_(part))
        if end is not None:
            stmt = stmt.where(_snapshots.c.date <= end)
        out.extend((await conn.execute(
            stmt.order_by(_snapshots.c.portfolio_id, _snapshots.c.date))).all())
    return out


async def latest_snapshot(conn: AsyncConnection, portfolio_id: str) -> sa.Row | None:
    """The newest ``portfolio_snapshots`` row of a portfolio, or None."""
    return (await conn.execute(
        sa.select(_snapshots).where(_snapshots.c.portfolio_id == portfolio_id)
        .order_by(_snapshots.c.date.desc()).limit(1))).first()


async def newest_snapshots(
    conn: AsyncConnection, portfolio_id: str, *, start: dt.date | None,
    end: dt.date | None, limit: int,
) -> list[sa.Row]:
    """At most ``limit`` snapshot rows of a portfolio with ``start <= date <= end`` (None:
    unbounded), newest first."""
    stmt = sa.select(_snapshots).where(_snapshots.c.portfolio_id == portfolio_id)
    if start is not None:
        stmt = stmt.where(_snapshots.c.date >= start)
    if end is not None:
        stmt = stmt.where(_snapshots.c.date <= end)
    return list((await conn.execute(stmt.order_by(_snapshots.c.date.desc()).limit(limit))).all())


@dataclass(frozen=True)
class Holder:
    """A live portfolio holding an open position in ``symbol``, and its owner's name."""

    symbol: str
    id: str
    name: str
    owner: str


async def open_position_holders(
    conn: AsyncConnection, symbols: Sequence[str], today: dt.date
) -> list[Holder]:
    """Live (not deleted) portfolios with an open position (no exit, or an exit after
    ``today``) in one of ``symbols``, by symbol, owner name and portfolio name."""
    out: list[Holder] = []
    for part in _chunks(list(symbols)):
        stmt = (
            sa.select(_positions.c.symbol, _portfolios.c.id, _portfolios.c.name,
                      _users.c.name.label("owner"))
            .select_from(_positions.join(_portfolios, _portfolios.c.id == _positions.c.portfolio_id)
                         .join(_users, _users.c.id == _portfolios.c.owner_id))
            .where(_positions.c.symbol.in_(part), _portfolios.c.deleted_at.is_(None),
                   sa.or_(_positions.c.exit_date.is_(None), _positions.c.exit_date > today))
            .distinct().order_by(_positions.c.symbol, _users.c.name, _portfolios.c.name)
        )
        out.extend(Holder(r.symbol, r.id, r.name, r.owner)
                   for r in (await conn.execute(stmt)).all())
    return out


async def live_cash(conn: AsyncConnection, portfolio_id: str) -> Decimal | None:
    """The cash of a portfolio that is not deleted (None: no such portfolio)."""
    return (await conn.execute(sa.select(_portfolios.c.cash_balance).where(
        _portfolios.c.id == portfolio_id, _portfolios.c.deleted_at.is_(None)))).scalar()


async def snapshot_equity(conn: AsyncConnection, portfolio_id: str, day: dt.date
                          ) -> Decimal | None:
    """The equity of the portfolio's snapshot at ``day`` (None without one)."""
    return (await conn.execute(sa.select(_snapshots.c.equity).where(
        _snapshots.c.portfolio_id == portfolio_id, _snapshots.c.date == day))).scalar()


async def store_analytics(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
    """Store analytics answers (one row per portfolio and kind, replacing the previous)."""
    return await upsert_rows(conn, _analytics_cache, rows, key=["portfolio_id", "kind"])


async def cached_analytics(conn: AsyncConnection, portfolio_id: str, kind: str
                           ) -> sa.Row | None:
    """The stored answer of one kind: ``positions_hash``, ``data_date``, ``payload``."""
    return (await conn.execute(sa.select(
        _analytics_cache.c.positions_hash, _analytics_cache.c.data_date,
        _analytics_cache.c.payload).where(_analytics_cache.c.portfolio_id == portfolio_id,
                                          _analytics_cache.c.kind == kind))).first()


def analytics_tokens_query() -> sa.Select[Any]:
    """Tokens of the portfolios in the expanding ``ids`` parameter, one row per cached kind
    (a portfolio without cached answers gives one row with ``kind`` NULL): ``id``,
    ``owner_id``, ``updated_at``, ``kind``, ``created_at``, ``data_date``,
    ``positions_hash``; deleted portfolios are left out."""
    cache = _analytics_cache
    return (
        sa.select(_portfolios.c.id, _portfolios.c.owner_id, _portfolios.c.updated_at,
                  cache.c.kind, cache.c.created_at, cache.c.data_date, cache.c.positions_hash)
        .select_from(_portfolios.outerjoin(cache, cache.c.portfolio_id == _portfolios.c.id))
        .where(_portfolios.c.id.in_(sa.bindparam("ids", expanding=True)),
               _portfolios.c.deleted_at.is_(None))
    )


# --- performance and attribution: a portfolio's history in a date range -------------------


async def snapshot_series(conn: AsyncConnection, portfolio_id: str, start: dt.date,
                          end: dt.date) -> list[sa.Row]:
    """``date``, ``equity`` and ``daily_pnl`` of a portfolio's snapshots with ``start <=
    date <= end``, oldest first, preceded by its last snapshot before ``start`` (if any):
    the equity the first return of the range is measured from."""
    cols = (_snapshots.c.date, _snapshots.c.equity, _snapshots.c.daily_pnl)
    mine = _snapshots.c.portfolio_id == portfolio_id
    before = (await conn.execute(sa.select(*cols).where(mine, _snapshots.c.date < start)
                                 .order_by(_snapshots.c.date.desc()).limit(1))).all()
    inside = (await conn.execute(sa.select(*cols).where(
        mine, _snapshots.c.date >= start, _snapshots.c.date <= end)
        .order_by(_snapshots.c.date))).all()
    return [*before, *inside]


async def history_fingerprint(conn: AsyncConnection, portfolio_id: str, end: dt.date,
                              *, risk: bool = False) -> tuple[Any, ...]:
    """A summary of a portfolio's stored history up to ``end`` that changes when any of it
    does: of its snapshots the count, first and last date and the sums of ``equity`` and
    ``daily_pnl``; with ``risk``, of its ``portfolio_risk`` rows the count, last date and
    the sums of ``var_99_1d`` and ``volatility_daily``. One aggregate query per table."""
    s = _snapshots.c
    out: tuple[Any, ...] = tuple((await conn.execute(
        sa.select(sa.func.count(), sa.func.min(s.date), sa.func.max(s.date),
                  sa.func.sum(sa.type_coerce(s.equity, sa.Float)),
                  sa.func.sum(sa.type_coerce(s.daily_pnl, sa.Float)))
        .where(s.portfolio_id == portfolio_id, s.date <= end))).one())
    if risk:
        r = _risk.c
        out += tuple((await conn.execute(
            sa.select(sa.func.count(), sa.func.max(r.date), sa.func.sum(r.var_99_1d),
                      sa.func.sum(r.volatility_daily))
            .where(r.portfolio_id == portfolio_id, r.date <= end))).one())
    return out


async def risk_factor_exposures(conn: AsyncConnection, portfolio_id: str, start: dt.date,
                                end: dt.date) -> list[tuple[dt.date, dict[str, Any]]]:
    """(date, record) of a portfolio's ``portfolio_risk`` rows with ``start <= date <= end``,
    oldest first. A compact record (``format`` 2) is read only in part: ``format``,
    ``factor_exposure`` and ``model.factors`` (the dollar exposure per factor, in that
    order); an older record (the answer itself) is read whole."""
    p = _risk.c.payload
    mine = sa.and_(_risk.c.portfolio_id == portfolio_id, _risk.c.date >= start,
                   _risk.c.date <= end)
    rows = (await conn.execute(sa.select(
        _risk.c.date, p["format"], p["factor_exposure"], p[("model", "factors")])
        .where(mine).order_by(_risk.c.date))).all()
    out: dict[dt.date, dict[str, Any]] = {
        day: {"format": fmt, "factor_exposure": exposure, "model": {"factors": factors}}
        for day, fmt, exposure, factors in rows}
    whole = [day for day, rec in out.items() if rec["factor_exposure"] is None]
    if whole:
        for day, payload in (await conn.execute(sa.select(_risk.c.date, p).where(
                mine, _risk.c.date.in_(whole)))).all():
            out[day] = payload
    return sorted(out.items())


async def prune_cached_answers(conn: AsyncConnection, portfolio_id: str, prefix: str,
                               day: dt.date, keep: int) -> None:
    """Bound the cached answers of one family (kinds starting with ``prefix``, one per
    query) of a portfolio before one more is stored: drop those of another data date, and
    the oldest beyond ``keep - 1``."""
    cache = _analytics_cache.c
    family = sa.and_(cache.portfolio_id == portfolio_id, cache.kind.like(f"{prefix}%"))
    await conn.execute(sa.delete(_analytics_cache).where(family, cache.data_date != day))
    kinds = list((await conn.execute(sa.select(cache.kind).where(family).order_by(
        cache.created_at.desc(), cache.kind))).scalars())
    if len(kinds) >= keep:
        await conn.execute(sa.delete(_analytics_cache).where(
            family, cache.kind.in_(kinds[max(keep - 1, 0):])))
