"""The batch-run log: one row per run of a job, with counts, durations and errors.

May import: ``core.db``. Not: services, flows, api, cli.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.models import BatchRun, RunStatus

_runs = BatchRun.__table__  # type: ignore[attr-defined]
SYMBOL_BATCH_JOB = "symbol-batch"
"""The job type of the nightly symbol flow's runs."""
SUCCESS = (RunStatus.completed.value, RunStatus.completed_with_failures.value)


async def start_run(
    conn: AsyncConnection,
    job_type: str,
    target_date: dt.date,
    start_date: dt.date | None = None,
    flow_run_id: str | None = None,
    process: tuple[str, int, str | None] | None = None,
) -> str:
    """Insert a ``running`` row; returns its id. ``process``: (host, pid, process token) of
    the process running it."""
    run_id = str(uuid.uuid4())
    host, pid, token = process or (None, None, None)
    await conn.execute(
        sa.insert(_runs).values(
            id=run_id, job_type=job_type, target_date=target_date, start_date=start_date,
            status=RunStatus.running.value, flow_run_id=flow_run_id,
            started_at=dt.datetime.now(dt.UTC), counts={}, phase_seconds={}, error_summary={},
            host=host, pid=pid, process_token=token,
        )
    )
    return run_id


async def finish_run(
    conn: AsyncConnection,
    run_id: str,
    status: RunStatus,
    counts: dict[str, Any],
    phase_seconds: dict[str, float],
    error_summary: dict[str, Any],
) -> None:
    """Close a run with its outcome."""
    await conn.execute(
        sa.update(_runs)
        .where(_runs.c.id == run_id)
        .values(
            status=status.value, finished_at=dt.datetime.now(dt.UTC), counts=counts,
            phase_seconds=phase_seconds, error_summary=error_summary,
        )
    )


async def latest_completed_target(conn: AsyncConnection, job_type: str) -> dt.date | None:
    """The newest target date a run of ``job_type`` completed (with or without failures of
    single symbols); None before any. A run still writing, failed or crashed never counts."""
    return (await conn.execute(sa.select(sa.func.max(_runs.c.target_date)).where(
        _runs.c.job_type == job_type, _runs.c.status.in_(SUCCESS)))).scalar_one_or_none()


async def completed_state(conn: AsyncConnection, job_type: str
                          ) -> tuple[dt.date | None, dt.datetime | None]:
    """The newest target date a run of ``job_type`` completed and the newest time one
    completed (whatever its date: a rerun of an older date counts): together they change
    whenever a completed run may have changed stored data. (None, None) before any."""
    row = (await conn.execute(sa.select(
        sa.func.max(_runs.c.target_date), sa.func.max(_runs.c.finished_at)).where(
        _runs.c.job_type == job_type, _runs.c.status.in_(SUCCESS)))).one()
    return row[0], row[1]


async def latest_successful(
    conn: AsyncConnection, job_type: str, target_date: dt.date | None = None
) -> sa.Row | None:
    """The newest completed run of ``job_type`` (covering ``target_date`` if given)."""
    stmt = sa.select(_runs).where(_runs.c.job_type == job_type, _runs.c.status.in_(SUCCESS))
    if target_date is not None:
        stmt = stmt.where(
            sa.or_(
                sa.and_(_runs.c.start_date.is_(None), _runs.c.target_date == target_date),
                sa.and_(_runs.c.start_date <= target_date, _runs.c.target_date >= target_date),
            )
        )
    stmt = stmt.order_by(_runs.c.target_date.desc(), _runs.c.finished_at.desc()).limit(1)
    return (await conn.execute(stmt)).first()


async def list_runs(conn: AsyncConnection, job_type: str | None = None, limit: int = 50) -> list:
    """The newest runs, newest first."""
    stmt = sa.select(_runs).order_by(_runs.c.started_at.desc()).limit(limit)
    if job_type:
        stmt = stmt.where(_runs.c.job_type == job_type)
    return list((await conn.execute(stmt)).all())


CRASHED_REASON = "its process ended without closing this run (killed, out of memory, power loss)"


async def close_crashed(
    conn: AsyncConnection, job_type: str, is_dead: Callable[[sa.Row], bool] | None = None,
) -> int:
    """Mark ``running`` runs of ``job_type`` as ``crashed``; returns how many.

    Without ``is_dead``, every such run: call it so only while holding the job's run lock
    (no other run of the job is then alive). With it, only the rows it says are dead
    (their process is gone).
    """
    stmt = sa.select(_runs.c.id, _runs.c.host, _runs.c.pid, _runs.c.process_token).where(
        _runs.c.job_type == job_type, _runs.c.status == RunStatus.running.value)
    rows = (await conn.execute(stmt)).all()
    dead = [r.id for r in rows if is_dead is None or is_dead(r)]
    if dead:
        await conn.execute(
            sa.update(_runs).where(_runs.c.id.in_(dead), _runs.c.status == RunStatus.running.value)
            .values(status=RunStatus.crashed.value, finished_at=dt.datetime.now(dt.UTC),
                    error_summary={"error": CRASHED_REASON}))
    return len(dead)
