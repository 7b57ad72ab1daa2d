"""History builds: a database-backed queue of portfolios whose daily snapshots are to be
built back to their positions' entry dates (``POST /v1/portfolios/{id}/history``, the
``build_history`` option of create and import).

One row per portfolio (``portfolio_history_jobs``): requests while it is ``queued`` or
``running`` share it; a request after ``done`` or ``failed`` queues it again (the build
upserts the same rows, so a rerun leaves the rows of a clean run). The work is
:mod:`core.history_build`, run by the flow ``flows/portfolio_history.py`` that
:func:`request_history` starts through ``core.launch``. A ``running`` row records its claimer
(host, pid, start-time token) and a heartbeat, exactly as the onboarding queue's claims do
(:func:`core.services.onboarding_queue.claimer_gone`): rows of a claimer that is gone go back
to ``queued`` (:func:`reset_stuck`, at API start-up and at the start of every run), so a
killed process loses no request.

Holds the queue table's queries itself. May import: repositories, ``core.db``,
``core.launch``, ``core.run_lock``, the onboarding queue's claim rule. Not: flows, api, cli.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from core import launch
from core.db.engine import flow_engine, reading, transaction
from core.db.models import PortfolioHistoryJob
from core.db.types import as_utc
from core.errors import NotFound
from core.repositories import portfolios as portfolio_repo
from core.run_lock import Beat, process_token
from core.services.onboarding_queue import claimer_gone

_jobs = PortfolioHistoryJob.__table__  # type: ignore[attr-defined]
log = logging.getLogger(__name__)

DEPLOYMENT = "portfolio-history/portfolio-history"
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
WAITING = (QUEUED, RUNNING)
"""Statuses of a job whose build has not finished: a new request shares it."""
CLAIM_HEARTBEAT_SECONDS = 15.0
"""How often a run renews the heartbeat of the job it claimed (the onboarding queue's)."""
_UNCLAIMED = {"host": None, "pid": None, "process_token": None, "heartbeat_at": None}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class HistoryJobView:
    """A history job as the API shows it.

    ``first_date``/``last_date``: the first and last session the last build valued (None
    before one, or when there was nothing to build); ``snapshots``: the snapshot rows it
    wrote (one per session); ``error``: why the last build failed."""

    id: str
    portfolio_id: str
    status: str
    attempts: int
    requested_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    first_date: dt.date | None
    last_date: dt.date | None
    snapshots: int | None
    error: str | None


def _view(r: Any) -> HistoryJobView:
    def utc(ts: dt.datetime | None) -> dt.datetime | None:
        return None if ts is None else as_utc(ts)

    return HistoryJobView(r.id, r.portfolio_id, r.status, r.attempts, as_utc(r.requested_at),
                          utc(r.started_at), utc(r.finished_at), r.first_date, r.last_date,
                          r.snapshots, r.error)


def _not_found(portfolio_id: str) -> NotFound:
    return NotFound(f"portfolio {portfolio_id!r} not found", "id")


async def _queue(engine: AsyncEngine, owner_id: str, portfolio_id: str
                 ) -> tuple[HistoryJobView, bool]:
    async with transaction(engine) as conn:
        if not await portfolio_repo.owns_portfolio(conn, owner_id, portfolio_id):
            raise _not_found(portfolio_id)
        row = (await conn.execute(sa.select(_jobs).where(
            _jobs.c.portfolio_id == portfolio_id).with_for_update())).first()
        now = _now()
        if row is None:
            await conn.execute(sa.insert(_jobs).values(
                id=str(uuid.uuid4()), portfolio_id=portfolio_id, status=QUEUED, attempts=0,
                requested_at=now))
            queued = True
        elif row.status in WAITING:
            queued = False
        else:  # asked again after an outcome: build again
            await conn.execute(sa.update(_jobs).where(_jobs.c.id == row.id).values(
                status=QUEUED, requested_at=now, started_at=None, finished_at=None,
                first_date=None, last_date=None, snapshots=None, error=None, **_UNCLAIMED))
            queued = True
        job = (await conn.execute(sa.select(_jobs).where(
            _jobs.c.portfolio_id == portfolio_id))).one()
    return _view(job), queued


async def request_history(engine: AsyncEngine, owner_id: str, portfolio_id: str
                          ) -> HistoryJobView:
    """Queue the history build of ``owner_id``'s portfolio ``portfolio_id`` (idempotent: a
    job already ``queued`` or ``running`` is returned as it is) and start the queue's flow
    after the commit. Raises ``NotFound`` (field ``id``) for a portfolio that does not exist,
    is deleted or belongs to another user. A flow that cannot be started (no Prefect
    server) is logged, not raised: the job stays queued for the next request or start-up."""
    try:
        job, queued = await _queue(engine, owner_id, portfolio_id)
    except IntegrityError:  # a concurrent first request inserted the row: share it
        job, queued = await _queue(engine, owner_id, portfolio_id)
    if job.status == QUEUED:
        try:
            how = await launch.launcher().start_history()
        except Exception:  # the job is stored: the next request or start-up starts it
            log.exception("history of %s queued, but its flow could not be started",
                          portfolio_id)
            return job
        log.info("history of %s %s (%s)", portfolio_id,
                 "queued" if queued else "still queued", how)
    return job


async def history_job(engine: AsyncEngine, owner_id: str, portfolio_id: str) -> HistoryJobView:
    """The history job of ``owner_id``'s portfolio. Raises ``NotFound`` for another user's
    portfolio (field ``id``) and for a portfolio without one (field ``history``)."""
    async with reading(engine) as conn:
        if not await portfolio_repo.owns_portfolio(conn, owner_id, portfolio_id):
            raise _not_found(portfolio_id)
        row = (await conn.execute(sa.select(_jobs).where(
            _jobs.c.portfolio_id == portfolio_id))).first()
    if row is None:
        raise NotFound(f"no history build was requested for portfolio {portfolio_id!r} "
                       f"(POST /v1/portfolios/{portfolio_id}/history)", "history")
    return _view(row)


# --- the runner's side ----------------------------------------------------------------------

@dataclass(frozen=True)
class HistoryClaim:
    """A job taken by a run."""

    job_id: str
    portfolio_id: str


def _claimer() -> dict[str, Any]:
    """The owner columns of a claim made by this process."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "process_token": process_token(pid)}


async def claim(engine: AsyncEngine | None = None) -> HistoryClaim | None:
    """Move the oldest ``queued`` job to ``running`` (claimed by this process) and return
    it; None when none is queued. A job another run is claiming at this moment is skipped."""
    async with transaction(engine or flow_engine()) as conn:
        row = (await conn.execute(
            sa.select(_jobs.c.id, _jobs.c.portfolio_id).where(_jobs.c.status == QUEUED)
            .order_by(_jobs.c.requested_at, _jobs.c.id).limit(1)
            .with_for_update(skip_locked=True))).first()
        if row is None:
            return None
        now = _now()
        await conn.execute(sa.update(_jobs).where(
            _jobs.c.id == row.id, _jobs.c.status == QUEUED).values(
            status=RUNNING, started_at=now, finished_at=None, attempts=_jobs.c.attempts + 1,
            heartbeat_at=now, **_claimer()))
    return HistoryClaim(row.id, row.portfolio_id)


async def renew_claims(engine: AsyncEngine | None = None) -> int:
    """Renew the heartbeat of every job this process has claimed; returns how many."""
    me = _claimer()
    async with transaction(engine or flow_engine()) as conn:
        res = await conn.execute(sa.update(_jobs).where(
            _jobs.c.status == RUNNING, _jobs.c.host == me["host"], _jobs.c.pid == me["pid"],
            _jobs.c.process_token == me["process_token"]).values(heartbeat_at=_now()))
    return int(res.rowcount)


class ClaimHeartbeat(Beat):
    """Renews this process's claims every ``every`` seconds while a run works on them."""

    def __init__(self, every: float = CLAIM_HEARTBEAT_SECONDS,
                 engine: AsyncEngine | None = None) -> None:
        super().__init__(lambda: asyncio.run(renew_claims(engine)) >= 0, every,
                         "history claim heartbeat")


async def finish(job_id: str, *, first_date: dt.date | None = None,
                 last_date: dt.date | None = None, snapshots: int | None = None,
                 error: str | None = None, engine: AsyncEngine | None = None) -> None:
    """Close a claimed job: ``done`` with what the build did, or ``failed`` with ``error``."""
    async with transaction(engine or flow_engine()) as conn:
        await conn.execute(sa.update(_jobs).where(_jobs.c.id == job_id).values(
            status=FAILED if error else DONE, finished_at=_now(), first_date=first_date,
            last_date=last_date, snapshots=snapshots, error=error, **_UNCLAIMED))


async def release(job_id: str, engine: AsyncEngine | None = None) -> None:
    """Give a claimed job back (``running`` → ``queued``): its run stopped before it could
    build (no market data yet); the next run takes it."""
    async with transaction(engine or flow_engine()) as conn:
        await conn.execute(sa.update(_jobs).where(
            _jobs.c.id == job_id, _jobs.c.status == RUNNING).values(
            status=QUEUED, **_UNCLAIMED))


async def reset_stuck(engine: AsyncEngine | None = None) -> int:
    """Put ``running`` jobs whose claimer is gone (killed, restarted: see
    :func:`~core.services.onboarding_queue.claimer_gone`) back to ``queued``; jobs a live run
    holds are left to it. Returns the number of queued jobs."""
    now = _now()
    async with transaction(engine or flow_engine()) as conn:
        claimed = (await conn.execute(sa.select(
            _jobs.c.id, _jobs.c.host, _jobs.c.pid, _jobs.c.process_token,
            _jobs.c.heartbeat_at).where(_jobs.c.status == RUNNING))).all()
        gone = [r.id for r in claimed
                if claimer_gone(r.host, r.pid, r.process_token, r.heartbeat_at, now)]
        if gone:
            await conn.execute(sa.update(_jobs).where(
                _jobs.c.id.in_(gone), _jobs.c.status == RUNNING).values(
                status=QUEUED, **_UNCLAIMED))
        queued = (await conn.execute(sa.select(sa.func.count()).select_from(_jobs).where(
            _jobs.c.status == QUEUED))).scalar_one()
    if gone:
        log.info("history: %d job(s) of gone runs queued again", len(gone))
    return int(queued)
