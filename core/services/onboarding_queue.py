"""Symbol onboarding: a database-backed queue of symbols to fetch, check and compute.

Unknown symbols become ``pending`` in the universe and get one queue row each (duplicate
requests share it). The onboarding flow (``flows/onboarding.py``) processes the queue:
~1 year of prices, data checks, factors, then ``active`` or ``error`` with the reason, then
the affected portfolios' snapshot and analytics. Rows left ``processing`` by a crash go
back to ``pending`` at start-up (:func:`reset_stuck`), so no request is lost. No Prefect here:
the flows start through ``core.launch`` (see ``flows/launcher.py``).

Holds the queue table's queries itself (the ``onboarding_jobs`` table is the queue).
May import: repositories, ``core.db``, ``core.run_lock``, ``core.settings``,
``core.symbols``. Not: flows, api, cli, Prefect.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.db.engine import flow_engine, reading, transaction
from core.db.models import OnboardingJob, Symbol, SymbolKind, SymbolStatus
from core.errors import LimitExceeded
from core.repositories import portfolios as portfolio_repo
from core.repositories import symbols as symbol_repo
from core.run_lock import Beat, process_alive, process_token
from core.settings import get_settings
from core.symbols import InvalidSymbolError, is_market_symbol, validate_symbol

_jobs = OnboardingJob.__table__  # type: ignore[attr-defined]
log = logging.getLogger(__name__)
DEPLOYMENT = "onboarding/onboarding"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def request_onboarding(
    symbols: Sequence[str], portfolio_id: str | None = None,
    engine: AsyncEngine | None = None,
) -> dict[str, str]:
    """Make sure every market symbol of ``symbols`` is known or queued.

    Returns symbol → ``"ready"`` (has prices), ``"pending"`` (queued now or already),
    ``"private"`` (never priced) or ``"error: <reason>"`` (invalid, unknown to the
    provider, delisted, removed from the universe by an operator). Does not start
    processing: start it (``core.launch``) after the caller's transaction committed.
    """
    engine = engine or flow_engine()
    out: dict[str, str] = {}
    wanted: list[str] = []
    for raw in symbols:
        try:
            sym = validate_symbol(raw)
        except InvalidSymbolError as exc:
            out[str(raw)] = f"error: {exc}"
            continue
        if not is_market_symbol(sym):
            out[sym] = "private"
        else:
            wanted.append(sym)
    wanted = sorted(set(wanted))
    async with transaction(engine) as conn:
        states = {s.symbol: s for s in await symbol_repo.get_states(conn, wanted)}
        to_queue: list[str] = []
        for sym in wanted:
            st = states.get(sym)
            if st is not None and st.status == SymbolStatus.active and st.last_price_date:
                out[sym] = "ready"
            elif st is not None and st.status in (SymbolStatus.error, SymbolStatus.delisted,
                                                  SymbolStatus.inactive):
                out[sym] = f"error: {st.error_reason or st.status.value}"
            else:
                out[sym] = "pending"
                to_queue.append(sym)
        if to_queue:
            await symbol_repo.add_symbols(conn, [(s, SymbolKind.equity) for s in to_queue])
            await _enqueue(conn, to_queue, portfolio_id)
    return out


WAITING = ("pending", "processing")
"""Statuses of a job whose symbol is still waiting for its data."""


async def check_pending_quota(
    engine: AsyncEngine, owner_id: str, symbols: Sequence[str], limit: int | None = None
) -> None:
    """Refuse a request that would leave ``owner_id`` with more than ``limit`` symbols
    waiting for onboarding (default ``FACTORFLOW_MAX_PENDING_SYMBOLS_PER_USER``).

    Counted: the symbols of ``symbols`` not yet in the universe (each grows the shared
    nightly universe) together with the symbols still queued for one of the owner's
    portfolios. Invalid, private and known symbols are not counted. Call it before the
    request stores anything: a refused request stores nothing.

    Raises
    ------
    LimitExceeded
        (HTTP 429) naming ``positions``, with the counts and the limit.
    """
    limit = get_settings().max_pending_symbols_per_user if limit is None else limit
    market: set[str] = set()
    for raw in symbols:
        try:
            sym = validate_symbol(raw)
        except InvalidSymbolError:
            continue
        if is_market_symbol(sym):
            market.add(sym)
    if not market:
        return
    async with reading(engine) as conn:
        known = {s.symbol for s in await symbol_repo.get_states(conn, sorted(market))}
        new = market - known
        if not new:
            return
        owned = await portfolio_repo.portfolio_ids_of_owner(conn, owner_id)
        queued = (await conn.execute(sa.select(_jobs.c.symbol, _jobs.c.portfolio_ids).where(
            _jobs.c.status.in_(WAITING)))).all()
    waiting = {sym for sym, ids in queued if owned.intersection(ids or ())}
    total = len(waiting | new)
    if total > limit:
        raise LimitExceeded(
            f"positions: {len(new)} symbol(s) new to factorflow would leave {total} waiting "
            f"for onboarding ({len(waiting)} already), over the limit of {limit} per user; "
            "add the others once these are ready (GET /v1/symbols/{symbol})", "positions")


async def _enqueue(conn: Any, symbols: list[str], portfolio_id: str | None) -> None:
    existing = {r.symbol: r for r in (await conn.execute(
        sa.select(_jobs).where(_jobs.c.symbol.in_(symbols)))).all()}
    now = _now()
    for sym in symbols:
        row = existing.get(sym)
        if row is None:
            await conn.execute(sa.insert(_jobs).values(
                symbol=sym, status="pending", attempts=0, error=None,
                portfolio_ids=[portfolio_id] if portfolio_id else [], requested_at=now))
            continue
        ids = list(row.portfolio_ids or [])
        if portfolio_id and portfolio_id not in ids:
            ids.append(portfolio_id)
        values: dict[str, Any] = {"portfolio_ids": ids}
        if row.status in ("done", "error"):  # asked again after an earlier outcome: redo
            values.update(status="pending", requested_at=now, error=None)
        await conn.execute(sa.update(_jobs).where(_jobs.c.symbol == sym).values(**values))


@dataclass(frozen=True)
class Claim:
    """Jobs taken by one onboarding run: their symbols and the portfolios waiting on them."""

    symbols: list[str]
    portfolio_ids: list[str]


async def claim(limit: int = 500, engine: AsyncEngine | None = None) -> Claim:
    """Move up to ``limit`` pending jobs to ``processing`` (oldest first) and return them;
    jobs another run is claiming at this moment are skipped, not waited for."""
    async with transaction(engine or flow_engine()) as conn:
        rows = (await conn.execute(
            sa.select(_jobs.c.symbol, _jobs.c.portfolio_ids).where(_jobs.c.status == "pending")
            .order_by(_jobs.c.requested_at, _jobs.c.symbol).limit(limit)
            # PostgreSQL: concurrent runs (a deployment run per request) take disjoint jobs
            # instead of waiting on each other's rows; SQLite serialises writers anyway
            .with_for_update(skip_locked=True))).all()
        symbols = [r[0] for r in rows]
        if symbols:
            now = _now()
            await conn.execute(sa.update(_jobs).where(
                _jobs.c.symbol.in_(symbols), _jobs.c.status == "pending").values(
                status="processing", started_at=now, attempts=_jobs.c.attempts + 1,
                heartbeat_at=now, **_claimer()))
    pids = sorted({p for r in rows for p in (r[1] or [])})
    return Claim(symbols, pids)


CLAIM_HEARTBEAT_SECONDS = 15.0
"""How often a run renews the heartbeat of the jobs it claimed."""
CLAIM_STALE_SECONDS = 120.0
"""A claim whose process cannot be checked from here (another host) is given up after this
long without a heartbeat."""
_UNCLAIMED = {"host": None, "pid": None, "process_token": None, "heartbeat_at": None}


def _claimer() -> dict[str, Any]:
    """The owner columns of a claim made by this process."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "process_token": process_token(pid)}


def claimer_gone(host: str | None, pid: int | None, token: str | None,
                 heartbeat_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a ``processing`` job's claimer is gone: its process is dead (this host), or
    it has not renewed its heartbeat for ``CLAIM_STALE_SECONDS`` (another host, no owner)."""
    alive = process_alive(host, pid, token)
    if alive is not None:
        return not alive
    if heartbeat_at is None:
        return True
    beat = heartbeat_at if heartbeat_at.tzinfo else heartbeat_at.replace(tzinfo=dt.UTC)
    return (now - beat).total_seconds() > CLAIM_STALE_SECONDS


async def renew_claims(engine: AsyncEngine | None = None) -> int:
    """Renew the heartbeat of every job this process has claimed; returns how many."""
    async with transaction(engine or flow_engine()) as conn:
        me = _claimer()
        res = await conn.execute(sa.update(_jobs).where(
            _jobs.c.status == "processing", _jobs.c.host == me["host"], _jobs.c.pid == me["pid"],
            _jobs.c.process_token == me["process_token"]).values(heartbeat_at=_now()))
    return int(res.rowcount)


class ClaimHeartbeat(Beat):
    """Renews this process's claims every ``every`` seconds while a run works on them (a
    daemon thread; ``with ClaimHeartbeat(): ...``)."""

    def __init__(self, every: float = CLAIM_HEARTBEAT_SECONDS,
                 engine: AsyncEngine | None = None) -> None:
        super().__init__(lambda: asyncio.run(renew_claims(engine)) >= 0, every,
                         "onboarding claim heartbeat")


async def finish(outcomes: dict[str, str | None], engine: AsyncEngine | None = None) -> None:
    """Close processed jobs: symbol → None (done) or the error reason."""
    if not outcomes:
        return
    now = _now()
    async with transaction(engine or flow_engine()) as conn:
        for sym, error in outcomes.items():
            await conn.execute(sa.update(_jobs).where(_jobs.c.symbol == sym).values(
                status="error" if error else "done", error=error, finished_at=now,
                **_UNCLAIMED))


async def close_jobs_settled_by_batch(engine: AsyncEngine | None = None) -> int:
    """Close (``done``) the *pending* jobs whose symbol is now active with prices: a symbol
    batch fetched it. Needed when symbols were requested before any market data existed (the
    onboarding flow cannot run then; the first nightly fetches pending symbols). Jobs a
    running onboarding flow has claimed are left to it, and a symbol the batch could not price
    keeps its job for the onboarding flow to try again. Returns how many jobs were closed."""
    symbols = Symbol.__table__  # type: ignore[attr-defined]
    async with transaction(engine or flow_engine()) as conn:
        res = await conn.execute(sa.update(_jobs).where(
            _jobs.c.status == "pending",
            _jobs.c.symbol.in_(sa.select(symbols.c.symbol).where(
                symbols.c.status == SymbolStatus.active.value,
                symbols.c.last_price_date.is_not(None))),
        ).values(status="done", error=None, finished_at=_now()))
    return int(res.rowcount)


async def release(symbols: Sequence[str], engine: AsyncEngine | None = None) -> int:
    """Give claimed jobs back (``processing`` → ``pending``) when the run that claimed them
    fails before finishing them, so the next run takes them; returns how many."""
    if not symbols:
        return 0
    async with transaction(engine or flow_engine()) as conn:
        res = await conn.execute(sa.update(_jobs).where(
            _jobs.c.symbol.in_(list(symbols)), _jobs.c.status == "processing").values(
            status="pending", **_UNCLAIMED))
    return int(res.rowcount)


async def reset_stuck(engine: AsyncEngine | None = None) -> int:
    """Put jobs whose claimer is gone (a crash, a restart: see :func:`claimer_gone`) back to
    ``pending``; jobs a live run holds are left to it. Returns the number of pending jobs."""
    now = _now()
    async with transaction(engine or flow_engine()) as conn:
        claimed = (await conn.execute(sa.select(
            _jobs.c.symbol, _jobs.c.host, _jobs.c.pid, _jobs.c.process_token,
            _jobs.c.heartbeat_at).where(_jobs.c.status == "processing"))).all()
        gone = [r.symbol for r in claimed
                if claimer_gone(r.host, r.pid, r.process_token, r.heartbeat_at, now)]
        if gone:
            await conn.execute(sa.update(_jobs).where(
                _jobs.c.symbol.in_(gone), _jobs.c.status == "processing").values(
                status="pending", **_UNCLAIMED))
        pending = (await conn.execute(
            sa.select(sa.func.count()).select_from(_jobs)
            .where(_jobs.c.status == "pending"))).scalar_one()
    log.info("onboarding: %d job(s) of gone runs reset to pending, %d left to live runs; "
             "%d pending", len(gone), len(claimed) - len(gone), pending)
    return int(pending)


async def queue_view(engine: AsyncEngine | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """The newest queue rows (symbol, status, attempts, error, portfolios, timestamps)."""
    async with reading(engine or flow_engine()) as conn:
        rows = (await conn.execute(
            sa.select(_jobs).order_by(_jobs.c.requested_at.desc(), _jobs.c.symbol)
            .limit(limit))).all()
    return [{
        "symbol": r.symbol, "status": r.status, "attempts": r.attempts, "error": r.error,
        "portfolio_ids": list(r.portfolio_ids or []),
        "requested_at": r.requested_at.isoformat() if r.requested_at else None,
        "started_at": r.started_at.isoformat() if r.started_at else None,
        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
    } for r in rows]


async def job_status(conn: AsyncConnection, symbol: str) -> str | None:
    """The status of ``symbol``'s queue row (None without one)."""
    return (await conn.execute(sa.select(_jobs.c.status).where(
        _jobs.c.symbol == symbol))).scalar_one_or_none()
