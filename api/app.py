"""The Litestar application: ``create_app()``.

Routes live under ``/v1`` (bearer token) and ``/health`` (open); the OpenAPI document is
served at ``/schema/openapi.json``. One pooled engine per app, created at start-up and
disposed at shutdown; start-up also resumes the onboarding queue.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import msgspec
from litestar import Litestar, Request, Router
from litestar._openapi.schema_generation import SchemaCreator
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import ClientException, HTTPException
from litestar.logging.config import LoggingConfig
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition
from sqlalchemy.ext.asyncio import AsyncEngine

from api.admin.controllers import AdminController
from api.auth import SECURITY_SCHEME, BearerTokenAuth, TokenCache, provide_user
from api.cached_reads import serve_cached_read
from api.errors import handle_exception
from api.health import HealthController
from api.launch import flows_around_api
from api.portfolios.controllers import PortfolioController, PositionController
from api.schemas import PROBLEM_JSON, decode_exact_decimal, is_exact_decimal
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
MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a JSON body may have (the schemas need 3)."""
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


def _too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``body`` nests arrays / objects deeper than ``limit`` (strings skipped).
    Checked before decoding: the decoder and every later step recurse per level."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for b in _BRACKETS.findall(_JSON_STRING.sub(b"", body)):
        if b in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json"))


class ExactDecimalRequest(Request[Any, Any, Any]):
    """JSON bodies decoded with every non-integer number as an exact ``Decimal`` (Litestar's
    default reads them as binary floats before converting: 0.1 + digits would drift); a body
    sent without ``Content-Type: application/json`` is 415, one nested deeper than
    :data:`MAX_JSON_DEPTH` a 400 naming ``body``."""

    async def json(self) -> Any:
        cached = self.scope.get("_exact_json", _MISSING)
        if cached is not _MISSING:
            return cached
        body = await self.body()
        media_type = self.content_type[0].lower()
        if body and not _is_json(media_type):
            raise HTTPException(
                status_code=415,
                detail=f"content-type: send the body as application/json (got "
                       f"{media_type or 'no Content-Type'})")
        if _too_deep(body):
            raise ClientException(f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            value = _EXACT.decode(body or b"null")
        except msgspec.DecodeError as exc:
            raise ClientException(f"body: malformed JSON ({exc})") from None
        except RecursionError:
            raise ClientException(f"body: JSON nested deeper than {MAX_JSON_DEPTH} "
                                  "levels") from None
        self.scope["_exact_json"] = value  # type: ignore[typeddict-unknown-key]
        return value


_MISSING = object()


class ExactDecimalSchemas(OpenAPISchemaPlugin):
    """The OpenAPI schema of the request's exact decimal kinds (pattern or bounded number)."""

    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return is_exact_decimal(value)

    def to_openapi_schema(self, field_definition: FieldDefinition,
                          schema_creator: SchemaCreator) -> Schema:
        kind = field_definition.annotation
        doc = kind.json_schema()
        return Schema(
            any_of=[Schema(**_spec(x)) for x in doc["anyOf"]],
            description=doc["description"], examples=doc["examples"])


def _spec(d: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema dict as :class:`Schema` keyword arguments."""
    names = {"multipleOf": "multiple_of", "exclusiveMaximum": "exclusive_maximum",
             "exclusiveMinimum": "exclusive_minimum"}
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k == "type":
            out["type"] = OpenAPIType(v)
        elif k == "not":
            out["schema_not"] = Schema(**_spec(v))
        else:
            out[names.get(k, k)] = v
    return out


def _finish_document(app: Litestar) -> None:
    """What the route declarations cannot say, added to the OpenAPI document: request
    bodies that reject unknown fields say ``additionalProperties: false``; routes that read
    a JSON body document the 415 they answer to another content type."""
    from api.errors import DESCRIPTIONS

    doc = app.openapi_schema
    closed = {cls.__name__ for cls in _struct_classes()
              if cls.__struct_config__.forbid_unknown_fields}
    for name, schema in (doc.components.schemas or {}).items():
        if name in closed and isinstance(schema, Schema):
            schema.additional_properties = False
    optional_body = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            data = inspect.signature(handler.fn).parameters.get("data")
            if data is not None and data.default is None and handler.operation_id:
                optional_body.add(handler.operation_id)
    error_ref = Reference(ref="#/components/schemas/ErrorBody")
    for item in (doc.paths or {}).values():
        for method in ("post", "put", "patch"):
            op = getattr(item, method, None)
            body = getattr(op, "request_body", None)
            if op is None or not isinstance(body, RequestBody):
                continue
            if op.operation_id in optional_body:
                body.required = False
            if "application/json" in (body.content or {}) and op.responses is not None:
                op.responses.setdefault("415", OpenAPIResponse(
                    description=DESCRIPTIONS[415],
                    content={PROBLEM_JSON: OpenAPIMediaType(schema=error_ref)}))


async def _reject_unknown_query(request: Request[Any, Any, Any]) -> None:
    """A query parameter the route does not declare is a 400 naming it (a typo such as
    ``?limt=5`` must not be silently ignored)."""
    if not request.scope.get("query_string") or request.method == "OPTIONS":
        return
    handler = request.scope["route_handler"]
    known = getattr(handler, "_known_query", None)
    if known is None:
        try:
            known = frozenset(inspect.signature(handler.fn).parameters)
        except (TypeError, ValueError):  # not a plain function: nothing to check against
            return
        handler._known_query = known
    for name in request.query_params:
        if name not in known:
            raise ClientException(f"{name or '(empty)'}: unknown query parameter",
                                  extra={"field": name})


_PARAM = re.compile(r"\{[^}]+\}")


def _allow_map(app: Litestar) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    """(path regex, methods) of every route of ``app``."""
    table: dict[str, set[str]] = {}
    for route in app.routes:
        methods = getattr(route, "methods", None)
        if not methods:
            continue
        pattern = "^" + _PARAM.sub("[^/]+", re.escape(route.path).replace(r"\{", "{")
                                   .replace(r"\}", "}")) + "/?$"
        table.setdefault(pattern, set()).update(str(m).upper() for m in methods)
    # static paths first: /v1/portfolios/import is that route, not /v1/portfolios/{id}
    return [(re.compile(p), frozenset(m - {"HEAD"} | {"OPTIONS"}))
            for p, m in sorted(table.items(), key=lambda kv: "[^/]+" in kv[0])]


async def _complete_allow(message: Any, scope: Any) -> None:
    """``Allow`` on OPTIONS and 405 answers lists every method of the resource: Litestar
    lists only those of the handler group that matched (``OPTIONS /v1/portfolios/{id}``
    said ``DELETE, OPTIONS`` although GET and PATCH are served there too)."""
    if message["type"] != "http.response.start" or scope.get("type") != "http":
        return
    if scope.get("method") != "OPTIONS" and message.get("status") != 405:
        return
    app = scope["litestar_app"]
    table = app.state.get("_allow_map")
    if table is None:
        table = app.state["_allow_map"] = _allow_map(app)
    path = scope.get("path", "")
    methods: set[str] = set()
    for pattern, allowed in table:
        if pattern.match(path):
            if "[^/]+" not in pattern.pattern:
                methods = set(allowed)
                break
            methods |= allowed
    if not methods:
        return
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
    headers.append((b"allow", ", ".join(sorted(methods)).encode()))
    message["headers"] = headers


def _struct_classes() -> list[type[msgspec.Struct]]:
    out, todo = [], list(msgspec.Struct.__subclasses__())
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def provide_engine(state: State) -> AsyncEngine:
    """The ``engine`` dependency: the app's pooled engine."""
    return state.engine  # type: ignore[no-any-return]


class FactorflowApp(Litestar):
    """Litestar with the cache-hit fast path (:mod:`api.cached_reads`) in front."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and await serve_cached_read(self.state, scope, send):
            return
        await super().__call__(scope, receive, send)


def create_app(database_url: str | None = None) -> Litestar:
    """The factorflow API over ``database_url`` (default: the configured database)."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(database_url or get_settings().resolved_database_url,
                               pooled=True)
        app.state.engine = engine
        app.state.token_cache = TokenCache()
        try:
            async with flows_around_api(engine):
                yield
        finally:
            await engine.dispose()

    v1 = Router(
        path="/v1",
        route_handlers=[PortfolioController, PositionController, SymbolController,
                        AdminController, UniverseController],
        middleware=[DefineMiddleware(BearerTokenAuth)],
        security=[{SECURITY_SCHEME: []}],
    )
    app = FactorflowApp(
        route_handlers=[HealthController, v1],
        lifespan=[lifespan],
        dependencies={
            "engine": Provide(provide_engine, sync_to_thread=False),
            "user": Provide(provide_user, sync_to_thread=False),
        },
        exception_handlers={Exception: handle_exception},
        request_class=ExactDecimalRequest,
        type_decoders=[(is_exact_decimal, decode_exact_decimal)],
        plugins=[ExactDecimalSchemas()],
        request_max_body_size=MAX_BODY_BYTES,
        before_send=[_complete_allow],
        before_request=_reject_unknown_query,
        logging_config=LOGGING,
        openapi_config=OpenAPIConfig(
            title="factorflow API",
            version="1.0.0",
            path="/schema",
            description=(
                "Portfolios, positions, snapshots and risk analytics over nightly symbol "
                "data. Authenticate with `Authorization: Bearer <token>` (`factorflow users "
                "create`). Exact amounts are decimal strings of plain ASCII digits (or "
                "JSON numbers, read exactly) within each field's pattern and bounds; dates "
                "are ISO 8601; JSON bodies need `Content-Type: application/json` (else "
                "415). Every error is RFC 9457 problem details (`application/problem+json`: "
                "`type`, `title`, `status`, `detail`, `instance`) with the extension members "
                "`error` (a stable code), `message` and `field` (the input at fault)."
            ),
            components=Components(security_schemes={
                SECURITY_SCHEME: SecurityScheme(type="http", scheme="bearer",
                                                description="A user's API token."),
            }),
        ),
    )
    _finish_document(app)
    return app
