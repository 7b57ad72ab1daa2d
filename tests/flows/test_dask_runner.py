"""The chunk tasks on a Dask cluster (prefect-dask) give exactly the rows of the default
thread pool, for the symbol flow and the portfolio flow. Dask needs a real Prefect server."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from core.db import migrate
from core.db.engine import transaction
from core.repositories import portfolios as repo
from core.symbol_batch import register_universe
from tests.flows.helpers import snapshot, table_rows

AS_OF = dt.date(2026, 11, 19)
pytestmark = pytest.mark.slow
PORTFOLIO_TABLES = ("portfolio_snapshots", "portfolio_factor_exposures",
                    "portfolio_sector_exposures", "portfolio_correlations",
                    "stress_test_results", "positions")


async def _seed() -> None:
    await register_universe(["MKTA", "MKTB", "ABCD", "GAPY", "SPLT"])


async def _portfolio() -> None:
    async with transaction() as conn:
        uid = await repo.create_user(conn, "dask", "h")
        await repo.create_portfolio(conn, uid, "p", Decimal(1000), [
            {"id": f"pos-{s}", "symbol": s, "quantity": Decimal(q), "entry_date": dt.date(
                2026, 11, 3), "entry_price": Decimal(20)}
            for s, q in (("MKTA", 10), ("MKTB", -5), ("ABCD", 7), ("GAPY", 3))],
            portfolio_id="p-1")


def _run_both_flows(db_url: str, runner: object | None) -> dict[str, list]:
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
    sb(as_of=AS_OF)
    asyncio.run(_portfolio())
    pr(as_of=AS_OF)
    rows = snapshot(db_url)
    rows.update(table_rows(db_url, PORTFOLIO_TABLES))
    # created_at stamps differ between the two databases; everything else must not
    rows["symbols"] = sorted((r[:7] for r in rows["symbols"]), key=repr)
    rows["positions"] = sorted((r[:12] for r in rows["positions"]), key=repr)
    rows["symbol_profiles"] = sorted((r[:-1] for r in rows["symbol_profiles"]), key=repr)
    return rows


def test_dask_cluster_gives_the_same_rows(
    prefect_server: str, tmp_path: Path, settings_env: pytest.MonkeyPatch
) -> None:
    from distributed import LocalCluster
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_dask import DaskTaskRunner

    with temporary_settings({PREFECT_API_URL: prefect_server}):
        default_url = f"sqlite+aiosqlite:///{tmp_path / 'threads.db'}"
        settings_env.setenv("FACTORFLOW_DATABASE_URL", default_url)
        expected = _run_both_flows(default_url, None)

        dask_url = f"sqlite+aiosqlite:///{tmp_path / 'dask.db'}"
        settings_env.setenv("FACTORFLOW_DATABASE_URL", dask_url)
        with LocalCluster(n_workers=2, threads_per_worker=2, processes=False,
                          dashboard_address=None) as cluster:
            got = _run_both_flows(dask_url, DaskTaskRunner(address=cluster.scheduler_address))
        # Prefect caches its events worker without the API URL in the key: drop the one bound
        # to this server so later flows in the session emit to their own server again
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all()
    assert got.keys() == expected.keys()
    for table in expected:
        assert got[table] == expected[table], table
    assert expected["portfolio_snapshots"] and expected["symbol_factor_exposures"]
