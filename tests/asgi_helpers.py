"""Shared pieces of the ASGI protocol tests: a recorder for what an app saw,
request builders, and raw-socket reading helpers."""

from __future__ import annotations

import threading
from typing import Any, Callable

import pytest

from conftest import nothing_arrives  # noqa: F401  (shared with the native tests)

START = "http.response.start"
BODY = "http.response.body"
TEXT = [(b"content-type", b"text/plain")]


class Seen:
    """Things an app running on the server thread hands to the test."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._cond = threading.Condition()

    def add(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def wait(self, n: int = 1, timeout: float = 3.0) -> list[Any]:
        """The first ``n`` items, waiting up to ``timeout`` s for them."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._items) >= n, timeout)
            assert len(self._items) >= n, f"expected {n} item(s) from the app, got {self._items!r}"
            return list(self._items)

    @property
    def items(self) -> list[Any]:
        with self._cond:
            return list(self._items)


def start(serve: Callable[..., Any], app: Any, **config: Any) -> Any:
    config.setdefault("lifespan", "off")
    return serve(app, **config)


async def respond(send: Any, body: bytes = b"ok", status: int = 200, headers: Any = None) -> None:
    await send({"type": START, "status": status, "headers": TEXT if headers is None else headers})
    await send({"type": BODY, "body": body})


async def read_all(receive: Any, seen: Seen | None = None) -> bytes:
    """The whole request body; every message goes to ``seen``."""
    body = b""
    while True:
        message = await receive()
        if seen is not None:
            seen.add(message)
        if message["type"] != "http.request":
            return body
        body += message["body"]
        if not message["more_body"]:
            return body


def scope_recorder(seen: Seen) -> Any:
    async def app(scope, receive, send):
        seen.add(scope)
        await respond(send)
    return app


def get(path: str = "/", version: str = "1.1", extra: str = "") -> bytes:
    return f"GET {path} HTTP/{version}\r\nHost: t\r\n{extra}\r\n".encode()


def recv_until_closed(c: Any, timeout: float = 3.0) -> bytes:
    """Everything the server sends until it closes (ConnectionReset counts)."""
    c.sock.settimeout(timeout)
    data = c.buf
    c.buf = b""
    try:
        while True:
            chunk = c.sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data


@pytest.fixture(params=["on", "off"], ids=["in-place", "task"])
def eager(request: Any) -> str:
    """``asgi_eager``: run requests in place until they suspend, or a Task each."""
    return request.param
