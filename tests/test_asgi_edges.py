"""ASGI edge cases: apps that reach across connections, wait twice, need
their Task from the first line, or stop half-way through a response.

Every test runs with requests in place (``asgi_eager="on"``), the mode in
which these cases are hardest; several run in both modes.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import sys
import time
from http import HTTPStatus
from typing import Any

import pytest

from fastsrv._core import debug_counters

START = "http.response.start"
BODY = "http.response.body"
MODES = ["on", "off"]
needs_311 = pytest.mark.skipif(sys.version_info < (3, 11),
                               reason="asyncio.timeout and TaskGroup are new in Python 3.11")


def recv_for(sock: socket.socket, seconds: float) -> bytes:
    """Everything that arrives within ``seconds`` (or until the peer closes)."""
    sock.settimeout(0.05)
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return out + b"<RESET>"
        if not chunk:
            return out + b"<EOF>"
        out += chunk
    return out


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


@pytest.mark.parametrize("eager", MODES)
def test_an_app_sending_on_another_connection_never_mixes_their_bytes(serve, eager: str) -> None:
    subscribers: list[Any] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["path"] == "/sub":
            await send({"type": START, "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
            await send({"type": BODY, "body": b"data: hello\n\n", "more_body": True})
            subscribers.append(send)
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        # the publisher is answered, then its app writes to every subscriber
        await send({"type": START, "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": BODY, "body": b"FOR-THE-PUBLISHER-ONLY"})
        for sub in list(subscribers):
            await sub({"type": BODY, "body": b"data: event\n\n", "more_body": True})

    port = serve(app, lifespan="off", asgi_eager=eager).port
    b = connect(port)
    b.sendall(b"GET /sub HTTP/1.1\r\nHost: t\r\n\r\n")
    assert b"data: hello" in recv_for(b, 0.5)
    a = connect(port)
    a.sendall(b"POST /pub HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
    got_a = recv_for(a, 0.5)
    got_b = recv_for(b, 0.5)
    assert got_a.startswith(b"HTTP/1.1 200 OK") and got_a.endswith(b"FOR-THE-PUBLISHER-ONLY"), got_a
    assert b"PUBLISHER" not in got_b and b"HTTP/1.1" not in got_b, got_b
    assert got_b == b"d\r\ndata: event\n\n\r\n", got_b
    a.close()
    b.close()


@pytest.mark.parametrize("eager", MODES)
def test_no_100_continue_inside_a_response_already_started(serve, eager: str) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": START, "status": 200, "headers": []})
        await send({"type": BODY, "body": b"reading...\n", "more_body": True})
        message = await receive()
        await send({"type": BODY, "body": b"got %d bytes\n" % len(message.get("body", b""))})

    s = connect(serve(app, lifespan="off", asgi_eager=eager).port)
    s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    first = recv_for(s, 0.3)
    assert first.startswith(b"HTTP/1.1 200 OK"), first
    s.sendall(b"hello")
    rest = recv_for(s, 0.5)
    assert b"100 Continue" not in first + rest, first + rest
    assert b"got 5 bytes" in rest, rest
    s.close()


@pytest.mark.parametrize("eager", MODES)
def test_a_cancelled_disconnect_poll_does_not_strand_another_waiter(serve, eager: str) -> None:
    woken: list[str] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()                                  # the (empty) body

        async def watcher() -> None:
            if (await receive())["type"] == "http.disconnect":
                woken.append("watcher")

        task = asyncio.ensure_future(watcher())
        await asyncio.sleep(0.01)
        # a poll, as Starlette's Request.is_disconnected() does: cancelled at once
        poll = asyncio.ensure_future(receive())
        await asyncio.sleep(0)
        poll.cancel()
        await asyncio.wait({task}, timeout=3)
        woken.append("app")

    s = connect(serve(app, lifespan="off", asgi_eager=eager).port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.1)
    s.close()
    deadline = time.monotonic() + 3
    while "app" not in woken and time.monotonic() < deadline:
        time.sleep(0.02)
    assert woken == ["watcher", "app"]


@needs_311
def test_stdlib_code_that_needs_its_task_works_in_place(serve) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        assert asyncio.current_task() is not None
        async with asyncio.timeout(5):
            message = await receive()
        results: list[int] = []
        async with asyncio.TaskGroup() as group:
            group.create_task(asyncio.sleep(0))
            results.append(len(message["body"]))
        body = b"%d" % results[0]
        await send({"type": START, "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": BODY, "body": body})

    s = connect(serve(app, lifespan="off", asgi_eager="on").port)
    s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
    got = recv_for(s, 0.5)
    assert got.startswith(b"HTTP/1.1 200 OK") and got.endswith(b"\r\n\r\n3"), got
    s.close()


def test_wait_for_on_the_first_line_works_in_place(serve) -> None:
    """wait_for needs a current task from Python 3.12 (it is built on
    asyncio.timeout); on 3.10 and 3.11 it needs none."""
    async def app(scope: dict, receive: Any, send: Any) -> None:
        assert asyncio.current_task() is not None
        message = await asyncio.wait_for(receive(), 5)
        try:
            await asyncio.wait_for(asyncio.sleep(5), 0.05)
            outcome = b"no timeout"
        except asyncio.TimeoutError:
            outcome = b"timed out"
        await send({"type": START, "status": 200, "headers": []})
        await send({"type": BODY, "body": b"%d %s" % (len(message["body"]), outcome)})

    s = connect(serve(app, lifespan="off", asgi_eager="on").port)
    s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
    got = recv_for(s, 0.5)
    assert got.startswith(b"HTTP/1.1 200 OK") and got.endswith(b"\r\n\r\n3 timed out"), got
    s.close()


@needs_311
def test_a_timeout_entered_in_place_still_fires_after_the_request_suspends(serve) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        try:
            async with asyncio.timeout(0.2):
                await asyncio.sleep(5)          # the request now runs in its Task
            status = 500
        except TimeoutError:
            status = 504
        await send({"type": START, "status": status, "headers": []})
        await send({"type": BODY, "body": b""})

    s = connect(serve(app, lifespan="off", asgi_eager="on").port)
    t0 = time.monotonic()
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    got = recv_for(s, 3)
    assert got.startswith(b"HTTP/1.1 504") and got.endswith(b"<EOF>"), got
    assert time.monotonic() - t0 < 1.5
    s.close()


def test_an_http10_stream_cut_short_is_reset_not_closed_cleanly(serve) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": START, "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": BODY, "body": b"part1-", "more_body": True})
        # returns without the final body message

    s = connect(serve(app, lifespan="off", asgi_eager="on").port)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    got = recv_for(s, 1.0)
    assert got.endswith(b"<RESET>"), got
    s.close()


@pytest.mark.parametrize("status, expected", [(HTTPStatus.CREATED, b"201"), (True, b"500")])
def test_an_int_enum_status_is_a_status_and_a_bool_is_not(serve, status: Any, expected: bytes) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": START, "status": status, "headers": []})
        await send({"type": BODY, "body": b""})

    s = connect(serve(app, lifespan="off", asgi_eager="on").port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    got = recv_for(s, 2)
    assert got.startswith(b"HTTP/1.1 " + expected), got
    s.close()


def live_objects() -> dict[str, int]:
    """Objects of each kind created and not yet freed."""
    counters = debug_counters()
    return {kind: counters[f"{kind}_created"] - counters[f"{kind}_freed"]
            for kind in ("connections", "requests", "body_streams", "asgi_cycles")}


@pytest.mark.parametrize("eager", MODES)
def test_every_request_stream_and_exchange_is_freed_after_mixed_traffic(serve, monkeypatch, eager: str) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        path = scope["path"]
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message["body"]
            if not message["more_body"]:
                break
        if path == "/fail":
            raise RuntimeError("a failing app")
        if path == "/slow":
            await asyncio.sleep(0.01)
        await send({"type": START, "status": 200, "headers": []})
        await send({"type": BODY, "body": b"%d" % len(body), "more_body": path == "/stream"})
        if path == "/stream":
            await send({"type": BODY, "body": b"!"})

    server = serve(app, lifespan="off", asgi_eager=eager)
    # a logged traceback keeps the failing request's frames (and through
    # them its connection) alive in pytest's log capture: not a leak
    monkeypatch.setattr(logging.getLogger("fastsrv.error"), "disabled", True)
    gc.collect()
    before = live_objects()
    requests = [
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /fail HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ]
    for _ in range(5):
        s = connect(server.port)
        s.sendall(b"".join(requests) + b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert recv_for(s, 2).endswith(b"<EOF>")
        s.close()
        s = connect(server.port)        # a client that goes away mid-body
        s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly part")
        time.sleep(0.02)
        s.close()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        gc.collect()
        if live_objects() == before:
            break
        time.sleep(0.05)
    assert live_objects() == before


def test_a_second_concurrent_body_reader_is_told_not_left_hanging(serve) -> None:
    outcome: list[str] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        first = asyncio.ensure_future(receive())      # waits for body bytes
        await asyncio.sleep(0.01)
        try:
            await receive()
            outcome.append("second read")
        except RuntimeError as exc:
            outcome.append(str(exc))
        message = await first
        await send({"type": START, "status": 200, "headers": []})
        await send({"type": BODY, "body": message["body"]})

    s = connect(serve(app, lifespan="off", asgi_eager="on").port)
    s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
    time.sleep(0.1)
    s.sendall(b"hello")
    got = recv_for(s, 2)
    assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"hello<EOF>"), got
    assert outcome == ["the request body is already being read by another task"]
    s.close()
