"""Instant answers from cached prices, then the onboarding flow: unknown symbols queued once,
fetched, checked and computed, portfolios refreshed; stuck jobs resumed. Real Prefect test
server, a real migrated database (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from api.launch import resume_onboarding
from core import launch
from core.db.engine import transaction
from core.errors import NotReady
from core.repositories import portfolios as repo
from core.repositories import users as user_repo
from core.services import analytics
from core.services import onboarding_queue as queue
from core.symbol_steps import register_universe
from flows import launcher
from tests.cli.test_cli import REPO
from tests.conftest import WAIT_LIMIT_S, seeded_prefect_home
from tests.flows.helpers import query, scalar

AS_OF = dt.date(2026, 11, 19)
pytestmark = pytest.mark.usefixtures("prefect_harness")


async def _portfolio(name: str, symbols: list[str]) -> str:
    async with transaction() as conn:
        uid = await user_repo.create_user(conn, name, f"hash-{name}")
        return await repo.create_portfolio(conn, uid, "main", Decimal("1000"), [
            {"symbol": s, "quantity": Decimal(10), "entry_date": dt.date(2026, 11, 2),
             "entry_price": Decimal("10")} for s in symbols] + [
            {"symbol": "PRIV_X", "quantity": Decimal(1), "entry_date": dt.date(2026, 11, 2),
             "entry_price": Decimal("100"), "investment_class": "PRIVATE",
             "manual_value": Decimal("150")}])


def test_instant_answer_then_onboarding(database_url: str) -> None:
    from flows.onboarding import onboarding
    from flows.symbol_batch import symbol_batch

    asyncio.run(register_universe(["MKTA", "ABCD"]))
    symbol_batch(as_of=AS_OF)
    pid = asyncio.run(_portfolio("ann", ["MKTA", "ZQZQ", "7203.T"]))
    other = asyncio.run(_portfolio("ben", ["ZQZQ"]))

    status = asyncio.run(queue.request_onboarding(["MKTA", "ZQZQ", "7203.T", "PRIV_X"], pid))
    assert status == {"MKTA": "ready", "ZQZQ": "pending", "7203.T": "pending",
                      "PRIV_X": "private"}
    again = asyncio.run(queue.request_onboarding(["ZQZQ"], other))
    assert again == {"ZQZQ": "pending"}
    jobs = query(database_url, "SELECT symbol, status, portfolio_ids FROM onboarding_jobs")
    assert sorted(jobs.symbol) == ["7203.T", "ZQZQ"]  # one job per symbol, shared
    assert pid in jobs.set_index("symbol").loc["ZQZQ", "portfolio_ids"]
    assert other in jobs.set_index("symbol").loc["ZQZQ", "portfolio_ids"]

    # the instant answer: latest stored price date, pending symbols missing
    snap = asyncio.run(analytics.snapshot_now(pid))
    assert snap["date"] == AS_OF.isoformat() and snap["partial"]
    assert set(snap["missing_symbols"]) == {"ZQZQ", "7203.T"}
    fx = asyncio.run(analytics.portfolio_analytics(pid, "factor-exposures"))
    assert fx["cached"] is True and fx["data_as_of"] == AS_OF.isoformat()
    market = next(r for r in fx["portfolio"] if r["factor"] == "market_beta")
    assert 0 < market["covered_share"] < 1  # the private holding is not covered

    result = onboarding()
    assert result["counts"]["ready"] == 1 and result["counts"]["errors"] == 1
    states = query(database_url, "SELECT symbol, status, error_reason FROM symbols").set_index(
        "symbol")
    assert states.loc["ZQZQ", "status"] == "active"
    assert states.loc["7203.T", "status"] == "error"
    assert "no_data" in states.loc["7203.T", "error_reason"]
    jobs = query(database_url, "SELECT symbol, status, error FROM onboarding_jobs").set_index(
        "symbol")
    assert jobs.loc["ZQZQ", "status"] == "done" and jobs.loc["7203.T", "status"] == "error"
    n = query(database_url, "SELECT COUNT(*) AS n FROM symbol_factor_exposures WHERE "
              "symbol='ZQZQ' AND date=?", (AS_OF.isoformat(),)).n[0]
    assert n == 12

    # the waiting portfolios were refreshed: ZQZQ is priced now, 7203.T still missing
    snap_row = query(database_url, "SELECT partial, missing_symbols FROM portfolio_snapshots "
                     "WHERE portfolio_id=? AND date=?", (pid, AS_OF.isoformat())).iloc[0]
    assert "ZQZQ" not in snap_row.missing_symbols and "7203.T" in snap_row.missing_symbols
    over = asyncio.run(analytics.portfolio_analytics(pid, "overview"))
    assert over["cached"] is True
    assert "ZQZQ" not in over["snapshot"]["missing_symbols"]

    # a change of positions is a cache miss, computed again
    async def add() -> None:
        async with transaction() as conn:
            await repo.add_positions(conn, pid, [{"symbol": "ABCD", "quantity": Decimal(1),
                                                  "entry_date": dt.date(2026, 11, 2),
                                                  "entry_price": Decimal(5)}])
    asyncio.run(add())
    assert asyncio.run(analytics.portfolio_analytics(pid, "overview"))["cached"] is False
    assert asyncio.run(analytics.portfolio_analytics(pid, "overview"))["cached"] is True
    with pytest.raises(Exception, match="unknown scenario"):
        asyncio.run(analytics.portfolio_analytics(pid, "stress-tests", scenario="nope"))
    one = asyncio.run(analytics.portfolio_analytics(pid, "stress-tests",
                                                    scenario="market_down_10"))
    assert [s["name"] for s in one["scenarios"]] == ["market_down_10"]


async def _claimed_by(url: str, pid: int) -> None:
    """Make every claim look taken by process ``pid``."""
    import sqlalchemy as sa

    from core.db.engine import create_engine, transaction
    from core.db.models import OnboardingJob

    engine = create_engine(url)
    try:
        async with transaction(engine) as conn:
            jobs = OnboardingJob.__table__  # type: ignore[attr-defined]
            await conn.execute(sa.update(jobs).values(pid=pid))
    finally:
        await engine.dispose()


def test_jobs_left_processing_are_resumed(database_url: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.symbol_batch import symbol_batch

    asyncio.run(register_universe(["MKTB"]))
    symbol_batch(as_of=AS_OF)
    asyncio.run(queue.request_onboarding(["QXQX"]))
    claimed = asyncio.run(queue.claim())  # a run took it, then the process died
    assert claimed.symbols == ["QXQX"]
    assert scalar(database_url, "SELECT status FROM onboarding_jobs") == "processing"
    assert asyncio.run(queue.reset_stuck()) == 0  # its claimer (this process) is alive
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    asyncio.run(_claimed_by(database_url, dead.pid))
    monkeypatch.setattr(launch, "_installed", launcher.PrefectLauncher())
    pending = asyncio.run(resume_onboarding())  # the API's start-up: back to pending, started
    assert pending == 1
    assert launcher.wait_for_onboarding(timeout=WAIT_LIMIT_S)
    row = query(database_url, "SELECT status, attempts FROM onboarding_jobs").iloc[0]
    assert row.status == "done" and row.attempts == 2
    assert query(database_url, "SELECT status FROM symbols WHERE symbol='QXQX'").status[0] == (
        "active")


def test_a_failed_run_gives_back_only_the_jobs_it_left_open(database_url: str) -> None:
    asyncio.run(queue.request_onboarding(["QXQY", "QXQZ", "QXQW"]))
    claimed = asyncio.run(queue.claim(limit=2))
    assert claimed.symbols == ["QXQW", "QXQY"]
    asyncio.run(queue.finish({"QXQW": None}))  # closed before the failure
    assert asyncio.run(queue.release(["QXQW", "QXQY", "QXQZ"])) == 1
    jobs = query(database_url, "SELECT symbol, status FROM onboarding_jobs ORDER BY symbol")
    assert list(zip(jobs.symbol, jobs.status, strict=True)) == [
        ("QXQW", "done"), ("QXQY", "pending"), ("QXQZ", "pending")]
    assert asyncio.run(queue.claim()).symbols == ["QXQY", "QXQZ"]  # the next run takes them


def test_symbols_requested_before_any_market_data_are_settled_by_the_first_batch(
        database_url: str) -> None:
    from flows.onboarding import onboarding
    from flows.symbol_batch import symbol_batch

    asyncio.run(queue.request_onboarding(["QQNA"]))
    with pytest.raises(NotReady, match="no market data stored yet"):
        onboarding()
    assert launcher.dispatch_onboarding() == "in-process"  # the API's runner: waits, does not retry
    assert launcher.wait_for_onboarding(timeout=WAIT_LIMIT_S)
    assert scalar(database_url, "SELECT status FROM onboarding_jobs") == "pending"

    result = symbol_batch(as_of=AS_OF)  # fetches pending symbols and closes their jobs
    assert result["counts"]["onboarding_jobs_closed"] == 1
    assert scalar(database_url, "SELECT status FROM onboarding_jobs") == "done"
    assert scalar(database_url, "SELECT status FROM symbols WHERE symbol='QQNA'") == "active"
    again = symbol_batch(as_of=AS_OF)  # a rerun closes nothing more
    assert again["counts"]["onboarding_jobs_closed"] == 0
    runs = query(database_url, "SELECT status FROM batch_runs WHERE job_type='onboarding'")
    assert list(runs.status) == ["failed", "failed"]  # the direct call and the runner's one


def test_concurrent_runs_claim_disjoint_jobs(database_url: str) -> None:
    """A run holding jobs mid-claim (rows locked, not committed) does not make another run
    wait or take the same jobs (PostgreSQL; on SQLite writers are serialised)."""
    from core.db.engine import create_engine

    if not database_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL")
    asyncio.run(queue.request_onboarding(["QXAA", "QXAB", "QXAC"]))

    async def scenario() -> list[str]:
        holder = create_engine(database_url)
        try:
            async with holder.begin() as conn:  # another run, between its SELECT and UPDATE
                await conn.execute(sa.text(
                    "SELECT symbol FROM onboarding_jobs WHERE symbol = 'QXAA' FOR UPDATE"))
                claimed = await asyncio.wait_for(queue.claim(), timeout=WAIT_LIMIT_S)
                return claimed.symbols
        finally:
            await holder.dispose()

    assert asyncio.run(scenario()) == ["QXAB", "QXAC"]
    jobs = query(database_url, "SELECT symbol, status FROM onboarding_jobs ORDER BY symbol")
    assert list(jobs.status) == ["pending", "processing", "processing"]


def test_the_in_process_runner_retries_a_failing_run_then_stops(
        empty_database_url: str, settings_env: pytest.MonkeyPatch) -> None:
    """A database without its tables: every run fails; the runner tries RUN_ATTEMPTS times,
    logs each failure and stops (the API stays up). Migrated, the next dispatch works."""
    from core.db import migrate

    settings_env.setenv("FACTORFLOW_DATABASE_URL", empty_database_url)
    settings_env.setattr(launcher, "RETRY_DELAYS_S", (0.1, 0.1))
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("flows.launcher").addHandler(handler)  # Prefect reconfigures the root
    try:
        assert launcher.dispatch_onboarding() == "in-process"
        assert launcher.wait_for_onboarding(timeout=WAIT_LIMIT_S)
    finally:
        logging.getLogger("flows.launcher").removeHandler(handler)
    failures = [r.getMessage() for r in records if "onboarding flow failed" in r.getMessage()]
    assert failures == [f"onboarding flow failed (attempt {i} of 3)" for i in (1, 2, 3)]

    migrate.upgrade(empty_database_url)
    asyncio.run(register_universe(["MKTA"]))
    from flows.symbol_batch import symbol_batch

    symbol_batch(as_of=AS_OF)
    asyncio.run(queue.request_onboarding(["QXRT"]))
    assert launcher.dispatch_onboarding() == "in-process"
    assert launcher.wait_for_onboarding(timeout=WAIT_LIMIT_S)
    assert scalar(empty_database_url, "SELECT status FROM onboarding_jobs") == "done"


_THREADS_STARTING_PREFECT = """
import threading
from prefect.client.orchestration import get_client
from flows.launcher import start_local_prefect
errors = []
def run():
    try:
        start_local_prefect()
        with get_client(sync_client=True) as client:
            client.hello()
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=run) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(len(errors), errors[:1])
"""


def test_threads_starting_prefects_local_server_at_once(tmp_path: Path) -> None:
    """The API's warm-up, onboarding runner and symbol batch may all start Prefect's local
    server at the same moment; through ``start_local_prefect`` none fails. (Without it, 3 of
    the 4 threads fail with "Server process did not start" and a second server is left
    running: Prefect 3.8's ``SubprocessASGIServer.start`` is not thread-safe.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACTORFLOW_", "PREFECT_"))}
    env.update({"PREFECT_HOME": str(seeded_prefect_home(tmp_path)),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(WAIT_LIMIT_S)})
    proc = subprocess.run([sys.executable, "-c", _THREADS_STARTING_PREFECT], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[0] == "0", proc.stdout
