"""Message framing over real sockets: bodies, keep-alive, pipelining, HEAD,
204/304, 100-continue, Upgrade and malformed requests.

Every request here goes through a real TCP connection to a server on
127.0.0.1; "split at every offset" sends the request in two writes with a
short pause between them, so the core sees it in two reads.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fastsrv import App, BodyError, Response, StreamingResponse
from fastsrv._core import Route, debug_counters
from fastsrv._parser import RequestParser

from conftest import Calls, nothing_arrives

PAUSE = 0.002  # between the two halves of a split request


# ---- the app under test -------------------------------------------------


def _describe(request, body: bytes) -> dict:
    return {
        "method": request.method,
        "path": request.path,
        "version": request.http_version,
        "body": body.decode("latin-1"),
        "trailers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.trailers],
        "upgrade": request.upgrade,
    }


def make_app() -> tuple[App, Calls]:
    app = App()
    calls = Calls()
    methods = ("GET", "POST", "PUT")

    async def echo(request):
        calls.add("echo")
        return _describe(request, await request.body())

    def sync_echo(request):
        calls.add("sync")
        return _describe(request, request.content)

    async def slow(request):
        ms = int(request.query.get("ms", "20"))
        calls.add(f"slow{ms}")
        await asyncio.sleep(ms / 1000)
        return f"slow {ms}"

    async def yields(request):
        calls.add("yields")
        await asyncio.sleep(0)
        return "yielded"

    def plain(request):
        calls.add("plain")
        return "plain"

    def no_content(request):
        calls.add("204")
        return None

    def not_modified(request):
        calls.add("304")
        return Response(b"", 304, headers=[("etag", '"v1"')])

    app.add_route("/echo", echo, methods)
    app.add_route("/sync", sync_echo, methods)
    app.add_route("/slow", slow)
    app.add_route("/yields", yields)
    app.add_route("/plain", plain)
    app.add_route("/204", no_content)
    app.add_route("/304", not_modified)
    return app, calls


ECHO_ROUTES = {"async": "/echo", "sync": "/sync"}


def send_split(client, data: bytes, offset: int) -> None:
    client.send(data[:offset])
    time.sleep(PAUSE)
    client.send(data[offset:])


def recv_exact(client, n: int) -> bytes:
    while len(client.buf) < n:
        if not client._fill():
            raise ConnectionError(f"closed after {client.buf!r}")
    data, client.buf = client.buf[:n], client.buf[n:]
    return data


# ---- bodies, whole and split ------------------------------------------------

CL_REQUEST = (b"POST {path} HTTP/1.1\r\nHost: example\r\nContent-Type: text/plain\r\n"
              b"Content-Length: 11\r\n\r\nhello world")

CHUNKED_REQUEST = (b"POST {path} HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5;name=value\r\nhello\r\n"
                   b"6;a=1;quoted=\"x y\"\r\n world\r\n"
                   b"0\r\nX-Checksum: abc123\r\nX-Note: done\r\n\r\n")

CHUNKED_EXPECTED = {"body": "hello world",
                    "trailers": [["x-checksum", "abc123"], ["x-note", "done"]]}


def _req(template: bytes, kind: str) -> bytes:
    return template.replace(b"{path}", ECHO_ROUTES[kind].encode())


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_content_length_body_reaches_the_handler(serve, client_factory, kind):
    app, _ = make_app()
    c = client_factory(serve(app).port)
    c.send(_req(CL_REQUEST, kind))
    r = c.read_response()
    assert r.status == 200
    assert json.loads(r.body)["body"] == "hello world"


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_content_length_request_split_at_every_offset_gets_the_same_response(
        serve, client_factory, kind):
    app, _ = make_app()
    c = client_factory(serve(app).port)
    data = _req(CL_REQUEST, kind)
    c.send(data)
    whole = c.read_response()
    for offset in range(1, len(data)):
        send_split(c, data, offset)
        r = c.read_response()
        assert (r.status, r.body) == (whole.status, whole.body), f"split at {offset}"


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_chunked_body_with_extensions_and_trailers_reaches_the_handler(serve, client_factory, kind):
    app, _ = make_app()
    c = client_factory(serve(app).port)
    c.send(_req(CHUNKED_REQUEST, kind))
    r = c.read_response()
    assert r.status == 200
    got = json.loads(r.body)
    assert {"body": got["body"], "trailers": got["trailers"]} == CHUNKED_EXPECTED


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_chunked_request_split_at_every_offset_gets_the_same_response(serve, client_factory, kind):
    app, _ = make_app()
    c = client_factory(serve(app).port)
    data = _req(CHUNKED_REQUEST, kind)
    c.send(data)
    whole = c.read_response()
    assert json.loads(whole.body)["trailers"] == CHUNKED_EXPECTED["trailers"]
    for offset in range(1, len(data)):
        send_split(c, data, offset)
        r = c.read_response()
        assert (r.status, r.body) == (whole.status, whole.body), f"split at {offset}"


def test_chunked_request_sent_one_byte_per_write_gets_the_same_response(serve, client_factory):
    app, _ = make_app()
    c = client_factory(serve(app).port)
    data = _req(CHUNKED_REQUEST, "async")
    for i in range(len(data)):
        c.send(data[i:i + 1])
        time.sleep(0.0005)
    r = c.read_response()
    got = json.loads(r.body)
    assert {"body": got["body"], "trailers": got["trailers"]} == CHUNKED_EXPECTED


def test_body_larger_than_the_read_buffer_reaches_a_sync_handler_whole(serve, client_factory):
    """A sync handler is called once the whole body is in: the core used to
    pause reading at 256 kB waiting for a reader that never comes."""
    app, _ = make_app()
    c = client_factory(serve(app).port)
    body = bytes(range(256)) * 8192          # 2 MiB
    c.send(b"PUT /sync HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    sender = threading.Thread(target=c.send, args=(body,))
    sender.start()
    r = c.read_response()
    sender.join(5)
    assert r.status == 200
    assert json.loads(r.body)["body"].encode("latin-1") == body


def test_empty_lines_before_a_request_are_ignored_at_any_split(serve, client_factory):
    app, _ = make_app()
    c = client_factory(serve(app).port)
    data = b"\r\n\r\nGET /plain HTTP/1.1\r\nHost: x\r\n\r\n"
    for offset in range(1, len(data)):
        send_split(c, data, offset)
        r = c.read_response()
        assert (r.status, r.body) == (200, b"plain"), f"split at {offset}"


# ---- keep-alive and close ---------------------------------------------------


def test_http11_connection_serves_several_requests(serve, client_factory):
    app, calls = make_app()
    c = client_factory(serve(app).port)
    for i in range(5):
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n%d" % i)
        r = c.read_response()
        assert r.status == 200 and json.loads(r.body)["body"] == str(i)
        assert r.header("connection") is None
    assert len(calls) == 5


def test_unread_body_is_skipped_and_the_connection_serves_the_next_request(serve, client_factory):
    """The handler answers without reading a 3 MB body: the server skips the
    rest of it and the connection stays usable (it used to stall once 256 kB
    had been buffered, then answer the next request with a 408)."""
    app = App()

    @app.post("/ignore")
    async def ignore(request):
        await asyncio.sleep(0.05)
        return "ignored"

    @app.get("/plain")
    def plain(request):
        return "plain"

    c = client_factory(serve(app).port)
    body = b"z" * (3 * 1024 * 1024)
    c.send(b"POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    sender = threading.Thread(target=c.send, args=(body,))
    sender.start()
    r = c.read_response()
    assert (r.status, r.body) == (200, b"ignored")
    assert r.header("connection") is None
    sender.join(5)
    c.send(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.read_response()
    assert (r.status, r.body) == (200, b"plain")


def test_connection_close_request_is_answered_then_closed(serve, client_factory):
    app, _ = make_app()
    c = client_factory(serve(app).port)
    c.send(b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    r = c.read_response()
    assert (r.status, r.body) == (200, b"plain")
    assert r.header("connection") == "close"
    assert c.is_closed(2.0)
    assert c.buf == b""


def test_handler_asking_for_close_gets_the_connection_closed(serve, client_factory):
    app = App()

    @app.get("/bye")
    def bye(request):
        return Response("bye", headers=[("Connection", "close")])

    c = client_factory(serve(app).port)
    c.send(b"GET /bye HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.read_response()
    assert (r.body, r.header("connection")) == (b"bye", "close")
    assert [k for k, _ in r.headers].count("connection") == 1
    assert c.is_closed(2.0)


def test_http10_without_keep_alive_is_closed_after_the_response(serve, client_factory):
    app, _ = make_app()
    c = client_factory(serve(app).port)
    c.send(b"GET /plain HTTP/1.0\r\n\r\n")
    r = c.read_response()
    assert (r.status, r.body) == (200, b"plain")
    assert r.header("connection") == "close"
    assert c.is_closed(2.0)


def test_http10_keep_alive_connection_serves_several_requests(serve, client_factory):
    app, _ = make_app()
    c = client_factory(serve(app).port)
    for _ in range(3):
        c.send(b"GET /plain HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"plain")
        assert r.header("connection") == "keep-alive"


def test_http10_keep_alive_is_kept_on_error_responses(serve, client_factory):
    """A 404 to an HTTP/1.0 keep-alive client says keep-alive, and the
    connection really stays usable (it used to omit the header)."""
    app, _ = make_app()
    c = client_factory(serve(app).port)
    c.send(b"GET /missing HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    r = c.read_response()
    assert r.status == 404
    assert r.header("connection") == "keep-alive"
    c.send(b"GET /plain HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert c.read_response().body == b"plain"


def test_client_half_close_still_gets_every_pipelined_response_then_a_close(serve, client_factory):
    app, _ = make_app()
    c = client_factory(serve(app).port)
    c.send(b"GET /slow?ms=30 HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
    c.sock.shutdown(socket.SHUT_WR)
    assert c.read_response().body == b"slow 30"
    assert c.read_response().body == b"plain"
    assert c.is_closed(2.0)


def test_closed_connections_are_freed(serve, client_factory):
    """No connection object outlives its socket, whatever it went through
    (bodies in pieces, a streamed response, a handler waiting on the client)."""
    app, _ = make_app()

    @app.get("/stream")
    async def stream(request):
        async def parts():
            for _ in range(3):
                await asyncio.sleep(0.001)
                yield b"x"
        return StreamingResponse(parts())

    @app.get("/wait")
    async def wait(request):
        await request.wait_disconnected()
        return "gone"

    srv = serve(app)
    srv.call(gc.collect)
    created_before = debug_counters()["connections_created"]
    live_before = created_before - debug_counters()["connections_freed"]
    for _ in range(10):
        c = client_factory(srv.port)
        send_split(c, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 50)
        assert c.read_response().status == 200
        c.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().body == b"xxx"
        c.send(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        c.close()

    def live() -> int:
        counters = debug_counters()
        return counters["connections_created"] - counters["connections_freed"]

    deadline = time.monotonic() + 3
    while live() > live_before and time.monotonic() < deadline:
        srv.call(gc.collect)
        time.sleep(0.01)
    assert debug_counters()["connections_created"] - created_before == 10
    assert live() <= live_before


# ---- pipelining -------------------------------------------------------------


def test_pipelined_requests_in_one_write_are_answered_in_order(serve, client_factory):
    app, calls = make_app()
    c = client_factory(serve(app).port)
    batch = (
        b"GET /slow?ms=80 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /slow?ms=5 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /sync HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nde\r\n1\r\nf\r\n0\r\n\r\n"
        b"GET /yields HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    c.send(batch)
    bodies = [c.read_response().body for _ in range(6)]
    assert bodies[0] == b"slow 80"
    assert bodies[1] == b"plain"
    assert json.loads(bodies[2])["body"] == "abc"
    assert bodies[3] == b"slow 5"
    assert json.loads(bodies[4])["body"] == "def"
    assert bodies[5] == b"yielded"
    # one at a time: the second handler only ran after the first answered
    assert calls.names == ["slow80", "plain", "echo", "slow5", "sync", "yields"]


def test_pipelined_batch_split_at_every_offset_gets_the_same_responses(serve, client_factory):
    app, _ = make_app()
    c = client_factory(serve(app).port)
    batch = (
        b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
        b"GET /yields HTTP/1.1\r\nHost: x\r\n\r\n"
        b"PUT /sync HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    c.send(batch)
    whole = [c.read_response().body for _ in range(4)]
    for offset in range(1, len(batch)):
        send_split(c, batch, offset)
        got = [c.read_response().body for _ in range(4)]
        assert got == whole, f"split at {offset}"


def test_pipelined_responses_wait_for_a_client_that_does_not_read(serve, client_factory):
    """100 pipelined requests for 512 kB each: while the client reads
    nothing, the server stops calling handlers (it does not build 50 MB of
    responses in memory); once the client reads, every response arrives."""
    app = App()
    calls = Calls()
    size = 512_000

    @app.get("/big")
    def big(request):
        calls.add("big")
        return b"%08d" % len(calls) + b"x" * (size - 8)

    c = client_factory(serve(app).port)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 100)
    deadline = time.monotonic() + 5
    while len(calls) == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.3)  # nothing to wait for: give a runaway server time to answer all
    assert 1 <= len(calls) < 50
    for i in range(1, 101):
        r = c.read_response()
        assert len(r.body) == size and r.body[:8] == b"%08d" % i


# ---- HEAD, 204, 304 ---------------------------------------------------------


def test_head_response_has_the_get_headers_and_no_body(serve, client_factory):
    app, _ = make_app()
    c = client_factory(serve(app).port)
    c.send(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
    get = c.read_response()
    c.send(b"HEAD /plain HTTP/1.1\r\nHost: x\r\n\r\nGET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
    head = c.read_response(head_request=True)
    assert head.status == 200
    assert head.header("content-length") == get.header("content-length") == "5"
    assert head.header("content-type") == get.header("content-type")
    # no body bytes between the HEAD response and the next one
    after = c.read_response()
    assert (after.status, after.body) == (200, b"plain")


def test_204_has_no_body_and_no_content_length(serve, client_factory):
    app, _ = make_app()
    c = client_factory(serve(app).port)
    c.send(b"GET /204 HTTP/1.1\r\nHost: x\r\n\r\nGET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.read_response()
    assert r.status == 204
    assert r.header("content-length") is None and r.header("transfer-encoding") is None
    assert c.read_response().body == b"plain"


def test_304_has_no_body_and_no_invented_content_length(serve, client_factory):
    """RFC 9110 8.6: a 304 must not carry a Content-Length other than the
    one a 200 would have; fastsrv used to send ``content-length: 0``."""
    app, _ = make_app()
    c = client_factory(serve(app).port)
    c.send(b"GET /304 HTTP/1.1\r\nHost: x\r\n\r\nGET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.read_response()
    assert r.status == 304
    assert r.header("etag") == '"v1"'
    assert r.header("content-length") is None
    assert c.read_response().body == b"plain"


def test_304_keeps_the_content_length_the_application_gives(serve, client_factory):
    app = App()

    @app.get("/doc")
    def doc(request):
        return Response(b"", 304, headers=[("content-length", "1234")])

    @app.get("/plain")
    def plain(request):
        return "plain"

    c = client_factory(serve(app).port)
    c.send(b"GET /doc HTTP/1.1\r\nHost: x\r\n\r\nGET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.read_response()
    assert r.status == 304 and r.header("content-length") == "1234"
    assert c.read_response().body == b"plain"


# ---- Expect: 100-continue ---------------------------------------------------

EXPECT_HEAD = (b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
               b"Expect: 100-continue\r\n\r\n")


def test_100_continue_is_sent_only_when_the_handler_reads_the_body(serve, client_factory):
    app = App()
    gate = threading.Event()

    @app.post("/upload")
    async def upload(request):
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, 5)
        return await request.body()

    c = client_factory(serve(app).port)
    c.send(EXPECT_HEAD.replace(b"{path}", b"/upload"))
    assert nothing_arrives(c, 0.3), c.buf       # the handler has not read yet
    gate.set()
    assert recv_exact(c, 25) == b"HTTP/1.1 100 Continue\r\n\r\n"
    c.send(b"hello")
    r = c.read_response()
    assert (r.status, r.body) == (200, b"hello")
    assert r.header("connection") is None


def test_100_continue_is_sent_at_once_for_a_sync_handler(serve, client_factory):
    """A sync handler is called with the whole body, so the server reads it
    on the handler's behalf and asks for it straight away."""
    app, _ = make_app()
    c = client_factory(serve(app).port)
    c.send(EXPECT_HEAD.replace(b"{path}", b"/sync"))
    assert recv_exact(c, 25) == b"HTTP/1.1 100 Continue\r\n\r\n"
    c.send(b"hello")
    r = c.read_response()
    assert json.loads(r.body)["body"] == "hello"


def test_100_continue_for_a_pipelined_request_follows_the_responses_before_it(
        serve, client_factory):
    """The 100 went straight to the socket while the answer to the request
    before it still sat in the output buffer: the client took it as that
    request's interim response."""
    app, _ = make_app()
    c = client_factory(serve(app).port)
    c.send(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n" + EXPECT_HEAD.replace(b"{path}", b"/sync"))
    first = c.read_response()
    assert (first.status, first.body) == (200, b"plain")
    assert recv_exact(c, 25) == b"HTTP/1.1 100 Continue\r\n\r\n"
    c.send(b"hello")
    assert json.loads(c.read_response().body)["body"] == "hello"


def test_handler_answering_without_reading_gets_no_100_and_a_declared_close(serve, client_factory):
    app = App()

    @app.post("/upload")
    async def upload(request):
        return Response("denied", 403)

    c = client_factory(serve(app).port)
    c.send(EXPECT_HEAD.replace(b"{path}", b"/upload"))
    r = c.read_response()
    assert (r.status, r.body) == (403, b"denied")
    assert b"100 Continue" not in r.raw
    # the unsent body cannot be told apart from a next request: the server
    # says it closes, then closes
    assert r.header("connection") == "close"
    assert c.is_closed(2.0)
    assert c.buf == b""


def test_expect_100_continue_from_http10_is_ignored(serve, client_factory):
    app, _ = make_app()
    c = client_factory(serve(app).port)
    c.send(b"POST /echo HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert nothing_arrives(c, 0.2)
    c.send(b"hello")
    r = c.read_response()
    assert r.status == 200
    assert json.loads(r.body)["body"] == "hello"


# ---- Upgrade ----------------------------------------------------------------


@pytest.mark.parametrize("headers, expected", [
    (b"Connection: Upgrade\r\nUpgrade: websocket\r\n", True),
    (b"Connection: keep-alive, upgrade\r\nUpgrade: h2c\r\n", True),
    (b"Upgrade: websocket\r\n", False),
    (b"Connection: upgrade\r\n", False),
    (b"", False),
])
def test_upgrade_request_is_visible_on_the_request(serve, client_factory, headers, expected):
    app, _ = make_app()
    c = client_factory(serve(app).port)
    c.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    r = c.read_response()
    assert json.loads(r.body)["upgrade"] is expected


# ---- malformed requests -----------------------------------------------------

# The parser owner's shared tables: (id, bytes, status) and (id, bytes, fields).
from parser_cases import MALFORMED, VALID  # noqa: E402


def _catch_all(extra_methods=()) -> tuple[App, Calls, list]:
    """Every path and method goes to one sync handler (called only once
    the whole request, body included, has been read); it records what it saw."""
    app = App()
    calls = Calls()
    seen: list[dict] = []

    def anything(request):
        calls.add(request.method)
        seen.append({
            "method": request.method.encode("latin-1"),
            "target": request.target,
            "version": request.http_version,
            "headers": request.raw_headers,
            "body": request.content,
            "trailers": request.trailers,
            "keep_alive": request.keep_alive,
            "expect_continue": request.expect_continue,
            "upgrade": request.upgrade,
        })
        return "reached the app"

    methods = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT")
    methods += tuple(m for m in extra_methods if m not in methods)
    app.add_route("/", anything, methods)
    app.add_route("/{rest:path}", anything, methods)
    app.router().add("*", Route({m: anything for m in methods}))
    return app, calls, seen


@pytest.mark.parametrize("case_id, data, status", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_request_is_rejected_with_close_and_never_reaches_the_app(
        serve, client_factory, case_id, data, status):
    app, calls, _ = _catch_all()
    c = client_factory(serve(app).port)
    c.send(data)
    r = c.read_response()
    assert r.status == status, r.raw
    assert r.header("connection") == "close"
    assert c.is_closed(2.0)
    assert len(calls) == 0


@pytest.mark.parametrize("case_id, data, status", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_request_gets_the_same_status_when_an_async_handler_reads_it(
        serve, client_factory, case_id, data, status):
    """Errors in the body surface inside an async handler (as BodyError);
    the client still gets the parser's status, a close, and nothing else."""
    app = App()
    failures: list[str] = []

    async def reader(request):
        try:
            await request.body()
        except BodyError as exc:
            failures.append(str(exc))
            raise
        return "read it all"

    methods = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT")
    app.add_route("/", reader, methods)
    app.add_route("/{rest:path}", reader, methods)
    c = client_factory(serve(app).port)
    c.send(data)
    r = c.read_response()
    assert r.status == status, r.raw
    assert r.header("connection") == "close"
    assert c.is_closed(2.0)
    assert c.buf == b""
    assert all(f.startswith(str(status)) for f in failures)


@pytest.mark.parametrize("case_id, data, expected", VALID, ids=[v[0] for v in VALID])
def test_valid_request_reaches_the_app_as_sent(serve, client_factory, case_id, data, expected):
    method = data.lstrip(b"\r\n").split(b" ", 1)[0].decode("latin-1")
    app, calls, seen = _catch_all((method,))
    c = client_factory(serve(app).port)
    c.send(data)
    r = c.read_response()
    assert (r.status, r.body) == (200, b"reached the app"), r.raw
    assert len(seen) == 1
    got = {key: seen[0][key] for key in expected}
    assert got == expected
    if seen[0]["keep_alive"]:
        assert r.header("connection") in (None, "keep-alive")
    else:
        assert r.header("connection") == "close" and c.is_closed(2.0)


def _keeps_alive(data: bytes) -> bool:
    return RequestParser().feed(data)[0]["keep_alive"]


PIPELINABLE = [data for _, data, _ in VALID if _keeps_alive(data)]


def _read_final(client):
    """The next final response (interim 100s skipped: a split body may ask for one)."""
    while True:
        r = client.read_response()
        if r.status >= 200:
            return r


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(st.sampled_from(PIPELINABLE), min_size=2, max_size=5),
       cuts=st.lists(st.floats(0, 1), max_size=4))
def test_random_pipelined_batches_cut_anywhere_get_the_same_responses(
        serve, client_factory, batch, cuts):
    app = App()

    def describe(request):
        return {"method": request.method, "target": request.target.decode("latin-1"),
                "body": request.content.decode("latin-1"),
                "trailers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.trailers]}

    methods = {data.lstrip(b"\r\n").split(b" ", 1)[0].decode("latin-1") for data in PIPELINABLE}
    app.add_route("/", describe, methods)
    app.add_route("/{rest:path}", describe, methods)
    app.router().add("*", Route({m: describe for m in methods}))
    port = serve(app).port
    data = b"".join(batch)
    whole = client_factory(port)
    whole.send(data)
    expected = [(r.status, r.body) for r in (_read_final(whole) for _ in batch)]
    split = client_factory(port)
    offsets = sorted({int(f * len(data)) for f in cuts} - {0, len(data)})
    start = 0
    for offset in offsets + [len(data)]:
        split.send(data[start:offset])
        time.sleep(PAUSE)
        start = offset
    got = [(r.status, r.body) for r in (_read_final(split) for _ in batch)]
    assert got == expected
    assert all(status == 200 for status, _ in got)


def test_malformed_request_after_a_good_one_gets_its_answer_first(serve, client_factory):
    app, calls, _ = _catch_all()
    c = client_factory(serve(app).port)
    c.send(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nGET /bad HTTP/1.1\r\nHost : x\r\n\r\n")
    first = c.read_response()
    assert (first.status, first.body) == (200, b"reached the app")
    second = c.read_response()
    assert second.status == 400 and second.header("connection") == "close"
    assert c.is_closed(2.0)
    assert calls.names == ["GET"]
