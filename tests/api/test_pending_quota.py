"""A user cannot grow the shared nightly universe without limit: a per-user quota of symbols
waiting for onboarding (FACTORFLOW_MAX_PENDING_SYMBOLS_PER_USER), answered with 429."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from tests.api.conftest import Seed, auth, position
from tests.flows.helpers import db_path
from tests.recording_launcher import RecordingLauncher


@pytest.fixture
def client(db_url: str, dispatched: RecordingLauncher, settings_env: pytest.MonkeyPatch
           ) -> Iterator[TestClient]:
    """The app with a quota of 3 waiting symbols per user."""
    from api.app import create_app

    settings_env.setenv("FACTORFLOW_MAX_PENDING_SYMBOLS_PER_USER", "3")
    with TestClient(create_app(db_url)) as c:
        yield c


def _universe(db_url: str) -> set[str]:
    con = sqlite3.connect(db_path(db_url))
    try:
        return {r[0] for r in con.execute("SELECT symbol FROM symbols")}
    finally:
        con.close()


def _refused(resp: object, *fragments: str) -> None:
    assert resp.status_code == 429, resp.text  # type: ignore[attr-defined]
    body = resp.json()  # type: ignore[attr-defined]
    assert body["status"] == 429 and body["field"] == "positions", body
    for frag in fragments:
        assert frag in body["message"], (frag, body)


def test_new_symbols_beyond_the_quota_are_refused_and_nothing_is_stored(
        client: TestClient, seed: Seed, db_url: str) -> None:
    before = _universe(db_url)
    four_new = [position(s) for s in ("QQA", "QQB", "QQC", "QQD")]
    _refused(client.post("/v1/portfolios", headers=auth(seed), json={
        "name": "Too many", "positions": [position("MKTA"), *four_new]}),
        "4 symbol(s) new", "over the limit of 3")
    assert _universe(db_url) == before
    listed = client.get("/v1/portfolios", headers=auth(seed)).json()
    assert listed["items"] == []
    csv = "symbol,quantity,entry_date,entry_price\n" + "".join(
        f"{s},1,2025-06-02,10\n" for s in ("QQA", "QQB", "QQC", "QQD"))
    _refused(client.post("/v1/portfolios/import?name=CSV", headers={
        **auth(seed), "Content-Type": "text/csv"}, content=csv))
    assert _universe(db_url) == before

    # known symbols never count; 2 new ones fit, then 2 more do not (2 waiting + 2 > 3)
    created = client.post("/v1/portfolios", headers=auth(seed), json={
        "name": "Fits", "positions": [position("MKTA"), position("MKTB"), *four_new[:2]]})
    assert created.status_code == 201, created.text
    pid = created.json()["portfolio"]["id"]
    assert sorted(created.json()["pending_symbols"]) == ["QQA", "QQB"]
    _refused(client.post("/v1/portfolios", headers=auth(seed), json={
        "name": "Second", "positions": four_new[2:]}), "(2 already)")
    added = client.post(f"/v1/portfolios/{pid}/positions", headers=auth(seed),
                        json=position("QQC"))
    assert added.status_code == 201, added.text
    _refused(client.post(f"/v1/portfolios/{pid}/positions", headers=auth(seed),
                         json=position("QQD")), "(3 already)")
    # a symbol waiting for someone else is no new symbol for the universe; another user has
    # a quota of their own
    other = client.post("/v1/portfolios", headers=auth(seed, "bob"), json={
        "name": "Bob", "positions": [position(s) for s in ("QQA", "QQB", "QQC", "QQX")]})
    assert other.status_code == 201, other.text

    con = sqlite3.connect(db_path(db_url))
    with con:  # the onboarding flow finished alice's symbols: the quota is free again
        con.execute("UPDATE onboarding_jobs SET status = 'done'")
    con.close()
    added = client.post(f"/v1/portfolios/{pid}/positions", headers=auth(seed),
                        json=position("QQD"))
    assert added.status_code == 201, added.text
