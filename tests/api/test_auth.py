"""Bearer tokens: 401 without a valid one, 404 (never 403) for another user's portfolio,
403 for non-admins on admin routes; health needs no token."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from tests.api.conftest import Seed, assert_error, auth, position


@pytest.mark.parametrize("headers, fragment", [
    ({}, "missing bearer token"),
    ({"Authorization": "Bearer not-a-real-token"}, "unknown or revoked token"),
    ({"Authorization": "Basic YWxpY2U6c2VjcmV0"}, "expected 'Bearer <token>'"),
    ({"Authorization": "Bearer "}, "expected 'Bearer <token>'"),
])
def test_missing_or_wrong_token_is_401(client: TestClient, headers: dict, fragment: str
                                       ) -> None:
    for method, path in (("GET", "/v1/portfolios"), ("POST", "/v1/portfolios"),
                         ("GET", "/v1/symbols/MKTA"), ("GET", "/v1/admin/freshness")):
        resp = client.request(method, path, headers=headers, json={"name": "x"})
        assert_error(resp, 401, fragment, field="authorization")
        assert resp.headers["www-authenticate"].startswith("Bearer")


def test_another_users_portfolio_is_404_everywhere(client: TestClient, seed: Seed) -> None:
    created = client.post("/v1/portfolios", headers=auth(seed, "alice"), json={
        "name": "Alice", "positions": [position("MKTA")]}).json()
    pid = created["portfolio"]["id"]
    pos = created["portfolio"]["positions"][0]["id"]
    bob = auth(seed, "bob")
    calls = [
        ("GET", f"/v1/portfolios/{pid}", None),
        ("PATCH", f"/v1/portfolios/{pid}", {"name": "mine now"}),
        ("DELETE", f"/v1/portfolios/{pid}", None),
        ("GET", f"/v1/portfolios/{pid}/snapshots", None),
        ("POST", f"/v1/portfolios/{pid}/positions", position("MKTB")),
        ("PATCH", f"/v1/portfolios/{pid}/positions/{pos}", {"quantity": "1"}),
        ("DELETE", f"/v1/portfolios/{pid}/positions/{pos}", None),
        *[("GET", f"/v1/portfolios/{pid}/{k}", None) for k in (
            "overview", "factor-exposures", "sector-exposure", "correlations", "stress-tests")],
    ]
    for method, path, body in calls:
        resp = client.request(method, path, headers=bob, json=body)
        assert_error(resp, 404, f"portfolio {pid!r} not found", field="id")
    assert client.get("/v1/portfolios", headers=bob).json()["total"] == 0
    # untouched for its owner
    mine = client.get(f"/v1/portfolios/{pid}", headers=auth(seed, "alice")).json()
    assert mine["name"] == "Alice" and len(mine["positions"]) == 1


def test_admin_routes_are_403_for_users_and_open_to_admins(client: TestClient, seed: Seed
                                                           ) -> None:
    routes = [("GET", "/v1/admin/batch-runs"), ("GET", "/v1/admin/freshness"),
              ("GET", "/v1/admin/onboarding-queue"), ("POST", "/v1/admin/symbol-batch")]
    for method, path in routes:
        assert_error(client.request(method, path, headers=auth(seed, "alice")), 403,
                     "admin role")
    for method, path in routes[:3]:
        assert client.request(method, path, headers=auth(seed, "root")).status_code == 200


def test_health_needs_no_token(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    assert set(ready.json()["checks"]) == {"database", "migrations", "symbol_batch"}
    assert client.get("/schema/openapi.json").status_code == 200


def test_every_v1_route_needs_a_token_before_reading_the_body(client: TestClient) -> None:
    """Each route and method under /v1, found in the app itself (a new route cannot be left
    open by mistake), answers 401 to no token, even with a malformed body."""
    import re

    checked = 0
    for route in client.app.routes:
        if not route.path.startswith("/v1"):
            continue
        path = re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000000", route.path)
        for method in sorted(route.methods - {"OPTIONS", "HEAD"}):
            resp = client.request(method, path, content=b"{not json",
                                  headers={"Content-Type": "application/json"})
            assert_error(resp, 401, "missing bearer token", field="authorization")
            checked += 1
    assert checked >= 20
