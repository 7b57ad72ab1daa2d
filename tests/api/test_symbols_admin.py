"""Symbol status, the admin routes (batch runs, freshness, manual symbol batch, onboarding
queue) and readiness."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from litestar.testing import TestClient

from tests.api.conftest import Seed, assert_error, auth, position
from tests.flows.helpers import db_path


def test_symbol_status_of_a_ready_symbol(client: TestClient, seed: Seed) -> None:
    body = client.get("/v1/symbols/mkta", headers=auth(seed)).json()  # normalised
    assert body["symbol"] == "MKTA" and body["status"] == "ready" and body["kind"] == "equity"
    assert body["last_price_date"] == body["last_factor_date"] == seed.as_of.isoformat()
    assert body["reason"] is None and body["profile"]["sector"]
    factors = {f["factor"]: f for f in body["factor_exposures"]}
    assert factors["market_beta"]["beta"] is not None and factors["market_beta"]["n_obs"] > 0
    assert body["metrics"]["date"] == seed.as_of.isoformat()
    etf = client.get("/v1/symbols/SPY", headers=auth(seed)).json()
    assert etf["kind"] == "etf" and etf["status"] == "ready"


def test_symbol_errors(client: TestClient, seed: Seed) -> None:
    h = auth(seed)
    assert_error(client.get("/v1/symbols/AB$C", headers=h), 400, "invalid symbol",
                 field="symbol")
    assert_error(client.get("/v1/symbols/QWXZ", headers=h), 404,
                 "'QWXZ' is not in the universe", field="symbol")


def test_error_symbols_report_their_reason(client: TestClient, seed: Seed, db_url: str) -> None:
    import sqlite3

    with sqlite3.connect(db_path(db_url)) as con:
        con.execute("INSERT INTO symbols (symbol, kind, status, error_reason, created_at) "
                    "VALUES ('BADX', 'equity', 'error', 'no_data: unknown to the provider', "
                    "'2026-01-01 00:00:00')")
    body = client.get("/v1/symbols/BADX", headers=auth(seed)).json()
    assert body["status"] == "error" and body["reason"].startswith("no_data")
    created = client.post("/v1/portfolios", headers=auth(seed), json={
        "name": "P", "positions": [position("BADX")]}).json()
    assert created["symbols"]["BADX"].startswith("error: no_data")
    assert created["pending_symbols"] == []


def test_batch_runs_and_freshness(client: TestClient, seed: Seed) -> None:
    h = auth(seed, "root")
    runs = client.get("/v1/admin/batch-runs", headers=h).json()["items"]
    assert [(r["job_type"], r["status"], r["target_date"]) for r in runs] == [
        ("symbol-batch", "completed", seed.as_of.isoformat())]
    assert client.get("/v1/admin/batch-runs?job_type=onboarding", headers=h).json() == {
        "items": []}
    assert_error(client.get("/v1/admin/batch-runs?limit=0", headers=h), 400, field="limit")
    fresh = client.get("/v1/admin/freshness", headers=h).json()
    assert fresh["latest_data_date"] == seed.as_of.isoformat()
    batch = fresh["jobs"]["symbol-batch"]
    assert batch["target_date"] == seed.as_of.isoformat()
    assert batch["sessions_behind"] == 0 and batch["stale"] is False
    assert fresh["jobs"]["portfolio-refresh"] == {
        "last_success_at": None, "target_date": None, "status": None,
        "sessions_behind": None, "stale": True}


def test_manual_symbol_batch_starts_and_returns_at_once(
        client: TestClient, seed: Seed, monkeypatch: pytest.MonkeyPatch, db_url: str) -> None:
    from core import portfolio_service as svc

    started: list[dt.date | None] = []
    release = threading.Event()

    def fake_flow(as_of: dt.date | None) -> None:  # the flow itself is tested in tests/flows
        started.append(as_of)
        release.wait(10)

    monkeypatch.setattr(svc, "_run_symbol_batch", fake_flow)
    h = auth(seed, "root")
    resp = client.post("/v1/admin/symbol-batch", headers=h)
    assert resp.status_code == 202, resp.text
    assert resp.json() == {"as_of": seed.as_of.isoformat(), "mode": "in-process",
                           "flow_run_id": None, "deployment": None}
    assert_error(client.post("/v1/admin/symbol-batch", headers=h), 409, "still running")
    release.set()
    assert svc._batch_thread is not None
    svc._batch_thread.join(5)
    assert started == [seed.as_of]

    from core import calendar

    earlier = calendar.previous_session(seed.as_of)
    resp = client.post("/v1/admin/symbol-batch", json={"as_of": earlier.isoformat()}, headers=h)
    assert resp.status_code == 202 and resp.json()["as_of"] == earlier.isoformat()
    svc._batch_thread.join(5)

    future = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    assert_error(client.post("/v1/admin/symbol-batch", json={"as_of": future}, headers=h),
                 400, "after the latest completed session", field="as_of")
    assert_error(client.post("/v1/admin/symbol-batch", json={"as_of": "1999-01-04"},
                             headers=h), 400, "outside the NYSE calendar", field="as_of")
    assert_error(client.post("/v1/admin/symbol-batch", json={"asof": "2026-01-02"},
                             headers=h), 400, "unknown field", field="asof")

    import asyncio
    import socket
    import sqlite3
    import subprocess

    from core.db.engine import create_engine
    from core.run_lock import LockOwner, acquire, process_token
    from core.run_lock import release as release_lock

    with sqlite3.connect(db_path(db_url)) as con:  # left "running" by a run that was killed
        con.execute("INSERT INTO batch_runs (id, job_type, target_date, status, started_at, "
                    "counts, phase_seconds, error_summary) VALUES ('r1', 'symbol-batch', "
                    "?, 'running', ?, '{}', '{}', '{}')",
                    (seed.as_of.isoformat(), dt.datetime.now(dt.UTC).isoformat(" ")))
    resp = client.post("/v1/admin/symbol-batch", headers=h)  # a dead run blocks nothing
    assert resp.status_code == 202, resp.text
    svc._batch_thread.join(60)

    async def hold(pid: int, name: str) -> None:  # a live run elsewhere holds the lock
        engine = create_engine(db_url)
        try:
            if pid:
                await acquire("symbol-batch", LockOwner(
                    name, socket.gethostname(), pid, process_token(pid)), engine=engine)
            else:
                await release_lock("symbol-batch", name, engine)
        finally:
            await engine.dispose()

    live = subprocess.Popen(["sleep", "60"])
    try:
        asyncio.run(hold(live.pid, "elsewhere"))
        assert_error(client.post("/v1/admin/symbol-batch", headers=h), 409, "already running")
    finally:
        live.kill()
        live.wait()
        asyncio.run(hold(0, "elsewhere"))


def test_readiness_fails_with_the_failing_check(client: TestClient, db_url: str) -> None:
    import sqlite3

    assert client.get("/health/ready").status_code == 200
    with sqlite3.connect(db_path(db_url)) as con:
        con.execute("DELETE FROM batch_runs")
    resp = client.get("/health/ready")
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["symbol_batch"] == {"ok": False, "detail": "never completed"}
    assert body["checks"]["database"]["ok"] and body["checks"]["migrations"]["ok"]
    with sqlite3.connect(db_path(db_url)) as con:
        con.execute("UPDATE alembic_version SET version_num = '0001'")
    checks = client.get("/health/ready").json()["checks"]
    assert checks["migrations"]["ok"] is False and "head" in checks["migrations"]["detail"]
