"""The cache-hit fast path (api.cached_reads): the same status, headers and bytes as the
route for every analytics kind, taken only for certain hits, and every other request left
to the route (which answers errors, queries and misses as before)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from api.portfolios.schemas import ANALYTICS_SCHEMAS
from tests.api.conftest import Seed, assert_error, auth
from tests.api.test_portfolios import create
from tests.conftest import wait_until


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """(path, served by the fast path) of every HTTP request the app receives."""
    import api.app
    from api import cached_reads

    calls: list[tuple[str, bool]] = []

    async def recording(state: Any, scope: dict[str, Any], send: Any) -> bool:
        done = await cached_reads.serve_cached_read(state, scope, send)
        calls.append((scope["path"], done))
        return done

    monkeypatch.setattr(api.app, "serve_cached_read", recording)
    return calls


def _answer(resp: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    return resp.status_code, sorted(resp.headers.multi_items()), resp.content


def test_every_kind_is_the_routes_answer_byte_for_byte(
        client: TestClient, seed: Seed, served: list[tuple[str, bool]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import api.app

    pf = create(client, seed).json()["portfolio"]
    base, h = f"/v1/portfolios/{pf['id']}", auth(seed)
    for kind in ANALYTICS_SCHEMAS:
        client.get(f"{base}/{kind}", headers=h)  # held in memory from now on
    fast = {kind: _answer(client.get(f"{base}/{kind}", headers=h)) for kind in ANALYTICS_SCHEMAS}
    assert served[-len(ANALYTICS_SCHEMAS):] == [(f"{base}/{k}", True) for k in ANALYTICS_SCHEMAS]

    async def declined(*_: Any) -> bool:
        return False

    monkeypatch.setattr(api.app, "serve_cached_read", declined)
    for kind in ANALYTICS_SCHEMAS:
        route = _answer(client.get(f"{base}/{kind}", headers=h))
        assert route == fast[kind], kind
        assert fast[kind][0] == 200 and b'"cached":true' in fast[kind][2], kind


def test_anything_but_a_certain_hit_goes_to_the_route(
        client: TestClient, seed: Seed, served: list[tuple[str, bool]]) -> None:
    pf = create(client, seed).json()["portfolio"]
    base, h = f"/v1/portfolios/{pf['id']}", auth(seed)
    client.get(f"{base}/overview", headers=h)
    assert client.get(f"{base}/overview", headers=h).json()["cached"] is True
    assert served[-1] == (f"{base}/overview", True)
    served.clear()

    # another user's token: the route's 404, never the owner's answer
    assert_error(client.get(f"{base}/overview", headers=auth(seed, "bob")), 404, field="id")
    # an unknown token, a malformed header, two headers, none: the route's 401
    assert_error(client.get(f"{base}/overview", headers={"Authorization": "Bearer nope"}), 401)
    assert_error(client.get(f"{base}/overview", headers={"Authorization": "Basic x"}), 401)
    two = [("Authorization", h["Authorization"]), ("Authorization", "Bearer nope")]
    assert client.get(f"{base}/overview", headers=two).status_code in (200, 401)
    assert_error(client.get(f"{base}/overview"), 401)
    # a query string (one to be refused among them), HEAD, a trailing slash, another kind
    assert_error(client.get(f"{base}/overview?limt=5", headers=h), 400, field="limt")
    one = client.get(f"{base}/stress-tests?scenario=market_down_10", headers=h).json()
    assert [s["name"] for s in one["scenarios"]] == ["market_down_10"]
    assert client.head(f"{base}/overview", headers=h).status_code in (200, 405)
    client.get(f"{base}/overview/", headers=h)
    client.get(f"{base}/snapshots", headers=h)
    assert not any(done for _, done in served), served

    # a change drops the answer from memory: the next read is the route's, then a hit
    client.patch(base, json={"cash": "7"}, headers=h)
    served.clear()
    for _ in range(2):
        assert client.get(f"{base}/overview", headers=h).json()["snapshot"]["cash"] == "7.0000"
    assert served == [(f"{base}/overview", False), (f"{base}/overview", True)]


def test_a_revoked_token_stops_reading_as_on_the_route(
        client: TestClient, seed: Seed, db_url: str, served: list[tuple[str, bool]]) -> None:
    from tests.api.test_token_revocation import _cli, _replace_token

    pf = create(client, seed).json()["portfolio"]
    url, h = f"/v1/portfolios/{pf['id']}/overview", auth(seed)
    client.get(url, headers=h)
    assert client.get(url, headers=h).status_code == 200 and served[-1] == (url, True)
    _replace_token(db_url, "alice", revoke=True)  # in this process: at once
    assert_error(client.get(url, headers=h), 401)
    assert served[-1] == (url, False)

    bob = create(client, seed, user="bob").json()["portfolio"]
    url, h = f"/v1/portfolios/{bob['id']}/overview", auth(seed, "bob")
    client.get(url, headers=h)
    assert client.get(url, headers=h).status_code == 200 and served[-1] == (url, True)
    done = _cli(db_url, "users", "revoke", "bob")  # another process: within the cache's age
    assert done.returncode == 0, done.stderr
    wait_until(lambda: client.get(url, headers=h).status_code == 401,
               "the revoked token to stop reading", every=0.1)
    assert served[-1] == (url, False)
