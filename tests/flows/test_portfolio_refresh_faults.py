"""The portfolio flow under faults, each compared with a clean run's rows.

Every test injects one fault into a real migrated database (SQLite, and PostgreSQL when
configured) holding a real symbol batch's data and seeded portfolios, then compares every
table (``table_signature``) with a copy of the same database (``clone_database``, taken
before the fault) on which the same refreshes ran without it:

* two ``factorflow portfolio-refresh`` processes for different dates at once;
* a refresh killed by SIGKILL after its first chunk was stored, then a plain rerun;
* an API edit that writes today's snapshot between the symbol batch and the refresh;
* a refresh for an older date after the present moved ahead;
* a full disk (SQLite: ``max_page_count``; PostgreSQL: a trigger raising SQLSTATE 53100).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from core.db.errors import StorageError
from core.symbol_steps import register_universe
from tests.conftest import SQLITE_ONLY, WAIT_LIMIT_S, wait_until
from tests.flows.helpers import (
    clone_database,
    drop_clone,
    execute,
    is_sqlite,
    query,
    scalar,
    signature_diff,
    table_signature,
)
from tests.flows.test_symbol_batch import _wait_for_event

REPO = Path(__file__).resolve().parents[2]
D1, D2, D3 = dt.date(2026, 11, 17), dt.date(2026, 11, 18), dt.date(2026, 11, 19)
UNIVERSE = ["MKTA", "MKTB", "ABCD", "EFGH", "QRST", "SPLT", "DIVY", "GAPY"]
FAULT_POINT = "portfolio-refresh:after-first-chunk"

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def market(database_url: str) -> str:
    """The database after a real symbol batch for D1..D3 (no portfolios yet)."""
    from flows.symbol_batch import symbol_batch

    asyncio.run(register_universe(UNIVERSE))
    symbol_batch(start=D1, end=D3)
    return database_url


def seed(n: int, positions: int = 6) -> list[str]:
    """``n`` synthetic portfolios (deterministic ids, entries up to D1); their ids, sorted."""
    from core.demo import seed_portfolios

    asyncio.run(seed_portfolios(n, D1, positions=positions, entry_sessions=40))
    return sorted(query(os.environ["FACTORFLOW_DATABASE_URL"],
                        "SELECT id FROM portfolios").id)


@contextmanager
def using(url: str) -> Iterator[str]:
    """Point FACTORFLOW_DATABASE_URL (and so the flows) at ``url`` for a while."""
    from core.settings import get_settings

    before = os.environ["FACTORFLOW_DATABASE_URL"]
    os.environ["FACTORFLOW_DATABASE_URL"] = url
    get_settings.cache_clear()
    try:
        yield url
    finally:
        os.environ["FACTORFLOW_DATABASE_URL"] = before
        get_settings.cache_clear()


def refresh(as_of: dt.date, **params: object) -> dict:
    from flows.portfolio_refresh import portfolio_refresh

    return portfolio_refresh(as_of=as_of, **params)


@contextmanager
def clean_copy(url: str, name: str) -> Iterator[str]:
    """A copy of the database as it is now, for the clean run; dropped afterwards."""
    copy = clone_database(url, name)
    try:
        yield copy
    finally:
        from core.db import engine as db_engine

        engine = db_engine._flow_engines.pop(copy, None)
        if engine is not None:
            asyncio.run(engine.dispose())
        drop_clone(copy)


def assert_same_rows(url: str, clean: str) -> None:
    diff = signature_diff(table_signature(clean), table_signature(url))
    assert diff == "", f"the database differs from a clean run's:\n{diff}"


def snapshots(url: str) -> pd.DataFrame:
    return query(url, "SELECT portfolio_id, date, daily_pnl FROM portfolio_snapshots "
                 "ORDER BY portfolio_id, date")


def assert_pnl_chain_whole(url: str) -> None:
    """Every snapshot but a portfolio's first has a daily P&L (the chain has no hole)."""
    snaps = snapshots(url)
    first = snaps.groupby("portfolio_id").date.transform("min")
    broken = snaps[(snaps.date != first) & snaps.daily_pnl.isna()]
    assert broken.empty, f"snapshots without daily P&L after the first:\n{broken}"


def refresh_runs(url: str) -> pd.DataFrame:
    return query(url, "SELECT id, target_date, status, started_at, finished_at, error_summary "
                 "FROM batch_runs WHERE job_type='portfolio-refresh' ORDER BY started_at")


# --- real processes ---------------------------------------------------------------------------

def cli(url: str, prefect_api: str, home: Path, as_of: dt.date, *args: str, **env: str
        ) -> subprocess.Popen[str]:
    """``factorflow portfolio-refresh --as-of`` in its own process, on the shared local
    Prefect server (no ephemeral server per process)."""
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("FACTORFLOW_", "PREFECT_"))}
    environ.update({"PREFECT_API_URL": prefect_api, "FACTORFLOW_DATABASE_URL": url,
                    "FACTORFLOW_HOME": str(home), "PREFECT_HOME": str(home / "prefect"),
                    "PREFECT_LOGGING_LEVEL": "WARNING", **env})
    factorflow = Path(sys.executable).with_name("factorflow")
    return subprocess.Popen(
        [str(factorflow), "portfolio-refresh", "--as-of", as_of.isoformat(), *args],
        cwd=REPO, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@SQLITE_ONLY
def test_a_refresh_waits_for_a_live_holder_then_fails_without_writing(
    database_url: str, prefect_server: str, tmp_path: Path,
) -> None:
    import socket

    from core.db.engine import transaction
    from core.db.models import RunStatus
    from core.portfolio_steps import RefreshAlreadyRunning, lock_refresh
    from core.repositories import batch_runs
    from core.run_lock import LockOwner, process_token

    async def symbol_batch_done() -> None:  # readiness is checked before the lock
        async with transaction() as conn:
            run = await batch_runs.start_run(conn, "symbol-batch", D3)
            await batch_runs.finish_run(conn, run, RunStatus.completed, {}, {}, {})

    asyncio.run(symbol_batch_done())
    live = subprocess.Popen(["sleep", "300"])
    try:
        owner = LockOwner("another-run", socket.gethostname(), live.pid, process_token(live.pid))
        asyncio.run(lock_refresh(owner, 0))
        t0 = time.monotonic()
        state = refresh(D3, lock_wait_seconds=3, return_state=True)
        assert time.monotonic() - t0 >= 3  # it waited for the holder, up to the bound
        assert state.is_failed()  # an operator sees it as not done
        with pytest.raises(RefreshAlreadyRunning, match=f"pid {live.pid}"):
            state.result()
        assert scalar(database_url, "SELECT COUNT(*) FROM batch_runs WHERE "
                      "job_type='portfolio-refresh'") == 0

        proc = cli(database_url, prefect_server, tmp_path, D3, "--lock-wait", "1")
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, (out, err)
        assert err.strip().splitlines()[-1].startswith(
            "factorflow: RefreshAlreadyRunning: another portfolio refresh is running"), err
        assert scalar(database_url, "SELECT holder FROM run_locks") == "another-run"
    finally:
        live.kill()
        live.wait()


async def _running_refreshes(prefect_api: str, since: dt.datetime) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_api}):
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["portfolio-refresh"])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(
                        any_=[StateType.RUNNING])),
                    start_time=FlowRunFilterStartTime(after_=since)))
    return len(runs)


_HOLD_SQLITE = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.read()
con.execute("COMMIT")
"""


@contextmanager
def writes_held(url: str) -> Iterator[None]:
    """Hold the database's write lock until exit (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL:
    ``LOCK TABLE batch_runs, run_locks IN EXCLUSIVE MODE``): runs that start meanwhile stop
    at their first write and go on together once it is released.

    On SQLite the lock is held by a helper process: POSIX locks belong to a process, and any
    close of the database file in this one (a copy, a reader) would drop it silently.
    """
    import threading

    from tests.flows.helpers import _pg_connect, db_path

    if is_sqlite(url):
        holder = subprocess.Popen([sys.executable, "-c", _HOLD_SQLITE, str(db_path(url))],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        try:
            yield
        finally:
            holder.communicate(timeout=30)
        return
    held, release = threading.Event(), threading.Event()

    async def hold() -> None:
        con = await _pg_connect(url)
        try:
            tr = con.transaction()
            await tr.start()
            await con.execute("LOCK TABLE batch_runs, run_locks IN EXCLUSIVE MODE")
            held.set()
            while not release.is_set():
                await asyncio.sleep(0.05)
            await tr.commit()
        finally:
            await con.close()

    thread = threading.Thread(target=lambda: asyncio.run(hold()), daemon=True)
    thread.start()
    assert held.wait(WAIT_LIMIT_S), "could not lock the tables"
    try:
        yield
    finally:
        release.set()
        thread.join(30)


@pytest.mark.slow
def test_two_refreshes_at_once_run_one_after_the_other_and_lose_no_session(
    market: str, prefect_server: str, tmp_path: Path,
) -> None:
    url = market
    ids = seed(150)  # new portfolios: 150 × 3 sessions = 450 snapshots to write
    with clean_copy(url, "clean") as clean:
        since = dt.datetime.now(dt.UTC)
        procs: list[subprocess.Popen[str]] = []
        try:
            with writes_held(url):  # both runs reach their first write, then go on together
                procs = [cli(url, prefect_server, tmp_path, day) for day in (D1, D3)]

                def both_running() -> bool:
                    done = [p for p in procs if p.poll() is not None]
                    assert not done, [(p.args[-1], p.returncode, *p.communicate())
                                      for p in done]
                    return asyncio.run(_running_refreshes(prefect_server, since)) >= 2

                wait_until(both_running, "the two refreshes to start", every=0.5)
                time.sleep(3)  # a window for both to reach their first write
            outs = [p.communicate(timeout=600) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for p, (out, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, (out, err)

        runs = refresh_runs(url)
        assert list(runs.status) == ["completed", "completed"]
        order = [dt.date.fromisoformat(d) for d in runs.target_date]
        with using(clean):  # the same two runs, one after the other in the order they ran
            for day in order:
                refresh(day)
        assert_pnl_chain_whole(url)
        assert_same_rows(url, clean)
    # one at a time: the second started (took the lock) after the first finished
    assert runs.started_at[1] >= runs.finished_at[0], runs
    snaps = snapshots(url)
    expected = {D1, D2, D3} if order == [D1, D3] else {D3}  # a later date first: no older one
    assert set(snaps.date) == {d.isoformat() for d in expected}
    assert len(snaps) == len(ids) * len(expected)
    assert set(query(url, "SELECT DISTINCT market_value_date FROM positions WHERE "
                     "market_value_date IS NOT NULL").market_value_date) == {D3.isoformat()}


@pytest.mark.slow
def test_a_refresh_killed_after_its_first_chunk_is_completed_by_a_plain_rerun(
    market: str, prefect_server: str, tmp_path: Path,
) -> None:
    url = market
    ids = seed(12)
    refresh(D1)
    with clean_copy(url, "clean") as clean:
        killed = cli(url, prefect_server, tmp_path, D3, FACTORFLOW_FAULT_POINT=FAULT_POINT,
                     FACTORFLOW_PORTFOLIO_CHUNK_SIZE="2", FACTORFLOW_MAX_WORKERS="1")
        out, err = killed.communicate(timeout=600)
        assert killed.returncode == -signal.SIGKILL, (out, err)
        stored = scalar(url, "SELECT COUNT(*) FROM portfolio_snapshots WHERE date=?",
                        (D3.isoformat(),))
        assert 0 < stored < len(ids)  # the first chunk is stored, not the others
        assert scalar(url, "SELECT COUNT(*) FROM run_locks WHERE name='portfolio-refresh'") == 1

        rerun = refresh(D3, lock_wait_seconds=0)  # the dead holder's lock is taken at once
        assert rerun["status"] == "completed" and rerun["counts"]["failed"] == 0
        runs = refresh_runs(url)
        assert list(runs.status) == ["completed", "crashed", "completed"], runs
        assert scalar(url, "SELECT COUNT(*) FROM run_locks") == 0

        with using(clean):
            refresh(D3)
        assert_same_rows(url, clean)
    assert_pnl_chain_whole(url)


# --- in-process faults --------------------------------------------------------------------------

def _api_token(url: str, portfolio_id: str) -> str:
    from core.demo import demo_token

    owner = query(url, "SELECT u.name FROM users u JOIN portfolios p ON p.owner_id = u.id "
                  "WHERE p.id=?", (portfolio_id,)).name[0]
    return demo_token(owner)


def _api_patch_cash(url: str, portfolio_id: str, cash: str,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    """PATCH the portfolio's cash through the real API app (which re-snapshots it)."""
    from litestar.testing import TestClient

    from api.app import create_app
    from tests.recording_launcher import record_launches
    record_launches(monkeypatch)
    monkeypatch.setattr("flows.launcher.freeze_long_lived_objects", lambda: None)
    headers = {"Authorization": f"Bearer {_api_token(url, portfolio_id)}"}
    with TestClient(create_app(url)) as client:
        resp = client.patch(f"/v1/portfolios/{portfolio_id}", json={"cash": cash},
                            headers=headers)
    assert resp.status_code == 200, resp.text


def _set_cash(portfolio_id: str, cash: str) -> None:
    """The same edit without the API (no snapshot): what a clean run sees."""
    import sqlalchemy as sa

    from core.db.engine import transaction
    from core.db.models import Portfolio

    async def run() -> None:
        async with transaction() as conn:
            portfolios = Portfolio.__table__  # type: ignore[attr-defined]
            await conn.execute(sa.update(portfolios).where(portfolios.c.id == portfolio_id)
                               .values(cash_balance=Decimal(cash)))

    asyncio.run(run())


@SQLITE_ONLY
def test_an_api_edit_before_the_refresh_loses_no_session(
    market: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = market
    ids = seed(4)
    refresh(D1)
    edited = ids[0]
    with clean_copy(url, "clean") as clean:
        _api_patch_cash(url, edited, "4321.5", monkeypatch)
        api_day = query(url, "SELECT date, daily_pnl FROM portfolio_snapshots WHERE "
                        "portfolio_id=? AND date=?", (edited, D3.isoformat()))
        assert len(api_day) == 1 and api_day.daily_pnl.isna().all()  # D2 was not there yet

        summary = refresh(D3)
        assert summary["counts"]["refreshed"] == len(ids), summary["counts"]
        with using(clean):
            _set_cash(edited, "4321.5")
            refresh(D3)
        assert_same_rows(url, clean)
    assert_pnl_chain_whole(url)
    assert set(snapshots(url).date[snapshots(url).portfolio_id == edited]) == {
        D1.isoformat(), D2.isoformat(), D3.isoformat()}


def _snapshot_now(portfolio_id: str) -> None:
    from core.services.analytics import snapshot_now

    assert asyncio.run(snapshot_now(portfolio_id))["data_as_of"] == D3.isoformat()


def _positions(url: str, portfolio_id: str) -> pd.DataFrame:
    return query(url, "SELECT id, market_value, market_value_date FROM positions WHERE "
                 "portfolio_id=? ORDER BY id", (portfolio_id,))


def test_an_older_date_refresh_writes_history_never_the_present(market: str) -> None:
    url = market
    old = seed(3)
    refresh(D1)
    new = sorted(set(seed(4)) - set(old))[0]  # a portfolio created after that refresh
    ahead = old[0]
    with clean_copy(url, "clean") as clean:
        _snapshot_now(new)  # its first snapshot: D3 (the API's instant snapshot)
        _snapshot_now(ahead)  # the present of this one moves to D3, before D2 is refreshed
        present = _positions(url, ahead)
        assert set(present.market_value_date.dropna()) == {D3.isoformat()}

        older = refresh(D2)
        assert older["counts"]["refreshed"] == 3 and older["counts"]["newer"] == 1
        pd.testing.assert_frame_equal(_positions(url, ahead), present)  # still D3's values
        assert scalar(url, "SELECT COUNT(*) FROM portfolio_snapshots WHERE portfolio_id=? "
                      "AND date<?", (new, D3.isoformat())) == 0  # no hole made behind it
        assert scalar(url, "SELECT COUNT(*) FROM portfolio_snapshots WHERE portfolio_id=? "
                      "AND date=?", (ahead, D2.isoformat())) == 1
        refresh(D3)
        again = refresh(D1)  # nothing is missing at or before D1
        assert again["counts"]["refreshed"] == 0 and again["counts"]["up_to_date"] == 3
        assert again["counts"]["newer"] == 1

        with using(clean):
            _snapshot_now(new)
            refresh(D2)
            refresh(D3)
        assert_same_rows(url, clean)
    assert_pnl_chain_whole(url)
    assert set(query(url, "SELECT DISTINCT market_value_date FROM positions WHERE "
                     "market_value_date IS NOT NULL").market_value_date) == {D3.isoformat()}


@contextmanager
def disk_full(url: str) -> Iterator[None]:
    """Writes that need more room fail the way a full disk fails them.

    SQLite: every new connection of the flows gets ``PRAGMA max_page_count`` a few pages
    above the file's current size (after VACUUM: no free pages to reuse), so a run record
    fits and a chunk of analytics does not ("database or disk is full"). PostgreSQL: a
    trigger on the snapshot table raises SQLSTATE 53100 ``disk_full``, as PostgreSQL does
    when it cannot extend a file.
    """
    if is_sqlite(url):
        import sqlalchemy as sa

        from core.db.engine import flow_engine

        execute(url, "VACUUM")
        pages = scalar(url, "PRAGMA page_count")
        engine = flow_engine(url).sync_engine

        def limit(dbapi_conn: object, _record: object) -> None:
            cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
            cur.execute(f"PRAGMA max_page_count = {pages + 4}")
            cur.close()

        sa.event.listen(engine, "connect", limit)
        try:
            yield
        finally:
            sa.event.remove(engine, "connect", limit)
        return
    execute(url, """
        CREATE FUNCTION ff_test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'could not extend file "base/1/2": No space left on device'
                USING ERRCODE = 'disk_full', HINT = 'Check free disk space.';
        END $$""")
    execute(url, "CREATE TRIGGER ff_test_disk_full BEFORE INSERT OR UPDATE ON "
                 "portfolio_snapshots FOR EACH STATEMENT EXECUTE FUNCTION ff_test_disk_full()")
    try:
        yield
    finally:
        execute(url, "DROP TRIGGER ff_test_disk_full ON portfolio_snapshots")
        execute(url, "DROP FUNCTION ff_test_disk_full()")


def test_a_full_disk_fails_the_refresh_and_leaves_the_data_as_it_was(market: str) -> None:
    url = market
    seed(40)
    refresh(D1)
    with clean_copy(url, "clean") as clean:
        before = table_signature(url)
        with disk_full(url):
            state = refresh(D3, return_state=True)
        assert state.is_failed()
        with pytest.raises(StorageError, match="full|space"):
            state.result()
        diff = signature_diff(before, table_signature(url))
        assert diff == "", f"a failed run changed stored data:\n{diff}"

        run = refresh_runs(url).iloc[-1]
        assert run.status == "failed" and run.target_date == D3.isoformat()
        assert "StorageError" in run.error_summary and len(run.error_summary) < 1000
        for sql_text in ("[SQL", "INSERT", "parameters"):
            assert sql_text not in run.error_summary, run.error_summary
        with pytest.raises(AssertionError, match="gave up"):  # no completion event
            _wait_for_event("factorflow.portfolio-refresh.completed", run.id, timeout=5)

        assert refresh(D3)["status"] == "completed"  # once there is room again
        with using(clean):
            refresh(D3)
        assert_same_rows(url, clean)
