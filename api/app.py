"""The Litestar application: ``create_app()``.

Routes live under ``/v1`` (bearer token) and ``/health`` (open); the OpenAPI document is
served at ``/schema/openapi.json``. One pooled engine per app, created at start-up and
disposed at shutdown; start-up also resumes the onboarding queue.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import msgspec
from litestar import Litestar, Request, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import ClientException
from litestar.logging.config import LoggingConfig
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from sqlalchemy.ext.asyncio import AsyncEngine

from api.admin.controllers import AdminController
from api.auth import SECURITY_SCHEME, BearerTokenAuth, TokenCache, provide_user
from api.errors import handle_exception
from api.health import HealthController
from api.portfolios.controllers import PortfolioController, PositionController
from api.symbols.controllers import SymbolController
from api.universe.controllers import UniverseController
from core.db.engine import create_engine
from core.settings import get_settings

log = logging.getLogger("api")

# Litestar's default (root at INFO) plus quiet HTTP clients: Prefect's client logs every
# request to its server at INFO through httpx, which buried the API's own messages.
LOGGING = LoggingConfig(loggers={
    "litestar": {"level": "INFO", "handlers": ["queue_listener"], "propagate": False},
    **{name: {"level": "WARNING"} for name in ("httpx", "httpcore")},
})
MAX_BODY_BYTES = 1024 * 1024
"""Largest accepted request body (1 MiB): larger ones get 413."""

_EXACT = msgspec.json.Decoder(float_hook=Decimal)


class ExactDecimalRequest(Request[Any, Any, Any]):
    """JSON bodies decoded with every non-integer number as an exact ``Decimal`` (Litestar's
    default reads them as binary floats before converting: 0.1 + digits would drift)."""

    async def json(self) -> Any:
        cached = self.scope.get("_exact_json", _MISSING)
        if cached is not _MISSING:
            return cached
        body = await self.body()
        try:
            value = _EXACT.decode(body or b"null")
        except msgspec.DecodeError as exc:
            raise ClientException(f"body: malformed JSON ({exc})") from None
        self.scope["_exact_json"] = value  # type: ignore[typeddict-unknown-key]
        return value


_MISSING = object()


def provide_engine(state: State) -> AsyncEngine:
    """The ``engine`` dependency: the app's pooled engine."""
    return state.engine  # type: ignore[no-any-return]


async def _resume_onboarding(engine: AsyncEngine) -> None:
    from core import onboarding

    resume = getattr(onboarding, "resume", None)
    if resume is None:
        return
    try:
        result = resume(engine) if "engine" in inspect.signature(resume).parameters else resume()
        if inspect.isawaitable(result):
            result = await result
        log.info("onboarding queue resumed: %s", result)
    except Exception:  # the API serves without it; the next request dispatches again
        log.exception("could not resume the onboarding queue")


def create_app(database_url: str | None = None) -> Litestar:
    """The factorflow API over ``database_url`` (default: the configured database)."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(database_url or get_settings().resolved_database_url,
                               pooled=True)
        from core import onboarding

        app.state.engine = engine
        app.state.token_cache = TokenCache()
        try:
            await _resume_onboarding(engine)
            onboarding.freeze_long_lived_objects()
            yield
        finally:
            await engine.dispose()
            onboarding.stop_local_prefect()

    v1 = Router(
        path="/v1",
        route_handlers=[PortfolioController, PositionController, SymbolController,
                        AdminController, UniverseController],
        middleware=[DefineMiddleware(BearerTokenAuth)],
        security=[{SECURITY_SCHEME: []}],
    )
    return Litestar(
        route_handlers=[HealthController, v1],
        lifespan=[lifespan],
        dependencies={
            "engine": Provide(provide_engine, sync_to_thread=False),
            "user": Provide(provide_user, sync_to_thread=False),
        },
        exception_handlers={Exception: handle_exception},
        request_class=ExactDecimalRequest,
        request_max_body_size=MAX_BODY_BYTES,
        logging_config=LOGGING,
        openapi_config=OpenAPIConfig(
            title="factorflow API",
            version="1.0.0",
            path="/schema",
            description=(
                "Portfolios, positions, snapshots and risk analytics over nightly symbol "
                "data. Authenticate with `Authorization: Bearer <token>` (`factorflow users "
                "create`). Exact amounts are decimal strings; dates are ISO 8601; every "
                "error is `{status, error, message, field}`."
            ),
            components=Components(security_schemes={
                SECURITY_SCHEME: SecurityScheme(type="http", scheme="bearer",
                                                description="A user's API token."),
            }),
        ),
    )
