"""Portfolios, positions, snapshots and analytics answers of one owner: the API's service.

Plain async functions over an ``AsyncEngine`` (the API passes its pooled engine); no HTTP
here. A caller's mistake raises a :mod:`core.errors` type whose message names the field
and the problem (``"positions[2].quantity: must not be zero"``); another user's portfolio
is :class:`~core.errors.NotFound`, exactly like one that does not exist.

Writes run in one transaction; onboarding of new symbols, the instant snapshot and the
analytics are requested only after it committed (:mod:`core.services.onboarding_queue`,
:mod:`core.services.analytics`), and nothing here waits for an onboarding flow.

May import: repositories (every query is theirs), the other services, ``core.db`` engines
and transactions, ``core.launch``, the portfolio math. Not: flows, api, cli.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core import launch
from core.db.engine import is_retryable, reading, run_transaction, transaction
from core.db.types import as_utc
from core.errors import AppError, Conflict, InvalidInput, NotFound, NotReady
from core.portfolio.valuation import realized_pnl
from core.repositories import portfolios as portfolio_repo
from core.repositories import prices as price_repo
from core.services import analytics as analytics_service
from core.services import history_jobs
from core.services import onboarding_queue as onboarding_service
from core.services.analytics_cache import AnalyticsMemo, MemoEntry, stored_token
from core.services.csv_import import parse_positions_csv
from core.services.snapshot_json import snapshot_dict
from core.services.validation import (
    MAX_POSITIONS,
    PositionInput,
    bad,
    prefixed,
    today,
    validate_cash,
    validate_name,
)
from core.symbol_data import latest_data_date

log = logging.getLogger(__name__)

# --- read models ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PositionView:
    id: str
    symbol: str
    quantity: Decimal
    entry_date: dt.date
    entry_price: Decimal
    exit_date: dt.date | None
    exit_price: Decimal | None
    investment_class: str
    manual_value: Decimal | None
    market_value: Decimal | None
    market_value_date: dt.date | None
    created_at: dt.datetime
    realized_pnl: Decimal | None = None
    """Proceeds − cost basis once closed (None while open or its exit price is unknown)."""


@dataclass(frozen=True)
class PortfolioSummary:
    id: str
    name: str
    base_currency: str
    cash: Decimal
    position_count: int
    created_at: dt.datetime
    updated_at: dt.datetime
    latest_snapshot_date: dt.date | None = None
    latest_equity: Decimal | None = None


@dataclass(frozen=True)
class PortfolioView:
    id: str
    name: str
    base_currency: str
    cash: Decimal
    created_at: dt.datetime
    updated_at: dt.datetime
    positions: list[PositionView]
    latest_snapshot: dict[str, Any] | None = None
    realized_pnl: Decimal = Decimal(0)
    """Σ realized P&L of the closed positions whose exit price is known."""


@dataclass(frozen=True)
class PortfolioPage:
    items: list[PortfolioSummary]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class OnboardingOutcome:
    """What a change of positions started: each market symbol's status, and the instant
    snapshot (None while no prices are stored at all)."""

    symbols: dict[str, str]
    snapshot: dict[str, Any] | None

    @property
    def pending_symbols(self) -> list[str]:
        return sorted(s for s, st in self.symbols.items() if st == "pending")


@dataclass(frozen=True)
class PortfolioCreated:
    portfolio: PortfolioView
    outcome: OnboardingOutcome
    factor_exposures: dict[str, Any] | None
    history: history_jobs.HistoryJobView | None = None
    """The history build queued by ``build_history`` (None when not asked for)."""


@dataclass(frozen=True)
class PositionChanged:
    position: PositionView
    outcome: OnboardingOutcome


@dataclass(frozen=True)
class SnapshotList:
    items: list[dict[str, Any]]
    start: dt.date | None
    end: dt.date | None
    truncated: bool


# --- row conversion -----------------------------------------------------------------------


def _position_view(r: Any) -> PositionView:
    return PositionView(
        id=r.id, symbol=r.symbol, quantity=r.quantity, entry_date=r.entry_date,
        entry_price=r.entry_price, exit_date=r.exit_date, exit_price=r.exit_price,
        investment_class=str(r.investment_class), manual_value=r.manual_value,
        market_value=r.market_value, market_value_date=r.market_value_date,
        created_at=as_utc(r.created_at),
    )


# --- ownership ----------------------------------------------------------------------------


_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
"""What a portfolio or position id can look like (anything else cannot exist: 404 without
asking the database, which may not even accept it, e.g. a NUL byte on PostgreSQL)."""


def _not_found(portfolio_id: str) -> NotFound:
    return NotFound(f"portfolio {portfolio_id!r} not found", "id")


async def _owned(conn: AsyncConnection, owner_id: str, portfolio_id: str,
                 *, lock: bool = False) -> Any:
    """The live portfolio row, if ``owner_id`` owns it; else NotFound (never Forbidden).

    ``lock``: the row is locked for the transaction (the first statement of every write
    transaction of a portfolio: one lock order, see ``portfolio_repo.lock_portfolios``)."""
    if not _ID.fullmatch(portfolio_id):
        raise _not_found(portfolio_id)
    row = await portfolio_repo.owned_portfolio(conn, owner_id, portfolio_id, lock=lock)
    if row is None:
        raise _not_found(portfolio_id)
    return row


async def ensure_owned(engine: AsyncEngine, owner_id: str, portfolio_id: str) -> None:
    """NotFound unless ``owner_id`` owns the live portfolio ``portfolio_id``."""
    if not _ID.fullmatch(portfolio_id):
        raise _not_found(portfolio_id)
    async with reading(engine) as conn:
        found = await portfolio_repo.owns_portfolio(conn, owner_id, portfolio_id)
    if not found:
        raise _not_found(portfolio_id)


def _duplicate(name: str) -> Conflict:
    return Conflict(f"name: you already have a portfolio named {name!r}", "name")


async def _touch(conn: AsyncConnection, portfolio_id: str, **values: Any) -> None:
    """Mark a portfolio changed (``updated_at``) and set ``values``; its in-memory answers
    are dropped by the caller after the commit."""
    await portfolio_repo.mark_portfolio_changed(conn, portfolio_id, **values)


async def _load_view(conn: AsyncConnection, row: Any) -> PortfolioView:
    positions = await portfolio_repo.positions_of(conn, row.id)
    snap = await portfolio_repo.latest_snapshot(conn, row.id)
    realized = await _realized(conn, [p for p in positions if p.exit_date is not None])
    views = [replace(_position_view(p), realized_pnl=realized.get(p.id)) for p in positions]
    return PortfolioView(
        id=row.id, name=row.name, base_currency=row.base_currency, cash=row.cash_balance,
        created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at),
        positions=views,
        latest_snapshot=snapshot_dict(snap._mapping) if snap is not None else None,
        realized_pnl=sum((v for v in realized.values() if v is not None), Decimal(0)),
    )


async def _realized(conn: AsyncConnection, closed_rows: Sequence[Any]
                    ) -> dict[str, Decimal | None]:
    """Realized P&L of closed positions (their stored rows; see ``valuation.realized_pnl``:
    sold at the exit price, or at the exit day's stored close), by position id."""
    closed = []
    for r in closed_rows:
        with contextlib.suppress(ValueError):  # not valuable: no realized P&L to show
            closed.append(portfolio_repo.holding(r))
    if not closed:
        return {}
    exits = {h.position_id: (h.symbol, h.exit_date) for h in closed if h.exit_date}
    closes, splits = await price_repo.exit_inputs(conn, list(exits.values()))
    as_of = today()
    return {h.position_id: realized_pnl(h, as_of, closes.get(exits[h.position_id]), splits)
            for h in closed}


# --- onboarding, snapshot, analytics after a commit ---------------------------------------


async def _onboard(
    engine: AsyncEngine, portfolio_id: str, symbols: Sequence[str]
) -> dict[str, str]:
    market = sorted(set(symbols))
    if not market:
        return {}
    statuses = await onboarding_service.request_onboarding(market, portfolio_id, engine)
    if any(v == "pending" for v in statuses.values()):
        await launch.launcher().start_onboarding()
    return dict(statuses)


async def _snapshot(engine: AsyncEngine, portfolio_id: str) -> dict[str, Any] | None:
    """The instant snapshot after a committed change (None when there is none to give).

    It runs after the change committed, so it never fails the request for what another
    request did meanwhile: the portfolio deleted (NotFound), or the snapshot's write still
    deadlocked after its retries. Concurrent changes are each followed by one of these;
    the last one stores the snapshot of the final state
    (``analytics_service.compute`` stores only what matches the committed positions)."""
    try:
        return await analytics_service.snapshot_now(portfolio_id, engine)
    except NotReady as exc:
        log.info("no instant snapshot for %s: %s", portfolio_id, exc)
        return None
    except NotFound:
        log.info("no instant snapshot for %s: deleted meanwhile", portfolio_id)
        return None
    except sa.exc.DBAPIError as exc:
        if not is_retryable(exc):
            raise
        log.warning("no instant snapshot for %s: %s", portfolio_id, exc)
        return None


async def _after_change(
    engine: AsyncEngine, portfolio_id: str, symbols: Sequence[str]
) -> OnboardingOutcome:
    """After a committed change: onboard the market ``symbols``, re-value the portfolio."""
    statuses = await _onboard(engine, portfolio_id, symbols)
    return OnboardingOutcome(symbols=statuses, snapshot=await _snapshot(engine, portfolio_id))


# --- portfolios ---------------------------------------------------------------------------


def _validated_positions(
    positions: Sequence[PositionInput], today_: dt.date, prefix: str = "positions"
) -> list[PositionInput]:
    if len(positions) > MAX_POSITIONS:
        raise bad(prefix, f"at most {MAX_POSITIONS} positions per portfolio "
                           f"(got {len(positions)})")
    out = []
    for i, p in enumerate(positions):
        try:
            out.append(p.validate(today_))
        except AppError as exc:
            raise prefixed(exc, f"{prefix}[{i}]") from None
    return out


async def create_portfolio(
    engine: AsyncEngine, owner_id: str, *, name: str, cash: Decimal,
    positions: Sequence[PositionInput] = (), build_history: bool = False,
) -> PortfolioCreated:
    """Create a portfolio with its positions (one transaction), then onboard its unknown
    symbols, snapshot it at the latest stored price date and compute its factor exposures;
    ``build_history`` also queues the build of its daily snapshots back to the positions'
    entry dates (:func:`core.services.history_jobs.request_history`).

    Raises InvalidInput (the field named), Conflict (a live portfolio of the owner has
    that name).
    """
    return await _create(engine, owner_id, validate_name(name), validate_cash(cash),
                         _validated_positions(positions, today()), build_history)


async def _create(
    engine: AsyncEngine, owner_id: str, name: str, cash: Decimal,
    positions: list[PositionInput], build_history: bool = False,
) -> PortfolioCreated:
    await onboarding_service.check_pending_quota(engine, owner_id, [p.symbol for p in positions])
    pid = portfolio_repo.new_id()
    try:
        async with transaction(engine) as conn:
            if await portfolio_repo.portfolio_name_taken(conn, owner_id, name):
                raise _duplicate(name)
            await portfolio_repo.create_portfolio(
                conn, owner_id, name, cash, [p.row() for p in positions], portfolio_id=pid)
    except IntegrityError:
        raise _duplicate(name) from None
    try:
        outcome = await _after_change(engine, pid, [p.symbol for p in positions if p.is_market])
        exposures: dict[str, Any] | None = None
        try:
            exposures = await analytics_service.portfolio_analytics(
                pid, "factor-exposures", engine)
        except NotReady as exc:
            log.info("no factor exposures for %s yet: %s", pid, exc)
        async with reading(engine) as conn:
            view = await _load_view(conn, await _owned(conn, owner_id, pid))
        history = (await history_jobs.request_history(engine, owner_id, pid)
                   if build_history else None)
    except BaseException:
        # The create failed for the caller: leave nothing behind (a retry must not get 409
        # on a portfolio it was never given). Shielded: a cancelled request still cleans up.
        await asyncio.shield(discard_portfolio(engine, pid))
        raise
    if outcome.snapshot is not None:
        view = replace(view, latest_snapshot=outcome.snapshot)
    return PortfolioCreated(portfolio=view, outcome=outcome, factor_exposures=exposures,
                            history=history)


async def discard_portfolio(engine: AsyncEngine, portfolio_id: str) -> None:
    """Remove a portfolio and every row that hangs off it, in one transaction: undoes a
    create whose later steps failed. Logged, never raised (the original error matters)."""
    try:
        async with transaction(engine) as conn:
            await portfolio_repo.delete_portfolio_everywhere(conn, portfolio_id)
        _forget(portfolio_id)
    except Exception:
        log.exception("could not discard the half-created portfolio %s", portfolio_id)


async def import_portfolio_csv(
    engine: AsyncEngine, owner_id: str, *, name: str, cash: Decimal, csv_text: str,
    build_history: bool = False,
) -> PortfolioCreated:
    """:func:`create_portfolio` from a positions CSV (see
    :func:`core.services.csv_import.parse_positions_csv`)."""
    name, cash = validate_name(name), validate_cash(cash)
    today_ = today()
    positions = []
    for line, p in parse_positions_csv(csv_text):
        try:
            positions.append(p.validate(today_))
        except AppError as exc:
            raise InvalidInput(f"line {line}, {exc.message}",
                               f"line {line}, {exc.field}" if exc.field else f"line {line}"
                               ) from None
    return await _create(engine, owner_id, name, cash, positions, build_history)


async def list_portfolios(
    engine: AsyncEngine, owner_id: str, *, limit: int = 50, offset: int = 0
) -> PortfolioPage:
    """The owner's live portfolios by name, with position count and latest snapshot."""
    async with reading(engine) as conn:
        total, rows = await portfolio_repo.owner_portfolio_page(
            conn, owner_id, limit=limit, offset=offset)
    items = [PortfolioSummary(
        id=r.id, name=r.name, base_currency=r.base_currency, cash=r.cash_balance,
        position_count=int(r.n or 0), created_at=as_utc(r.created_at),
        updated_at=as_utc(r.updated_at), latest_snapshot_date=r.d, latest_equity=r.equity,
    ) for r in rows]
    return PortfolioPage(items=items, total=total, limit=limit, offset=offset)


async def get_portfolio(engine: AsyncEngine, owner_id: str, portfolio_id: str) -> PortfolioView:
    """One portfolio with its positions and latest stored snapshot."""
    async with reading(engine) as conn:
        return await _load_view(conn, await _owned(conn, owner_id, portfolio_id))


async def update_portfolio(
    engine: AsyncEngine, owner_id: str, portfolio_id: str, *, name: str | None = None,
    cash: Decimal | None = None,
) -> PortfolioView:
    """Rename and/or set the cash balance (None = leave as is). A cash change invalidates
    the cached analytics and re-snapshots the portfolio."""
    new_name = None if name is None else validate_name(name)
    new_cash = None if cash is None else validate_cash(cash)

    async def write(conn: AsyncConnection) -> dict[str, Any]:
        values: dict[str, Any] = {}
        row = await _owned(conn, owner_id, portfolio_id, lock=True)
        if new_name is not None and new_name != row.name:
            if await portfolio_repo.portfolio_name_taken(
                    conn, owner_id, new_name, except_id=portfolio_id):
                raise _duplicate(new_name)
            values["name"] = new_name
        if new_cash is not None and new_cash != row.cash_balance:
            values["cash_balance"] = new_cash
        if values:
            await _touch(conn, portfolio_id, **values)
        if "cash_balance" in values:
            await portfolio_repo.invalidate_cache(conn, [portfolio_id])
        return values

    try:
        values = await run_transaction(write, engine)
    except IntegrityError:
        raise _duplicate(new_name or "") from None
    _forget(portfolio_id)
    if "cash_balance" in values:
        await _snapshot(engine, portfolio_id)
    return await get_portfolio(engine, owner_id, portfolio_id)


async def delete_portfolio(engine: AsyncEngine, owner_id: str, portfolio_id: str) -> None:
    """Soft delete: the portfolio disappears from the API (its history stays stored) and
    its name is free again."""
    async def write(conn: AsyncConnection) -> None:
        await _owned(conn, owner_id, portfolio_id, lock=True)
        await _touch(conn, portfolio_id, deleted_at=dt.datetime.now(dt.UTC))
        await portfolio_repo.invalidate_cache(conn, [portfolio_id])

    await run_transaction(write, engine)
    _forget(portfolio_id)


# --- positions ----------------------------------------------------------------------------


async def add_position(
    engine: AsyncEngine, owner_id: str, portfolio_id: str, position: PositionInput
) -> PositionChanged:
    """Add a position; onboards its symbol if unknown and re-snapshots the portfolio."""
    p = position.validate(today())
    await onboarding_service.check_pending_quota(engine, owner_id, [p.symbol])

    async def write(conn: AsyncConnection) -> str:
        await _owned(conn, owner_id, portfolio_id, lock=True)
        if await portfolio_repo.position_count(conn, portfolio_id) >= MAX_POSITIONS:
            raise Conflict(f"positions: the portfolio already holds {MAX_POSITIONS} "
                           "positions (the most allowed)", "positions")
        (pos_id,) = await portfolio_repo.add_positions(conn, portfolio_id, [p.row()])
        await _touch(conn, portfolio_id)
        await portfolio_repo.invalidate_cache(conn, [portfolio_id])
        return pos_id

    pos_id = await run_transaction(write, engine)
    _forget(portfolio_id)
    outcome = await _after_change(engine, portfolio_id, [p.symbol] if p.is_market else [])
    return PositionChanged(position=await _position(engine, portfolio_id, pos_id),
                           outcome=outcome)


async def _position_row(conn: AsyncConnection, portfolio_id: str, position_id: str) -> Any:
    row = None
    if _ID.fullmatch(position_id):
        row = await portfolio_repo.position_in(conn, portfolio_id, position_id)
    if row is None:
        raise NotFound(f"position {position_id!r} not found in portfolio {portfolio_id!r}",
                       "position_id")
    return row


async def _position(engine: AsyncEngine, portfolio_id: str, position_id: str) -> PositionView:
    async with reading(engine) as conn:
        return _position_view(await _position_row(conn, portfolio_id, position_id))


_UPDATABLE = ("quantity", "entry_date", "entry_price", "exit_date", "exit_price",
              "investment_class", "manual_value")


async def update_position(
    engine: AsyncEngine, owner_id: str, portfolio_id: str, position_id: str,
    changes: dict[str, Any],
) -> PositionChanged:
    """Apply ``changes`` (a subset of the position's fields; None clears an optional one)
    and re-validate the whole position. The symbol cannot change (add a new position)."""
    unknown = sorted(set(changes) - set(_UPDATABLE))
    if unknown:
        raise bad(unknown[0], "cannot be changed" if unknown[0] == "symbol"
                   else "unknown field")
    async def write(conn: AsyncConnection) -> PositionInput:
        await _owned(conn, owner_id, portfolio_id, lock=True)
        row = await _position_row(conn, portfolio_id, position_id)
        current = PositionInput(
            symbol=row.symbol, quantity=row.quantity, entry_date=row.entry_date,
            entry_price=row.entry_price, exit_date=row.exit_date, exit_price=row.exit_price,
            investment_class=str(row.investment_class), manual_value=row.manual_value)
        for key in ("quantity", "entry_date", "entry_price", "investment_class"):
            if key in changes and changes[key] is None:
                raise bad(key, "cannot be null")
        merged = replace(current, **changes).validate(today())
        values = {k: v for k, v in merged.row().items() if k != "symbol"}
        if any(values[k] != getattr(current, k) for k in values):
            await portfolio_repo.update_position(
                conn, position_id, **values, market_value=None, market_value_date=None)
            await _touch(conn, portfolio_id)
            await portfolio_repo.invalidate_cache(conn, [portfolio_id])
        return merged

    merged = await run_transaction(write, engine)
    _forget(portfolio_id)
    outcome = await _after_change(engine, portfolio_id,
                                  [merged.symbol] if merged.is_market else [])
    return PositionChanged(position=await _position(engine, portfolio_id, position_id),
                           outcome=outcome)


async def delete_position(
    engine: AsyncEngine, owner_id: str, portfolio_id: str, position_id: str
) -> None:
    """Remove a position entered by mistake (to close a trade, set its exit instead)."""
    async def write(conn: AsyncConnection) -> None:
        await _owned(conn, owner_id, portfolio_id, lock=True)
        await _position_row(conn, portfolio_id, position_id)
        await portfolio_repo.delete_position(conn, position_id)
        await _touch(conn, portfolio_id)
        await portfolio_repo.invalidate_cache(conn, [portfolio_id])

    await run_transaction(write, engine)
    _forget(portfolio_id)
    await _snapshot(engine, portfolio_id)


async def list_snapshots(
    engine: AsyncEngine, owner_id: str, portfolio_id: str, *, start: dt.date | None = None,
    end: dt.date | None = None, limit: int = 1000,
) -> SnapshotList:
    """Stored snapshots with ``start <= date <= end``, oldest first; at most the newest
    ``limit`` of them (``truncated`` says when older ones were left out)."""
    if start is not None and end is not None and end < start:
        raise bad("end", f"{end.isoformat()} is before start {start.isoformat()}")
    async with reading(engine) as conn:
        await _owned(conn, owner_id, portfolio_id)
        rows = await portfolio_repo.newest_snapshots(
            conn, portfolio_id, start=start, end=end, limit=limit + 1)
    truncated = len(rows) > limit
    items = [snapshot_dict(r._mapping) for r in reversed(rows[:limit])]
    return SnapshotList(items=items, start=start, end=end, truncated=truncated)


ANALYTICS_MEMO_INTERVAL_S = 1.0
"""Seconds between two validations of the in-memory analytics answers (see ``analytics``)."""
_memos: weakref.WeakKeyDictionary[AsyncEngine, AnalyticsMemo] = weakref.WeakKeyDictionary()
"""One in-memory answer memo per engine (see :mod:`core.services.analytics_cache`); an engine
belongs to one event loop, like the memo's background validation."""


def _memo_of(engine: AsyncEngine) -> AnalyticsMemo:
    memo = _memos.get(engine)
    if memo is None:
        memo = _memos[engine] = AnalyticsMemo(interval=ANALYTICS_MEMO_INTERVAL_S)
    return memo


def _forget(portfolio_id: str) -> None:
    """Drop every in-memory answer of a portfolio (it is being changed)."""
    for memo in list(_memos.values()):
        memo.forget(portfolio_id)


_STALE_TTL = 1.0
_stale: dict[dt.date, tuple[float, bool]] = {}


def _is_stale(day: dt.date) -> bool:
    """``analytics_service.is_stale`` for at most a second (it reads the exchange calendar)."""
    now = time.monotonic()
    hit = _stale.get(day)
    if hit is None or hit[0] < now:
        if len(_stale) > 64:
            _stale.clear()
        hit = _stale[day] = (now + _STALE_TTL, analytics_service.is_stale(day))
    return hit[1]


@dataclass(frozen=True, slots=True)
class AnalyticsAnswer:
    """One analytics answer: ``body`` (shared with the memo and other answers: never change
    it) and the flags that override the body's own: ``stale`` (as of now) and ``cached``."""

    body: dict[str, Any]
    stale: bool
    cached: bool

    def as_dict(self) -> dict[str, Any]:
        """The answer as one new dict."""
        return {**self.body, "stale": self.stale, "cached": self.cached}


async def remembered_analytics(
    engine: AsyncEngine, owner_id: str, portfolio_id: str, kind: str,
    scenario: str | None = None,
) -> AnalyticsAnswer | None:
    """The answer :func:`analytics` would give from this process's memory (a cache hit:
    no query but the memo's own validation when one is due), or None when it would have to
    ask the database. Arguments as :func:`analytics`; nothing is checked but ownership."""
    memo = _memo_of(engine)
    await memo.ensure_valid(engine, latest_data_date)
    hit = memo.get((portfolio_id, kind, scenario), owner_id)
    if hit is None:
        return None
    return AnalyticsAnswer(hit.answer, _is_stale(hit.data_date), True)


async def analytics(
    engine: AsyncEngine, owner_id: str, portfolio_id: str, kind: str,
    scenario: str | None = None,
) -> AnalyticsAnswer:
    """Cached analytics ``kind`` of an owned portfolio (see ``analytics_service``).

    Answers are also kept in this process's memory (:mod:`core.services.analytics_cache`), validated
    in bulk in the background by one query about once a second: a hit costs no query, and a
    change made by another process (the nightly refresh, another worker) is seen within
    about a second (never more than five). Changes made through this module drop the
    portfolio's entries at once.
    """
    if kind not in analytics_service.ANALYTICS_KINDS:
        raise bad("kind", f"unknown analytics {kind!r}")
    if scenario is not None and kind != "stress-tests":
        raise bad("scenario", "only stress-tests take a scenario")
    if not _ID.fullmatch(portfolio_id):
        raise _not_found(portfolio_id)
    hit = await remembered_analytics(engine, owner_id, portfolio_id, kind, scenario)
    if hit is not None:
        return hit
    memo = _memo_of(engine)
    key = (portfolio_id, kind, scenario)
    async with reading(engine) as conn:
        stored = await stored_token(conn, portfolio_id, kind)
    if stored is None or stored[0] != owner_id:
        raise _not_found(portfolio_id)
    try:
        answer, digest = await analytics_service.analytics_with_hash(
            portfolio_id, kind, engine, scenario=scenario)
    except NotFound as exc:
        if exc.field == "scenario":
            raise
        raise _not_found(portfolio_id) from None  # deleted meanwhile
    async with reading(engine) as conn:  # the cache row as it is now (possibly just written)
        stored = await stored_token(conn, portfolio_id, kind)
    token = None if stored is None else stored[1]
    # kept only under the token of a row holding this very answer: another process may have
    # stored a newer one (other positions, a later data date) since it was computed
    if (token is not None and token[3] == digest
            and token[2].isoformat() == answer["data_as_of"]):
        memo.put(key, MemoEntry(token, answer, owner_id))
    return AnalyticsAnswer(answer, answer["stale"], answer["cached"])
