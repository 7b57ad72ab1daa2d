"""A symbol batch killed with SIGKILL at a named point, then run again with no manual step.

Real processes: ``factorflow symbol-batch`` against a real local Prefect server (the session's
``prefect_server``) and a migrated database (SQLite, PostgreSQL). ``FACTORFLOW_FAULT_POINT``
makes the process kill itself at that point (``core/faults.py``): no ``finally``, no cleanup,
the lock and the ``running`` run record are left behind. The plain rerun must take the dead
run's lock over at once, close its record as ``crashed``, and leave exactly the rows of a clean
run made on an identical copy of the database.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.flows.helpers import (
    clone_database,
    db_path,
    drop_clone,
    is_sqlite,
    query,
    signature_diff,
    table_signature,
)

AS_OF = "2026-11-19"
SYMBOLS = ["MKTA", "MKTB", "MKTC", "GAPY", "SPLT", "DIVY", "BADT", "ABCD", "EFGH", "IJKL"]
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _register(url: str) -> None:
    from core.db.engine import create_engine
    from core.symbol_steps import register_universe

    async def run() -> None:
        engine = create_engine(url)
        try:
            await register_universe(SYMBOLS, engine)
        finally:
            await engine.dispose()

    asyncio.run(run())


def _symbol_batch(url: str, prefect_url: str, home: Path, fault: str | None = None
                  ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FACTORFLOW_", "PREFECT_"))}
    env.update(FACTORFLOW_DATABASE_URL=url, FACTORFLOW_HOME=str(home), PREFECT_API_URL=prefect_url,
               FACTORFLOW_FETCH_CHUNK_SIZE="6", FACTORFLOW_FACTOR_CHUNK_SIZE="6",
               FACTORFLOW_MAX_WORKERS="2", FACTORFLOW_RETRY_DELAYS="0")
    if fault:
        env["FACTORFLOW_FAULT_POINT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "symbol-batch", "--as-of", AS_OF],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("empty_database_url", "point"), [
    ("sqlite", "symbol-batch:after-first-price-chunk"),  # a chunk stored, factors not started
    ("sqlite", "symbol-batch:inside-factor-writes"),  # inside a factor chunk's transaction
], indirect=["empty_database_url"])  # (PostgreSQL: the portfolio flow's kill test)
def test_a_run_killed_at_a_named_point_is_completed_by_a_plain_rerun(
    point: str, database_url: str, prefect_server: str, tmp_path: Path,
) -> None:
    clean = clone_database(database_url, "clean")
    try:
        for url in (database_url, clean):
            _register(url)
        ok = _symbol_batch(clean, prefect_server, tmp_path / "clean")
        assert ok.returncode == 0, ok.stderr[-2000:]

        killed = _symbol_batch(database_url, prefect_server, tmp_path / "killed", fault=point)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        if is_sqlite(database_url):  # a killed writer never damages the file (WAL)
            _integrity_ok(database_url)
        left = query(database_url, "SELECT name, pid FROM run_locks")
        assert list(left.name) == ["symbol-batch"]  # the dead run's lock is still there
        assert list(query(database_url, "SELECT status FROM batch_runs").status) == ["running"]

        rerun = _symbol_batch(database_url, prefect_server, tmp_path / "rerun")
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert "skipped" not in rerun.stdout and "completed" in rerun.stdout
        runs = query(database_url, "SELECT status FROM batch_runs ORDER BY started_at")
        assert list(runs.status) == ["crashed", "completed_with_failures"] or list(
            runs.status) == ["crashed", "completed"]
        assert query(database_url, "SELECT COUNT(*) AS n FROM run_locks").n[0] == 0
        if is_sqlite(database_url):
            _integrity_ok(database_url)
        a, b = table_signature(database_url), table_signature(clean)
        assert a == b, signature_diff(a, b)
    finally:
        drop_clone(clean)


def _integrity_ok(url: str) -> None:
    """``PRAGMA integrity_check`` in a fresh process (no state of this one); on failure, what
    is on disk and which files of the database this process holds open."""
    path = db_path(url)
    check = subprocess.run(
        [sys.executable, "-c", "import sqlite3, sys; print(sqlite3.connect(sys.argv[1])"
         ".execute('PRAGMA integrity_check').fetchone()[0])", str(path)],
        capture_output=True, text=True, timeout=60)
    if check.stdout.strip() == "ok":
        return
    files = {p.name: p.stat().st_size for p in path.parent.iterdir()}
    held = [os.readlink(f) for f in Path("/proc/self/fd").iterdir()
            if str(path) in os.readlink(f)]
    raise AssertionError(f"integrity: {check.stdout[:500]} {check.stderr[:500]}; files {files}; "
                         f"held open by the test process: {held}")
