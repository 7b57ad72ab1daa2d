"""`factorflow runs`: an operator sees runs and locks, and clears a lock whose holder is dead."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess

import pytest

from cli.main import main
from core.run_lock import LockOwner, acquire, process_token
from tests.flows.helpers import execute, query


def _take(name: str, pid: int) -> None:
    asyncio.run(acquire(name, LockOwner(f"run-{pid}", socket.gethostname(), pid,
                                        process_token(pid))))


def test_runs_lists_runs_and_locks_and_clears_only_a_dead_holders_lock(
    database_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    execute(database_url,
            "INSERT INTO batch_runs (id, job_type, target_date, status, started_at, counts, "
            "phase_seconds, error_summary) VALUES ('r1', 'symbol-batch', '2026-11-20', 'crashed', "
            "'2026-11-20 21:00:00.000000', '{}', '{}', '{\"error\": \"its process ended\"}')")
    live = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        _take("symbol-batch", live.pid)
        _take("portfolio-refresh", dead.pid)
        assert main(["runs", "--json"]) == 0
        out = capsys.readouterr().out
        listing = json.loads(out.strip().splitlines()[-1])
        alive = {lk["name"]: lk["alive"] for lk in listing["locks"]}
        assert alive == {"symbol-batch": True, "portfolio-refresh": False}
        assert [r["status"] for r in listing["runs"]] == ["crashed"]
        assert "DEAD" in out and "its process ended" in out

        assert main(["runs", "clear-lock", "symbol-batch"]) == 1  # its holder is alive
        assert "alive" in capsys.readouterr().err
        assert main(["runs", "clear-lock", "portfolio-refresh"]) == 0
        assert main(["runs", "clear-lock", "nothing"]) == 1
        assert list(query(database_url, "SELECT name FROM run_locks").name) == ["symbol-batch"]
        assert main(["runs", "clear-lock", "symbol-batch", "--force"]) == 0
        assert query(database_url, "SELECT COUNT(*) AS n FROM run_locks").n[0] == 0
    finally:
        live.kill()
        live.wait()


def test_a_new_run_closes_runs_left_running_by_a_dead_process_only(database_url: str) -> None:
    """Jobs without a run lock (onboarding runs may overlap): a ``running`` row is closed as
    ``crashed`` when its process on this host is gone, never when it is alive."""
    import datetime as dt

    from flows.common import record_finish, record_start

    live = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        for run_id, pid in (("live", live.pid), ("dead", dead.pid)):
            execute(database_url,
                    "INSERT INTO batch_runs (id, job_type, target_date, status, started_at, "
                    "counts, phase_seconds, error_summary, host, pid, process_token) VALUES "
                    "(?, 'onboarding', '2026-11-20', 'running', '2026-11-20 21:00:00.000000', "
                    "'{}', '{}', '{}', ?, ?, ?)",
                    (run_id, socket.gethostname(), pid, process_token(pid)))
        new = asyncio.run(record_start("onboarding", dt.date(2026, 11, 20), None, None))
        runs = query(database_url, "SELECT id, status FROM batch_runs")
        assert dict(zip(runs.id, runs.status, strict=True)) == {
            "live": "running", "dead": "crashed", new: "running"}
        from core.db.models import RunStatus

        asyncio.run(record_finish(new, RunStatus.completed, {}, {}, {}))
    finally:
        live.kill()
        live.wait()
