"""Starlette and FastAPI WebSocket endpoints (tests/apps/asgi_ws_frameworks.py)
answer on fastsrv as they do on uvicorn (``--ws websockets``): the same
conversation with each, the same messages and close codes back."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import ROOT, ProcessServer
from ws_helpers import CLOSE, TEXT, WSClient, close_payload, frame

pytest.importorskip("websockets", reason="uvicorn's WebSocket support needs the websockets package")

APPS = {"starlette": "tests.apps.asgi_ws_frameworks:starlette_app",
        "fastapi": "tests.apps.asgi_ws_frameworks:fastapi_app"}


class Uvicorn(ProcessServer):
    READY = b"Uvicorn running on"

    def __init__(self, app: str) -> None:
        self.app = app
        super().__init__([], env={"PYTHONPATH": ROOT})

    def command(self, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools", "--ws", "websockets",
                "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "info", "--no-access-log",
                "--lifespan", "off", self.app]


@pytest.fixture(scope="module", params=sorted(APPS))
def pair(request):
    app = APPS[request.param]
    servers = [ProcessServer([app, "--lifespan", "off"], env={"PYTHONPATH": ROOT}), Uvicorn(app)]
    try:
        for s in servers:
            s.wait_ready(20)
        yield request.param, servers
    finally:
        for s in servers:
            s.kill()


def transcript(port: int, path: str, messages: list, close: int | None = 1000) -> list:
    """What a client sees: the handshake's status, each message, the close."""
    try:
        c = WSClient(port, path)
    except ConnectionError as exc:
        return [("refused", str(exc).split("'")[1].split(" ")[1])]
    seen: list = ["101"]
    for message in messages:
        c.send(frame(TEXT, message.encode()))
        f = c.read_message()
        if f.opcode == CLOSE:
            seen.append(("close", f.close_code, f.payload[2:].decode()))
            c.shutdown()
            return seen
        seen.append(("text", f.text))
    if close is not None:
        c.send(frame(CLOSE, close_payload(close)))
    c.sock.settimeout(3)
    while True:
        try:
            f = c.read_message()
        except (EOFError, ConnectionError, OSError):
            seen.append("eof")
            break
        if f.opcode == CLOSE:
            seen.append(("close", f.close_code, f.payload[2:].decode()))
            break
        seen.append(("text", f.text))
    c.shutdown()
    return seen


CASES = {
    "starlette": [
        ("/echo", ["a", "b"], 1000),
        ("/echo", ["x"], 4321),
        ("/last-code", [], None),
        ("/json", [json.dumps({"b": 1, "a": 2})], None),
        ("/closer", [], None),
        ("/nowhere", [], None),
    ],
    "fastapi": [
        ("/items/7?q=z", ["hi", "there"], 1000),
        ("/items/notanint", [], None),
        ("/guarded", [], None),
        ("/guarded?token=t", [], None),
    ],
}


def test_endpoints_answer_as_on_uvicorn(pair):
    name, (fastsrv, uvicorn) = pair
    for path, messages, close in CASES[name]:
        mine = transcript(fastsrv.port, path, messages, close)
        theirs = transcript(uvicorn.port, path, messages, close)
        assert mine == theirs, f"{name} {path}: fastsrv {mine} != uvicorn {theirs}"
