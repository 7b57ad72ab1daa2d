"""The history build (``core/history_build.py``) and its queue (``core/services/history_jobs``)
on a real migrated SQLite database with ~420 days of synthetic prices: the built rows equal
what one nightly ``refresh_chunk`` over the same sessions writes, the start is bounded by the
entry dates, the first stored prices and ``history_days``, a request is idempotent, and a
build killed half way (SIGKILL at a fault point) then run again leaves exactly the rows of a
clean run."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import calendar
from core.portfolio.valuation import Holding, InvestmentClass
from tests.api.conftest import seed_symbol_data
from tests.conftest import sqlite_url
from tests.flows.helpers import execute, query
from tests.recording_launcher import RecordingLauncher, record_launches

AS_OF = dt.date(2026, 11, 19)
TICKERS = ["MKTA", "MKTB", "DIVY"]
REPO = Path(__file__).resolve().parents[2]
TABLES = {
    "portfolio_snapshots": "portfolio_id, date",
    "portfolio_factor_exposures": "portfolio_id, date, factor",
    "portfolio_sector_exposures": "portfolio_id, date, sector",
    "portfolio_correlations": "portfolio_id, date",
    "stress_test_results": "portfolio_id, date, scenario",
    "portfolio_risk": "portfolio_id, date",
    "positions": "id",
}
"""What a build writes (the analytics cache is only deleted)."""


async def _build(url: str) -> None:
    from core.db.engine import create_engine

    engine = create_engine(url)
    try:
        await seed_symbol_data(engine, TICKERS, AS_OF)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database with prices, factors and a completed symbol batch at AS_OF."""
    from core.db import migrate

    path = tmp_path_factory.mktemp("history-template") / "factorflow.db"
    migrate.upgrade(sqlite_url(path))
    asyncio.run(_build(sqlite_url(path)))
    return path


@pytest.fixture
def url(template: Path, tmp_path: Path, settings_env: pytest.MonkeyPatch) -> str:
    target = tmp_path / "factorflow.db"
    shutil.copyfile(template, target)
    settings_env.setenv("FACTORFLOW_DATABASE_URL", sqlite_url(target))
    return sqlite_url(target)


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> RecordingLauncher:
    """A recording launcher installed as the process's (no flow starts)."""
    from core import launch

    rec = record_launches(monkeypatch)
    previous = launch.install(rec)
    yield rec  # type: ignore[misc]
    launch.install(previous)


def back(n: int) -> dt.date:
    return calendar.sessions_back(AS_OF, n)


def priced(url: str, start: dt.date) -> list[str]:
    """The sessions from ``start`` through AS_OF with a stored SPY price (ISO dates)."""
    return list(query(url, "SELECT date FROM prices WHERE symbol='SPY' AND date >= ? AND "
                      "date <= ? ORDER BY date", (start.isoformat(), AS_OF.isoformat())).date)


async def _portfolio(positions: list[dict[str, Any]], cash: str = "2500") -> tuple[str, str]:
    from core.db.engine import transaction
    from core.repositories import portfolios as repo
    from core.repositories import users as user_repo

    async with transaction() as conn:
        tag = uuid.uuid4().hex[:12]
        uid = await user_repo.create_user(conn, f"u-{tag}", f"hash-{tag}")
        pid = await repo.create_portfolio(conn, uid, "old book", Decimal(cash), positions)
    return uid, pid


MIXED = [
    {"id": "A", "symbol": "MKTA", "quantity": Decimal(30), "entry_date": back(99),
     "entry_price": Decimal("50")},
    {"id": "D", "symbol": "DIVY", "quantity": Decimal(100), "entry_date": back(59),
     "entry_price": Decimal("40")},
    {"id": "S", "symbol": "MKTB", "quantity": Decimal(-20), "entry_date": back(80),
     "entry_price": Decimal("30"), "exit_date": back(20), "exit_price": Decimal("31")},
    {"id": "P", "symbol": "PRIV_FUND", "quantity": Decimal(1), "entry_date": back(70),
     "entry_price": Decimal("1000"), "investment_class": "PRIVATE",
     "manual_value": Decimal("1200")},
]
"""Long, short closed on a past session, a dividend payer, a private holding."""


def _rows(url: str, only: dt.date | None = None) -> dict[str, pd.DataFrame]:
    out = {}
    for table, order in TABLES.items():
        where = f" WHERE date = '{only.isoformat()}'" if only and table != "positions" else ""
        out[table] = query(url, f"SELECT * FROM {table}{where} ORDER BY {order}")
    return out


def assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for table in TABLES:
        pd.testing.assert_frame_equal(a[table], b[table], obj=table)


async def _queue_and_run(owner: str, pid: str, **options: Any) -> Any:
    from core.db.engine import flow_engine
    from core.history_build import run_job
    from core.services import history_jobs

    job = await history_jobs.request_history(flow_engine(), owner, pid)
    claimed = await history_jobs.claim()
    assert claimed is not None and claimed.job_id == job.id
    await run_job(claimed, onboarding_wait=0, **options)
    return await history_jobs.history_job(flow_engine(), owner, pid)


async def _nightly(pid: str, days: list[dt.date]) -> None:
    """One refresh_chunk over every session, as a nightly that had covered them all."""
    from core.db.engine import reading
    from core.portfolio_steps import PortfolioWork, refresh_chunk
    from core.repositories import portfolios as repo
    from core.symbol_data import build_scenarios

    async with reading() as conn:
        cash = await repo.live_cash(conn, pid)
    assert cash is not None
    report = await refresh_chunk([PortfolioWork(pid, cash, tuple(days), None, None)], AS_OF,
                                 await build_scenarios(AS_OF))
    assert not report.failed, report.failed


def test_built_rows_equal_the_nightly_refresh(url: str, tmp_path: Path,
                                              launched: RecordingLauncher) -> None:
    from core.symbol_data import priced_sessions

    owner, pid = asyncio.run(_portfolio(MIXED))
    nightly_db = tmp_path / "nightly.db"
    shutil.copyfile(url.split("///")[1], nightly_db)

    job = asyncio.run(_queue_and_run(owner, pid, slice_sessions=30))
    days = asyncio.run(priced_sessions(back(99), AS_OF))
    assert (job.status, job.first_date, job.last_date, job.snapshots) == (
        "done", back(99), AS_OF, 100)
    assert launched.history_calls == 1

    os.environ["FACTORFLOW_DATABASE_URL"] = sqlite_url(nightly_db)  # settings_env restores
    from core.settings import get_settings

    get_settings.cache_clear()
    asyncio.run(_nightly(pid, days))
    nightly = _rows(sqlite_url(nightly_db))
    built = _rows(url)
    assert len(built["portfolio_snapshots"]) == 100
    assert built["portfolio_snapshots"].daily_pnl.isna().sum() == 1  # only the first
    assert_same(built, nightly)  # every column of every table, four slices or one chunk
    assert set(built["stress_test_results"].date) == {AS_OF.isoformat()}
    assert built["portfolio_snapshots"].income.astype(float).abs().sum() > 0  # DIVY paid


def test_a_position_entered_40_sessions_ago_gets_40_snapshots(
        url: str, launched: RecordingLauncher) -> None:
    owner, pid = asyncio.run(_portfolio([
        {"symbol": "MKTA", "quantity": Decimal(10), "entry_date": back(39),
         "entry_price": Decimal("50")}]))
    job = asyncio.run(_queue_and_run(owner, pid))
    assert (job.first_date, job.last_date, job.snapshots) == (back(39), AS_OF, 40)
    snaps = query(url, "SELECT date, daily_pnl FROM portfolio_snapshots WHERE portfolio_id=? "
                  "ORDER BY date", (pid,))
    assert list(snaps.date) == priced(url, back(39))
    assert snaps.daily_pnl.isna().tolist() == [True] + [False] * 39


def test_entry_before_the_first_stored_price_is_bounded_by_it(
        url: str, launched: RecordingLauncher, settings_env: pytest.MonkeyPatch) -> None:
    first = dt.date.fromisoformat(query(url, "SELECT min(date) AS d FROM prices WHERE "
                                        "symbol='MKTB'").d[0])
    owner, pid = asyncio.run(_portfolio([
        {"symbol": "MKTB", "quantity": Decimal(10), "entry_date": AS_OF - dt.timedelta(600),
         "entry_price": Decimal("20")}]))
    job = asyncio.run(_queue_and_run(owner, pid))
    assert job.first_date == first and job.last_date == AS_OF
    assert job.snapshots == len(priced(url, first)) > 250  # more than one slice
    # and never further back than history_days (FACTORFLOW_LOOKBACK_DAYS)
    settings_env.setenv("FACTORFLOW_LOOKBACK_DAYS", "200")
    from core.settings import get_settings

    get_settings.cache_clear()
    job = asyncio.run(_queue_and_run(owner, pid))
    assert job.first_date.isoformat() == priced(url, AS_OF - dt.timedelta(200))[0]


def test_a_request_is_idempotent(url: str, launched: RecordingLauncher) -> None:
    from core.db.engine import flow_engine
    from core.services import history_jobs

    owner, pid = asyncio.run(_portfolio(MIXED))
    first = asyncio.run(history_jobs.request_history(flow_engine(), owner, pid))
    again = asyncio.run(history_jobs.request_history(flow_engine(), owner, pid))
    assert again == first and first.status == "queued"  # shared while queued
    assert query(url, "SELECT count(*) AS n FROM portfolio_history_jobs").n[0] == 1
    done = asyncio.run(_queue_and_run(owner, pid, slice_sessions=40))
    rows = _rows(url)
    rebuilt = asyncio.run(_queue_and_run(owner, pid, slice_sessions=40))
    assert (rebuilt.id, rebuilt.snapshots, rebuilt.attempts) == (done.id, done.snapshots, 2)
    assert_same(_rows(url), rows)


def test_a_build_killed_half_way_then_run_again_leaves_the_clean_rows(
        url: str, tmp_path: Path, launched: RecordingLauncher) -> None:
    from core.db.engine import flow_engine
    from core.services import history_jobs

    owner, pid = asyncio.run(_portfolio(MIXED))
    clean_db = tmp_path / "clean.db"
    shutil.copyfile(url.split("///")[1], clean_db)
    asyncio.run(history_jobs.request_history(flow_engine(), owner, pid))
    script = ("import asyncio\n"
              "from core.services import history_jobs\n"
              "from core.history_build import run_job\n"
              "async def main():\n"
              "    await run_job(await history_jobs.claim(), slice_sessions=40,"
              " onboarding_wait=0)\n"
              "asyncio.run(main())\n")
    env = {**os.environ, "FACTORFLOW_FAULT_POINT": "portfolio-history:after-first-slice"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, timeout=120,
                          capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    job = query(url, "SELECT status, host, pid FROM portfolio_history_jobs")
    assert job.status[0] == "running" and job.host[0] == socket.gethostname()
    assert len(query(url, "SELECT date FROM portfolio_snapshots")) == 40  # the first slice

    assert asyncio.run(history_jobs.reset_stuck()) == 1  # its claimer is dead: queued again
    claimed = asyncio.run(history_jobs.claim())
    from core.history_build import run_job

    asyncio.run(run_job(claimed, slice_sessions=40, onboarding_wait=0))  # type: ignore[arg-type]
    assert asyncio.run(history_jobs.history_job(flow_engine(), owner, pid)).status == "done"

    os.environ["FACTORFLOW_DATABASE_URL"] = sqlite_url(clean_db)
    from core.settings import get_settings

    get_settings.cache_clear()
    asyncio.run(_queue_and_run(owner, pid, slice_sessions=40))
    assert_same(_rows(url), _rows(sqlite_url(clean_db)))


def test_a_live_claim_is_left_alone(url: str, launched: RecordingLauncher) -> None:
    from core.db.engine import flow_engine
    from core.services import history_jobs

    owner, pid = asyncio.run(_portfolio(MIXED[:1]))
    asyncio.run(history_jobs.request_history(flow_engine(), owner, pid))
    assert asyncio.run(history_jobs.claim()) is not None
    assert asyncio.run(history_jobs.reset_stuck()) == 0  # this process is alive
    assert asyncio.run(history_jobs.claim()) is None
    shared = asyncio.run(history_jobs.request_history(flow_engine(), owner, pid))
    assert shared.status == "running" and launched.history_calls == 1  # not started again


def test_a_failed_build_names_its_reason(url: str, launched: RecordingLauncher,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import core.history_build as hb

    owner, pid = asyncio.run(_portfolio(MIXED[:1]))

    def boom(name: str) -> None:
        raise RuntimeError(f"fault at {name}")

    monkeypatch.setattr(hb, "fault_point", boom)
    job = asyncio.run(_queue_and_run(owner, pid))
    assert job.status == "failed" and "fault at portfolio-history:after-first-slice" in (
        job.error or "")
    locks = query(url, "SELECT count(*) AS n FROM run_locks WHERE name='portfolio-refresh'")
    assert locks.n[0] == 0  # the lock was given back


# --- the start rule (pure) ----------------------------------------------------------------

def _h(symbol: str, entry: dt.date, exit_: dt.date | None = None,
       cls: InvestmentClass = InvestmentClass.PUBLIC) -> Holding:
    return Holding(position_id=f"{symbol}{entry}", symbol=symbol, quantity=Decimal(1),
                   entry_date=entry, entry_price=Decimal(1), exit_date=exit_,
                   exit_price=Decimal(1) if exit_ else None, investment_class=cls,
                   manual_value=Decimal(5) if cls == InvestmentClass.PRIVATE else None)


def test_history_start_rules() -> None:
    from core.history_build import history_start

    d = dt.date
    prices = {"OLD": d(2020, 1, 2), "NEW": d(2026, 1, 5), "NONE": None}
    early = d(2000, 1, 1)
    assert history_start([], prices, early) is None
    assert history_start([_h("OLD", d(2025, 1, 2))], prices, early) == d(2025, 1, 2)
    # a position opened before its symbol's first price moves the start to that price
    assert history_start([_h("OLD", d(2025, 1, 2)), _h("NEW", d(2025, 6, 2))], prices,
                         early) == d(2026, 1, 5)
    # ... or to its exit when it was closed before that price
    assert history_start([_h("OLD", d(2025, 1, 2)),
                          _h("NEW", d(2024, 6, 3), d(2024, 12, 2))], prices, early) == d(
        2024, 12, 2)
    # a position closed before the bound does not matter
    assert history_start([_h("OLD", d(2025, 1, 2)), _h("NEW", d(2024, 6, 3), d(2024, 12, 2))],
                         prices, d(2025, 1, 2)) == d(2025, 1, 2)
    # a symbol without any stored price and a private holding do not move it
    assert history_start([_h("NONE", d(2025, 1, 2)),
                          _h("PRIV_X", d(2024, 1, 2), cls=InvestmentClass.PRIVATE)], prices,
                         early) == d(2024, 1, 2)
    assert history_start([_h("OLD", d(2025, 1, 2))], prices, d(2025, 3, 3)) == d(2025, 3, 3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(0, 400),
                          st.one_of(st.none(), st.integers(1, 200))), min_size=1, max_size=6),
       st.dictionaries(st.sampled_from(["A", "B", "C"]), st.integers(0, 500)),
       st.integers(0, 300))
def test_no_position_open_at_the_start_waits_for_its_first_price(
        items: list[tuple[str, int, int | None]], firsts: dict[str, int], bound: int) -> None:
    from core.history_build import history_start

    base = dt.date(2024, 1, 1)
    holdings = [_h(s, base + dt.timedelta(e),
                   None if x is None else base + dt.timedelta(e + x)) for s, e, x in items]
    prices = {s: base + dt.timedelta(v) for s, v in firsts.items()}
    start = history_start(holdings, prices, base + dt.timedelta(bound))
    assert start is not None
    assert start >= min(h.entry_date for h in holdings)
    assert start >= base + dt.timedelta(bound)
    for h in holdings:  # from the start on, no day with h open and no price of it
        first = prices.get(h.symbol)
        if first is not None:
            until = first if h.exit_date is None else min(first, h.exit_date)
            assert max(h.entry_date, start) >= until
    # and the start is the first such day: the day before it has one (or is out of bounds)
    lower = max(min(h.entry_date for h in holdings), base + dt.timedelta(bound))
    if start > lower:
        day = start - dt.timedelta(1)
        assert any(h.entry_date <= day < min(
            prices[h.symbol], h.exit_date or dt.date.max) for h in holdings
            if h.symbol in prices)


def test_the_job_table_follows_the_portfolio_on_hard_delete(url: str,
                                                            launched: RecordingLauncher) -> None:
    from core.db.engine import flow_engine, transaction
    from core.repositories import portfolios as repo
    from core.services import history_jobs

    owner, pid = asyncio.run(_portfolio(MIXED[:1]))
    asyncio.run(history_jobs.request_history(flow_engine(), owner, pid))

    async def drop() -> None:
        async with transaction() as conn:
            await repo.delete_portfolio_everywhere(conn, pid)

    asyncio.run(drop())
    assert query(url, "SELECT count(*) AS n FROM portfolio_history_jobs").n[0] == 0


def test_the_queue_on_both_engines(database_url: str, launched: RecordingLauncher) -> None:
    """Requests, claims, the outcome and a dead claimer's job queued again, on SQLite and
    PostgreSQL (no prices needed)."""
    from core.db.engine import flow_engine
    from core.errors import NotFound
    from core.services import history_jobs

    owner, pid = asyncio.run(_portfolio(MIXED[:1]))
    other, _ = asyncio.run(_portfolio([{k: v for k, v in MIXED[0].items() if k != "id"}]))

    async def scenario() -> None:
        engine = flow_engine()
        first = await history_jobs.request_history(engine, owner, pid)
        assert await history_jobs.request_history(engine, owner, pid) == first
        with pytest.raises(NotFound):
            await history_jobs.request_history(engine, other, pid)
        claimed = await history_jobs.claim()
        assert claimed == history_jobs.HistoryClaim(first.id, pid)
        assert await history_jobs.claim() is None
        assert await history_jobs.renew_claims() == 1
        await history_jobs.finish(claimed.job_id, first_date=back(3), last_date=AS_OF,
                                  snapshots=4)
        done = await history_jobs.history_job(engine, owner, pid)
        assert (done.status, done.snapshots, done.first_date, done.error) == (
            "done", 4, back(3), None)
        again = await history_jobs.request_history(engine, owner, pid)
        assert (again.id, again.status, again.snapshots) == (first.id, "queued", None)
        claimed = await history_jobs.claim()
        assert claimed is not None

    asyncio.run(scenario())
    execute(database_url, "UPDATE portfolio_history_jobs SET pid=? WHERE id=?",
            (2 ** 22 + 11, first_id := query(database_url, "SELECT id FROM "
                                               "portfolio_history_jobs").id[0]))
    assert asyncio.run(history_jobs.reset_stuck()) == 1
    job = query(database_url, "SELECT status, attempts, host FROM portfolio_history_jobs "
                "WHERE id=?", (first_id,))
    assert (job.status[0], job.attempts[0], job.host[0]) == ("queued", 2, None)
    assert launched.history_calls == 3  # each request of a queued job starts the flow (again)


def test_a_flow_that_cannot_start_leaves_the_job_queued(url: str) -> None:
    from core import launch
    from core.db.engine import flow_engine
    from core.services import history_jobs

    class Broken:
        async def start_history(self) -> str:
            raise ConnectionError("Prefect API unreachable")

    owner, pid = asyncio.run(_portfolio(MIXED[:1]))
    previous = launch.install(Broken())  # type: ignore[arg-type]
    try:
        job = asyncio.run(history_jobs.request_history(flow_engine(), owner, pid))
    finally:
        launch.install(previous)
    assert job.status == "queued"
    assert asyncio.run(history_jobs.reset_stuck()) == 1  # start-up resumes it
