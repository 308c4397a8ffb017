"""A raw ASGI WebSocket echo app, the workload for WebSocket servers
(fastsrv's ASGI interface, uvicorn, granian): every message goes back as
it came, text as text and binary as binary."""
from __future__ import annotations

from typing import Any


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()                                  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
            else:
                await send({"type": "websocket.send", "text": message["text"]})
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"Hello, World!"})
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
