"""A bare ASGI app serving recorded responses: the floor of ``bench/api.py``'s cache hits.

``FACTORFLOW_BENCH_RESPONSES`` names a JSON file mapping each path to ``[status, content
type, body (base64)]``, recorded from the API; every request of a recorded path gets those
exact bytes, anything else a 404. No routing, no authentication, no middleware: what is left
is uvicorn, the event loop and the loopback, the cost any ASGI app on this machine pays.
Served by the same ``uvicorn.run`` settings as ``factorflow api``.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

_responses: dict[str, tuple[int, list[tuple[bytes, bytes]], bytes]] = {}


def _load() -> None:
    with open(os.environ["FACTORFLOW_BENCH_RESPONSES"], encoding="utf-8") as f:
        for path, (status, content_type, body) in json.load(f).items():
            raw = base64.b64decode(body)
            _responses[path] = (status, [(b"content-type", content_type.encode()),
                                         (b"content-length", str(len(raw)).encode())], raw)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI callable: lifespan (loads the responses) and HTTP (serves them)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _load()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    status, headers, body = _responses.get(
        scope["path"], (404, [(b"content-length", b"0")], b""))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
