"""The history flow: build the daily snapshots of the portfolios queued for it
(``POST /v1/portfolios/{id}/history``) back to their positions' entry dates. Started by the
API (deployment ``portfolio-history``), never scheduled.

A thin loop over ``core/history_build.py`` (the work, with the nightly refresh's own code)
and ``core/services/history_jobs.py`` (the queue): jobs of gone runs are queued again, then
one job at a time is claimed, built and closed. A job that fails is closed ``failed`` with
its reason and the next one goes on; before any market data the jobs stay queued.

May import core, Prefect and the shared flow wiring; not api or cli.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.errors import NotReady
from core.history_build import run_job
from core.services import history_jobs
from flows.common import jsonable, task_runner

MAX_JOBS = 100


@task(name="claim-history-job", cache_policy=NO_CACHE)
def claim_job() -> history_jobs.HistoryClaim | None:
    """Take the oldest queued job (queued → running)."""
    return asyncio.run(history_jobs.claim())


@task(name="build-history", cache_policy=NO_CACHE)
def build_job(claimed: history_jobs.HistoryClaim) -> dict[str, Any]:
    """Build one portfolio's history and close its job; what it did."""
    outcome = asyncio.run(run_job(claimed))
    if outcome is None:
        return {"portfolio_id": claimed.portfolio_id, "status": history_jobs.FAILED}
    return {"portfolio_id": claimed.portfolio_id, "status": history_jobs.DONE,
            "first_date": outcome.first_date, "last_date": outcome.last_date,
            "snapshots": outcome.snapshots}


@flow(name="portfolio-history", task_runner=task_runner(), log_prints=False)
def portfolio_history(max_jobs: int = MAX_JOBS) -> dict[str, Any]:
    """Build the history of up to ``max_jobs`` queued portfolios, one after the other."""
    logger = get_run_logger()
    queued = asyncio.run(history_jobs.reset_stuck())
    jobs: list[dict[str, Any]] = []
    with history_jobs.ClaimHeartbeat():  # a restarting API leaves our job to us
        for _ in range(max_jobs):
            claimed = claim_job()
            if claimed is None:
                break
            try:
                jobs.append(build_job(claimed))
            except NotReady as exc:  # the job went back to the queue
                logger.warning("history builds wait: %s", exc)
                break
    done = sum(1 for j in jobs if j["status"] == history_jobs.DONE)
    logger.info("portfolio-history: %d job(s) done, %d failed (%d were queued)", done,
                len(jobs) - done, queued)
    return jsonable({"queued": queued, "done": done, "failed": len(jobs) - done,
                     "jobs": jobs})
