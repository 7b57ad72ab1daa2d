"""Shared fixtures: an isolated FACTORFLOW_HOME / PREFECT_HOME per session, migrated databases,
one Prefect test harness per session (it takes ~18 s to start); ``wait_until``, the one way a
test waits for a state (never a fixed sleep or a short deadline).

Database tests run on SQLite and on PostgreSQL: ``database_url`` is parametrized over both.
The PostgreSQL cases use ``FACTORFLOW_TEST_POSTGRES_URL`` (``eval "$(bash
scripts/postgres.sh)"`` starts a throwaway server and prints it); each test gets its own
freshly created database, dropped afterwards. Without the variable they are skipped, except
under ``CI=true``, where they fail: CI must not silently skip PostgreSQL.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from unittest import mock

import pytest

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="factorflow-tests-"))
# removed when the process ends (each xdist worker has its own): nothing is left in /tmp
atexit.register(shutil.rmtree, _SESSION_HOME, ignore_errors=True)
# Before anything imports Prefect or reads settings.
os.environ["FACTORFLOW_HOME"] = str(_SESSION_HOME / "home")
os.environ["PREFECT_HOME"] = str(_SESSION_HOME / "prefect")
os.environ["DASK_TEMPORARY_DIRECTORY"] = str(_SESSION_HOME / "dask")  # not /tmp/dask-scratch-space
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["FACTORFLOW_RETRY_DELAYS"] = "0,0,0"
os.environ.pop("PREFECT_API_URL", None)
for _k in [k for k in os.environ if k.startswith("FACTORFLOW_") and k not in (
        "FACTORFLOW_HOME", "FACTORFLOW_RETRY_DELAYS", "FACTORFLOW_TEST_POSTGRES_URL",
        "FACTORFLOW_TEST_BROWSER", "FACTORFLOW_MARKET_CLOCK")]:
    os.environ.pop(_k)
# One "latest completed session" for the whole run, in every process it starts (xdist
# workers inherit the controller's): a run crossing the NYSE close would otherwise see the
# data it seeded turn stale halfway (core/calendar.py: market_now).
os.environ.setdefault("FACTORFLOW_MARKET_CLOCK", datetime.now(UTC).isoformat())

REPO_ROOT = Path(__file__).resolve().parent.parent

PREFECT_TEMPLATE_VAR = "FACTORFLOW_TEST_PREFECT_TEMPLATE"
"""Where the session's migrated Prefect database is kept (set by the controller: every xdist
worker inherits it, so the database is migrated once per run)."""


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller, or a run without xdist
        template_dir = os.environ.setdefault(PREFECT_TEMPLATE_VAR,
                                             str(_SESSION_HOME / "prefect-template"))
        # started now, so that it runs while the workers start; waited for at exit
        builder = subprocess.Popen([sys.executable, "-c", _MIGRATE_PREFECT, template_dir],
                                   env=_prefect_free_env(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        atexit.register(_finish, builder)


def _finish(process: subprocess.Popen[bytes]) -> None:
    """Wait for ``process`` (bounded), then make sure it is gone."""
    try:
        process.wait(timeout=WAIT_LIMIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def seeded_factorflow_home(home: Path) -> Path:
    """``home`` as a ``FACTORFLOW_HOME`` whose Prefect home (``home/prefect``, where the
    command keeps Prefect's local state) is seeded (:func:`seeded_prefect_home`); returns it."""
    seeded_prefect_home(home / "prefect")
    return home


def seeded_prefect_home(prefect_home: Path) -> Path:
    """``prefect_home`` (created) holding a copy of an empty Prefect database already
    migrated (:func:`migrated_prefect_database`), as an operator's home holds after the first
    start; returns it."""
    prefect_home.mkdir(parents=True, exist_ok=True)
    template, target = migrated_prefect_database(), prefect_home / "prefect.db"
    if template is not None and not target.exists():
        shutil.copyfile(template, target)
    return prefect_home


def migrated_prefect_database() -> Path | None:
    """An empty Prefect database with Prefect's migrations applied, made once per run; None
    if that failed (a server then migrates its own database, as before).

    A Prefect server on a new database first runs Prefect's ~150 migrations: 19-24 s to start
    on this 2-core machine against 9-11 s on a migrated one (the session's test server 11 s
    against 5 s), and the suite starts a few dozen. Made by ``prefect server database
    upgrade`` (:data:`_MIGRATE_PREFECT`), started by the controller while the workers start
    and collect, under a file lock they share; a server still checks the copy it is given."""
    template_dir = Path(os.environ.get(PREFECT_TEMPLATE_VAR, _SESSION_HOME / "prefect-template"))
    template = template_dir / "prefect.db"
    if not template.exists():  # it appears whole (renamed into place) or not at all
        subprocess.run([sys.executable, "-c", _MIGRATE_PREFECT, str(template_dir)],
                       env=_prefect_free_env(), capture_output=True, timeout=WAIT_LIMIT_S,
                       check=False)
    return template if template.exists() else None


_MIGRATE_PREFECT = """
import fcntl, os, shutil, subprocess, sys
from pathlib import Path
home = Path(sys.argv[1])
home.mkdir(parents=True, exist_ok=True)
with (home / ".lock").open("w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (home / "prefect.db").exists() and not (home / "failed").exists():
        building = home / "building"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir()
        env = {**os.environ, "PREFECT_HOME": str(building)}
        done = subprocess.run([sys.executable, "-m", "prefect", "server", "database", "upgrade",
                               "-y"], env=env, capture_output=True, check=False)
        if done.returncode == 0 and (building / "prefect.db").exists():
            (building / "prefect.db").rename(home / "prefect.db")
        else:
            (home / "failed").write_bytes(done.stderr[-3000:])
"""
"""Makes the migrated Prefect database in ``argv[1]`` unless it is there (or failed)."""


def _prefect_free_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return env
MARKET_CSV = REPO_ROOT.parent / "shared" / "data" / "market" / "prices.csv"


POSTGRES_URL_VAR = "FACTORFLOW_TEST_POSTGRES_URL"
DIALECTS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SQLITE_ONLY = pytest.mark.parametrize("empty_database_url", ["sqlite"], indirect=True)
"""For a test of behaviour the engine cannot change (a flow's logic, a lock's protocol): the
``database_url`` fixture on SQLite only, to keep the suite's time for what can differ."""


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


WAIT_LIMIT_S = 300
"""How long ``wait_until`` waits by default: it only bounds a hang (a loaded 2-core CI machine
may be slow by minutes), it is no claim on how fast anything is."""

Found = TypeVar("Found")


def wait_until(check: Callable[[], Found | None], what: str, *, timeout: float = WAIT_LIMIT_S,
               every: float = 0.2, details: Callable[[], str] | None = None) -> Found:
    """Call ``check`` until it returns something truthy, and return that.

    Parameters
    ----------
    check
        Reads the state the test needs (a row, an HTTP answer, a registered automation, a log
        line, a process gone); falsy while it is not there yet. It may assert, to fail early
        (e.g. when the process that should bring the state has exited).
    what
        The awaited state, for the failure message ("the onboarding deployment registered").
    timeout
        Seconds before giving up with an ``AssertionError`` naming ``what``.
    every
        Seconds between two checks.
    details
        Text appended to the failure message (e.g. the tail of a server's log).
    """
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            extra = f"\n{details()}" if details is not None else ""
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(every)


def postgres_admin_url() -> str:
    """``FACTORFLOW_TEST_POSTGRES_URL``; skips the test when unset (fails it under CI=true)."""
    url = os.environ.get(POSTGRES_URL_VAR, "").strip()
    if not url:
        how = 'start one with `eval "$(bash scripts/postgres.sh)"`'
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"CI=true but {POSTGRES_URL_VAR} is not set: CI must run the PostgreSQL "
                        f"tests, {how}", pytrace=False)
        pytest.skip(f"PostgreSQL tests need {POSTGRES_URL_VAR} ({how})")
    return url


def _asyncpg_kwargs(url: str) -> dict:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return {"user": u.username, "password": u.password, "host": u.host, "port": u.port,
            "database": u.database}


async def _admin_execute(admin_url: str, sql: str) -> None:
    import asyncpg

    con = await asyncpg.connect(**_asyncpg_kwargs(admin_url), timeout=30)
    try:
        await con.execute(sql)
    finally:
        await con.close()


async def _drop_database(admin_url: str, name: str) -> None:
    """``DROP DATABASE``, forcing out connections a test left behind (a background thread).

    FORCE may not stop an autovacuum worker (it needs ``pg_signal_backend``, which
    scripts/postgres.sh grants); a plain DROP stops those itself: try both, a few times.
    """
    import asyncpg

    for attempt in range(6):
        force = " WITH (FORCE)" if attempt % 2 == 0 else ""
        try:
            await _admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}"{force}')
            return
        except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
            if attempt == 5:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """An empty database ``ff_test_<random>`` on the test server (its URL), dropped after."""
    from sqlalchemy.engine import make_url

    from core.db import engine as db_engine

    admin = postgres_admin_url()
    name = f"ff_test_{uuid.uuid4().hex[:16]}"
    asyncio.run(_admin_execute(admin, f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(drivername="postgresql+asyncpg", database=name).render_as_string(
        hide_password=False)  # the application's driver, whatever the variable names
    try:
        yield url
    finally:
        engine = db_engine._flow_engines.pop(url, None)
        if engine is not None:
            asyncio.run(engine.dispose())
        asyncio.run(_drop_database(admin, name))


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set FACTORFLOW_* variables in a test; settings are re-read around it."""
    from core.settings import get_settings

    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.fixture(params=DIALECTS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty (not migrated) database: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "factorflow.db")
        return
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def database_url(empty_database_url: str, settings_env: pytest.MonkeyPatch) -> str:
    """A fresh database migrated to head, configured as FACTORFLOW_DATABASE_URL (once on
    SQLite, once on PostgreSQL: the parameter comes from ``empty_database_url``)."""
    from core.db import migrate

    settings_env.setenv("FACTORFLOW_DATABASE_URL", empty_database_url)
    migrate.upgrade(empty_database_url)
    return empty_database_url


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A Prefect test server for the whole session (started on first use), on a copy of the
    migrated Prefect database (:func:`migrated_prefect_database`)."""
    import prefect.testing.utilities as harness

    def seeded_mkdtemp() -> str:  # the harness's database directory, its database migrated
        path = tempfile.mkdtemp()
        template = migrated_prefect_database()
        if template is not None:
            shutil.copyfile(template, Path(path) / "prefect-test.db")
        return path

    seeded = (mock.patch.object(harness, "mkdtemp", seeded_mkdtemp)
              if hasattr(harness, "mkdtemp") else nullcontext())
    with seeded, harness.prefect_test_harness(server_startup_timeout=WAIT_LIMIT_S):
        yield


@pytest.fixture
def market_csv() -> Path:
    """The real prices of ../shared/data/market (skips when the folder is absent)."""
    if not MARKET_CSV.exists():
        pytest.skip(f"real market data not found at {MARKET_CSV} (it lives beside the repo)")
    return MARKET_CSV
