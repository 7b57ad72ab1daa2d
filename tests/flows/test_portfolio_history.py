"""The ``portfolio-history`` flow in-process on a Prefect test server: it queues again the
jobs of dead runs, builds every queued job and closes it; a failing job does not stop the
next; before any market data the jobs stay queued. The launcher's in-process runner starts
the same flow in a thread. (The build's rows themselves: tests/core/test_history_build.py.)"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from tests.core.test_history_build import (  # noqa: F401  (fixtures)
    AS_OF,
    _portfolio,
    back,
    launched,
    template,
    url,
)
from tests.flows.helpers import execute, query

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _queue(owner: str, pid: str) -> None:
    from core.db.engine import flow_engine
    from core.services import history_jobs

    asyncio.run(history_jobs.request_history(flow_engine(), owner, pid))


def test_the_flow_builds_every_queued_job(url: str, launched: object) -> None:  # noqa: F811
    from flows.portfolio_history import portfolio_history

    good = asyncio.run(_portfolio([
        {"symbol": "MKTA", "quantity": Decimal(10), "entry_date": back(39),
         "entry_price": Decimal("50")}]))
    bad = asyncio.run(_portfolio([
        {"symbol": "MKTB", "quantity": Decimal(5), "entry_date": back(9),
         "entry_price": Decimal("20")}, {"symbol": "DIVY", "quantity": Decimal(5),
                                         "entry_date": back(9), "entry_price": Decimal("20")}]))
    _queue(*bad)
    _queue(*good)
    # the first job was claimed by a process that died (pid 1 is no process of ours)
    execute(url, "UPDATE portfolio_history_jobs SET status='running', host=?, pid=?, "
            "process_token='x' WHERE portfolio_id=?",
            (__import__("socket").gethostname(), 2 ** 22 + 7, bad[1]))
    execute(url, "UPDATE positions SET investment_class='NOPE' WHERE portfolio_id=?", (bad[1],))

    result = portfolio_history()
    assert (result["queued"], result["done"], result["failed"]) == (2, 1, 1)
    jobs = query(url, "SELECT portfolio_id, status, snapshots, first_date, last_date, error, "
                 "host FROM portfolio_history_jobs ORDER BY requested_at")
    by = {r.portfolio_id: r for r in jobs.itertuples()}
    assert by[good[1]].status == "done" and by[good[1]].snapshots == 40
    assert (by[good[1]].first_date, by[good[1]].last_date) == (back(39).isoformat(),
                                                                AS_OF.isoformat())
    assert by[bad[1]].status == "failed" and "invalid position" in by[bad[1]].error
    assert jobs.host.isna().all()  # no claim left behind


def test_before_any_market_data_the_jobs_wait(url: str, launched: object) -> None:  # noqa: F811
    from flows.portfolio_history import portfolio_history

    owner, pid = asyncio.run(_portfolio([
        {"symbol": "MKTA", "quantity": Decimal(10), "entry_date": back(3),
         "entry_price": Decimal("50")}]))
    _queue(owner, pid)
    execute(url, "DELETE FROM batch_runs")
    from core.symbol_data import _data_dates

    _data_dates.clear()
    result = portfolio_history()
    assert result["done"] == result["failed"] == 0
    assert query(url, "SELECT status FROM portfolio_history_jobs").status[0] == "queued"


def test_the_in_process_launcher_runs_the_flow(url: str) -> None:  # noqa: F811
    from flows import launcher

    owner, pid = asyncio.run(_portfolio([
        {"symbol": "DIVY", "quantity": Decimal(10), "entry_date": back(4),
         "entry_price": Decimal("50")}]))
    _queue(owner, pid)  # no launcher installed: queued only
    assert launcher.dispatch_history() == "in-process"
    assert launcher.wait_for_history(120)
    job = query(url, "SELECT status, snapshots FROM portfolio_history_jobs")
    assert (job.status[0], job.snapshots[0]) == ("done", 5)
