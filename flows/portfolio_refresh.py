"""The portfolio flow: triggered by ``factorflow.symbol-batch.completed``.

Checks the symbol batch for ``as_of`` completed, takes the one portfolio-refresh lock of the
database, finds each portfolio's missing sessions (holes included), refreshes portfolios in
chunks (mapped tasks; each chunk one transaction) and records the run. One failing
portfolio never stops the others; more than 10 % failing raises an alert event; a
database failure fails the run.

May import core, Prefect and the shared flow wiring; not api, cli or another flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run

from core import calendar
from core.db.errors import StorageError, is_storage_error, short_error
from core.db.models import RunStatus
from core.portfolio.analytics import ScenarioSet, SymbolData
from core.portfolio_steps import (
    REFRESH_LOCK,
    PortfolioWork,
    RefreshPlan,
    RefreshReport,
    SymbolBatchNotReady,
    lock_refresh,
    plan_refresh,
    portfolio_symbols,
    record_refused_run,
    refresh_chunk,
    unlock_refresh,
    wait_for_symbol_batch,
)
from core.run_lock import Heartbeat, this_process
from core.settings import get_settings
from core.symbol_data import build_scenarios, load_symbol_data
from core.symbol_steps import chunked
from flows.common import bulk, concurrency_slots, jsonable, prefect_run_ended, shared, task_runner
from flows.run_record import ChunkFailure, ProblemTable, RunKind, RunRecord, map_chunks

JOB = "portfolio-refresh"
COMPLETED_EVENT = "factorflow.portfolio-refresh.completed"
DEGRADED_EVENT = "factorflow.portfolio-refresh.degraded"
RESOURCE_ID = "factorflow.portfolio-refresh"
KIND = RunKind(
    job=JOB, resource={"prefect.resource.id": RESOURCE_ID, "prefect.resource.name": JOB},
    summary_key="portfolio-refresh-summary", failed_items="portfolios",
    failed_label="portfolio failed", named_storage_errors=True,
)


@task(name="wait-for-symbol-batch", cache_policy=NO_CACHE)
def check_symbol_batch(as_of: dt.date, wait_seconds: float) -> None:
    """Fail with ``SymbolBatchNotReady`` unless the symbol batch for ``as_of`` completed."""
    asyncio.run(wait_for_symbol_batch(as_of, wait_seconds))


@task(name="plan-refresh", cache_policy=NO_CACHE)
def plan(as_of: dt.date) -> RefreshPlan:
    """Active portfolios and the sessions each one misses."""
    return asyncio.run(plan_refresh(as_of, get_settings().max_backfill_sessions))


@task(name="stress-scenarios", cache_policy=NO_CACHE)
def scenarios_for(as_of: dt.date) -> ScenarioSet:
    """Factor moves of every scenario (computed once per run)."""
    return asyncio.run(build_scenarios(as_of))


@task(name="symbol-data", cache_policy=NO_CACHE)
def symbol_data(work: list[PortfolioWork], as_of: dt.date) -> SymbolData | None:
    """Prices, betas, splits and sectors of every held symbol, read once for all chunks."""
    if not work:
        return None
    first_day = min(d for w in work for d in w.days)
    symbols = asyncio.run(portfolio_symbols())
    return asyncio.run(load_symbol_data(symbols, first_day, as_of))


@task(name="refresh-portfolios", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2,
      task_run_name="refresh-{work[0].id}")
def refresh(
    work: list[PortfolioWork], as_of: dt.date, scenarios: ScenarioSet, data: SymbolData | None
) -> RefreshReport:
    """Refresh one chunk of portfolios (at most ``refresh_concurrency`` at once in this
    process: the others wait, idle, for a slot)."""
    with _refresh_slots():
        return asyncio.run(refresh_chunk(work, as_of, scenarios, data))


@contextlib.contextmanager
def long_lived_frozen() -> Iterator[None]:
    """Keep the objects alive now (the run's shared symbol data, Prefect's own) out of the
    garbage collector's scans while the chunks run, and hand them back after: each chunk
    makes ~100,000 short-lived rows, and every full collection would walk the whole heap
    again (a fifth of a chunk's time). Left alone when something else froze objects
    already (the API's start-up)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _refresh_slots() -> threading.BoundedSemaphore:
    """The process's semaphore of ``refresh_concurrency`` refresh slots."""
    return concurrency_slots("refresh", get_settings().refresh_concurrency)


@flow(name="portfolio-refresh", task_runner=task_runner(), log_prints=False)
def portfolio_refresh(
    as_of: dt.date | None = None, wait_seconds: float = 0, lock_wait_seconds: float = 600,
) -> dict[str, Any]:
    """Refresh every active portfolio from the symbol data of ``as_of``.

    ``as_of`` defaults to the latest completed NYSE session (the event trigger passes
    the symbol batch's date). ``wait_seconds`` bounds how long a run waits for that
    symbol batch to complete before failing with ``SymbolBatchNotReady``. One refresh runs
    at a time: a run waits up to ``lock_wait_seconds`` for another live one to finish, then
    fails with ``RefreshAlreadyRunning`` (a lock left by a dead run is taken over at once).
    A database failure fails the run with ``StorageError`` and emits no completion event.
    """
    as_of = as_of or calendar.latest_completed_session()
    prefect_id = flow_run.get_id()
    holder = prefect_id or str(uuid.uuid4())
    try:
        check_symbol_batch(as_of, wait_seconds)
    except SymbolBatchNotReady as exc:
        try:
            asyncio.run(record_refused_run(JOB, as_of, holder, short_error(exc)))
        except Exception as record_exc:  # the run's own error matters more
            get_run_logger().error("could not record the run: %s", short_error(record_exc))
        KIND.publish_failure(KIND.title(as_of), short_error(exc), {})
        raise
    except BaseException as exc:
        KIND.fail_unrecorded(KIND.title(as_of), exc, "reading the symbol batch's state failed")
    try:
        asyncio.run(lock_refresh(this_process(holder, prefect_id), lock_wait_seconds,
                                 prefect_run_ended))
    except BaseException as exc:
        KIND.fail_unrecorded(KIND.title(as_of), exc, "taking the portfolio-refresh lock failed")
    try:
        with Heartbeat(REFRESH_LOCK, holder):
            return _run(as_of, holder)
    finally:
        try:
            asyncio.run(unlock_refresh(holder))
        except Exception as exc:  # the lock is taken over once this process is gone
            get_run_logger().warning("could not release the refresh lock: %s", short_error(exc))


def _run(as_of: dt.date, holder: str) -> dict[str, Any]:
    logger = get_run_logger()
    run = RunRecord.start(KIND, as_of, flow_run_id=holder, emit=emit_event, close_crashed=True)
    failed: dict[str, str] = {}
    run.errors["portfolios"] = failed
    with run.failing():
        with run.timed("plan"):
            refresh_plan = plan(as_of)
            scenarios = scenarios_for(as_of)
            data = symbol_data(bulk(refresh_plan.work), as_of)  # quoted: not walked by Prefect
        with run.timed("refresh"):
            reports = _refresh_chunks(run, refresh_plan.work, as_of, scenarios, data, failed)
        for k in ("load", "compute", "write"):
            run.phases[f"refresh_{k}"] = sum(getattr(r, f"{k}_seconds") for r in reports)

    counts, errors, risk_rows = _summarise(refresh_plan, scenarios, reports, failed)
    total = len(refresh_plan.work)
    share = len(failed) / total if total else 0.0
    degraded = share > get_settings().degraded_failure_share
    if degraded:
        logger.error("portfolio-refresh for %s: %d of %d portfolios failed (%.0f%%)",
                     as_of, len(failed), total, 100 * share)
        run.send(DEGRADED_EVENT, {"as_of": as_of.isoformat(), "failed": len(failed),
                                  "total": total, "run_id": run.run_id})
    status = RunStatus.completed_with_failures if failed else RunStatus.completed
    problems = ProblemTable("portfolio-refresh-failures", ("portfolio", "reason"),
                            sorted(failed.items())[:500], f"portfolios that failed on {as_of}")
    run.complete(status, counts, errors, event=COMPLETED_EVENT, problems=problems,
                 payload={"as_of": as_of.isoformat(), "status": status.value,
                          "run_id": run.run_id, "degraded": degraded}, extra_rows=risk_rows)
    logger.info("portfolio-refresh %s for %s: %s", status.value, as_of, counts)
    return jsonable({"run_id": run.run_id, "as_of": as_of, "status": status.value,
                     "degraded": degraded, "counts": counts, "seconds": run.phases,
                     "errors": errors})


def _refresh_chunks(
    run: RunRecord, work: list[PortfolioWork], as_of: dt.date, scenarios: ScenarioSet,
    data: SymbolData | None, failed: dict[str, str],
) -> list[RefreshReport]:
    """Refresh the portfolios in chunks; portfolios that fail go to ``failed``. A database
    failure fails the run (named once, not per portfolio)."""
    chunks = chunked(work, get_settings().portfolio_chunk_size)
    with long_lived_frozen():
        # the shared symbol data quoted: else Prefect walks its every dict entry twice per
        # chunk looking for futures (10,000 portfolios: ~3 s of the GIL)
        refreshed = map_chunks(refresh, chunks, as_of, shared(scenarios), shared(data),
                               progress=run.progress,
                               name=lambda chunk: f"chunk from {chunk[0].id}")
    for outcome in refreshed.outcomes:
        if not isinstance(outcome, ChunkFailure):
            failed.update(outcome.failed)
        elif not is_storage_error(outcome.error):
            failed.update({w.id: f"chunk failed: {outcome.why}" for w in outcome.chunk})
    storage = refreshed.storage_failures
    if storage:
        raise StorageError(f"storing portfolio analytics failed ({len(storage)} of "
                           f"{len(chunks)} chunks): {short_error(storage[0].error)}")
    return refreshed.reports


RISK_TABLE_ROWS = 10
"""Portfolios with the largest VaR listed in the run's summary artifact."""


def _summarise(
    refresh_plan: RefreshPlan, scenarios: ScenarioSet, reports: list[RefreshReport],
    failed: dict[str, str],
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The run's counts, its errors, and the summary artifact's risk table: the
    ``RISK_TABLE_ROWS`` portfolios with the largest parametric 99 % 1-session VaR as a
    share of equity, and the risk model's coverage (portfolios with a risk row, those
    fully covered, the mean covered share of gross exposure)."""
    risk = {pid: f for r in reports for pid, f in r.risk.items()}
    shares = [f.covered_share for f in risk.values() if f.covered_share is not None]
    largest = sorted(((f.var_99_1d_pct, pid) for pid, f in risk.items()
                      if f.var_99_1d_pct is not None), reverse=True)[:RISK_TABLE_ROWS]
    risk_rows = [{"item": f"risk.largest_var_99_1d_pct.{i}",
                  "value": f"{pid}: {100 * pct:.2f} % of equity"}
                 for i, (pct, pid) in enumerate(largest, start=1)]
    total = len(refresh_plan.work)
    counts: dict[str, Any] = {
        "portfolios": total + refresh_plan.up_to_date + refresh_plan.newer,
        "to_refresh": total,
        "up_to_date": refresh_plan.up_to_date,
        "newer": refresh_plan.newer,
        "refreshed": sum(r.refreshed for r in reports),
        "snapshots": sum(r.snapshots for r in reports),
        "partial_snapshots": sum(r.partial for r in reports),
        "failed": len(failed),
        "scenarios_available": sum(scenarios.available),
        "scenarios": len(scenarios.names),
        "risk_rows": len(risk),
        "risk_fully_covered": sum(1 for s in shares if s >= 1.0),
        "risk_mean_covered_share": round(sum(shares) / len(shares), 4) if shares else None,
    }
    errors: dict[str, Any] = {
        "portfolios": failed,
        "backfill_truncated": refresh_plan.truncated,
        "scenarios": {n: r for n, r, ok in zip(scenarios.names, scenarios.reasons,
                                                scenarios.available, strict=True) if not ok},
    }
    return counts, errors, risk_rows
