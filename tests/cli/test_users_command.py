"""``factorflow users create|list|rotate|revoke`` and the ``api`` command's arguments."""

from __future__ import annotations

import hashlib
import json

import pytest
from litestar.testing import TestClient

from cli.main import build_parser, main
from tests.api.conftest import Seed, assert_error
from tests.flows.helpers import query


def test_users_create_prints_the_token_once_and_stores_its_hash(
        db_url: str, client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["users", "create", "carol", "--admin", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    created = json.loads(out[-1])
    assert created["name"] == "carol" and created["admin"] is True
    token = created["token"]
    assert len(token) >= 40 and token in out[-2]  # the human line shows it too
    rows = query(db_url, "SELECT * FROM users WHERE name = 'carol'")
    assert rows.iloc[0].token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in rows.to_csv()
    resp = client.get("/v1/admin/freshness", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200

    assert main(["users", "create", "carol"]) == 1
    assert "a user named 'carol' already exists" in capsys.readouterr().err
    assert main(["users", "create", " "]) == 1
    assert "must not be empty" in capsys.readouterr().err


def test_users_list_rotate_and_revoke(db_url: str, seed: Seed, dispatched: object,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from api.app import create_app

    assert main(["users", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["users"]
    assert [u["name"] for u in listed] == ["alice", "bob", "root"]
    assert [u["admin"] for u in listed] == [False, False, True]
    assert all(u["portfolios"] == 0 and "token" not in u for u in listed)

    old = {"Authorization": f"Bearer {seed.tokens['alice']}"}
    with TestClient(create_app(db_url)) as app:
        assert app.post("/v1/portfolios", headers=old, json={"name": "kept"}).status_code == 201
    assert main(["users", "rotate", "alice", "--json"]) == 0
    new_token = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["token"]
    new = {"Authorization": f"Bearer {new_token}"}
    with TestClient(create_app(db_url)) as app:  # a process started now (or within a minute)
        assert_error(app.get("/v1/portfolios", headers=old), 401, "unknown or revoked token")
        assert app.get("/v1/portfolios", headers=new).json()["items"][0]["name"] == "kept"

    assert main(["users", "revoke", "alice", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["token"] is None
    with TestClient(create_app(db_url)) as app:
        assert_error(app.get("/v1/portfolios", headers=new), 401, "unknown or revoked token")
    assert main(["users", "list", "--json"]) == 0  # the user and portfolio are kept
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["users"]
    assert listed[0]["name"] == "alice" and listed[0]["portfolios"] == 1

    assert main(["users", "rotate", "nobody"]) == 1
    assert "no user named 'nobody'" in capsys.readouterr().err


def test_api_command_arguments() -> None:
    args = build_parser().parse_args(["api"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    args = build_parser().parse_args(["api", "--host", "0.0.0.0", "--port", "9001"])
    assert (args.host, args.port) == ("0.0.0.0", 9001)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["api", "--port", "70000"])
