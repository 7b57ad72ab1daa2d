"""The one exception handler: every error leaves the API as RFC 9457 problem details
(``application/problem+json``) with the extension members ``error``, ``message``, ``field``.

``core.errors.AppError`` maps by its ``status_hint``; Litestar's validation errors are
reshaped to name the field; Litestar's HTTP errors (unknown route, method, body too
large) keep their status; anything else is a 500 with a generic message and a logged
traceback (no input should ever get there).
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from api.schemas import PROBLEM_JSON, ErrorBody
from core.errors import AppError

log = logging.getLogger("api.errors")

CODES = {
    400: "invalid_input", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
    415: "unsupported_media_type", 429: "rate_limited", 500: "internal_error",
    503: "not_ready",
}
DESCRIPTIONS = {
    400: "The input is malformed or breaks a rule; `field` names it.",
    401: "Missing, malformed or unknown bearer token.",
    403: "Authenticated, but the route needs the admin role.",
    404: "No such resource (or it belongs to another user).",
    409: "The request clashes with existing data (e.g. a duplicate portfolio name).",
    413: "The request body is larger than the limit (1 MiB).",
    415: "The body is not sent as `Content-Type: application/json`.",
    429: "A per-user limit would be exceeded (the message names it).",
    503: "The data the answer needs is not there yet (no prices stored).",
}
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(.+)`")
_MISSING_FIELD = re.compile(r"Object missing required field `(.+)`")
_MISSING_PARAM = re.compile(r"Missing required (query|path|header|cookie) parameter '([^']+)'")
_CLEARER = {
    "Invalid RFC3339 encoded date": "not a date (expected YYYY-MM-DD)",
    "Invalid RFC3339 encoded datetime": "not a date-time (expected ISO 8601)",
    "Invalid decimal string": "not a decimal number",
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _join(path: str, name: str) -> str:
    return name if path in ("", "data", "body") else f"{path}.{name}"


def _validation(exc: ValidationException) -> tuple[str, str | None]:
    """(message, field) of Litestar's validation error: the first problem it lists."""
    extra: Any = exc.extra
    if not isinstance(extra, list) or not extra or not isinstance(extra[0], dict):
        detail = str(exc.detail)
        if m := _MISSING_PARAM.search(detail):
            return f"{m.group(2)}: missing required {m.group(1)} parameter", m.group(2)
        return detail, None
    first = extra[0]
    key = str(first.get("key") or "")
    message = str(first.get("message") or exc.detail)
    if m := _UNKNOWN_FIELD.fullmatch(message):
        key, message = _join(key, m.group(1)), "unknown field"
    elif m := _MISSING_FIELD.fullmatch(message):
        key, message = _join(key, m.group(1)), "is required"
    elif key == "data":
        key = "body"
        if message == "'data'":
            message = "a request body is required"
    message = _CLEARER.get(message, message)
    if not key:
        return message, None
    return f"{key}: {message}", key


def _problem(status: int, code: str, message: str, field: str | None,
             request: Request[Any, Any, Any] | None) -> ErrorBody:
    return ErrorBody(type="about:blank", title=HTTPStatus(status).phrase, status=status,
                     detail=message, instance=request.url.path if request is not None else "",
                     error=code, message=message, field=field)


def error_body(exc: Exception, request: Request[Any, Any, Any] | None = None
               ) -> tuple[int, ErrorBody]:
    """The status and problem-details body for ``exc``."""
    if isinstance(exc, AppError):
        status = exc.status_hint
        code = CODES.get(status) or _snake(HTTPStatus(status).name)
        return status, _problem(status, code, exc.message, exc.field, request)
    if isinstance(exc, ValidationException):
        message, field = _validation(exc)
        return 400, _problem(400, "invalid_input", message, field, request)
    if isinstance(exc, HTTPException):
        status = exc.status_code
        message = str(exc.detail or HTTPStatus(status).phrase)
        field = None
        if status == 404 and request is not None:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif status == 405 and request is not None:
            message = f"method {request.method} is not allowed on {request.url.path}"
        elif status == 413:
            message, field = "body: the request body is larger than 1 MiB", "body"
        elif status == 415:
            field = "content-type"
        elif status == 400 and message.startswith("body:"):
            field = "body"
        elif status == 400 and isinstance(exc.extra, dict) and "field" in exc.extra:
            field = str(exc.extra["field"])
        elif status >= 500:
            message = "internal error: the server could not answer this request"
        code = CODES.get(status) or _snake(HTTPStatus(status).name)
        return status, _problem(status, code, message, field, request)
    return 500, _problem(500, "internal_error",
                         "internal error: the server could not answer this request", None,
                         request)


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """The app's only exception handler (registered for ``Exception``)."""
    status, body = error_body(exc, request)
    if status >= 500 and not isinstance(exc, AppError):
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    headers = {"WWW-Authenticate": 'Bearer realm="factorflow"'} if status == 401 else None
    extra_headers = getattr(exc, "headers", None) if isinstance(exc, HTTPException) else None
    if extra_headers:
        headers = {**(headers or {}), **extra_headers}
    return Response(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI error responses of a route (every one has the :class:`ErrorBody` shape)."""
    return {c: ResponseSpec(data_container=ErrorBody, description=DESCRIPTIONS[c],
                            generate_examples=False, media_type=PROBLEM_JSON) for c in codes}
