"""A raw ASGI 3 "Hello, World!" app, the workload for ASGI servers (uvicorn, granian).

No framework: the app itself costs close to nothing, so what a benchmark of
it measures is the ASGI server.

    uvicorn --loop uvloop --http httptools --no-access-log --log-level warning \\
        bench.peers.asgi_hello:app              # from the repository root
    uvicorn --app-dir /path/to/repo/bench/peers asgi_hello:app   # from anywhere
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b"Hello, World!"
START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(BODY)).encode()),
    ],
}
BODY_MESSAGE: Message = {"type": "http.response.body", "body": BODY}


async def lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge startup and shutdown; there is nothing to set up."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer every HTTP request with 200 text/plain "Hello, World!"."""
    if scope["type"] == "http":
        await send(START)
        await send(BODY_MESSAGE)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
