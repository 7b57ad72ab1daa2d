"""Liveness and readiness (no authentication)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from msgspec import Meta
from sqlalchemy.ext.asyncio import AsyncEngine

from core.services import operations


class Live(msgspec.Struct):
    status: str


class Check(msgspec.Struct):
    ok: bool
    detail: str


class Readiness(msgspec.Struct):
    status: Annotated[str, Meta(description="ready or not_ready.")]
    checks: Annotated[dict[str, Check], Meta(description="database, migrations, symbol_batch.")]


class HealthController(Controller):
    path = "/health"
    tags = ["health"]
    security = [{}]

    @get("/live", operation_id="getLiveness", summary="The process answers")
    async def live(self) -> Live:
        return Live(status="ok")

    @get("/ready", operation_id="getReadiness",
         summary="Ready to serve: database, schema at head, fresh symbol data",
         responses={503: ResponseSpec(data_container=Readiness, generate_examples=False,
                                      description="A check failed (see checks).")})
    async def ready(self, engine: NamedDependency[AsyncEngine]) -> Response[Readiness]:
        checks = await operations.readiness(engine)
        ok = all(c["ok"] for c in checks.values())
        body = Readiness(status="ready" if ok else "not_ready",
                         checks={k: Check(**v) for k, v in checks.items()})
        return Response(body, status_code=200 if ok else 503)
