"""The ``factorflow`` console command as a user runs it (a subprocess, its own Prefect)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import seeded_factorflow_home

REPO = Path(__file__).resolve().parents[2]


def run_cli(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FACTORFLOW_", "PREFECT_"))}
    env["FACTORFLOW_HOME"] = str(seeded_factorflow_home(home))
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=300,
    )


def test_demo_prints_a_summary_and_json_last_line(tmp_path: Path) -> None:
    proc = run_cli(["demo", "--symbols", "15", "--portfolios", "6", "--days", "2", "--json"],
                   tmp_path / "home")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["status"] in ("completed", "completed_with_failures")
    assert summary["counts"]["universe"] == 15 + 1 + 8  # + the demo's unpriced ticker
    refresh = summary["portfolio_refresh"]
    assert refresh["status"] == "completed" and refresh["counts"]["refreshed"] == 6
    assert refresh["counts"]["snapshots"] == 6  # the second day, after a first refresh
    # demo-00000 and demo-00005 hold the unpriced ticker (others may hold a sparse name)
    assert refresh["counts"]["partial_snapshots"] >= 2
    assert "portfolio-refresh completed" in proc.stdout
    assert summary["counts"]["factor_values"] > 0
    assert "factorflow.db" in summary["demo"]["database"]
    assert "symbol-batch" in proc.stdout and "seconds:" in proc.stdout
    assert "Traceback" not in proc.stderr and "CancelledError" not in proc.stderr
    assert (tmp_path / "home" / "factorflow.db").exists()

    again = run_cli(["db", "current"], tmp_path / "home")
    assert again.returncode == 0 and "(head" in again.stdout


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    proc = run_cli(["symbol-batch", "--as-of", "2026-13-01"], tmp_path / "home")
    assert proc.returncode == 2 and "not a date" in proc.stderr
    proc = run_cli(["demo", "--symbols", "0"], tmp_path / "home")
    assert proc.returncode == 2 and "at least 1" in proc.stderr
    proc = run_cli(["symbol-batch", "--start", "2026-11-20"], tmp_path / "home")
    assert proc.returncode == 1 and "TargetDateError" in proc.stderr


def test_serve_refuses_without_a_prefect_server(tmp_path: Path) -> None:
    proc = run_cli(["serve"], tmp_path / "home")
    assert proc.returncode == 2
    assert "PREFECT_API_URL" in proc.stderr and "--start-server" in proc.stderr
