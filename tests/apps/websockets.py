"""WebSocket apps for the tests: the same endpoints as a native fastsrv App
and as a raw ASGI app.

* ``/echo`` — accepts (choosing ``chat`` when offered), echoes every
  message as it came (text as text, binary as binary) until the client closes.
* ``/close/{code}`` — accepts, then closes with ``code`` and reason ``bye``.
* ``/refuse`` — closes before accepting: the handshake is answered 403.
* ``/raise`` — raises before accepting: 500.
* ``/deny`` — (ASGI) the denial extension: a 401 with a body.
* ``/headers`` — accepts with an extra ``x-extra: yes`` header, then sends
  the query string and the client's ``x-probe`` header back.
* ``/goodbye`` — accepts; at the server's graceful shutdown sends
  ``goodbye`` and closes with 1001 itself.
* ``/forever`` — accepts and never reads nor closes (the server must cut it).
* ``/flood`` — accepts, then sends 64 KiB binary messages as fast as the
  client reads them (``send`` waits while the client does not).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastsrv import App, WebSocketDisconnect

native = App()


@native.websocket("/echo")
async def echo(ws):
    await ws.accept(subprotocol="chat" if "chat" in ws.subprotocols else None)
    async for message in ws:
        if isinstance(message, str):
            await ws.send_text(message)
        else:
            await ws.send_bytes(message)


@native.websocket("/close/{code:int}")
async def close_with(ws):
    await ws.accept()
    await ws.close(ws.params["code"], "bye")


@native.websocket("/refuse")
async def refuse(ws):
    await ws.close()


@native.websocket("/raise")
async def fail(ws):
    raise RuntimeError("refused by raising")


@native.websocket("/headers")
async def headers(ws):
    await ws.accept(headers=[("x-extra", "yes")])
    await ws.send_text(f"{ws.query.get('q', '')}|{ws.headers.get('x-probe', '')}")
    try:
        await ws.receive()
    except WebSocketDisconnect:
        pass


@native.websocket("/goodbye")
async def goodbye(ws):
    await ws.accept()
    await ws.wait_shutdown()
    await ws.send_text("goodbye")
    await ws.close(1001, "going away")


@native.websocket("/forever")
async def forever(ws):
    await ws.accept()
    await asyncio.Event().wait()


@native.websocket("/flood")
async def flood(ws):
    await ws.accept()
    chunk = b"x" * 65536
    while True:
        await ws.send_bytes(chunk)


@native.get("/")
def index(request):
    return "hello"


async def asgi(scope: dict, receive: Any, send: Any) -> None:
    """The raw ASGI twin of ``native``."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"hello"})
        return
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    path = scope["path"]
    if path == "/echo":
        await send({"type": "websocket.accept", "subprotocol": "chat" if "chat" in scope["subprotocols"] else None})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
    elif path.startswith("/close/"):
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": int(path.rsplit("/", 1)[1]), "reason": "bye"})
    elif path == "/refuse":
        await send({"type": "websocket.close"})
    elif path == "/raise":
        raise RuntimeError("refused by raising")
    elif path == "/deny":
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]})
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"entry"})
    elif path == "/headers":
        await send({"type": "websocket.accept", "headers": [(b"x-extra", b"yes")]})
        probe = dict(scope["headers"]).get(b"x-probe", b"").decode()
        await send({"type": "websocket.send", "text": f"{scope['query_string'].decode()[2:]}|{probe}"})
        await receive()
    elif path == "/goodbye":
        await send({"type": "websocket.accept"})
        await scope["extensions"]["fastsrv.shutdown"]["signal"].wait()
        await send({"type": "websocket.send", "text": "goodbye"})
        await send({"type": "websocket.close", "code": 1001, "reason": "going away"})
    elif path == "/forever":
        await send({"type": "websocket.accept"})
        await asyncio.Event().wait()
    elif path == "/flood":
        await send({"type": "websocket.accept"})
        chunk = b"x" * 65536
        while True:
            await send({"type": "websocket.send", "bytes": chunk})
    else:
        await send({"type": "websocket.close", "code": 1008})
