"""The nightly symbol flow: prices → data checks → factors → metrics → run record → event.

It knows nothing of portfolios. Work is mapped over chunks of symbols (never one
task per symbol); provider tasks retry with backoff; one chunk's failure is
recorded and the run goes on.

May import core, Prefect and the shared flow wiring; not api, cli or another flow.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any, NoReturn

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from core.db.engine import reading
from core.db.errors import short_error
from core.db.models import RunStatus, SymbolStatus
from core.factors.definitions import REFERENCE_ETFS
from core.history_extension import plan_history_extension
from core.providers.base import PriceFileError, ProviderError
from core.repositories import symbols as symbol_repo
from core.run_lock import Heartbeat, this_process
from core.services import onboarding_queue
from core.settings import get_settings
from core.symbol_steps import (
    BATCH_LOCK,
    FactorReport,
    FetchReport,
    FetchRequest,
    ReferenceDataError,
    RepairPlan,
    chunked,
    compute_and_store_factors,
    fetch_and_store,
    lock_batch,
    plan_fetch,
    plan_repairs,
    provider_for,
    record_fetch_failures,
    reference_gaps,
    register_universe,
    reject_invalid_symbols,
    resolve_target_dates,
    unlock_batch,
)
from core.symbols import is_market_symbol
from flows.common import bulk, concurrency_slots, jsonable, prefect_run_ended, task_runner
from flows.run_record import ProblemTable, RunKind, RunRecord, chunk_failure_reason, map_chunks

JOB = "symbol-batch"
COMPLETED_EVENT = "factorflow.symbol-batch.completed"
ALERT_EVENT = "factorflow.symbol-batch.alert"
"""Emitted (with an error log) when factors are held back by a reference ETF's data."""
RESOURCE_ID = "factorflow.symbol-batch"
KIND = RunKind(
    job=JOB, resource={"prefect.resource.id": RESOURCE_ID, "prefect.resource.name": JOB},
    summary_key="symbol-batch-summary", failed_items="symbols", failed_label="fetch failed",
)


@task(name="load-universe", cache_policy=NO_CACHE)
def load_universe() -> quote[list[symbol_repo.SymbolState]]:
    """Active and pending symbols plus the reference ETFs, whatever their status (added if
    absent: every factor needs them, so they are never left out of a run); quoted (see
    ``flows.common.bulk``)."""

    async def _load() -> list[symbol_repo.SymbolState]:
        await register_universe([])
        async with reading() as conn:
            states = await symbol_repo.get_states(
                conn, statuses=[SymbolStatus.active, SymbolStatus.pending]
            )
            have = {s.symbol for s in states}
            etfs = await symbol_repo.get_states(
                conn, [e for e in REFERENCE_ETFS if e not in have])
        return sorted([*states, *etfs], key=lambda s: s.symbol)

    return bulk(asyncio.run(_load()))


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry provider-wide failures (network, rate limits), not malformed data or files."""
    try:
        state.result()
    except PriceFileError:
        return False
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
    """Fetch and store one chunk through the configured provider chain: at most
    ``fetch_slots`` chunks in the provider and one storing at once in this process, so one
    chunk is stored while the next is fetched (one writer, not several fighting for it),
    and no more than ``fetch_slots + 1`` chunks' deliveries held in memory."""
    settings = get_settings()
    slots = settings.fetch_slots
    with concurrency_slots("fetch-in-flight", slots + 1):
        return asyncio.run(fetch_and_store(
            request, provider_for(settings), settings, as_of,
            provider_gate=concurrency_slots("fetch", slots),
            store_gate=concurrency_slots("store", 1)))


@task(name="check-reference-data", cache_policy=NO_CACHE)
def check_reference_data(dates: list[dt.date], fetch_failures: dict[str, str]) -> None:
    """Fail the run (named error) when a reference ETF lacks a price on a target date,
    naming the cause (the ETF's fetch failure) when there is one."""
    gaps = asyncio.run(reference_gaps(dates))
    if gaps:
        detail = ", ".join(
            f"{k}: {v}" + (f" — its fetch failed: {fetch_failures[k]}" if k in fetch_failures
                           else "")
            for k, v in sorted(gaps.items()))
        raise ReferenceDataError(f"reference ETF prices missing, factors not computed ({detail})")


@task(name="active-symbols", cache_policy=NO_CACHE)
def active_market_symbols() -> quote[list[str]]:
    """Market symbols that have prices (status active), sorted; quoted."""

    async def _load() -> list[symbol_repo.SymbolState]:
        async with reading() as conn:
            return await symbol_repo.get_states(conn, statuses=[SymbolStatus.active])

    states = asyncio.run(_load())
    return bulk([s.symbol for s in states if is_market_symbol(s.symbol) and s.last_price_date])


@task(
    name="factors",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=2,
    task_run_name="factors-from-{symbols[0]}",
)
def compute_factors(symbols: list[str], dates: list[dt.date]) -> FactorReport:
    """Data checks, factor exposures and daily metrics for one chunk of symbols (at most
    ``factor_concurrency`` at once in this process)."""
    settings = get_settings()
    with concurrency_slots("factors", settings.factor_concurrency):
        return asyncio.run(compute_and_store_factors(symbols, dates, settings))


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
        "prices_replaced": sum(r.replaced for r in fetches),
        "restatements_rejected": sum(r.restatements_rejected for r in fetches),
        "prices_rebased": sum(r.rebased_rows for r in fetches),
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


def _problems(as_of: dt.date, errors: dict[str, Any]) -> ProblemTable:
    rows = [(s, "fetch", e) for s, e in sorted(errors["symbols"].items())[:200]]
    rows += [(s, "data check", e) for s, e in sorted(errors["blocked"].items())[:200]]
    rows += [(c, "chunk", e) for c, e in errors["chunks"].items()]
    return ProblemTable("symbol-batch-problems", ("symbol", "stage", "reason"), rows,
                        f"symbols without fresh data or factors on {as_of}")


@task(name="plan-repairs", cache_policy=NO_CACHE)
def plan_repairs_task(universe: list[symbol_repo.SymbolState], target: dt.date) -> RepairPlan:
    """Stored sessions to ask for again (holes, rows that failed their checks)."""
    return asyncio.run(plan_repairs(universe, target, get_settings().refetch_sessions))


@flow(name="symbol-batch", task_runner=task_runner(), log_prints=False)
def symbol_batch(
    as_of: dt.date | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> dict[str, Any]:
    """Refresh prices, data checks, factor exposures and metrics for the whole universe.

    ``as_of`` defaults to the latest completed NYSE session; ``start``/``end`` backfill
    every session in the range. Returns the run summary (also stored in ``batch_runs``).
    One symbol batch runs at a time: another live run makes this one fail with
    ``BatchAlreadyRunning`` (a lock left by a dead run is taken over at once).
    """
    dates = resolve_target_dates(as_of, start, end)
    run_id_prefect = flow_run.get_id()
    holder = run_id_prefect or str(uuid.uuid4())
    asyncio.run(lock_batch(this_process(holder, run_id_prefect), prefect_run_ended))
    try:
        with Heartbeat(BATCH_LOCK, holder):
            return _run(dates, holder, backfill=start is not None)
    finally:
        try:
            asyncio.run(unlock_batch(holder))
        except Exception as exc:  # the lock is taken over once this process is gone
            get_run_logger().warning("could not release the batch lock: %s", short_error(exc))


def _run(dates: list[dt.date], holder: str, backfill: bool) -> dict[str, Any]:
    target = dates[-1]
    run = RunRecord.start(KIND, target, flow_run_id=holder, emit=emit_event,
                          start=dates[0] if len(dates) > 1 else None, close_crashed=True)
    fetch_failures: dict[str, str] = {}
    run.errors["symbols"] = fetch_failures
    with run.failing():
        with run.timed("prices"):
            universe, repairs, fetches = _refresh_prices(run, dates, backfill, fetch_failures)
        run.phases["prices_provider"] = sum(r.provider_seconds for r in fetches)
        with run.timed("factors"):
            factors, factor_failures = _compute_factors(run, dates, fetch_failures)
        run.phases["factors_load"] = sum(r.load_seconds for r in factors)
        run.phases["factors_compute"] = sum(r.compute_seconds for r in factors)
        run.phases["factors_write"] = sum(r.write_seconds for r in factors)
        jobs_closed = asyncio.run(onboarding_queue.close_jobs_settled_by_batch())

    counts, errors = _summarise(dates, universe, fetches, fetch_failures, factors, factor_failures)
    counts["onboarding_jobs_closed"] = jobs_closed
    counts.update(repairs_requested=len(repairs.repair_from), repair_holes=repairs.holes,
                  repair_suspects=repairs.suspects, known_missing_marked=len(repairs.known_missing))
    held = {d: f for r in factors for d, f in r.reference_blocked.items()}
    if held:
        _hold_back_factors(run, target, counts, errors, held)
    failed = bool(errors["symbols"] or errors["chunks"])
    status = RunStatus.completed_with_failures if failed else RunStatus.completed
    run.complete(status, counts, errors, event=COMPLETED_EVENT, problems=_problems(target, errors),
                 payload={"as_of": target.isoformat(), "start": dates[0].isoformat(),
                          "status": status.value, "run_id": run.run_id})
    get_run_logger().info("symbol-batch %s for %s: %s", status.value, target, counts)
    return jsonable({
        "run_id": run.run_id, "as_of": target, "start": dates[0], "status": status.value,
        "counts": counts, "seconds": run.phases, "errors": errors,
    })


def _refresh_prices(
    run: RunRecord, dates: list[dt.date], backfill: bool, fetch_failures: dict[str, str],
) -> tuple[list[symbol_repo.SymbolState], RepairPlan, list[FetchReport]]:
    """Fetch and store the prices of the universe (holes and suspect rows asked again; in a
    nightly run, a bounded slice of the symbols with a shorter stored history than
    ``history_days`` asked back to it); symbols that fail go to ``fetch_failures`` (also
    stored on the symbols). A database failure fails the run."""
    settings = get_settings()
    target = dates[-1]
    universe = load_universe().unquote()
    invalid = asyncio.run(reject_invalid_symbols(universe))
    universe = [u for u in universe if u.symbol not in invalid]
    fetch_failures.update(invalid)
    repairs = plan_repairs_task(bulk(universe), target)
    history_start = dates[0] - dt.timedelta(days=settings.history_days) if backfill else None
    extend = [] if backfill else asyncio.run(plan_history_extension(
        universe, target, settings.history_days, settings.history_extension_per_night))
    plan = plan_fetch(
        universe, target, settings.history_days, settings.fetch_chunk_size, history_start,
        reference_start=settings.reference_history_start, repair_from=repairs.repair_from,
        extend=extend, short_window_scale=settings.short_window_scale,
    )
    get_run_logger().info("as_of %s: %d symbols (%d with their history extended), %d fetch "
                          "chunks", target, len(universe), len(extend), len(plan))
    fetched = map_chunks(fetch_prices, plan, target, progress=run.progress, span=(0.0, 50.0),
                         name=lambda req: f"prices: chunk from {req.symbols[0]}",
                         why=chunk_failure_reason)
    for failure in fetched.failures:
        fetch_failures.update({sym: failure.why for sym in failure.chunk.symbols})
    fetched.raise_storage_error("storing prices failed")
    asyncio.run(record_fetch_failures(target, fetch_failures))
    return universe, repairs, fetched.reports


def _compute_factors(
    run: RunRecord, dates: list[dt.date], fetch_failures: dict[str, str],
) -> tuple[list[FactorReport], dict[str, str]]:
    """Data checks, factors and metrics of every active market symbol, once the reference
    ETFs have their prices; returns the reports and the failed chunks (``"first..last"``)."""
    check_reference_data(dates, fetch_failures)
    chunks = chunked(active_market_symbols().unquote(), get_settings().factor_chunk_size)
    computed = map_chunks(compute_factors, chunks, dates, progress=run.progress,
                          span=(50.0, 95.0), name=lambda chunk: f"factors: chunk from {chunk[0]}",
                          why=chunk_failure_reason)
    failures = {f"{f.chunk[0]}..{f.chunk[-1]}": f.why for f in computed.failures}
    computed.raise_storage_error("storing factors failed")
    return computed.reports, failures


def _hold_back_factors(run: RunRecord, target: dt.date, counts: dict[str, Any],
                       errors: dict[str, Any], held: dict[str, dict[str, str]]) -> NoReturn:
    """Fail the run because a reference ETF failed its data checks (``held``: per date, the
    factors held back and why): row, artifacts, error log and alert event."""
    errors["reference_data"] = held
    first_day = min(held)
    message = (f"factors held back because a reference ETF failed its data checks "
               f"(first on {first_day}: " + "; ".join(
                   f"{k}: {v}" for k, v in sorted(held[first_day].items())) + ")")
    run.record_failed(message, counts, errors)
    run.publish(RunStatus.failed, counts, _problems(target, errors))
    get_run_logger().error("symbol-batch for %s: %s", target, message)
    run.send(ALERT_EVENT, {"as_of": target.isoformat(), "run_id": run.run_id, "reason": message,
                           "factors": sorted({f for day in held.values() for f in day})})
    raise ReferenceDataError(message)
