"""``POST``/``GET /v1/portfolios/{id}/history``: the history build is queued (202, the job),
shared while it waits, another user's portfolio is 404; create and import queue it on
request. The flow is not started (the recording launcher counts the starts); one test runs
the queued job with the core code and reads its outcome through the API."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar.testing import TestClient

from core import calendar
from tests.api.conftest import Seed, assert_error, auth, position
from tests.recording_launcher import RecordingLauncher


def _create(client: TestClient, seed: Seed, **extra: Any) -> Any:
    entry = calendar.sessions_back(seed.as_of, 39).isoformat()
    resp = client.post("/v1/portfolios", json={
        "name": "Old book", "cash": "1000",
        "positions": [position("MKTA", entry_date=entry)], **extra}, headers=auth(seed))
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_request_is_queued_once_and_shared(client: TestClient, seed: Seed,
                                           dispatched: RecordingLauncher) -> None:
    pid = _create(client, seed)["portfolio"]["id"]
    url = f"/v1/portfolios/{pid}/history"
    assert_error(client.get(url, headers=auth(seed)), 404, "no history build", field="history")

    first = client.post(url, headers=auth(seed))
    assert first.status_code == 202, first.text
    job = first.json()
    assert job["status"] == "queued" and job["portfolio_id"] == pid
    assert job["snapshots"] is None and job["error"] is None and job["attempts"] == 0
    assert job["links"]["self"] == url
    assert dispatched.history_calls == 1

    again = client.post(url, headers=auth(seed))
    assert again.status_code == 202 and again.json()["id"] == job["id"]
    assert again.json()["requested_at"] == job["requested_at"]  # the same request, shared
    got = client.get(url, headers=auth(seed))
    assert got.status_code == 200 and got.json() == job


def test_another_users_portfolio_is_not_found(client: TestClient, seed: Seed,
                                              dispatched: RecordingLauncher) -> None:
    pid = _create(client, seed)["portfolio"]["id"]
    for method in (client.post, client.get):
        assert_error(method(f"/v1/portfolios/{pid}/history", headers=auth(seed, "bob")), 404,
                     pid, field="id")
    assert_error(client.post("/v1/portfolios/nope/history", headers=auth(seed)), 404,
                 field="id")
    assert client.post(f"/v1/portfolios/{pid}/history").status_code == 401
    client.delete(f"/v1/portfolios/{pid}", headers=auth(seed))
    assert_error(client.post(f"/v1/portfolios/{pid}/history", headers=auth(seed)), 404,
                 field="id")
    assert dispatched.history_calls == 0


def test_create_and_import_queue_it_on_request(client: TestClient, seed: Seed,
                                               dispatched: RecordingLauncher) -> None:
    plain = _create(client, seed)
    assert plain["history"] is None and dispatched.history_calls == 0
    body = client.post("/v1/portfolios", json={"name": "With history", "build_history": True,
                                               "positions": [position("MKTB")]},
                       headers=auth(seed)).json()
    assert body["history"]["status"] == "queued"
    assert body["history"]["portfolio_id"] == body["portfolio"]["id"]
    assert dispatched.history_calls == 1

    csv = "symbol,quantity,entry_date,entry_price\nMKTA,5,2025-06-02,100\n"
    resp = client.post("/v1/portfolios/import?name=Imported&build_history=true",
                       content=csv.encode(), headers={**auth(seed), "Content-Type": "text/csv"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["history"]["status"] == "queued" and dispatched.history_calls == 2
    resp = client.post("/v1/portfolios/import?name=Imported+2&build_history=maybe",
                       content=csv.encode(), headers={**auth(seed), "Content-Type": "text/csv"})
    assert_error(resp, 400, field="build_history")
    for bad in ("yes", 1, None):
        resp = client.post("/v1/portfolios", json={"name": "Bad", "build_history": bad},
                           headers=auth(seed))
        assert_error(resp, 400, "build_history: must be true or false", field="build_history")


def test_the_built_job_reports_its_sessions(client: TestClient, seed: Seed,
                                            dispatched: RecordingLauncher) -> None:
    from core.history_build import run_job
    from core.services import history_jobs

    pid = _create(client, seed, build_history=True)["portfolio"]["id"]

    async def run() -> None:
        claimed = await history_jobs.claim()
        assert claimed is not None and claimed.portfolio_id == pid
        await run_job(claimed, onboarding_wait=0)

    asyncio.run(run())
    job = client.get(f"/v1/portfolios/{pid}/history", headers=auth(seed)).json()
    assert job["status"] == "done", job
    assert job["snapshots"] == 40 and job["attempts"] == 1
    assert job["first_date"] == calendar.sessions_back(seed.as_of, 39).isoformat()
    assert job["last_date"] == seed.as_of.isoformat()
    snaps = client.get(f"/v1/portfolios/{pid}/snapshots?limit=100", headers=auth(seed)).json()
    assert len(snaps["items"]) == 40
    assert sum(1 for s in snaps["items"] if s["daily_pnl"] is None) == 1  # the first one
    again = client.post(f"/v1/portfolios/{pid}/history", headers=auth(seed)).json()
    assert again["id"] == job["id"] and again["status"] == "queued"  # asked again: rebuilt
