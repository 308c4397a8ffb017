"""A raw ASGI app for the shutdown benchmark: ``GET /`` answers at once,
``GET /slow?ms=N`` after N milliseconds."""
from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b"Hello, World!"
    if scope["path"] == "/slow":
        ms = int(parse_qs(scope["query_string"].decode()).get("ms", ["1000"])[0])
        await asyncio.sleep(ms / 1000)
        body = b"slow"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
