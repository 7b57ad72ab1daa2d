"""What operators and the admin API see and start: a symbol's data state, batch runs,
freshness and readiness, a manual symbol batch, the onboarding queue.

Plain async functions over an ``AsyncEngine``; a caller's mistake raises a
:mod:`core.errors` type naming the field.

May import: repositories, the onboarding queue service, ``core.symbol_data`` and the flow
launcher port (``core.launch``); not flows, api or cli.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from core import calendar, launch, run_lock
from core.db.engine import reading
from core.db.models import (
    SymbolKind,
    SymbolStatus,
)
from core.db.types import as_utc
from core.errors import Conflict, NotFound
from core.repositories import batch_runs as batch_repo
from core.repositories import factors as factor_repo
from core.repositories import profiles as profile_repo
from core.repositories import symbols as symbol_repo
from core.services import onboarding_queue as onboarding_service
from core.services.validation import bad
from core.symbol_data import latest_data_date
from core.symbols import InvalidSymbolError, validate_symbol

log = logging.getLogger(__name__)


FRESH_SESSIONS = 1
"""A nightly job may lag the latest completed session by this many sessions and be fresh
(the symbol batch runs at 21:00 New York time, five hours after the close)."""
NIGHTLY_JOBS = ("symbol-batch", "portfolio-refresh")
JOB_TYPES = (*NIGHTLY_JOBS, "onboarding")


def _symbol_status(kind: str, status: str) -> str:
    if kind == SymbolKind.private.value:
        return "private"
    return {SymbolStatus.active.value: "ready"}.get(status, status)


def _held_reason(exposures: Sequence[Any]) -> str:
    """One line from the reasons stored on a symbol's factor rows that have no value (the
    data checks' findings, too short a history, a blocked reference ETF), most common first.
    """
    counts = Counter(e.reason for e in exposures if e.reason)
    if not counts:
        return "no factor value at the latest computation"
    return "; ".join(r for r, _ in counts.most_common(3))


async def symbol_status(engine: AsyncEngine, symbol: str) -> dict[str, Any]:
    """A symbol's data state: ``status`` (ready / held / pending / error / delisted /
    inactive / private) with the reason, data dates, last close, profile, latest metrics and
    the factor exposures of the latest computation (``factors_as_of``).

    ``held``: prices are stored but the latest computation gave no factor value (a failed
    data check, too short a history); ``reason`` says why, from the stored factor rows.
    ``last_factor_date`` stays the last date with a value.
    """
    try:
        sym = validate_symbol(symbol)
    except InvalidSymbolError as exc:
        raise bad("symbol", f"invalid symbol {exc.symbol!r}: {exc.problem}") from None
    async with reading(engine) as conn:
        row = await symbol_repo.symbol_row(conn, sym)
        if row is None:
            raise NotFound(f"symbol {sym!r} is not in the universe (add it to a portfolio "
                           "to onboard it)", "symbol")
        profile = await profile_repo.profile_row(conn, sym)
        metrics = await factor_repo.latest_metrics(conn, sym)
        factors_as_of = await factor_repo.latest_exposure_date(conn, sym)
        exposures = (await factor_repo.load_exposures(conn, [sym], factors_as_of)
                     if factors_as_of else [])
        job = await onboarding_service.job_status(conn, sym)
    status, reason = _symbol_status(row.kind, row.status), row.error_reason
    if status == "ready" and job in ("pending", "processing"):
        status = "pending"  # prices may be in, factors not yet: ready when its job is done
    elif status == "ready" and exposures and all(e.beta is None for e in exposures):
        status, reason = "held", _held_reason(exposures)
    return {
        "symbol": sym, "kind": row.kind, "status": status,
        "reason": reason,
        "first_price_date": row.first_price_date, "last_price_date": row.last_price_date,
        "last_factor_date": row.last_factor_date, "factors_as_of": factors_as_of,
        "profile": None if profile is None else {
            "name": profile.name, "sector": profile.sector, "industry": profile.industry,
            "market_cap": None if profile.market_cap is None else f"{profile.market_cap:f}",
            "pe_ratio": profile.pe_ratio,
            "provider_beta": profile.provider_beta,
        },
        "metrics": None if metrics is None else {
            k: getattr(metrics, k) for k in (
                "date", "last_close", "return_1d", "return_5d", "return_1m", "return_3m",
                "return_ytd", "return_1y", "volatility_90d", "high_52w", "low_52w")
        },
        "factor_exposures": [{
            "factor": e.factor, "family": e.family, "window": e.window, "beta": e.beta,
            "n_obs": e.n_obs, "r_squared": e.r_squared, "resid_vol": e.resid_vol,
            "reason": e.reason, "flag": e.flag,
        } for e in exposures],
    }


# --- administration -----------------------------------------------------------------------


def _run_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r.id, "job_type": r.job_type, "target_date": r.target_date,
        "start_date": r.start_date, "status": str(r.status), "flow_run_id": r.flow_run_id,
        "started_at": as_utc(r.started_at),
        "finished_at": as_utc(r.finished_at) if r.finished_at else None,
        "counts": r.counts or {}, "phase_seconds": r.phase_seconds or {},
        "error_summary": r.error_summary or {},
    }


async def batch_runs(
    engine: AsyncEngine, *, limit: int = 50, job_type: str | None = None
) -> list[dict[str, Any]]:
    """The newest batch runs (all jobs, or one ``job_type``), newest first."""
    if job_type is not None and job_type not in JOB_TYPES:
        raise bad("job_type", f"unknown job type {job_type!r} (expected "
                               f"{', '.join(JOB_TYPES)})")
    async with reading(engine) as conn:
        return [_run_dict(r) for r in await batch_repo.list_runs(conn, job_type, limit)]


async def freshness(engine: AsyncEngine, now: dt.datetime | None = None) -> dict[str, Any]:
    """Per nightly job: the last successful run, its target date, how many sessions it lags
    the latest completed NYSE session, and whether that makes it stale."""
    expected = calendar.latest_completed_session(now)
    jobs = await _jobs_freshness(engine, NIGHTLY_JOBS, expected)
    data_date = await latest_data_date(engine)
    return {"latest_completed_session": expected, "latest_data_date": data_date,
            "jobs": jobs}


async def _jobs_freshness(
    engine: AsyncEngine, job_types: Sequence[str], expected: dt.date
) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    async with reading(engine) as conn:
        for job in job_types:
            row = await batch_repo.latest_successful(conn, job)
            behind = None if row is None else calendar.session_count_between(
                row.target_date, expected)
            jobs[job] = {
                "last_success_at": None if row is None else as_utc(row.finished_at or
                                                                 row.started_at),
                "target_date": None if row is None else row.target_date,
                "status": None if row is None else str(row.status),
                "sessions_behind": behind,
                "stale": behind is None or behind > FRESH_SESSIONS,
            }
    return jobs


@lru_cache(maxsize=1)
def _head_revision() -> str | None:
    from core.db.migrate import head_revision

    return head_revision()


async def readiness(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    """Checks of ``/health/ready``: database reachable, schema at the newest migration,
    symbol batch fresh. Each check: ``{"ok": bool, "detail": str}``."""
    checks: dict[str, dict[str, Any]] = {}
    try:
        async with reading(engine) as conn:
            await conn.execute(sa.text("SELECT 1"))
            try:
                current = (await conn.execute(sa.text(
                    "SELECT version_num FROM alembic_version"))).scalar_one_or_none()
            except sa.exc.DBAPIError:  # no alembic_version table: never migrated
                current = None
    except Exception as exc:  # the check reports it; the endpoint answers 503
        checks["database"] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
        return checks
    checks["database"] = {"ok": True, "detail": "reachable"}
    head = _head_revision()
    checks["migrations"] = {
        "ok": current == head,
        "detail": f"at {current or '(empty)'}" + ("" if current == head else f", head {head}"),
    }
    expected = calendar.latest_completed_session()
    job = (await _jobs_freshness(engine, ["symbol-batch"], expected))["symbol-batch"]
    checks["symbol_batch"] = {
        "ok": not job["stale"],
        "detail": "never completed" if job["target_date"] is None else
        f"last completed for {job['target_date']}, {job['sessions_behind']} session(s) behind",
    }
    return checks


async def start_symbol_batch(
    engine: AsyncEngine, as_of: dt.date | None = None
) -> dict[str, Any]:
    """Start the symbol flow for ``as_of`` (default: the latest completed session) and return
    at once, through the process's flow launcher (``core.launch``: the Prefect deployment
    when a Prefect API is configured, else the flow in a background thread). Conflict while
    one is already running."""
    from core.symbol_steps import BATCH_LOCK, TargetDateError, resolve_target_dates

    try:
        target = resolve_target_dates(as_of)[-1]
    except (TargetDateError, calendar.CalendarRangeError) as exc:
        raise bad("as_of", str(exc)) from None
    held = [lk for lk in await run_lock.list_locks(engine) if lk.name == BATCH_LOCK]
    now = dt.datetime.now(dt.UTC)
    if held and (held[0].alive or (held[0].alive is None and held[0].expires_at > now)):
        # a lock whose holder died does not block: the new run takes it over at once
        raise Conflict(f"a symbol batch is already running ({held[0].describe()})")
    started = await launch.launcher().start_symbol_batch(target)
    return {"as_of": target, **started}


async def onboarding_queue(engine: AsyncEngine, limit: int = 200) -> list[dict[str, Any]]:
    """The newest onboarding queue rows (timestamps as aware UTC datetimes)."""
    rows = await onboarding_service.queue_view(engine, limit)
    stamps = ("requested_at", "started_at", "finished_at")
    return [{**r, **{k: as_utc(dt.datetime.fromisoformat(r[k])) if isinstance(r.get(k), str)
                     else r.get(k) for k in stamps}} for r in rows]
