"""The cache-hit fast path: an analytics answer this process holds, served before Litestar.

A cache hit is the API's most frequent request and its cheapest answer (bytes already
encoded), yet Litestar's request machinery (routing, the middleware stack, dependency
resolution, the response object) cost about 3/4 of its CPU. :func:`serve_cached_read`
answers the requests that are certainly hits with the very bytes and headers the route
would send, and hands every other request to Litestar untouched:

* ``GET /v1/portfolios/{id}/{kind}`` with no query string, for the kinds of
  :data:`api.portfolios.schemas.ANALYTICS_SCHEMAS` (a query — ``?matrix=``,
  ``?scenario=``, a typo to be refused — goes to the route);
* exactly one ``Authorization: Bearer <token>`` header whose token the app's token cache
  holds after its usual validation (``BearerTokenAuth``'s read rule: an unknown or revoked
  token goes to the route, which asks the database and answers 401);
* an answer of that owner in the analytics memo after its usual validation
  (:func:`core.services.portfolios.remembered_analytics`: the route's own first step).

Anything unexpected on the way (a validation that fails, the database down) also goes to
the route, which does the same steps again and answers as it always does. The test
``tests/api/test_cached_reads.py`` compares status, headers and body of every kind with
the route's answer.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from api.auth import TokenCache
from api.portfolios.schemas import ANALYTICS_SCHEMAS, analytics_json
from core.services import portfolios as svc
from core.services.users import token_hash

log = logging.getLogger(__name__)

_PATH = re.compile(r"/v1/portfolios/([^/]+)/(" + "|".join(
    re.escape(k) for k in ANALYTICS_SCHEMAS) + ")")
_JSON = b"application/json"


def _bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of the request's single ``Authorization: Bearer`` header, else None."""
    found = [v for k, v in headers if k.lower() == b"authorization"]
    if len(found) != 1:
        return None
    scheme, _, token = found[0].decode("latin-1").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def serve_cached_read(state: Any, scope: dict[str, Any], send: Any) -> bool:
    """Answer ``scope`` from memory when it is a certain analytics cache hit (see the
    module docstring); returns whether it did (False: nothing was sent, Litestar must
    answer). ``state``: the app's state (its engine and token cache)."""
    if (scope["type"] != "http" or scope.get("method") != "GET" or scope.get("query_string")
            or scope.get("root_path")):
        return False
    match = _PATH.fullmatch(scope.get("path", ""))
    if match is None:
        return False
    token = _bearer_token(scope.get("headers", []))
    engine = getattr(state, "engine", None)
    cache: TokenCache | None = getattr(state, "token_cache", None)
    if token is None or engine is None or cache is None:
        return False
    portfolio_id, kind = match.groups()
    try:
        await cache.ensure_valid(engine)
        user = cache.get(token_hash(token))
        if user is None:
            return False
        answer = await svc.remembered_analytics(engine, user.id, portfolio_id, kind)
        if answer is None:
            return False
        body = analytics_json(answer, ANALYTICS_SCHEMAS[kind])
    except Exception:  # the route does the same steps again and answers the error
        log.debug("cache-hit fast path declined %s", scope.get("path"), exc_info=True)
        return False
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", _JSON),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
    return True
