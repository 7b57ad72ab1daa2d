"""The portfolio flow: triggered by ``factorflow.symbol-batch.completed``.

Checks the symbol batch for ``as_of`` completed, finds each portfolio's missing sessions,
refreshes portfolios in chunks (mapped tasks) and records the run. One failing portfolio
never stops the others; more than 10 % failing raises an alert event.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run

from core import calendar
from core.db.models import RunStatus
from core.portfolio.analytics import ScenarioSet, SymbolData
from core.portfolio_refresh import (
    PortfolioWork,
    RefreshPlan,
    RefreshReport,
    build_scenarios,
    load_symbol_data,
    plan_refresh,
    portfolio_symbols,
    refresh_chunk,
    wait_for_symbol_batch,
)
from core.settings import get_settings
from core.symbol_batch import chunked
from flows.common import jsonable, record_finish, record_start, task_runner

JOB = "portfolio-refresh"
COMPLETED_EVENT = "factorflow.portfolio-refresh.completed"
DEGRADED_EVENT = "factorflow.portfolio-refresh.degraded"
RESOURCE_ID = "factorflow.portfolio-refresh"


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
    """Refresh one chunk of portfolios."""
    return asyncio.run(refresh_chunk(work, as_of, scenarios, data))


def _event_resource() -> dict[str, str]:
    return {"prefect.resource.id": RESOURCE_ID, "prefect.resource.name": "portfolio-refresh"}


@flow(name="portfolio-refresh", task_runner=task_runner(), log_prints=False)
def portfolio_refresh(as_of: dt.date | None = None, wait_seconds: float = 0) -> dict[str, Any]:
    """Refresh every active portfolio from the symbol data of ``as_of``.

    ``as_of`` defaults to the latest completed NYSE session (the event trigger passes
    the symbol batch's date). ``wait_seconds`` bounds how long a run waits for that
    symbol batch to complete before failing with ``SymbolBatchNotReady``.
    """
    logger = get_run_logger()
    settings = get_settings()
    as_of = as_of or calendar.latest_completed_session()
    run_id = asyncio.run(record_start(JOB, as_of, None, flow_run.get_id()))
    phases: dict[str, float] = {}
    t = time.perf_counter()
    try:
        check_symbol_batch(as_of, wait_seconds)
        refresh_plan = plan(as_of)
        scenarios = scenarios_for(as_of)
        data = symbol_data(refresh_plan.work, as_of)
        phases["plan"] = time.perf_counter() - t
        t = time.perf_counter()
        chunks = chunked(refresh_plan.work, settings.portfolio_chunk_size)
        futures = refresh.map(chunks, unmapped(as_of), unmapped(scenarios), unmapped(data))
        reports: list[RefreshReport] = []
        failed: dict[str, str] = {}
        for chunk, fut in zip(chunks, futures, strict=True):
            res = fut.result(raise_on_failure=False)
            if isinstance(res, BaseException):
                failed.update({w.id: f"chunk failed: {type(res).__name__}: {res}" for w in chunk})
            else:
                reports.append(res)
                failed.update(res.failed)
        phases["refresh"] = time.perf_counter() - t
        for k in ("load", "compute", "write"):
            phases[f"refresh_{k}"] = sum(getattr(r, f"{k}_seconds") for r in reports)
    except BaseException as exc:
        asyncio.run(record_finish(run_id, RunStatus.failed, {}, phases,
                                  {"error": f"{type(exc).__name__}: {exc}"}))
        raise

    total = len(refresh_plan.work)
    counts: dict[str, Any] = {
        "portfolios": total + refresh_plan.up_to_date,
        "to_refresh": total,
        "up_to_date": refresh_plan.up_to_date,
        "refreshed": sum(r.refreshed for r in reports),
        "snapshots": sum(r.snapshots for r in reports),
        "partial_snapshots": sum(r.partial for r in reports),
        "failed": len(failed),
        "scenarios_available": sum(scenarios.available),
        "scenarios": len(scenarios.names),
    }
    errors: dict[str, Any] = {
        "portfolios": failed,
        "backfill_truncated": refresh_plan.truncated,
        "scenarios": {n: r for n, r, ok in zip(scenarios.names, scenarios.reasons,
                                                scenarios.available, strict=True) if not ok},
    }
    share = len(failed) / total if total else 0.0
    degraded = share > settings.degraded_failure_share
    if degraded:
        logger.error("portfolio-refresh for %s: %d of %d portfolios failed (%.0f%%)",
                     as_of, len(failed), total, 100 * share)
        emit_event(event=DEGRADED_EVENT, resource=_event_resource(), payload={
            "as_of": as_of.isoformat(), "failed": len(failed), "total": total,
            "run_id": run_id})
    status = RunStatus.completed_with_failures if failed else RunStatus.completed
    asyncio.run(record_finish(run_id, status, counts, phases, errors))
    create_table_artifact(
        key="portfolio-refresh-summary",
        table=[{"item": k, "value": v} for k, v in counts.items()]
        + [{"item": f"seconds.{k}", "value": round(v, 3)} for k, v in phases.items()],
        description=f"portfolio-refresh for {as_of}: {status.value}",
    )
    if failed:
        create_markdown_artifact(
            key="portfolio-refresh-failures",
            markdown="| portfolio | reason |\n|---|---|\n" + "\n".join(
                f"| {p} | {r} |" for p, r in sorted(failed.items())[:500]),
            description=f"portfolios that failed on {as_of}",
        )
    emit_event(event=COMPLETED_EVENT, resource=_event_resource(), payload={
        "as_of": as_of.isoformat(), "status": status.value, "run_id": run_id,
        "degraded": degraded})
    logger.info("portfolio-refresh %s for %s: %s", status.value, as_of, counts)
    return jsonable({"run_id": run_id, "as_of": as_of, "status": status.value,
                     "degraded": degraded, "counts": counts, "seconds": phases,
                     "errors": errors})
