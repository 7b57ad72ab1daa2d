"""The deployments as operators run them: a real local Prefect server (SQLite) on loopback,
the deployments of prefect.yaml served by a separate process, runs started through
the Prefect client.

1. symbol-batch started through the client → its completion event triggers portfolio-refresh
   for the same as_of (created by the automation, not by us) → completed, snapshots stored.
2. A provider fault makes a symbol-batch run fail; the same run is retried through the client
   (what the UI's Retry does) once the fault is gone, and completes without duplicated rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from core.db import migrate
from core.db.engine import transaction
from core.providers.synthetic import SyntheticProvider
from core.repositories import portfolios as repo
from core.repositories import users as user_repo
from core.symbol_steps import register_universe
from tests.conftest import WAIT_LIMIT_S, wait_until
from tests.flows.helpers import query

REPO = Path(__file__).resolve().parents[2]
AS_OF = dt.date(2026, 11, 19)
pytestmark = pytest.mark.slow


def _serve(url: str, db_url: str, home: Path, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACTORFLOW_", "PREFECT_"))}
    env.update({"PREFECT_API_URL": url, "FACTORFLOW_DATABASE_URL": db_url,
                "FACTORFLOW_HOME": str(home), "FACTORFLOW_RETRY_DELAYS": "0",
                "PREFECT_LOGGING_LEVEL": "WARNING", **extra})
    log = open(home / "serve.log", "wb")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-c", "from flows.serve import serve; serve()"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


async def _client_call(url: str, fn):  # noqa: ANN001
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: url}):
        async with get_client() as client:
            return await fn(client)


def _wait(url: str, fn, what: str):  # noqa: ANN001
    """Ask the server with ``fn(client)`` until it answers something truthy."""
    return wait_until(lambda: asyncio.run(_client_call(url, fn)), what, every=1.0)


async def _deployment(client, name: str):  # noqa: ANN001
    try:
        return await client.read_deployment_by_name(name)
    except Exception:
        return None


def _final(url: str, run_id):  # noqa: ANN001
    async def read(client):  # noqa: ANN001
        run = await client.read_flow_run(run_id)
        return run if run.state and run.state.is_final() else None

    return _wait(url, read, f"flow run {run_id} to finish")


async def _automation_ids(client) -> set:  # noqa: ANN001
    return {a.id for a in await client.read_automations()}


def _wait_for_trigger(url: str, deployment: str, older: set) -> None:
    """Wait until the event trigger of ``deployment`` is registered as an automation (one not
    among the ``older`` ids: a served deployment replaces its automations when it starts)."""
    async def registered(client):  # noqa: ANN001
        dep = await _deployment(client, deployment)
        if dep is None:
            return []
        owned = await client.read_resource_related_automations(f"prefect.deployment.{dep.id}")
        return [a for a in owned if a.id not in older and a.enabled]

    _wait(url, registered, f"the event trigger of {deployment} registered as an automation")


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(timeout=WAIT_LIMIT_S)


def _start(url: str, deployment: str, parameters: dict):  # noqa: ANN001
    async def create(client):  # noqa: ANN001
        dep = await client.read_deployment_by_name(deployment)
        return await client.create_flow_run_from_deployment(dep.id, parameters=parameters)

    return asyncio.run(_client_call(url, create))


def test_symbol_batch_event_triggers_portfolio_refresh(
    prefect_server: str, tmp_path: Path, settings_env: pytest.MonkeyPatch
) -> None:
    url, db_url = prefect_server, f"sqlite+aiosqlite:///{tmp_path / 'e2e.db'}"
    settings_env.setenv("FACTORFLOW_DATABASE_URL", db_url)
    migrate.upgrade(db_url)
    asyncio.run(register_universe(["MKTA", "MKTB"]))

    async def seed() -> str:
        async with transaction() as conn:
            uid = await user_repo.create_user(conn, "op", "h")
            return await repo.create_portfolio(conn, uid, "p", Decimal(100), [
                {"symbol": "MKTA", "quantity": Decimal(3), "entry_date": dt.date(2026, 11, 3),
                 "entry_price": Decimal(20)}])

    pid = asyncio.run(seed())
    older = asyncio.run(_client_call(url, _automation_ids))
    server = _serve(url, db_url, tmp_path, {"FACTORFLOW_PRICE_PROVIDER": "synthetic"})
    try:
        for name in ("symbol-batch/symbol-batch", "onboarding/onboarding"):
            _wait(url, lambda c, n=name: _deployment(c, n), f"deployment {name}")
        _wait_for_trigger(url, "portfolio-refresh/portfolio-refresh", older)
        run = _start(url, "symbol-batch/symbol-batch", {"as_of": AS_OF.isoformat()})
        assert _final(url, run.id).state.is_completed()

        async def triggered(client):  # noqa: ANN001
            from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

            runs = await client.read_flow_runs(deployment_filter=DeploymentFilter(
                name=DeploymentFilterName(any_=["portfolio-refresh"])))
            return [r for r in runs if r.parameters.get("as_of") == AS_OF.isoformat()]

        refresh = _wait(url, triggered, "the event-triggered portfolio-refresh run")[0]
        assert refresh.created_by is not None and refresh.created_by.type == "AUTOMATION"
        assert _final(url, refresh.id).state.is_completed()
    finally:
        _stop(server)
    snaps = query(db_url, "SELECT date FROM portfolio_snapshots WHERE portfolio_id=?", (pid,))
    assert list(snaps.date) == [AS_OF.isoformat()]


def test_failed_run_retried_through_the_client(
    prefect_server: str, tmp_path: Path, settings_env: pytest.MonkeyPatch
) -> None:
    url, db_url = prefect_server, f"sqlite+aiosqlite:///{tmp_path / 'retry.db'}"
    settings_env.setenv("FACTORFLOW_DATABASE_URL", db_url)
    migrate.upgrade(db_url)
    symbols = ["MKTA", "ABCD"]
    asyncio.run(register_universe(symbols))
    csv = tmp_path / "prices.csv"  # the fault: the provider's file is not there yet
    server = _serve(url, db_url, tmp_path, {"FACTORFLOW_PRICE_PROVIDER": "csv",
                                            "FACTORFLOW_CSV_PATH": str(csv)})
    try:
        _wait(url, lambda c: _deployment(c, "symbol-batch/symbol-batch"),
              "deployment symbol-batch/symbol-batch")
        run = _start(url, "symbol-batch/symbol-batch", {"as_of": AS_OF.isoformat()})
        failed = _final(url, run.id)
        assert failed.state.is_failed()
        assert query(db_url, "SELECT COUNT(*) AS n FROM prices").n[0] == 0

        # the fault goes away: the provider's file appears
        bars = SyntheticProvider().fetch(
            [*symbols, "SPY", "TLT", "VTV", "VUG", "MTUM", "QUAL", "IWM", "USMV"],
            dt.date(2024, 6, 3), AS_OF).bars
        bars.assign(date=pd.to_datetime(bars.date).dt.date).to_csv(csv, index=False)

        async def retry(client):  # noqa: ANN001
            from prefect.states import Scheduled

            return await client.set_flow_run_state(
                run.id, Scheduled(name="AwaitingRetry", scheduled_time=None), force=True)

        asyncio.run(_client_call(url, retry))
        assert _final(url, run.id).state.is_completed()
    finally:
        _stop(server)
    n = query(db_url, "SELECT COUNT(*) AS n FROM prices").n[0]
    distinct = query(db_url, "SELECT COUNT(*) AS n FROM (SELECT DISTINCT symbol, date FROM "
                     "prices) AS d").n[0]
    assert n == distinct > 0
    runs = query(db_url, "SELECT status FROM batch_runs WHERE job_type='symbol-batch' "
                 "ORDER BY started_at")
    assert list(runs.status) == ["failed", "completed"]
    fx = query(db_url, "SELECT COUNT(*) AS n FROM symbol_factor_exposures WHERE date=?",
               (AS_OF.isoformat(),)).n[0]
    assert fx == 12 * 10


def test_api_starts_the_onboarding_deployment(
    prefect_server: str, tmp_path: Path, settings_env: pytest.MonkeyPatch
) -> None:
    """With PREFECT_API_URL set, `factorflow api` creates a run of the `onboarding` deployment
    for an unknown symbol (it does not run the flow itself); the served deployment onboards it."""
    from tests.api.test_api_process import (
        running_api,
        wait_until_revalued,
        wait_until_settled,
    )

    url, db_url = prefect_server, f"sqlite+aiosqlite:///{tmp_path / 'onboard.db'}"
    settings_env.setenv("FACTORFLOW_DATABASE_URL", db_url)
    migrate.upgrade(db_url)
    asyncio.run(register_universe(["MKTA"]))
    token = "e2e-token-" + "x" * 30

    async def user() -> None:
        async with transaction() as conn:
            await user_repo.create_user(conn, "op", hashlib.sha256(token.encode()).hexdigest())

    asyncio.run(user())
    server = _serve(url, db_url, tmp_path, {"FACTORFLOW_PRICE_PROVIDER": "synthetic"})
    try:
        for name in ("symbol-batch/symbol-batch", "onboarding/onboarding"):
            _wait(url, lambda c, n=name: _deployment(c, n), f"deployment {name}")
        run = _start(url, "symbol-batch/symbol-batch", {"as_of": AS_OF.isoformat()})
        assert _final(url, run.id).state.is_completed()
        env = {"PREFECT_API_URL": url, "FACTORFLOW_DATABASE_URL": db_url,
               "FACTORFLOW_PRICE_PROVIDER": "synthetic"}
        with running_api(tmp_path, token, env) as api:
            resp = api["http"].post("/v1/portfolios", json={"name": "p", "positions": [
                {"symbol": "QQZD", "quantity": "4", "entry_date": "2026-11-03",
                 "entry_price": "20"}]})
            assert resp.status_code == 201, resp.text
            assert resp.json()["pending_symbols"] == ["QQZD"]
            symbol = wait_until_settled(api["http"], "QQZD", api["log"])
            assert symbol["status"] == "ready" and symbol["last_price_date"] == (
                AS_OF.isoformat())
            wait_until_revalued(api["http"], db_url, resp.json()["portfolio"]["id"],
                                api["log"])

        async def onboarding_runs(client):  # noqa: ANN001
            from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

            return await client.read_flow_runs(deployment_filter=DeploymentFilter(
                name=DeploymentFilterName(any_=["onboarding"])))

        runs = asyncio.run(_client_call(url, onboarding_runs))
        # the run may still be reporting its end to Prefect after its last write: wait for
        # its final state rather than read it once (a single read flaked under load)
        assert len(runs) == 1 and _final(url, runs[0].id).state.is_completed()
    finally:
        _stop(server)
    jobs = query(db_url, "SELECT symbol, status FROM onboarding_jobs")
    assert list(zip(jobs.symbol, jobs.status, strict=True)) == [("QQZD", "done")]
