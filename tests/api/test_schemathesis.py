"""Schemathesis against the app's own OpenAPI document, in-process over ASGI, with every
check it has (no 5xx, documented statuses, content types, headers and bodies; data the
schema allows is accepted and data it forbids rejected; unsupported methods answer 405 with
an Allow header; ...): generated requests for every operation, authenticated as an admin who
owns a portfolio, then its stateful phase (sequences of calls that follow the document's
links: create, then read, change and delete what was created)."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

from tests.api.conftest import Seed, _build, position
from tests.conftest import fresh_postgres_database, sqlite_url
from tests.recording_launcher import record_launches

# The document says dates are ISO dates; the server also refuses dates in the future or
# before 1900 (said in the descriptions, not expressible in JSON Schema): draw those.
schemathesis.openapi.format("date", st.dates(dt.date(1900, 1, 1), dt.date.today()).map(
    dt.date.isoformat))


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

    mp = pytest.MonkeyPatch()
    record_launches(mp)
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


# Rules the document states in words but JSON Schema cannot express, so data it allows may
# still be refused with a 400 naming the field (every other operation must accept all data
# its schema allows): combinations of fields in a position (a manual value only for
# PRIVATE, an entry price > 0 for PUBLIC, exit after entry, private identifiers only for
# PRIVATE), the contents of a CSV file, a date within the NYSE calendar, the symbol
# rules of the universe routes, and the ranges and windows of the dated answers (an end
# before its start, a window with start/end, a benchmark without prices).
BUSINESS_RULES = ["createPortfolio", "importPortfolio", "addPosition", "updatePosition",
                  "startSymbolBatch", "listUniverse", "addUniverseSymbols",
                  "removeUniverseSymbol", "refetchUniverseSymbol", "getPerformance",
                  "getAttribution", "getReport", "listSnapshots", "getRiskHistory"]
CONFIG = SchemathesisConfig.from_dict({"operations": [{
    "include-operation-id": BUSINESS_RULES,
    "checks": {"positive_data_acceptance": {"expected-statuses": [
        "2xx", "400", "401", "403", "404", "409", "429"]}},
}]})
schema = schemathesis.openapi.from_dict(_document(), config=CONFIG)


@schema.parametrize()
@settings(max_examples=25, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: Any, api: dict[str, Any]) -> None:
    if case.path_parameters:
        if "portfolio_id" in case.path_parameters and case.method != "DELETE":
            case.path_parameters["portfolio_id"] = api["portfolio_id"]
        if "position_id" in case.path_parameters and case.method != "DELETE":
            case.path_parameters["position_id"] = api["position_id"]
    case.operation.schema.app = api["app"]  # the probes of some checks (ignored_auth) too
    case.call_and_validate(app=api["app"], headers=api["headers"])


def test_api_stateful(seed: Seed, tmp_path: Path) -> None:
    """Sequences of calls linked by the document (ids from one answer used in the next).
    Each scenario starts from a fresh copy of the seeded database (hypothesis replays
    scenarios and needs the same answers each time); SQLite only (a fresh PostgreSQL
    database per scenario would cost minutes)."""
    from schemathesis.python import asgi

    from api.app import create_app
    headers = {"Authorization": f"Bearer {seed.tokens['root']}"}
    counter = iter(range(10_000))
    base = schema.as_state_machine()

    class Workflow(base):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            path = tmp_path / f"scenario-{next(counter)}.db"
            shutil.copyfile(seed.path, path)
            self.app = create_app(sqlite_url(path))  # its lifespan runs on first call
            schema.app = self.app

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"app": self.app, "headers": headers}

    with pytest.MonkeyPatch.context() as mp:
        record_launches(mp)
        try:
            Workflow.run(settings=settings(
                max_examples=15, stateful_step_count=6, deadline=None, derandomize=True,
                database=None, suppress_health_check=list(HealthCheck)))
        finally:
            asgi.shutdown_lifespans()
