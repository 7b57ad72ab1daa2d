"""The onboarding flow: process the symbol-onboarding queue, then refresh the portfolios
waiting on those symbols. Started by the API (deployment ``onboarding``), never scheduled.

Reuses the symbol flow's tasks: fetch (~1 year, retries), data checks + factors at the
latest stored data date, so an onboarded symbol is exactly as a nightly one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run

from core import calendar
from core.db.engine import reading
from core.db.errors import StorageError, is_storage_error, short_error
from core.db.models import RunStatus, SymbolStatus
from core.errors import NotReady
from core.repositories import symbols as symbol_repo
from core.services import onboarding_queue as queue
from core.services.analytics import latest_data_date, refresh_portfolio_analytics
from core.settings import get_settings
from core.symbol_steps import chunked, plan_fetch
from flows.common import jsonable, record_failure, record_finish, record_start, task_runner
from flows.symbol_batch import compute_factors, fetch_prices

JOB = "onboarding"
COMPLETED_EVENT = "factorflow.onboarding.completed"
MAX_ROUNDS = 5


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
    logger = get_run_logger()
    settings = get_settings()
    as_of = asyncio.run(latest_data_date())
    target = as_of or calendar.latest_completed_session()
    run_id = asyncio.run(record_start(JOB, target, None, flow_run.get_id()))
    totals: dict[str, Any] = {"symbols": 0, "ready": 0, "errors": 0, "portfolios": 0}
    errors: dict[str, Any] = {"symbols": {}, "portfolios": {}}
    unfinished: list[str] = []  # claimed by this run and not yet closed
    try:
        if as_of is None:
            asyncio.run(queue.reset_stuck())
            raise NotReady("no market data stored yet: the symbols stay queued, and the first "
                           "symbol batch fetches them and closes their jobs")
        with queue.ClaimHeartbeat():  # a restarting API leaves these jobs to us
            for _ in range(MAX_ROUNDS):
                claimed = claim_jobs(max_symbols)
                if not claimed.symbols:
                    break
                unfinished = claimed.symbols
                states = symbol_states(claimed.symbols)
                plan = plan_fetch(states, as_of, settings.lookback_days, settings.fetch_chunk_size)
                fetch_errors: dict[str, str] = {}
                for req, fut in zip(plan, fetch_prices.map(plan, unmapped(as_of)), strict=True):
                    res = fut.result(raise_on_failure=False)
                    if isinstance(res, BaseException):
                        if is_storage_error(res):  # the database failed, not the provider
                            raise StorageError(f"storing prices failed: {short_error(res)}")
                        fetch_errors.update({s: f"provider_error: {short_error(res)}"
                                             for s in req.symbols})
                    else:
                        fetch_errors.update(res.errors)
                priced = [s.symbol for s in symbol_states(claimed.symbols)
                          if s.status == SymbolStatus.active and s.last_price_date]
                for ffut in compute_factors.map(chunked(priced, settings.factor_chunk_size),
                                                unmapped([as_of])):
                    fres = ffut.result(raise_on_failure=False)
                    if isinstance(fres, BaseException) and is_storage_error(fres):
                        raise StorageError(f"storing factors failed: {short_error(fres)}")
                outcomes = _outcomes(claimed.symbols, symbol_states(claimed.symbols), fetch_errors)
                # jobs close after the waiting portfolios are revalued: a symbol reads "ready"
                # only once the portfolios that hold it show it
                failed = refresh_portfolios(claimed.portfolio_ids)
                finish_jobs(outcomes)
                unfinished = []
                totals["symbols"] += len(outcomes)
                totals["ready"] += sum(1 for v in outcomes.values() if v is None)
                totals["errors"] += sum(1 for v in outcomes.values() if v is not None)
                totals["portfolios"] += len(claimed.portfolio_ids)
                errors["symbols"].update({k: v for k, v in outcomes.items() if v})
                errors["portfolios"].update(failed)
    except BaseException as exc:
        if unfinished:
            try:
                asyncio.run(queue.release(unfinished))
            except Exception as rexc:  # the API puts them back at its next start
                logger.warning("could not give back the claimed jobs: %s", short_error(rexc))
        record_failure(run_id, {}, {"error": short_error(exc), **errors}, totals)
        raise
    status = (RunStatus.completed_with_failures if errors["symbols"] or errors["portfolios"]
              else RunStatus.completed)
    asyncio.run(record_finish(run_id, status, totals, {}, errors))
    create_table_artifact(
        key="onboarding-summary",
        table=[{"item": k, "value": v} for k, v in totals.items()]
        + [{"item": f"error.{k}", "value": v} for k, v in errors["symbols"].items()],
        description=f"onboarding on data of {as_of}: {status.value}",
    )
    emit_event(event=COMPLETED_EVENT,
               resource={"prefect.resource.id": "factorflow.onboarding"},
               payload={"as_of": as_of.isoformat() if isinstance(as_of, dt.date) else None,
                        "run_id": run_id, **totals})
    logger.info("onboarding %s: %s", status.value, totals)
    return jsonable({"run_id": run_id, "as_of": as_of, "status": status.value,
                     "counts": totals, "errors": errors})
