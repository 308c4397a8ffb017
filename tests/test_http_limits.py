"""Limits and timeouts over real sockets.

The core sweeps deadlines once a second, so a 1 s timeout fires between 1
and 2 s after it was armed: the bounds below are "not before 0.8 s" and
"by 3.5 s".
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from fastsrv import App, BodyError

from conftest import Calls

EARLIEST = 0.8
LATEST = 3.5


def make_app() -> tuple[App, Calls]:
    app = App()
    calls = Calls()

    def plain(request):
        calls.add("plain")
        return "ok"

    def sync_upload(request):
        calls.add("sync")
        return str(len(request.content))

    async def async_upload(request):
        calls.add("async")
        try:
            body = await request.body()
        except BodyError as exc:
            calls.add(f"body error: {exc}")
            raise
        return str(len(body))

    async def slow(request):
        calls.add("slow")
        await asyncio.sleep(float(request.query["s"]))
        return "slow done"

    app.add_route("/", plain)
    app.add_route("/{rest:path}", plain)
    app.add_route("/sync", sync_upload, ("POST",))
    app.add_route("/async", async_upload, ("POST",))
    app.add_route("/slow", slow)
    return app, calls


def assert_rejected(client, status: int) -> None:
    r = client.read_response()
    assert r.status == status, r.raw
    assert r.header("connection") == "close"
    assert client.is_closed(2.0)


def closed_quietly(client, wait: float) -> bool:
    """True when the server closes within ``wait`` s without sending a byte."""
    closed = client.is_closed(wait)
    return closed and client.buf == b""


# ---- size limits --------------------------------------------------------


def test_request_line_at_the_limit_is_served(serve, client_factory):
    app, _ = make_app()
    c = client_factory(serve(app, max_request_line=64).port)
    line = b"GET /" + b"a" * (64 - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
    assert len(line) == 64
    c.send(line + b"\r\nHost: x\r\n\r\n")
    assert c.read_response().status == 200


def test_request_line_over_the_limit_is_answered_414_and_closed(serve, client_factory):
    app, calls = make_app()
    c = client_factory(serve(app, max_request_line=64).port)
    c.send(b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert_rejected(c, 414)
    assert len(calls) == 0


def test_request_line_over_the_limit_is_refused_before_its_end_arrives(serve, client_factory):
    app, _ = make_app()
    c = client_factory(serve(app, max_request_line=64).port)
    c.send(b"GET /" + b"a" * 200)          # no CRLF yet: still too long
    assert_rejected(c, 414)


def test_header_section_over_the_limit_is_answered_431_and_closed(serve, client_factory):
    app, calls = make_app()
    c = client_factory(serve(app, max_request_line=64, max_header_bytes=256).port)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 300 + b"\r\n\r\n")
    assert_rejected(c, 431)
    assert len(calls) == 0


def test_header_section_over_the_limit_is_refused_before_its_end_arrives(serve, client_factory):
    app, _ = make_app()
    c = client_factory(serve(app, max_request_line=64, max_header_bytes=256).port)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Filler: vvvvvvvvvv\r\n" * 20)
    assert_rejected(c, 431)


def test_header_count_at_the_limit_is_served_and_one_more_is_431(serve, client_factory):
    app, calls = make_app()
    srv = serve(app, max_header_count=5)
    fields = b"Host: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(4))
    c = client_factory(srv.port)
    c.send(b"GET / HTTP/1.1\r\n" + fields + b"\r\n")
    assert c.read_response().status == 200
    c.send(b"GET / HTTP/1.1\r\n" + fields + b"X-Extra: v\r\n\r\n")
    assert_rejected(c, 431)
    assert len(calls) == 1


def test_head_larger_than_the_pipeline_buffer_but_within_the_limit_is_served(serve, client_factory):
    """A 600 kB header section under a 1 MiB limit: the core used to pause
    reading once 256 kB were buffered and wait for the rest forever."""
    app = App()

    @app.get("/")
    def count(request):
        return str(len(request.headers))

    c = client_factory(serve(app, max_header_bytes=1 << 20, max_header_count=250).port)
    fields = b"".join(b"X-%03d: %s\r\n" % (i, b"v" * 3000) for i in range(200))
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    r = c.read_response()
    assert (r.status, r.body) == (200, b"201")


def test_content_length_at_the_limit_is_served(serve, client_factory):
    app, _ = make_app()
    c = client_factory(serve(app, max_body_bytes=100).port)
    c.send(b"POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"b" * 100)
    assert c.read_response().body == b"100"


@pytest.mark.parametrize("path", ["/sync", "/async"])
def test_content_length_over_the_limit_is_answered_413_before_the_body(serve, client_factory, path):
    app, calls = make_app()
    c = client_factory(serve(app, max_body_bytes=100).port)
    c.send(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n" % path.encode())
    assert_rejected(c, 413)
    assert len(calls) == 0


def _chunked_body(total: int, piece: int = 40) -> bytes:
    out = b""
    while total > 0:
        n = min(piece, total)
        out += b"%x\r\n" % n + b"c" * n + b"\r\n"
        total -= n
    return out + b"0\r\n\r\n"


def test_chunked_body_at_the_limit_is_served(serve, client_factory):
    app, _ = make_app()
    c = client_factory(serve(app, max_body_bytes=100).port)
    c.send(b"POST /sync HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked_body(100))
    assert c.read_response().body == b"100"


def test_chunked_body_over_the_limit_is_answered_413_without_calling_a_sync_handler(
        serve, client_factory):
    app, calls = make_app()
    c = client_factory(serve(app, max_body_bytes=100).port)
    c.send(b"POST /sync HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked_body(101))
    assert_rejected(c, 413)
    assert len(calls) == 0


def test_chunked_body_over_the_limit_is_answered_413_to_a_reading_async_handler(
        serve, client_factory):
    app, calls = make_app()
    c = client_factory(serve(app, max_body_bytes=100).port)
    c.send(b"POST /async HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked_body(101))
    assert_rejected(c, 413)
    assert calls.names[0] == "async" and calls.names[1].startswith("body error: 413")


def test_body_error_after_the_response_closes_without_a_second_response(serve, client_factory):
    """The app answered (404) before the body came; the rest of the body then
    goes over the limit: the connection is closed, and no unasked-for 413
    follows the 404 (it used to)."""
    app, _ = make_app()
    c = client_factory(serve(app, max_body_bytes=100).port)
    c.send(b"POST /nowhere/to/post HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    r = c.read_response()
    assert r.status in (404, 405)
    c.send(_chunked_body(101))
    assert closed_quietly(c, 2.0), c.buf


# ---- timeouts ---------------------------------------------------------------


def test_partial_head_then_silence_is_answered_408_and_closed(serve, client_factory):
    app, calls = make_app()
    c = client_factory(serve(app, header_timeout=1).port)
    t0 = time.monotonic()
    c.send(b"GET / HTTP/1.1\r\nHost:")
    r = c.read_response()
    elapsed = time.monotonic() - t0
    assert r.status == 408 and r.header("connection") == "close"
    assert EARLIEST < elapsed < LATEST
    assert c.is_closed(2.0)
    assert len(calls) == 0


def test_head_trickled_a_byte_at_a_time_still_times_out(serve, client_factory):
    """The header timeout bounds the whole head, not the gap between bytes."""
    app, _ = make_app()
    c = client_factory(serve(app, header_timeout=1).port)
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 100
    t0 = time.monotonic()
    c.sock.settimeout(0.15)
    for i in range(len(head)):
        c.send(head[i:i + 1])
        try:
            chunk = c.sock.recv(65536)       # wait for an answer between bytes
        except socket.timeout:
            continue
        c.buf += chunk
        break
    elapsed = time.monotonic() - t0
    c.sock.settimeout(5)
    r = c.read_response()
    assert r.status == 408
    assert EARLIEST < elapsed < LATEST


def test_idle_keep_alive_connection_is_closed_quietly(serve, client_factory):
    app, _ = make_app()
    c = client_factory(serve(app, keepalive_timeout=1).port)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.read_response().status == 200
    t0 = time.monotonic()
    assert closed_quietly(c, LATEST)
    assert EARLIEST < time.monotonic() - t0 < LATEST


def test_new_connection_that_sends_nothing_is_closed_quietly(serve, client_factory):
    app, _ = make_app()
    t0 = time.monotonic()
    c = client_factory(serve(app, keepalive_timeout=1).port)
    assert closed_quietly(c, LATEST)
    assert EARLIEST < time.monotonic() - t0 < LATEST


def test_partial_body_then_silence_is_answered_408_without_calling_a_sync_handler(
        serve, client_factory):
    app, calls = make_app()
    c = client_factory(serve(app, body_timeout=1).port)
    t0 = time.monotonic()
    c.send(b"POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    r = c.read_response()
    assert r.status == 408 and r.header("connection") == "close"
    assert EARLIEST < time.monotonic() - t0 < LATEST
    assert c.is_closed(2.0)
    assert len(calls) == 0


def test_partial_body_then_silence_fails_the_async_handlers_read_with_408(serve, client_factory):
    app, calls = make_app()
    c = client_factory(serve(app, body_timeout=1).port)
    t0 = time.monotonic()
    c.send(b"POST /async HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    r = c.read_response()
    assert r.status == 408 and r.header("connection") == "close"
    assert EARLIEST < time.monotonic() - t0 < LATEST
    assert c.is_closed(2.0)
    assert calls.names[0] == "async" and calls.names[1].startswith("body error: 408")


def test_body_that_keeps_arriving_is_not_timed_out(serve, client_factory):
    """The body timeout is a silence timeout: a slow but steady upload that
    takes longer than it in total completes."""
    app, _ = make_app()
    c = client_factory(serve(app, body_timeout=1).port)
    c.send(b"POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n")
    c.sock.settimeout(0.4)
    for piece in (b"ab", b"cd", b"ef"):
        # between pieces: nothing from the server (a bounded read, not a sleep)
        with pytest.raises(socket.timeout):
            c.sock.recv(1)
        c.send(piece)
    c.sock.settimeout(5)
    assert c.read_response().body == b"6"


def test_body_held_back_by_a_slow_handler_is_not_timed_out(serve, client_factory):
    """The handler dawdles after its first piece, so the server stops reading
    (backpressure): that silence is the server's, and used to be answered
    with a 408 to a client that was ready to send."""
    app = App()

    @app.post("/dawdle")
    async def dawdle(request):
        received, first = 0, True
        async for chunk in request.stream():
            received += len(chunk)
            if first:
                first = False
                await asyncio.sleep(2.2)
        return str(received)

    c = client_factory(serve(app, body_timeout=1).port)
    size = 4 * 1024 * 1024
    c.send(b"POST /dawdle HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    sender = threading.Thread(target=c.send, args=(b"d" * size,))
    sender.start()
    r = c.read_response()
    sender.join(5)
    assert (r.status, r.body) == (200, str(size).encode())


def test_a_long_running_handler_is_not_timed_out(serve, client_factory):
    app, _ = make_app()
    c = client_factory(serve(app, header_timeout=1, body_timeout=1, keepalive_timeout=1).port)
    t0 = time.monotonic()
    c.send(b"GET /slow?s=2.2 HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.read_response()
    assert (r.status, r.body) == (200, b"slow done")
    assert time.monotonic() - t0 > 2.1


# ---- the connection cap ---------------------------------------------------


def test_connection_over_max_connections_gets_503_and_a_close(serve, client_factory):
    app, calls = make_app()
    srv = serve(app, max_connections=2)
    first, second = client_factory(srv.port), client_factory(srv.port)
    for c in (first, second):
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().status == 200
    extra = client_factory(srv.port)
    assert_rejected(extra, 503)
    # the admitted connections are untouched
    first.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert first.read_response().status == 200
    assert len(calls) == 3


def test_a_freed_slot_admits_a_new_connection(serve, client_factory):
    app, _ = make_app()
    srv = serve(app, max_connections=1)
    first = client_factory(srv.port)
    first.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert first.read_response().status == 200
    assert first.is_closed(2.0)
    deadline = time.monotonic() + 2
    while srv.server.registry.open and time.monotonic() < deadline:
        time.sleep(0.005)
    assert srv.server.registry.open == 0
    again = client_factory(srv.port)
    again.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert again.read_response().status == 200
