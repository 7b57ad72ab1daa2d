"""The API on PostgreSQL (the production database): the main paths and the inputs that
PostgreSQL would refuse (NUL bytes) still answer 4xx. Skipped without
``FACTORFLOW_TEST_POSTGRES_URL`` (see tests/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.api.conftest import _build, assert_error, position
from tests.recording_launcher import RecordingLauncher

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg() -> Iterator[dict[str, Any]]:
    """A fresh PostgreSQL database, migrated and seeded like the SQLite template."""
    from core import calendar
    from core.db import migrate
    from tests.conftest import fresh_postgres_database

    with fresh_postgres_database() as url:
        migrate.upgrade(url)
        as_of = calendar.latest_completed_session()
        tokens, _ = asyncio.run(_build(url, as_of))
        yield {"url": url, "tokens": tokens, "as_of": as_of}


@pytest.fixture
def pg_client(pg: dict[str, Any], dispatched: RecordingLauncher) -> Iterator[TestClient]:
    from api.app import create_app

    with TestClient(create_app(pg["url"])) as c:
        yield c


def _h(pg: dict[str, Any], user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {pg['tokens'][user]}"}


def test_portfolio_life_cycle_on_postgres(pg_client: TestClient, pg: dict[str, Any],
                                          dispatched: RecordingLauncher) -> None:
    c, h = pg_client, _h(pg)
    resp = c.post("/v1/portfolios", headers=h, json={"name": "PG", "cash": "10.5", "positions": [
        position("MKTA"), position("MKTB", quantity="-2.5"), position("ZZPG")]})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    pid = body["portfolio"]["id"]
    assert body["snapshot"]["date"] == pg["as_of"].isoformat()
    assert body["pending_symbols"] == ["ZZPG"] and dispatched.calls == 1
    assert_error(c.post("/v1/portfolios", headers=h, json={"name": "PG"}), 409, field="name")
    assert c.get("/v1/portfolios", headers=h).json()["total"] >= 1
    assert c.patch(f"/v1/portfolios/{pid}", headers=h, json={"cash": "11"}).json()[
        "cash"] == "11.0000"
    pos = c.post(f"/v1/portfolios/{pid}/positions", headers=h, json=position("MKTC")).json()
    url = f"/v1/portfolios/{pid}/positions/{pos['position']['id']}"
    assert c.patch(url, headers=h, json={"quantity": "3"}).json()["position"]["quantity"] == "3"
    assert c.delete(url, headers=h).status_code == 204
    for kind in ("overview", "factor-exposures", "sector-exposure", "correlations",
                 "stress-tests"):
        answer = c.get(f"/v1/portfolios/{pid}/{kind}", headers=h)
        assert answer.status_code == 200, (kind, answer.text)
        assert answer.json()["data_as_of"] == pg["as_of"].isoformat()
    assert len(c.get(f"/v1/portfolios/{pid}/snapshots", headers=h).json()["items"]) == 1
    assert_error(c.get(f"/v1/portfolios/{pid}", headers=_h(pg, "bob")), 404)
    csv = "symbol,quantity,entry_date,entry_price\nMKTA,1,2025-06-02,1\n"
    imported = c.post("/v1/portfolios/import?name=PG-csv", content=csv.encode(),
                      headers={**h, "Content-Type": "text/csv"})
    assert imported.status_code == 201, imported.text
    assert c.delete(f"/v1/portfolios/{pid}", headers=h).status_code == 204
    assert_error(c.get(f"/v1/portfolios/{pid}", headers=h), 404)


def test_symbols_admin_and_health_on_postgres(pg_client: TestClient, pg: dict[str, Any]
                                              ) -> None:
    c, root = pg_client, _h(pg, "root")
    sym = c.get("/v1/symbols/MKTA", headers=_h(pg)).json()
    assert sym["status"] == "ready" and sym["factor_exposures"]
    assert c.get("/v1/admin/batch-runs", headers=root).json()["items"][0]["status"] == (
        "completed")
    fresh = c.get("/v1/admin/freshness", headers=root).json()
    assert fresh["jobs"]["symbol-batch"]["stale"] is False
    assert c.get("/v1/admin/onboarding-queue", headers=root).status_code == 200
    ready = c.get("/health/ready")
    assert ready.status_code == 200, ready.text


def test_nul_bytes_are_4xx_on_postgres(pg_client: TestClient, pg: dict[str, Any]) -> None:
    c, h = pg_client, _h(pg)
    assert_error(c.post("/v1/portfolios", headers=h, json={"name": "a\u0000b"}), 400,
                 field="name")
    assert_error(c.get("/v1/portfolios/a%00b", headers=h), 404)
    assert_error(c.get("/v1/symbols/A%00B", headers=h), 400, field="symbol")
    assert_error(c.post("/v1/portfolios", headers=h, json={
        "name": "n", "positions": [position("A\u0000B")]}), 400, field="positions[0].symbol")
    assert_error(c.get("/v1/admin/batch-runs?job_type=a%00", headers=_h(pg, "root")), 400,
                 field="job_type")
    assert_error(c.get("/v1/portfolios", headers={"Authorization": "Bearer a\u0000b"}), 401)
