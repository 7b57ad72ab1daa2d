"""Admin routes (admin role): start the symbol batch, batch runs, freshness, onboarding queue."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncEngine

from api.admin.schemas import (
    BatchRunList,
    Freshness,
    OnboardingQueue,
    SymbolBatchRequest,
    SymbolBatchStarted,
)
from api.auth import admin_only
from api.errors import responses
from api.schemas import convert
from core.services import operations

Engine = NamedDependency[AsyncEngine]


class AdminController(Controller):
    path = "/admin"
    tags = ["admin"]
    guards = [admin_only]

    @post("/symbol-batch", operation_id="startSymbolBatch",
          status_code=202, responses=responses(400, 401, 403, 409, 413),
          summary="Start the symbol batch now",
          description="Returns at once (202): a run of the `symbol-batch` deployment when the "
                      "server has a Prefect API, else the flow in a background thread. 409 "
                      "while one is running. Follow it in `GET /v1/admin/batch-runs`.")
    async def start_symbol_batch(
        self, engine: Engine, data: JSONBody[SymbolBatchRequest | None] = None
    ) -> SymbolBatchStarted:
        as_of = data.as_of if data is not None else None
        return convert(await operations.start_symbol_batch(engine, as_of), SymbolBatchStarted)

    @get("/batch-runs", operation_id="listBatchRuns",
         responses=responses(400, 401, 403), summary="Recent batch runs")
    async def batch_runs(
        self, engine: Engine,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        job_type: Annotated[str | None, QueryParameter(
            description="symbol-batch, portfolio-refresh or onboarding.", max_length=32,
            schema_extra={"enum": list(operations.JOB_TYPES)})]
        = None,
    ) -> BatchRunList:
        runs = await operations.batch_runs(engine, limit=limit, job_type=job_type)
        return convert({"items": runs}, BatchRunList)

    @get("/freshness", operation_id="getFreshness",
         responses=responses(401, 403), summary="How current the nightly data is")
    async def freshness(self, engine: Engine) -> Freshness:
        return convert(await operations.freshness(engine), Freshness)

    @get("/onboarding-queue", operation_id="getOnboardingQueue", responses=responses(400, 401, 403),
         summary="Newest rows of the symbol onboarding queue")
    async def onboarding_queue(
        self, engine: Engine, limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 200
    ) -> OnboardingQueue:
        return convert({"items": await operations.onboarding_queue(engine, limit)}, OnboardingQueue)
