"""Schemathesis against the app's own OpenAPI document, in-process over ASGI: generated
requests (valid and invalid) for every operation, authenticated as an admin who owns a
portfolio; no answer may be a 5xx or break the documented response schema."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import Recorder, Seed, _build, position
from tests.conftest import fresh_postgres_database, sqlite_url

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@contextmanager
def _database(dialect: str, seed: Seed, tmp: Path) -> Iterator[tuple[str, str]]:
    """(URL, admin token) of a copy of the seed database (SQLite), or of a fresh seeded
    PostgreSQL database."""
    if dialect == "sqlite":
        shutil.copyfile(seed.path, tmp / "factorflow.db")
        yield sqlite_url(tmp / "factorflow.db"), seed.tokens["root"]
        return
    from core.db import migrate

    with fresh_postgres_database() as url:
        migrate.upgrade(url)
        tokens, _ = asyncio.run(_build(url, seed.as_of))
        yield url, tokens["root"]


@pytest.fixture(scope="module", params=["sqlite", pytest.param(
    "postgres", marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest, seed: Seed,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One app over a seeded database (SQLite, then PostgreSQL), with a portfolio to aim at."""
    from api.app import create_app

    with _database(request.param, seed, tmp_path_factory.mktemp("schemathesis")) as (url, token):
        yield from _serve(create_app(url), token)


def _serve(app: Any, token: str) -> Iterator[dict[str, Any]]:
    """Run ``app`` for schemathesis with the onboarding flow and the symbol batch stubbed."""
    from litestar.testing import TestClient

    from core import onboarding
    from core import portfolio_service as svc

    mp = pytest.MonkeyPatch()
    mp.setattr(onboarding, "dispatch", Recorder(), raising=False)
    mp.setattr(onboarding, "resume", Recorder(0), raising=False)
    mp.setattr(svc, "_run_symbol_batch", Recorder())
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as c:  # a portfolio with a position, for the id-bearing routes
        body = {"name": "fuzz", "cash": "100", "positions": [position("MKTA")]}
        created = c.post("/v1/portfolios", json=body, headers=headers).json()
    yield {"app": app, "headers": headers, "portfolio_id": created["portfolio"]["id"],
           "position_id": created["portfolio"]["positions"][0]["id"]}
    mp.undo()
    from schemathesis.python import asgi

    asgi.shutdown_lifespans()


def _document() -> dict[str, Any]:
    """The OpenAPI document the app serves at /schema/openapi.json."""
    from api.app import create_app

    return create_app().openapi_schema.to_schema()


schema = schemathesis.openapi.from_dict(_document())


@schema.parametrize()
@settings(max_examples=25, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: Any, api: dict[str, Any]) -> None:
    if case.path_parameters:
        if "portfolio_id" in case.path_parameters and case.method != "DELETE":
            case.path_parameters["portfolio_id"] = api["portfolio_id"]
        if "position_id" in case.path_parameters and case.method != "DELETE":
            case.path_parameters["position_id"] = api["position_id"]
    case.call_and_validate(app=api["app"], headers=api["headers"], checks=CHECKS)
