"""A raw ASGI app with the demo app's routes, for the rolling-restart check
(``bench/rolling_restart.py``) on servers other than fastsrv:

* ``GET /`` — ``Hello, World!``
* ``GET /sleep?ms=N`` — answers after N milliseconds
* ``GET /readyz`` — ``200 ready`` for as long as the process serves (the
  server has no readiness flip of its own)

It speaks the lifespan protocol so that the server logs no complaint.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

from bench.peers.asgi_hello import lifespan

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """The ASGI 3 entry point."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/":
        await _answer(send, 200, b"Hello, World!")
    elif path == "/readyz":
        await _answer(send, 200, b"ready\n")
    elif path == "/sleep":
        try:
            ms = int(parse_qs(scope["query_string"].decode("latin-1")).get("ms", ["0"])[0])
        except ValueError:
            await _answer(send, 400, b"ms must be an integer\n")
            return
        await asyncio.sleep(ms / 1000)
        await _answer(send, 200, f"slept {ms} ms\n".encode())
    else:
        await _answer(send, 404, b"not found\n")
