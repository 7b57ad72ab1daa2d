"""The nightly symbol flow: prices → data checks → factors → metrics → run record → event.

It knows nothing of portfolios. Work is mapped over chunks of symbols (never one
task per symbol); provider tasks retry with backoff; one chunk's failure is
recorded and the run goes on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run

from core import onboarding as onboarding_queue
from core.db.engine import reading
from core.db.models import RunStatus, SymbolStatus
from core.providers.base import ProviderError
from core.repositories import symbols as symbol_repo
from core.settings import get_settings
from core.symbol_batch import (
    BatchAlreadyRunning,
    FactorReport,
    FetchReport,
    FetchRequest,
    ReferenceDataError,
    chunked,
    compute_and_store_factors,
    fetch_and_store,
    lock_batch,
    plan_fetch,
    provider_for,
    record_fetch_failures,
    reference_gaps,
    register_universe,
    reject_invalid_symbols,
    resolve_target_dates,
    unlock_batch,
)
from core.symbols import is_market_symbol
from flows.common import Progress, jsonable, record_finish, record_start, task_runner

JOB = "symbol-batch"
COMPLETED_EVENT = "factorflow.symbol-batch.completed"
RESOURCE_ID = "factorflow.symbol-batch"


@task(name="load-universe", cache_policy=NO_CACHE)
def load_universe() -> list[symbol_repo.SymbolState]:
    """Active and pending symbols plus the reference ETFs (added if absent)."""

    async def _load() -> list[symbol_repo.SymbolState]:
        await register_universe([])
        async with reading() as conn:
            return await symbol_repo.get_states(
                conn, statuses=[SymbolStatus.active, SymbolStatus.pending]
            )

    return asyncio.run(_load())


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry provider-wide failures (network, rate limits), not malformed data."""
    try:
        state.result()
    except ProviderError:
        return True
    except Exception:
        return False
    return False


@task(
    name="fetch-prices",
    cache_policy=NO_CACHE,
    retries=len(get_settings().retry_delay_list),
    retry_delay_seconds=get_settings().retry_delay_list,
    retry_condition_fn=_transient,
    task_run_name="fetch-prices-{request.start}-{request.symbols[0]}",
)
def fetch_prices(request: FetchRequest, as_of: dt.date) -> FetchReport:
    """Fetch and store one chunk through the configured provider chain."""
    settings = get_settings()
    return asyncio.run(fetch_and_store(request, provider_for(settings), settings, as_of))


@task(name="check-reference-data", cache_policy=NO_CACHE)
def check_reference_data(dates: list[dt.date]) -> None:
    """Fail the run (named error) when a reference ETF lacks a price on a target date."""
    gaps = asyncio.run(reference_gaps(dates))
    if gaps:
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(gaps.items()))
        raise ReferenceDataError(f"reference ETF prices missing, factors not computed ({detail})")


@task(name="active-symbols", cache_policy=NO_CACHE)
def active_market_symbols() -> list[str]:
    """Market symbols that have prices (status active), sorted."""

    async def _load() -> list[symbol_repo.SymbolState]:
        async with reading() as conn:
            return await symbol_repo.get_states(conn, statuses=[SymbolStatus.active])

    states = asyncio.run(_load())
    return [s.symbol for s in states if is_market_symbol(s.symbol) and s.last_price_date]


@task(
    name="factors",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=2,
    task_run_name="factors-from-{symbols[0]}",
)
def compute_factors(symbols: list[str], dates: list[dt.date]) -> FactorReport:
    """Data checks, factor exposures and daily metrics for one chunk of symbols."""
    return asyncio.run(compute_and_store_factors(symbols, dates, get_settings()))


def _summarise(
    dates: list[dt.date],
    universe: list[symbol_repo.SymbolState],
    fetches: list[FetchReport],
    fetch_failures: dict[str, str],
    factors: list[FactorReport],
    factor_failures: dict[str, str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    counts: dict[str, Any] = {
        "dates": len(dates),
        "universe": len(universe),
        "fetch_chunks_ok": len(fetches),
        "symbols_fetched": sum(r.symbols_with_rows for r in fetches),
        "price_rows": sum(r.rows for r in fetches),
        "rejected_rows": sum(r.rejected_rows for r in fetches),
        "profiles_stored": sum(r.profiles for r in fetches),
        "refetched_for_actions": sum(len(r.refetched) for r in fetches),
        "delisted": sum(len(r.delisted) for r in fetches),
        "symbols_failed": len({**{s: 1 for r in fetches for s in r.errors}, **fetch_failures}),
        "factor_symbols": sum(r.symbols for r in factors),
        "factor_rows": sum(r.exposure_rows for r in factors),
        "factor_values": sum(sum(r.values_by_family.values()) for r in factors),
        "blocked_by_checks": sum(len(r.blocked) for r in factors),
        "flagged_values": sum(r.flagged for r in factors),
    }
    by_family: dict[str, int] = {}
    no_value: dict[str, int] = {}
    checks: dict[str, int] = {}
    for r in factors:
        for k, v in r.values_by_family.items():
            by_family[k] = by_family.get(k, 0) + v
        for k, v in r.no_value_reasons.items():
            no_value[k] = no_value.get(k, 0) + v
        for k, v in r.findings_by_check.items():
            checks[k] = checks.get(k, 0) + v
    counts.update(values_by_family=by_family, no_value_reasons=no_value, findings=checks)
    errors: dict[str, Any] = {
        "symbols": {s: e for r in fetches for s, e in r.errors.items()} | fetch_failures,
        "blocked": {s: e for r in factors for s, e in r.blocked.items()},
        "chunks": factor_failures,
        "delisted": {s: e for r in fetches for s, e in r.delisted.items()},
    }
    return counts, errors


def _artifact(as_of: dt.date, status: RunStatus, counts: dict, phases: dict, errors: dict) -> None:
    rows = [{"item": k, "value": v} for k, v in counts.items() if not isinstance(v, dict)]
    rows += [{"item": f"seconds.{k}", "value": round(v, 3)} for k, v in phases.items()]
    create_table_artifact(
        key="symbol-batch-summary",
        table=rows,
        description=f"symbol-batch for {as_of}: {status.value}",
    )
    problems = [f"| {s} | fetch | {e} |" for s, e in sorted(errors["symbols"].items())[:200]]
    problems += [f"| {s} | data check | {e} |" for s, e in sorted(errors["blocked"].items())[:200]]
    problems += [f"| {c} | chunk | {e} |" for c, e in errors["chunks"].items()]
    if problems:
        create_markdown_artifact(
            key="symbol-batch-problems",
            markdown="| symbol | stage | reason |\n|---|---|---|\n" + "\n".join(problems),
            description=f"symbols without fresh data or factors on {as_of}",
        )


@flow(name="symbol-batch", task_runner=task_runner(), log_prints=False)
def symbol_batch(
    as_of: dt.date | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> dict[str, Any]:
    """Refresh prices, data checks, factor exposures and metrics for the whole universe.

    ``as_of`` defaults to the latest completed NYSE session; ``start``/``end`` backfill
    every session in the range. Returns the run summary (also stored in ``batch_runs``).
    """
    logger = get_run_logger()
    dates = resolve_target_dates(as_of, start, end)
    target = dates[-1]
    holder = flow_run.get_id() or str(uuid.uuid4())
    try:
        asyncio.run(lock_batch(target, holder))
    except BatchAlreadyRunning as exc:
        logger.warning(str(exc))
        return {"status": "skipped", "as_of": target.isoformat(), "reason": str(exc)}
    try:
        return _run(dates, holder, backfill=start is not None)
    finally:
        asyncio.run(unlock_batch(target, holder))


def _run(dates: list[dt.date], holder: str, backfill: bool) -> dict[str, Any]:
    logger = get_run_logger()
    settings = get_settings()
    target = dates[-1]
    run_id = asyncio.run(
        record_start(JOB, target, dates[0] if len(dates) > 1 else None, holder)
    )
    phases: dict[str, float] = {}
    fetch_failures: dict[str, str] = {}
    t = time.perf_counter()
    try:
        universe = load_universe()
        invalid = asyncio.run(reject_invalid_symbols(universe))
        universe = [u for u in universe if u.symbol not in invalid]
        fetch_failures.update(invalid)
        history_start = dates[0] - dt.timedelta(days=settings.lookback_days) if backfill else None
        plan = plan_fetch(
            universe, target, settings.lookback_days, settings.fetch_chunk_size, history_start,
            reference_start=settings.reference_history_start,
        )
        logger.info("as_of %s: %d symbols, %d fetch chunks", target, len(universe), len(plan))
        futures = fetch_prices.map(plan, unmapped(target))
        fetches: list[FetchReport] = []
        progress = Progress(len(plan) + 1, f"symbol-batch {target}")
        for req, fut in zip(plan, futures, strict=True):
            res = fut.result(raise_on_failure=False)
            progress.step(f"prices: chunk from {req.symbols[0]} done")
            if isinstance(res, BaseException):
                for sym in req.symbols:
                    fetch_failures[sym] = f"provider_error: {type(res).__name__}: {res}"
            else:
                fetches.append(res)
        asyncio.run(record_fetch_failures(target, fetch_failures))
        phases["prices"] = time.perf_counter() - t

        t = time.perf_counter()
        check_reference_data(dates)
        symbols = active_market_symbols()
        chunks = chunked(symbols, settings.factor_chunk_size)
        ffutures = compute_factors.map(chunks, unmapped(dates))
        factors: list[FactorReport] = []
        factor_failures: dict[str, str] = {}
        progress.restart(len(chunks), f"symbol-batch {target}: factors")
        for chunk, ffut in zip(chunks, ffutures, strict=True):
            fres = ffut.result(raise_on_failure=False)
            progress.step(f"factors: chunk from {chunk[0]} done")
            if isinstance(fres, BaseException):
                factor_failures[f"{chunk[0]}..{chunk[-1]}"] = f"{type(fres).__name__}: {fres}"
            else:
                factors.append(fres)
        phases["factors"] = time.perf_counter() - t
        phases["factors_load"] = sum(r.load_seconds for r in factors)
        phases["factors_compute"] = sum(r.compute_seconds for r in factors)
        phases["factors_write"] = sum(r.write_seconds for r in factors)
        jobs_closed = asyncio.run(onboarding_queue.close_jobs_settled_by_batch())
    except BaseException as exc:
        asyncio.run(record_finish(run_id, RunStatus.failed, {}, phases, {
            "error": f"{type(exc).__name__}: {exc}", "symbols": fetch_failures}))
        raise

    counts, errors = _summarise(dates, universe, fetches, fetch_failures, factors, factor_failures)
    counts["onboarding_jobs_closed"] = jobs_closed
    failed = bool(errors["symbols"] or errors["chunks"])
    status = RunStatus.completed_with_failures if failed else RunStatus.completed
    asyncio.run(record_finish(run_id, status, counts, phases, errors))
    _artifact(target, status, counts, phases, errors)
    emit_event(
        event=COMPLETED_EVENT,
        resource={"prefect.resource.id": RESOURCE_ID, "prefect.resource.name": "symbol-batch"},
        payload={"as_of": target.isoformat(), "start": dates[0].isoformat(),
                 "status": status.value, "run_id": run_id},
    )
    logger.info("symbol-batch %s for %s: %s", status.value, target, counts)
    return jsonable({
        "run_id": run_id, "as_of": target, "start": dates[0], "status": status.value,
        "counts": counts, "seconds": phases, "errors": errors,
    })
