"""The chunk tasks on a Dask cluster (prefect-dask) run in the cluster's worker processes and
give exactly the rows of the default thread pool, for the symbol flow and the portfolio flow.
Dask needs a real Prefect server."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.db import migrate
from core.db.engine import transaction
from core.repositories import portfolios as repo
from core.repositories import users as user_repo
from core.symbol_steps import register_universe
from tests.flows.helpers import snapshot, table_rows

AS_OF = dt.date(2026, 11, 19)
pytestmark = pytest.mark.slow
CHUNK_TASKS = {"fetch_prices": "fetch-prices", "compute_factors": "factors",
               "refresh": "refresh-portfolios"}
"""Python function name (the prefix of its Dask key) → Prefect task name of the mapped chunk
tasks."""
PORTFOLIO_TABLES = ("portfolio_snapshots", "portfolio_factor_exposures",
                    "portfolio_sector_exposures", "portfolio_correlations",
                    "stress_test_results", "positions")


async def _seed() -> None:
    await register_universe(["MKTA", "MKTB", "ABCD", "GAPY", "SPLT"])


async def _portfolio() -> None:
    async with transaction() as conn:
        uid = await user_repo.create_user(conn, "dask", "h")
        await repo.create_portfolio(conn, uid, "p", Decimal(1000), [
            {"id": f"pos-{s}", "symbol": s, "quantity": Decimal(q), "entry_date": dt.date(
                2026, 11, 3), "entry_price": Decimal(20)}
            for s, q in (("MKTA", 10), ("MKTB", -5), ("ABCD", 7), ("GAPY", 3))],
            portfolio_id="p-1")


def _run_both_flows(db_url: str, runner: object | None) -> tuple[dict[str, list], list[uuid.UUID]]:
    """Both flows on a fresh database; the rows they wrote and their flow run ids."""
    from core.settings import get_settings
    from flows.portfolio_refresh import portfolio_refresh
    from flows.symbol_batch import symbol_batch

    get_settings.cache_clear()  # FACTORFLOW_DATABASE_URL changed
    migrate.upgrade(db_url)
    asyncio.run(_seed())
    sb, pr = symbol_batch, portfolio_refresh
    if runner is not None:
        sb = symbol_batch.with_options(task_runner=runner)
        pr = portfolio_refresh.with_options(task_runner=runner)
    states = [sb(as_of=AS_OF, return_state=True)]
    asyncio.run(_portfolio())
    states.append(pr(as_of=AS_OF, return_state=True))
    for state in states:
        assert state.is_completed(), state
    rows = snapshot(db_url)
    rows.update(table_rows(db_url, PORTFOLIO_TABLES))
    # created_at stamps differ between the two databases; everything else must not
    rows["symbols"] = sorted((r[:7] for r in rows["symbols"]), key=repr)
    rows["positions"] = sorted((r[:12] for r in rows["positions"]), key=repr)
    rows["symbol_profiles"] = sorted((r[:-1] for r in rows["symbol_profiles"]), key=repr)
    return rows, [s.state_details.flow_run_id for s in states]


def _completed_task_runs(flow_run_ids: list[uuid.UUID]) -> Counter[str]:
    """Prefect's count of completed chunk-task runs in the given flow runs, by task name
    (a task run's ``task_key`` starts with its function's name)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids))
        )
    functions = (r.task_key.rsplit("-", 1)[0] for r in runs if r.state and r.state.is_completed())
    return Counter(CHUNK_TASKS[f] for f in functions if f in CHUNK_TASKS)


def test_dask_cluster_runs_chunk_tasks_in_worker_processes_with_the_same_rows(
    prefect_server: str, tmp_path: Path, settings_env: pytest.MonkeyPatch
) -> None:
    import psutil
    from distributed import Client, LocalCluster, get_task_stream
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_dask import DaskTaskRunner

    with temporary_settings({PREFECT_API_URL: prefect_server}):
        default_url = f"sqlite+aiosqlite:///{tmp_path / 'threads.db'}"
        settings_env.setenv("FACTORFLOW_DATABASE_URL", default_url)
        expected, _ = _run_both_flows(default_url, None)

        dask_url = f"sqlite+aiosqlite:///{tmp_path / 'dask.db'}"
        settings_env.setenv("FACTORFLOW_DATABASE_URL", dask_url)
        # worker processes start with this environment: the database and the real server
        settings_env.setenv("PREFECT_API_URL", prefect_server)
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            worker_pids: dict[str, int] = client.run(os.getpid)
            children = {p.pid for p in psutil.Process().children(recursive=True)}
            with get_task_stream(client) as stream:
                got, dask_runs = _run_both_flows(
                    dask_url, DaskTaskRunner(address=cluster.scheduler_address)
                )
            records: list[dict[str, Any]] = list(stream.data)
        # Prefect caches its events worker without the API URL in the key: drop the one bound
        # to this server so later flows in the session emit to their own server again
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all()
        prefect_counts = _completed_task_runs(dask_runs)

    # the workers are separate processes, children of this one
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids.values()
    assert set(worker_pids.values()) <= children
    # every chunk task ran on one of those workers (the scheduler's task stream: the worker
    # that computed each key), as often as Prefect recorded completed runs of it
    ran: Counter[str] = Counter()
    for record in records:
        function = re.sub(r"-[0-9a-f]{32}$", "", str(record["key"]))
        if function in CHUNK_TASKS:
            assert record["status"] == "OK", record
            assert record["worker"] in worker_pids, record
            ran[CHUNK_TASKS[function]] += 1
    assert set(ran) == set(CHUNK_TASKS.values()), ran
    assert ran == prefect_counts

    assert got.keys() == expected.keys()
    for table in expected:
        assert got[table] == expected[table], table
    assert expected["portfolio_snapshots"] and expected["symbol_factor_exposures"]
