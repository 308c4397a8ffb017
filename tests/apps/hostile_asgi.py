"""The hostile-client tests' and ``bench/soak.py``'s app as raw ASGI 3:
``fastsrv run tests.apps.hostile_asgi:app``.

The same routes, answers and payloads as :mod:`tests.apps.hostile` (the
native app), so that every hostile test and the soak run unchanged against
either.  ``/sync-count`` has no sync handler to mirror: the app reads the
whole body through ``receive`` before answering, which is what the core does
for a native sync handler.
"""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any, List
from urllib.parse import parse_qs

from fastsrv._core import debug_counters

from .hostile import fresh_chunk, payload

TEXT = [(b"content-type", b"text/plain; charset=utf-8")]


async def _respond(send: Any, body: bytes, status: int = 200, headers: Any = TEXT) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _body_pieces(receive: Any) -> List[bytes]:
    """The request body as the pieces ``receive`` handed over (a list, so
    that a body of many small pieces is not copied once per piece)."""
    pieces = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return pieces
        pieces.append(message.get("body", b""))
        if not message.get("more_body", False):
            return pieces


def _query(scope: Any, name: str, default: str) -> int:
    return int(parse_qs(scope["query_string"].decode("latin-1")).get(name, [default])[0])


async def index(scope: Any, receive: Any, send: Any) -> None:
    await _respond(send, b"ok")


async def large(scope: Any, receive: Any, send: Any) -> None:
    """``?kb=N`` bytes of text (default 1024 kB, at most 64 MB), in one
    message; ``&fresh=1`` makes a new body rather than sending the cached one."""
    body = payload(min(_query(scope, "kb", "1024"), 65536) * 1024)
    await _respond(send, bytes(bytearray(body)) if _query(scope, "fresh", "0") else body)


async def echo(scope: Any, receive: Any, send: Any) -> None:
    await _respond(send, b"".join(await _body_pieces(receive)))


async def count(scope: Any, receive: Any, send: Any) -> None:
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await _respond(send, str(size).encode())


async def stream(scope: Any, receive: Any, send: Any) -> None:
    """``?chunks=N`` messages of 16 kB (default 1000), ``&ms=M`` apart
    (default 10); each ``send`` waits while the client is not reading."""
    pause = _query(scope, "ms", "10") / 1000
    await send({"type": "http.response.start", "status": 200, "headers": TEXT})
    for _ in range(_query(scope, "chunks", "1000")):
        await send({"type": "http.response.body", "body": fresh_chunk(), "more_body": True})
        await asyncio.sleep(pause)
    await send({"type": "http.response.body", "body": b""})


async def slow(scope: Any, receive: Any, send: Any) -> None:
    await asyncio.sleep(_query(scope, "ms", "100") / 1000)
    await _respond(send, b"slow")


async def counters(scope: Any, receive: Any, send: Any) -> None:
    """The core's object counters, after a collection (soak checks)."""
    gc.collect()
    await _respond(send, json.dumps(debug_counters()).encode(), headers=[(b"content-type", b"application/json")])


async def sync_count(scope: Any, receive: Any, send: Any) -> None:
    """The whole body read first, then its length."""
    await _respond(send, str(sum(map(len, await _body_pieces(receive)))).encode())


async def late_count(scope: Any, receive: Any, send: Any) -> None:
    """Reads its body only after ``?ms=`` milliseconds (default 1000)."""
    await asyncio.sleep(_query(scope, "ms", "1000") / 1000)
    await _respond(send, str(sum(map(len, await _body_pieces(receive)))).encode())


ROUTES = {
    "/": index, "/large": large, "/echo": echo, "/count": count, "/stream": stream, "/slow": slow,
    "/debug/counters": counters, "/sync-count": sync_count, "/late-count": late_count,
}


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return                  # no lifespan: the server goes on without it
    route = ROUTES.get(scope["path"])
    if route is None:
        await _respond(send, b"not found", 404)
    else:
        await route(scope, receive, send)
