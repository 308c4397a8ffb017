"""The backend of the WebSocket rolling restart (bench/ws_rolling_restart.py),
an ASGI app for fastsrv, uvicorn and granian alike: ``GET /readyz`` answers
200 (fastsrv answers it itself with ``--readiness-path``, and turns it to
503 during its shutdown delay), and a WebSocket on ``/`` acknowledges every
text message ``N:payload`` with ``ack:N``."""
from __future__ import annotations

from typing import Any


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ready\n"})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            seq = (message.get("text") or "").split(":", 1)[0]
            await send({"type": "websocket.send", "text": f"ack:{seq}"})
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
