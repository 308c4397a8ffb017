"""Starlette and FastAPI WebSocket endpoints, served alike by fastsrv and
uvicorn in tests/test_websocket_frameworks.py.

Starlette (``starlette_app``):

* ``/echo`` — a ``WebSocketEndpoint`` class: echoes text as ``echo: ...``,
  and on disconnect records the close code.
* ``/json`` — ``websocket_route``: receives JSON, answers with the keys sorted.
* ``/closer`` — accepts, sends ``closing``, closes with 4000 ``custom``.
* ``/last-code`` — sends the code of the last ``/echo`` disconnect.

FastAPI (``fastapi_app``):

* ``/items/{item_id}`` — a path parameter, a query parameter and a
  dependency; echoes text with them until ``WebSocketDisconnect``.
* ``/guarded`` — a dependency that closes with 1008 before accepting when
  the ``token`` query parameter is missing (the handshake is refused: 403).
"""

from __future__ import annotations

from typing import Optional

from fastapi import Depends, FastAPI, Query, WebSocket, WebSocketDisconnect, status
from starlette.applications import Starlette
from starlette.endpoints import WebSocketEndpoint
from starlette.routing import WebSocketRoute

last_codes: list[int] = []


class Echo(WebSocketEndpoint):
    encoding = "text"

    async def on_receive(self, websocket, data):
        await websocket.send_text(f"echo: {data}")

    async def on_disconnect(self, websocket, close_code):
        last_codes.append(close_code)


async def json_route(websocket):
    await websocket.accept()
    data = await websocket.receive_json()
    await websocket.send_json({"keys": sorted(data)})
    await websocket.close()


async def closer(websocket):
    await websocket.accept()
    await websocket.send_text("closing")
    await websocket.close(code=4000, reason="custom")


async def last_code(websocket):
    await websocket.accept()
    await websocket.send_text(str(last_codes[-1] if last_codes else None))
    await websocket.close()


starlette_app = Starlette(routes=[
    WebSocketRoute("/echo", Echo),
    WebSocketRoute("/json", json_route),
    WebSocketRoute("/closer", closer),
    WebSocketRoute("/last-code", last_code),
])


fastapi_app = FastAPI()


async def prefix() -> str:
    return "item"


@fastapi_app.websocket("/items/{item_id}")
async def items(websocket: WebSocket, item_id: int, q: Optional[str] = None, p: str = Depends(prefix)):
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(f"{p} {item_id} q={q}: {text}")
    except WebSocketDisconnect as exc:
        last_codes.append(exc.code)


async def require_token(websocket: WebSocket, token: Optional[str] = Query(None)) -> str:
    if token is None:
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
        raise WebSocketDisconnect(code=status.WS_1008_POLICY_VIOLATION)
    return token


@fastapi_app.websocket("/guarded")
async def guarded(websocket: WebSocket, token: str = Depends(require_token)):
    await websocket.accept()
    await websocket.send_text(f"token {token}")
    await websocket.close()
