"""A revoked or rotated token stops working: at once in the process that revoked it, at once
for writes anywhere (a write checks its token in the database), and within a second or two
for reads in another API process (its token cache is validated about once a second)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

from litestar.testing import TestClient

from tests.api.conftest import position
from tests.conftest import REPO_ROOT, WAIT_LIMIT_S, wait_until


def _new_user(db_url: str, name: str) -> str:
    from core.db.engine import create_engine
    from core.services import users

    async def make() -> str:
        engine = create_engine(db_url)
        try:
            return (await users.create_user(engine, name))[1]
        finally:
            await engine.dispose()

    return asyncio.run(make())


def _replace_token(db_url: str, name: str, revoke: bool) -> str | None:
    """``replace_token`` in this process, on its own engine (not the server's)."""
    from core.db.engine import create_engine
    from core.services import users

    async def run() -> str | None:
        engine = create_engine(db_url)
        try:
            return (await users.replace_token(engine, name, revoke=revoke))[1]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FACTORFLOW_DATABASE_URL": db_url}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=WAIT_LIMIT_S)


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _write(client: TestClient, token: str, name: str) -> Any:
    return client.post("/v1/portfolios", headers=_h(token), json={
        "name": name, "positions": [position("MKTA")]})


def test_revocation_in_the_serving_process_takes_effect_at_once(
        client: TestClient, db_url: str) -> None:
    token = _new_user(db_url, "carol")
    assert client.get("/v1/portfolios", headers=_h(token)).status_code == 200  # now cached
    assert _write(client, token, "before").status_code == 201
    _replace_token(db_url, "carol", revoke=True)
    assert client.get("/v1/portfolios", headers=_h(token)).status_code == 401
    assert _write(client, token, "after").status_code == 401

    dave = _new_user(db_url, "dave")
    assert client.get("/v1/portfolios", headers=_h(dave)).status_code == 200
    rotated = _replace_token(db_url, "dave", revoke=False)
    assert rotated is not None and rotated != dave
    assert client.get("/v1/portfolios", headers=_h(dave)).status_code == 401
    assert client.get("/v1/portfolios", headers=_h(rotated)).status_code == 200
    assert _write(client, rotated, "rotated").status_code == 201


def test_revocation_by_another_process_refuses_writes_at_once_and_reads_soon(
        client: TestClient, db_url: str) -> None:
    token = _new_user(db_url, "erin")
    assert client.get("/v1/portfolios", headers=_h(token)).status_code == 200  # now cached
    assert client.get("/v1/portfolios", headers=_h(token)).status_code == 200

    done = _cli(db_url, "users", "revoke", "erin")
    assert done.returncode == 0, done.stderr
    # a write never passes on a revoked token, whatever this server has cached
    assert _write(client, token, "after").status_code == 401
    for method, path, body in (
            ("PATCH", "/v1/portfolios/nope", {"name": "x"}),
            ("DELETE", "/v1/portfolios/nope", None)):
        assert client.request(method, path, headers=_h(token), json=body).status_code == 401
    # a read stops passing once this server's cache is validated (about a second)
    wait_until(lambda: client.get("/v1/portfolios", headers=_h(token)).status_code != 200,
               "the revoked token to stop reading", every=0.1)
    assert client.get("/v1/portfolios", headers=_h(token)).status_code == 401
