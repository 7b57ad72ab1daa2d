"""The onboarding flow: process the symbol-onboarding queue, then refresh the portfolios
waiting on those symbols. Started by the API (deployment ``onboarding``), never scheduled.

Reuses the symbol flow's tasks: fetch (~1 year, retries), data checks + factors at the
latest stored data date, so an onboarded symbol is exactly as a nightly one.

May import core, Prefect, the shared flow wiring and the symbol flow's tasks; not api or cli.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run

from core import calendar
from core.db.engine import reading
from core.db.errors import short_error
from core.db.models import RunStatus, SymbolStatus
from core.errors import NotReady
from core.repositories import symbols as symbol_repo
from core.services import onboarding_queue as queue
from core.services.analytics import refresh_portfolio_analytics
from core.settings import get_settings
from core.symbol_data import latest_data_date
from core.symbol_steps import chunked, plan_fetch
from flows.common import jsonable, task_runner
from flows.run_record import ChunkFailure, RunKind, RunRecord, chunk_failure_reason, map_chunks
from flows.symbol_batch import compute_factors, fetch_prices

JOB = "onboarding"
COMPLETED_EVENT = "factorflow.onboarding.completed"
MAX_ROUNDS = 5
KIND = RunKind(job=JOB, resource={"prefect.resource.id": "factorflow.onboarding"},
               summary_key="onboarding-summary", progress=False)


@task(name="claim-jobs", cache_policy=NO_CACHE)
def claim_jobs(limit: int) -> queue.Claim:
    """Take pending queue rows (pending → processing)."""
    return asyncio.run(queue.claim(limit))


@task(name="symbol-states", cache_policy=NO_CACHE)
def symbol_states(symbols: list[str]) -> list[symbol_repo.SymbolState]:
    async def _load() -> list[symbol_repo.SymbolState]:
        async with reading() as conn:
            return await symbol_repo.get_states(conn, symbols)

    return asyncio.run(_load())


@task(name="finish-jobs", cache_policy=NO_CACHE)
def finish_jobs(outcomes: dict[str, str | None]) -> None:
    """Close the processed rows (done, or error with the reason)."""
    asyncio.run(queue.finish(outcomes))


@task(name="refresh-portfolio-analytics", cache_policy=NO_CACHE, retries=1,
      retry_delay_seconds=1)
def refresh_portfolios(portfolio_ids: list[str]) -> dict[str, str]:
    """Snapshot and analytics of the portfolios that waited on the onboarded symbols."""
    failed: dict[str, str] = {}
    for pid in portfolio_ids:
        try:
            asyncio.run(refresh_portfolio_analytics(pid))
        except Exception as exc:  # one portfolio never stops the others
            failed[pid] = f"{type(exc).__name__}: {exc}"
    return failed


def _outcomes(symbols: list[str], states: list[symbol_repo.SymbolState],
              fetch_errors: dict[str, str]) -> dict[str, str | None]:
    by = {s.symbol: s for s in states}
    out: dict[str, str | None] = {}
    for sym in symbols:
        st = by.get(sym)
        if st is not None and st.status == SymbolStatus.active and st.last_price_date:
            out[sym] = None
        else:
            out[sym] = fetch_errors.get(sym) or (st.error_reason if st else None) or (
                f"no prices stored (status {st.status.value if st else 'unknown'})")
    return out


@flow(name="factorflow-warm-up", log_prints=False)
def warm_up() -> bool:
    """A no-op flow: running it starts Prefect's local server (when no API URL is set)."""
    return True


@flow(name="onboarding", task_runner=task_runner(), log_prints=False)
def onboarding(max_symbols: int = 500) -> dict[str, Any]:
    """Onboard queued symbols (prices, checks, factors) and refresh the portfolios waiting."""
    as_of = asyncio.run(latest_data_date())
    target = as_of or calendar.latest_completed_session()
    run = RunRecord.start(KIND, target, flow_run_id=flow_run.get_id(), emit=emit_event,
                          title=f"onboarding on data of {as_of}")
    totals: dict[str, Any] = {"symbols": 0, "ready": 0, "errors": 0, "portfolios": 0}
    errors: dict[str, Any] = {"symbols": {}, "portfolios": {}}
    run.counts, run.errors = totals, errors
    with run.failing():
        if as_of is None:
            asyncio.run(queue.reset_stuck())
            raise NotReady("no market data stored yet: the symbols stay queued, and the first "
                           "symbol batch fetches them and closes their jobs")
        with queue.ClaimHeartbeat():  # a restarting API leaves these jobs to us
            for _ in range(MAX_ROUNDS):
                claimed = claim_jobs(max_symbols)
                if not claimed.symbols:
                    break
                outcomes, failed = _onboard(claimed, as_of)
                totals["symbols"] += len(outcomes)
                totals["ready"] += sum(1 for v in outcomes.values() if v is None)
                totals["errors"] += sum(1 for v in outcomes.values() if v is not None)
                totals["portfolios"] += len(claimed.portfolio_ids)
                errors["symbols"].update({k: v for k, v in outcomes.items() if v})
                errors["portfolios"].update(failed)
    status = (RunStatus.completed_with_failures if errors["symbols"] or errors["portfolios"]
              else RunStatus.completed)
    run.complete(status, totals, errors, event=COMPLETED_EVENT,
                 extra_rows=[{"item": f"error.{k}", "value": v}
                             for k, v in errors["symbols"].items()],
                 payload={"as_of": as_of.isoformat() if isinstance(as_of, dt.date) else None,
                          "run_id": run.run_id, **totals})
    get_run_logger().info("onboarding %s: %s", status.value, totals)
    return jsonable({"run_id": run.run_id, "as_of": as_of, "status": status.value,
                     "counts": totals, "errors": errors})


def _onboard(claimed: queue.Claim, as_of: dt.date) -> tuple[dict[str, str | None], dict[str, str]]:
    """One round: fetch, check and compute the claimed symbols, refresh the portfolios that
    wait on them, then close their jobs. Returns each symbol's outcome (``None``: ready, else
    why not) and the portfolios that failed. On failure the jobs are given back to the queue."""
    settings = get_settings()
    try:
        states = symbol_states(claimed.symbols)
        plan = plan_fetch(states, as_of, settings.history_days, settings.fetch_chunk_size)
        fetched = map_chunks(fetch_prices, plan, as_of, why=chunk_failure_reason)
        fetched.raise_storage_error("storing prices failed")  # the database, not the provider
        fetch_errors: dict[str, str] = {}
        for outcome in fetched.outcomes:
            if isinstance(outcome, ChunkFailure):
                fetch_errors.update({s: outcome.why for s in outcome.chunk.symbols})
            else:
                fetch_errors.update(outcome.errors)
        priced = [s.symbol for s in symbol_states(claimed.symbols)
                  if s.status == SymbolStatus.active and s.last_price_date]
        map_chunks(compute_factors, chunked(priced, settings.factor_chunk_size),
                   [as_of]).raise_storage_error("storing factors failed")
        outcomes = _outcomes(claimed.symbols, symbol_states(claimed.symbols), fetch_errors)
        # jobs close after the waiting portfolios are revalued: a symbol reads "ready"
        # only once the portfolios that hold it show it
        failed = refresh_portfolios(claimed.portfolio_ids)
        finish_jobs(outcomes)
    except BaseException:
        try:
            asyncio.run(queue.release(claimed.symbols))
        except Exception as exc:  # the API puts them back at its next start
            get_run_logger().warning("could not give back the claimed jobs: %s",
                                     short_error(exc))
        raise
    return outcomes, failed
