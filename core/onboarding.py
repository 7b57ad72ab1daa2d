"""Symbol onboarding: a database-backed queue of symbols to fetch, check and compute.

Unknown symbols become ``pending`` in the universe and get one queue row each (duplicate
requests share it). The onboarding flow (``flows/onboarding.py``) processes the queue:
~1 year of prices, data checks, factors, then ``active`` or ``error`` with the reason, then
the affected portfolios' snapshot and analytics. Rows left ``processing`` by a crash go
back to ``pending`` at start-up (:func:`resume`), so no request is lost.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db.engine import flow_engine, reading, transaction
from core.db.models import OnboardingJob, Symbol, SymbolKind, SymbolStatus
from core.errors import LimitExceeded, NotReady
from core.repositories import symbols as symbol_repo
from core.repositories.portfolios import PF
from core.run_lock import Beat, process_alive, process_token
from core.settings import get_settings
from core.symbols import InvalidSymbolError, is_market_symbol, validate_symbol

J = OnboardingJob.__table__  # type: ignore[attr-defined]
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
    processing: call :func:`dispatch` after the caller's transaction committed.
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
        owned = set((await conn.execute(sa.select(PF.c.id).where(
            PF.c.owner_id == owner_id))).scalars())
        queued = (await conn.execute(sa.select(J.c.symbol, J.c.portfolio_ids).where(
            J.c.status.in_(WAITING)))).all()
    waiting = {sym for sym, ids in queued if owned.intersection(ids or ())}
    total = len(waiting | new)
    if total > limit:
        raise LimitExceeded(
            f"positions: {len(new)} symbol(s) new to factorflow would leave {total} waiting "
            f"for onboarding ({len(waiting)} already), over the limit of {limit} per user; "
            "add the others once these are ready (GET /v1/symbols/{symbol})", "positions")


async def _enqueue(conn: Any, symbols: list[str], portfolio_id: str | None) -> None:
    existing = {r.symbol: r for r in (await conn.execute(
        sa.select(J).where(J.c.symbol.in_(symbols)))).all()}
    now = _now()
    for sym in symbols:
        row = existing.get(sym)
        if row is None:
            await conn.execute(sa.insert(J).values(
                symbol=sym, status="pending", attempts=0, error=None,
                portfolio_ids=[portfolio_id] if portfolio_id else [], requested_at=now))
            continue
        ids = list(row.portfolio_ids or [])
        if portfolio_id and portfolio_id not in ids:
            ids.append(portfolio_id)
        values: dict[str, Any] = {"portfolio_ids": ids}
        if row.status in ("done", "error"):  # asked again after an earlier outcome: redo
            values.update(status="pending", requested_at=now, error=None)
        await conn.execute(sa.update(J).where(J.c.symbol == sym).values(**values))


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
            sa.select(J.c.symbol, J.c.portfolio_ids).where(J.c.status == "pending")
            .order_by(J.c.requested_at, J.c.symbol).limit(limit)
            # PostgreSQL: concurrent runs (a deployment run per request) take disjoint jobs
            # instead of waiting on each other's rows; SQLite serialises writers anyway
            .with_for_update(skip_locked=True))).all()
        symbols = [r[0] for r in rows]
        if symbols:
            now = _now()
            await conn.execute(sa.update(J).where(
                J.c.symbol.in_(symbols), J.c.status == "pending").values(
                status="processing", started_at=now, attempts=J.c.attempts + 1,
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
        res = await conn.execute(sa.update(J).where(
            J.c.status == "processing", J.c.host == me["host"], J.c.pid == me["pid"],
            J.c.process_token == me["process_token"]).values(heartbeat_at=_now()))
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
            await conn.execute(sa.update(J).where(J.c.symbol == sym).values(
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
        res = await conn.execute(sa.update(J).where(
            J.c.status == "pending",
            J.c.symbol.in_(sa.select(symbols.c.symbol).where(
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
        res = await conn.execute(sa.update(J).where(
            J.c.symbol.in_(list(symbols)), J.c.status == "processing").values(
            status="pending", **_UNCLAIMED))
    return int(res.rowcount)


async def reset_stuck(engine: AsyncEngine | None = None) -> int:
    """Put jobs whose claimer is gone (a crash, a restart: see :func:`claimer_gone`) back to
    ``pending``; jobs a live run holds are left to it. Returns the number of pending jobs."""
    now = _now()
    async with transaction(engine or flow_engine()) as conn:
        claimed = (await conn.execute(sa.select(
            J.c.symbol, J.c.host, J.c.pid, J.c.process_token, J.c.heartbeat_at).where(
            J.c.status == "processing"))).all()
        gone = [r.symbol for r in claimed
                if claimer_gone(r.host, r.pid, r.process_token, r.heartbeat_at, now)]
        if gone:
            await conn.execute(sa.update(J).where(
                J.c.symbol.in_(gone), J.c.status == "processing").values(
                status="pending", **_UNCLAIMED))
        pending = (await conn.execute(
            sa.select(sa.func.count()).select_from(J).where(J.c.status == "pending"))).scalar_one()
    log.info("onboarding: %d job(s) of gone runs reset to pending, %d left to live runs; "
             "%d pending", len(gone), len(claimed) - len(gone), pending)
    return int(pending)


async def queue_view(engine: AsyncEngine | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """The newest queue rows (symbol, status, attempts, error, portfolios, timestamps)."""
    async with reading(engine or flow_engine()) as conn:
        rows = (await conn.execute(
            sa.select(J).order_by(J.c.requested_at.desc(), J.c.symbol).limit(limit))).all()
    return [{
        "symbol": r.symbol, "status": r.status, "attempts": r.attempts, "error": r.error,
        "portfolio_ids": list(r.portfolio_ids or []),
        "requested_at": r.requested_at.isoformat() if r.requested_at else None,
        "started_at": r.started_at.isoformat() if r.started_at else None,
        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
    } for r in rows]


# --- starting the onboarding flow ----------------------------------------------------------

_runner_lock = threading.Lock()
_runner: threading.Thread | None = None
_again = threading.Event()


_local_prefect_lock = threading.Lock()


def start_local_prefect() -> None:
    """Without a Prefect API, start Prefect's local server now, once, safely from any thread.

    Prefect starts it on the first client of the process, but two threads doing so at the
    same time race (Prefect 3.8: the second sees it "running" before its process exists and
    fails with "Server process did not start"). The warm-up, the onboarding runner and the
    API's symbol batch all come through here first, one at a time.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE

    if PREFECT_API_URL.value() or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    with _local_prefect_lock:
        SubprocessASGIServer().start()


RUN_ATTEMPTS = 3
RETRY_DELAYS_S = (5.0, 30.0)


def _run_in_process() -> None:
    """The runner thread: the onboarding flow until no request arrived meanwhile. A run that
    fails (Prefect not reachable, a database error) is tried again after a pause, up to
    ``RUN_ATTEMPTS`` times; its jobs stay queued either way and start-up resumes them."""
    from flows.onboarding import onboarding

    failures = 0
    while True:
        _again.clear()
        try:
            start_local_prefect()
            onboarding()
            failures = 0
        except NotReady as exc:  # no market data yet: the first symbol batch closes the jobs
            log.warning("onboarding waits: %s", exc)
            return
        except Exception:  # the flow records its own failure; keep the API alive
            failures += 1
            log.exception("onboarding flow failed (attempt %d of %d)", failures, RUN_ATTEMPTS)
            if failures >= RUN_ATTEMPTS:
                return
            time.sleep(RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S)) - 1])
            continue
        if not _again.is_set():
            return


def dispatch() -> str:
    """Start processing the queue without waiting for it.

    With ``PREFECT_API_URL`` set, a run of the ``onboarding`` deployment is created
    (``run_deployment(..., timeout=0)``; a worker or ``factorflow serve`` executes it).
    Otherwise the flow runs in this process in a background thread (one at a time; a
    request arriving meanwhile makes it run once more). Returns what was done.
    """
    global _runner
    if os.environ.get("PREFECT_API_URL"):
        from prefect.deployments import run_deployment

        run_deployment(DEPLOYMENT, timeout=0)
        return "deployment"
    with _runner_lock:
        if _runner is not None and _runner.is_alive():
            _again.set()
            return "in-process (queued behind the running flow)"
        _runner = threading.Thread(target=_run_in_process, name="onboarding", daemon=True)
        _runner.start()
    return "in-process"


def wait_in_process(timeout: float | None = None) -> bool:
    """Wait for the in-process runner (tests, shutdown); True when it is idle."""
    thread = _runner
    if thread is not None:
        thread.join(timeout)
        return not thread.is_alive()
    return True


def warm_up() -> None:
    """Without a Prefect API, start Prefect's local server in the background now, so the first
    onboarding run does not pay its ~10 s start-up while a user waits for a symbol."""
    if os.environ.get("PREFECT_API_URL"):
        return

    def _warm() -> None:
        try:
            from flows.onboarding import warm_up as prefect_warm_up

            start_local_prefect()
            prefect_warm_up()
        except Exception:  # only an optimisation
            log.exception("Prefect warm-up failed")
        freeze_long_lived_objects()

    threading.Thread(target=_warm, name="prefect-warm-up", daemon=True).start()


def freeze_long_lived_objects() -> None:
    """Move every object alive now out of the garbage collector's reach (``gc.freeze``).

    A long-running process that imported Prefect holds ~400,000 tracked objects; each full
    collection walked them all and stopped the event loop for ~250 ms, a few times a minute
    under load (the API's whole latency tail). Frozen, a full collection walks only what
    was created since: ~3 ms. Called once start-up (and the warm-up) has loaded its heap.
    """
    gc.collect()
    gc.freeze()


def local_prefect_servers() -> set[int]:
    """Identities of the local Prefect servers running in this process now (to leave them
    alone in :func:`stop_local_prefect`)."""
    try:
        from prefect.server.api.server import SubprocessASGIServer
    except ImportError:
        return set()
    return {id(server) for server in SubprocessASGIServer._instances.values()}


def stop_local_prefect(keep: Collection[int] = ()) -> None:
    """Stop the local Prefect servers this process started (warm-up or in-process flows), so
    stopping the API leaves no orphaned server behind; those in ``keep`` (see
    :func:`local_prefect_servers`: running before the API started, e.g. a test harness's)
    are left running."""
    if os.environ.get("PREFECT_API_URL"):
        return
    try:
        from prefect.server.api.server import SubprocessASGIServer
    except ImportError:
        return
    for server in list(SubprocessASGIServer._instances.values()):
        if id(server) in keep:
            continue
        try:
            server.stop()
        except Exception:  # shutting down anyway
            log.exception("could not stop the local Prefect server")


async def resume(engine: AsyncEngine | None = None, warm: bool = True) -> int:
    """At start-up: reset stuck jobs and, if any are pending, dispatch; warm Prefect up.
    Returns the number of pending jobs."""
    pending = await reset_stuck(engine)
    if pending:
        dispatch()
    elif warm:
        warm_up()
    return pending
