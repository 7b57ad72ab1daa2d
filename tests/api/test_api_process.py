"""``factorflow api`` as an operator runs it: a separate process over the demo database, with
Prefect in its local mode (no API URL), spoken to over real HTTP. A portfolio posted the moment
the server answers — while Prefect's local server is still starting in the background — gets
its unknown symbol onboarded (the README's curl session)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.test_cli import REPO, run_cli
from tests.conftest import seeded_factorflow_home, sqlite_url, wait_until
from tests.flows.helpers import query

NEW = "QQZZ"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Any, what: str, log: Path) -> Any:
    """``wait_until`` the state ``what``; on failure the tail of the server's log."""
    return wait_until(check, what, details=lambda: f"server log:\n{log.read_text()[-4000:]}")


@contextmanager
def running_api(home: Path, token: str, extra_env: dict[str, str] | None = None
                ) -> Iterator[dict[str, Any]]:
    """`factorflow api` on a free loopback port with FACTORFLOW_HOME=home (plus extra_env, no
    other FACTORFLOW_/PREFECT_ variables), answering /health/live; stopped with SIGINT."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACTORFLOW_", "PREFECT_"))}
    env.update({"FACTORFLOW_HOME": str(seeded_factorflow_home(home)), **(extra_env or {})})
    log = home / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "api", "--port", str(port)],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}",
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def live() -> bool:
        assert proc.poll() is None, log.read_text()[-4000:]
        try:
            return http.get("/health/live").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(live, "the API to answer /health/live", log)
        yield {"http": http, "proc": proc, "log": log, "port": port, "home": home}
    finally:
        http.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until_settled(http: httpx.Client, symbol: str, log: Path) -> dict[str, Any]:
    """GET /v1/symbols/{symbol} until it is no longer pending."""
    def settled() -> dict[str, Any] | None:
        answer = http.get(f"/v1/symbols/{symbol}").json()
        return None if answer["status"] == "pending" else answer

    return wait_for(settled, f"{symbol} to leave 'pending'", log)


def wait_until_revalued(http: httpx.Client, db_url: str, portfolio_id: str, log: Path
                        ) -> dict[str, Any]:
    """Once its symbols read "ready": the portfolio's stored snapshot misses none of them
    already (it is revalued first), then GET the overview until the answer shows it (one kept
    in the server's memory lags by up to the memo's validation interval, ~1 s)."""
    stored = query(db_url, "SELECT missing_symbols FROM portfolio_snapshots "
                   "WHERE portfolio_id = ? ORDER BY date DESC LIMIT 1", (portfolio_id,))
    missing = json.loads(stored.missing_symbols[0])
    assert missing == [], f"symbols read ready before their portfolio was revalued: {missing}"

    def revalued() -> dict[str, Any] | None:
        answer = http.get(f"/v1/portfolios/{portfolio_id}/overview").json()
        return None if answer["snapshot"]["missing_symbols"] else answer

    return wait_for(revalued, "the overview to show the revalued portfolio", log)


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`make demo` in small, a user, then `factorflow api` (Prefect in its local mode)."""
    home = tmp_path_factory.mktemp("api-home")
    demo = run_cli(["demo", "--symbols", "12", "--portfolios", "2", "--days", "1"], home)
    assert demo.returncode == 0, demo.stderr[-3000:]
    created = run_cli(["users", "create", "ops", "--admin", "--json"], home)
    assert created.returncode == 0, created.stderr[-3000:]
    token = json.loads(created.stdout.strip().splitlines()[-1])["token"]
    with running_api(home, token) as server:
        yield server


def test_unknown_symbol_posted_at_start_up_becomes_ready(api_server: dict[str, Any]) -> None:
    http: httpx.Client = api_server["http"]
    log: Path = api_server["log"]
    resp = http.post("/v1/portfolios", json={"name": "main", "cash": "1000", "positions": [
        {"symbol": "SPY", "quantity": "10", "entry_date": "2026-01-02", "entry_price": "500"},
        {"symbol": NEW, "quantity": "5", "entry_date": "2026-01-02", "entry_price": "20"}]})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["pending_symbols"] == [NEW]
    assert body["snapshot"]["partial"] is True and body["snapshot"]["missing_symbols"] == [NEW]
    pid = body["portfolio"]["id"]

    symbol = wait_until_settled(http, NEW, log)
    assert symbol["status"] == "ready", (symbol, log.read_text()[-4000:])
    assert symbol["last_price_date"] == body["snapshot"]["date"]
    assert symbol["factor_exposures"], symbol

    db_url = sqlite_url(api_server["home"] / "factorflow.db")
    overview = wait_until_revalued(http, db_url, pid, log)
    assert overview["snapshot"]["partial"] is False
    assert overview["data_as_of"] == body["snapshot"]["date"]
    queue = http.get("/v1/admin/onboarding-queue").json()
    assert [(j["symbol"], j["status"]) for j in queue["items"]] == [(NEW, "done")]


def test_admin_starts_the_symbol_batch_in_the_server(api_server: dict[str, Any]) -> None:
    """Without a Prefect API, POST /v1/admin/symbol-batch runs the real symbol flow in the
    server process (202 at once); its run shows in /v1/admin/batch-runs."""
    http: httpx.Client = api_server["http"]

    def symbol_runs() -> list[dict[str, Any]]:
        return list(http.get("/v1/admin/batch-runs",
                             params={"job_type": "symbol-batch"}).json()["items"])

    before = {r["id"] for r in symbol_runs()}
    resp = http.post("/v1/admin/symbol-batch")
    assert resp.status_code == 202, resp.text
    assert resp.json()["mode"] == "in-process"

    def finished() -> dict[str, Any] | None:
        new = [r for r in symbol_runs() if r["id"] not in before]
        return new[0] if new and new[0]["status"] != "running" else None

    run = wait_for(finished, "the symbol batch started by the API to finish", api_server["log"])
    assert run["status"] in ("completed", "completed_with_failures"), run
    assert run["target_date"] == resp.json()["as_of"]
    assert http.get("/health/ready").json()["status"] == "ready"


def test_a_second_server_on_a_port_in_use_refuses_and_leaves_the_queue_alone(
        api_server: dict[str, Any]) -> None:
    """`factorflow api` on the port of a running server says so and exits 2 before touching
    anything: the jobs the running server claimed stay claimed."""
    import sqlite3

    from core.run_lock import process_token

    pid = api_server["proc"].pid
    db = api_server["home"] / "factorflow.db"
    con = sqlite3.connect(db)
    with con:  # a job the running server is working on
        con.execute("INSERT INTO onboarding_jobs (symbol, status, attempts, portfolio_ids, "
                    "requested_at, host, pid, process_token, heartbeat_at) VALUES "
                    "('BUSY', 'processing', 1, '[]', datetime('now'), ?, ?, ?, datetime('now'))",
                    (socket.gethostname(), pid, process_token(pid)))
    con.close()
    second = run_cli(["api", "--port", str(api_server["port"])], api_server["home"])
    assert second.returncode == 2, (second.stdout, second.stderr)
    assert f"port {api_server['port']} on 127.0.0.1 is in use" in second.stderr
    assert "Traceback" not in second.stderr and "factorflow API on" not in second.stdout
    con = sqlite3.connect(db)
    try:
        status = con.execute("SELECT status FROM onboarding_jobs WHERE symbol = 'BUSY'")
        assert status.fetchone() == ("processing",)
        con.execute("DELETE FROM onboarding_jobs WHERE symbol = 'BUSY'")
        con.commit()
    finally:
        con.close()


def test_the_server_stops_cleanly_without_tracebacks(api_server: dict[str, Any]) -> None:
    proc: subprocess.Popen[bytes] = api_server["proc"]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=300) == 0
    text = api_server["log"].read_text()
    assert "Traceback" not in text and "ERROR" not in text, text[-4000:]
    assert "HTTP Request:" not in text  # Prefect's client requests are not logged at INFO
