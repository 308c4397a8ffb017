"""The native app API over real sockets: routing, middleware, handler
kinds, results, the request object, errors and disconnects."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import select
import socket
import struct
import threading
import time

import pytest

from fastsrv import (
    App, BodyError, Headers, HTTPError, Response, RouteError, StreamingResponse,
)


def get(client, path: str, extra: bytes = b"", method: bytes = b"GET"):
    client.send(method + b" " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
    return client.read_response(head_request=method == b"HEAD")


def post(client, path: str, body: bytes, extra: bytes = b""):
    client.send(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n%s"
                % (path.encode(), len(body), extra, body))
    return client.read_response()


# ---- routing ----------------------------------------------------------------


def routing_app() -> App:
    app = App()

    @app.get("/static/path")
    def static(request):
        return "static"

    @app.get("/users/{name}")
    def user(request):
        return {"name": request.params["name"]}

    @app.get("/items/{id:int}")
    def item(request):
        return {"id": request.params["id"]}

    @app.get("/files/{rest:path}")
    def files(request):
        return {"rest": request.params["rest"]}

    @app.route("/things", methods=("GET", "POST"))
    def things(request):
        return request.method

    return app


def test_static_route_answers(serve, client_factory):
    c = client_factory(serve(routing_app()).port)
    assert get(c, "/static/path").body == b"static"


def test_str_parameter_is_captured(serve, client_factory):
    c = client_factory(serve(routing_app()).port)
    assert json.loads(get(c, "/users/ada").body) == {"name": "ada"}


@pytest.mark.parametrize("segment, value", [("42", 42), ("-7", -7), ("007", 7)])
def test_int_parameter_is_converted_to_int(serve, client_factory, segment, value):
    c = client_factory(serve(routing_app()).port)
    r = get(c, f"/items/{segment}")
    assert r.status == 200 and json.loads(r.body) == {"id": value}


@pytest.mark.parametrize("segment", ["abc", "4.2", "1_000", "+5", "%20%35", "%D9%A3", ""])
def test_int_parameter_rejects_what_is_not_an_integer_with_404(serve, client_factory, segment):
    # "1_000", "+5", " 5" and "٣" (an Arabic-Indic 3) all pass int(); none is
    # an integer path segment
    c = client_factory(serve(routing_app()).port)
    assert get(c, f"/items/{segment}").status == 404


def test_path_parameter_captures_the_rest_of_the_path(serve, client_factory):
    c = client_factory(serve(routing_app()).port)
    assert json.loads(get(c, "/files/a/b/c.txt").body) == {"rest": "a/b/c.txt"}


def test_path_parameter_value_never_collides_with_the_matchers_own_keys(serve, client_factory):
    # the matcher used to keep its {rest:path} leaf under the key "\0rest":
    # a request for /files/%00rest reached the handler without the parameter
    c = client_factory(serve(routing_app()).port)
    r = get(c, "/files/%00rest")
    assert r.status == 200 and json.loads(r.body) == {"rest": "\x00rest"}


def test_unknown_path_is_404(serve, client_factory):
    c = client_factory(serve(routing_app()).port)
    r = get(c, "/nope")
    assert r.status == 404
    assert get(c, "/static/path").status == 200     # still usable


def test_wrong_method_is_405_with_allow(serve, client_factory):
    c = client_factory(serve(routing_app()).port)
    r = get(c, "/things", method=b"DELETE")
    assert r.status == 405
    assert r.header("allow") == "GET, HEAD, POST"
    r = post(c, "/static/path", b"x")
    assert r.status == 405 and r.header("allow") == "GET, HEAD"


def test_head_is_served_by_the_get_handler_without_a_body(serve, client_factory):
    c = client_factory(serve(routing_app()).port)
    r = get(c, "/static/path", method=b"HEAD")
    assert r.status == 200 and r.header("content-length") == "6"
    assert get(c, "/static/path").body == b"static"


def test_conflicting_parameter_converters_are_refused():
    app = App()
    app.add_route("/a/{id:int}", lambda r: "int")
    app.add_route("/a/{id}/b", lambda r: "str")
    with pytest.raises(RouteError):
        app.router()


# ---- middleware -------------------------------------------------------------


def test_middleware_runs_outermost_first(serve, client_factory):
    app = App()
    trail: list[str] = []

    @app.middleware
    async def outer(request, call_next):
        trail.append("outer in")
        result = await call_next(request)
        trail.append("outer out")
        return result

    @app.middleware
    async def inner(request, call_next):
        trail.append("inner in")
        result = await call_next(request)
        trail.append("inner out")
        return result

    @app.get("/")
    def handler(request):
        trail.append("handler")
        return "ok"

    c = client_factory(serve(app).port)
    assert get(c, "/").body == b"ok"
    assert trail == ["outer in", "inner in", "handler", "inner out", "outer out"]


def test_middleware_can_answer_without_calling_the_handler(serve, client_factory):
    app = App()
    called: list[str] = []

    @app.middleware
    async def auth(request, call_next):
        if request.headers.get("authorization") != "secret":
            return Response("no entry", 401)
        return await call_next(request)

    @app.get("/")
    def handler(request):
        called.append("handler")
        return "inside"

    c = client_factory(serve(app).port)
    r = get(c, "/")
    assert (r.status, r.body) == (401, b"no entry")
    assert called == []
    assert get(c, "/", b"Authorization: secret\r\n").body == b"inside"
    assert called == ["handler"]


def test_sync_handler_behind_middleware_still_gets_the_whole_body(serve, client_factory):
    """Middleware made every handler a coroutine function, so the core called
    sync handlers before their body had arrived and ``request.content``
    raised (500)."""
    app = App()

    @app.middleware
    async def passthrough(request, call_next):
        return await call_next(request)

    @app.post("/upload")
    def upload(request):
        return request.content[::-1]

    c = client_factory(serve(app).port)
    c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
    time.sleep(0.01)
    c.send(b"def")
    r = c.read_response()
    assert (r.status, r.body) == (200, b"fedcba")


# ---- handler kinds ----------------------------------------------------------


def test_sync_and_async_handlers_both_answer(serve, client_factory):
    app = App()

    @app.get("/sync")
    def sync(request):
        return "sync"

    @app.get("/async")
    async def async_(request):
        await asyncio.sleep(0.001)
        return "async"

    c = client_factory(serve(app).port)
    assert get(c, "/sync").body == b"sync"
    assert get(c, "/async").body == b"async"


def test_async_handler_that_never_suspends_runs_without_a_task(serve, client_factory):
    app = App()

    @app.get("/eager")
    async def eager(request):
        task = asyncio.current_task()
        # a stand-in for code that asks for its task, not an asyncio.Task
        return {"is_task": isinstance(task, asyncio.Task), "repr": repr(task)}

    c = client_factory(serve(app).port)
    assert json.loads(get(c, "/eager").body) == {
        "is_task": False, "repr": "<fastsrv request running in place, then None>"}


def test_async_handler_gets_a_task_only_after_it_suspends(serve, client_factory):
    app = App()

    @app.get("/suspends")
    async def suspends(request):
        before = asyncio.current_task()
        await asyncio.sleep(0.001)
        after = asyncio.current_task()
        return {"before_is_task": isinstance(before, asyncio.Task),
                "after_is_task": isinstance(after, asyncio.Task)}

    c = client_factory(serve(app).port)
    assert json.loads(get(c, "/suspends").body) == {"before_is_task": False, "after_is_task": True}


# ---- results ----------------------------------------------------------------


def results_app() -> App:
    app = App()

    @app.get("/dict")
    def as_dict(request):
        return {"a": 1, "ü": [True, None]}

    @app.get("/list")
    async def as_list(request):
        return [1, "two"]

    @app.get("/str")
    def as_str(request):
        return "héllo"

    @app.get("/bytes")
    def as_bytes(request):
        return b"\x00\xff"

    @app.get("/none")
    async def as_none(request):
        return None

    @app.get("/response")
    def as_response(request):
        return Response("<b>hi</b>", 201, headers=[("x-custom", "1"), ("X-Other", "two")],
                        content_type="text/html; charset=utf-8")

    @app.get("/stream")
    async def as_stream(request):
        async def parts():
            for i in range(3):
                await asyncio.sleep(0.001)
                yield f"part {i}\n"
        return StreamingResponse(parts(), headers={"x-stream": "yes"})

    @app.get("/stream-sync")
    def as_sync_stream(request):
        return StreamingResponse(iter([b"a", "b", b"c"]), content_type="application/octet-stream")

    @app.get("/int")
    def as_int(request):
        return 42

    @app.get("/async-set")
    async def as_set(request):
        return {1, 2}

    @app.get("/ok")
    def ok(request):
        return "ok"

    return app


def test_dict_result_is_sent_as_json(serve, client_factory):
    c = client_factory(serve(results_app()).port)
    r = get(c, "/dict")
    assert r.header("content-type") == "application/json"
    assert json.loads(r.body) == {"a": 1, "ü": [True, None]}


def test_list_result_is_sent_as_json(serve, client_factory):
    c = client_factory(serve(results_app()).port)
    r = get(c, "/list")
    assert r.header("content-type") == "application/json" and json.loads(r.body) == [1, "two"]


def test_str_result_is_utf8_text(serve, client_factory):
    c = client_factory(serve(results_app()).port)
    r = get(c, "/str")
    assert r.header("content-type") == "text/plain; charset=utf-8"
    assert r.body == "héllo".encode()


def test_bytes_result_is_an_octet_stream(serve, client_factory):
    c = client_factory(serve(results_app()).port)
    r = get(c, "/bytes")
    assert r.header("content-type") == "application/octet-stream" and r.body == b"\x00\xff"


def test_none_result_is_204(serve, client_factory):
    c = client_factory(serve(results_app()).port)
    r = get(c, "/none")
    assert r.status == 204 and r.header("content-length") is None
    assert get(c, "/ok").body == b"ok"


def test_response_result_keeps_status_headers_and_content_type(serve, client_factory):
    c = client_factory(serve(results_app()).port)
    r = get(c, "/response")
    assert (r.status, r.body) == (201, b"<b>hi</b>")
    assert r.header("content-type") == "text/html; charset=utf-8"
    assert r.header("x-custom") == "1" and r.header("x-other") == "two"


def test_streaming_result_is_sent_chunked(serve, client_factory):
    c = client_factory(serve(results_app()).port)
    r = get(c, "/stream")
    assert r.header("transfer-encoding") == "chunked" and r.header("content-length") is None
    assert r.header("x-stream") == "yes"
    assert r.body == b"part 0\npart 1\npart 2\n"
    assert get(c, "/ok").body == b"ok"     # the chunked body ended cleanly


def test_streaming_result_from_a_plain_iterable(serve, client_factory):
    c = client_factory(serve(results_app()).port)
    r = get(c, "/stream-sync")
    assert r.header("transfer-encoding") == "chunked" and r.body == b"abc"


def test_streaming_result_to_http10_is_delimited_by_the_close(serve, client_factory):
    c = client_factory(serve(results_app()).port)
    c.send(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    r = c.read_response()       # no length, no chunking: reads to the close
    assert r.header("transfer-encoding") is None and r.header("content-length") is None
    assert r.header("connection") == "close"
    assert r.body == b"part 0\npart 1\npart 2\n"


def broken_stream_app() -> App:
    app = App()

    @app.get("/broken")
    async def broken(request):
        async def gen():
            yield "first part\n"
            await asyncio.sleep(0.01)
            raise RuntimeError("the generator failed half-way")
        return StreamingResponse(gen())

    return app


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_a_stream_that_fails_half_way_ends_the_connection_and_never_looks_whole(serve, version):
    """After the head is out nothing can be corrected: the connection ends,
    with no final chunk (HTTP/1.1) and with a reset rather than a clean
    close (HTTP/1.0, whose body would otherwise look complete)."""
    port = serve(broken_stream_app()).port
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(f"GET /broken HTTP/{version}\r\nHost: t\r\n\r\n".encode())
    got, reset = b"", False
    s.settimeout(3)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except ConnectionResetError:
        reset = True
    finally:
        s.close()
    assert got.startswith(b"HTTP/1.1 200 OK") and b"first part" in got, got
    assert not got.endswith(b"0\r\n\r\n"), got        # never a clean end of the chunked body
    if version == "1.0":
        assert reset, got


@pytest.mark.parametrize("path", ["/int", "/async-set"])
def test_unsupported_result_is_500_and_the_connection_stays_usable(serve, client_factory, path):
    """A sync handler returning 42 used to leave the connection hanging
    with no response at all."""
    c = client_factory(serve(results_app()).port)
    assert get(c, path).status == 500
    assert get(c, "/ok").body == b"ok"


# ---- the request object -----------------------------------------------------


def test_headers_are_case_insensitive_and_keep_repeats(serve, client_factory):
    app = App()

    @app.get("/")
    def handler(request):
        h = request.headers
        return {"upper": h["X-TOKEN"], "lower": h.get("x-token"), "in": "X-Token" in h,
                "all": h.getall("x-multi"), "missing": h.get("nope", "default"),
                "raw": [[k.decode(), v.decode()] for k, v in request.raw_headers][1:3]}

    c = client_factory(serve(app).port)
    r = get(c, "/", b"X-Token: abc\r\nX-Multi: 1\r\nx-multi: 2\r\n")
    assert json.loads(r.body) == {"upper": "abc", "lower": "abc", "in": True, "all": ["1", "2"],
                                  "missing": "default", "raw": [["X-Token", "abc"], ["X-Multi", "1"]]}


def test_headers_object_is_built_only_when_asked_for(serve, client_factory):
    app = App()

    def holds_headers(request) -> bool:
        return any(type(o) is Headers for o in gc.get_referents(request))

    @app.get("/")
    def handler(request):
        before = holds_headers(request)
        request.headers.get("host")
        return {"before": before, "after": holds_headers(request)}

    c = client_factory(serve(app).port)
    assert json.loads(get(c, "/", b"X-A: 1\r\n").body) == {"before": False, "after": True}


def test_query_parameters(serve, client_factory):
    app = App()

    @app.get("/search")
    def handler(request):
        return {"query": request.query, "all": request.query_all("a"),
                "string": request.query_string.decode()}

    c = client_factory(serve(app).port)
    r = get(c, "/search?a=1&b=x%20y+z&a=3&empty=")
    assert json.loads(r.body) == {"query": {"a": "1", "b": "x y z", "empty": ""},
                                  "all": ["1", "3"], "string": "a=1&b=x%20y+z&a=3&empty="}


def test_path_is_percent_decoded_and_raw_path_is_as_sent(serve, client_factory):
    app = App()

    @app.get("/{name}/{other}")
    def handler(request):
        return {"path": request.path, "raw": request.raw_path.decode(),
                "name": request.params["name"], "target": request.target.decode()}

    c = client_factory(serve(app).port)
    r = get(c, "/caf%C3%A9/a%20b?q=1")
    assert json.loads(r.body) == {"path": "/café/a b", "raw": "/caf%C3%A9/a%20b", "name": "café",
                                  "target": "/caf%C3%A9/a%20b?q=1"}


@pytest.mark.parametrize("target, path, raw_path, query", [
    ("http://example.com/a%20b/c?x=1", "/a b/c", "/a%20b/c", {"x": "1"}),
    ("HTTPS://example.com?x=2", "/", "/", {"x": "2"}),
    ("http://example.com", "/", "/", {}),
])
def test_absolute_form_target_gives_the_path_part(serve, client_factory, target, path, raw_path, query):
    """``raw_path`` used to be the whole absolute URI while ``path`` was its
    path part."""
    app = App()

    def describe(request):
        return {"path": request.path, "raw": request.raw_path.decode(), "query": request.query}

    app.add_route("/", describe)
    app.add_route("/{rest:path}", describe)
    c = client_factory(serve(app).port)
    r = get(c, target)
    assert json.loads(r.body) == {"path": path, "raw": raw_path, "query": query}


def test_client_address_is_the_peer(serve, client_factory):
    app = App()

    @app.get("/")
    def handler(request):
        return list(request.client)

    c = client_factory(serve(app).port)
    host, port = c.sock.getsockname()[:2]
    assert json.loads(get(c, "/").body) == [host, port]


def test_body_and_json_are_read_in_async_handlers(serve, client_factory):
    app = App()

    @app.post("/json")
    async def handler(request):
        data = await request.json()
        again = await request.body()
        return {"data": data, "len": len(again)}

    c = client_factory(serve(app).port)
    payload = json.dumps({"x": [1, 2, 3]}).encode()
    c.send(b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
           % (len(payload), payload[:5]))
    time.sleep(0.01)
    c.send(payload[5:])
    assert json.loads(c.read_response().body) == {"data": {"x": [1, 2, 3]}, "len": len(payload)}


def _stream_of(request):
    """The BodyStream behind ``request`` (not part of the API: found the way
    the garbage collector finds it)."""
    return next(o for o in gc.get_referents(request) if type(o).__name__ == "BodyStream")


def test_large_upload_streams_in_pieces_without_being_held_in_memory(serve, client_factory):
    """5 MB to a handler that reads slowly: it arrives in many pieces, and
    the server never holds more than about 1 MB of it."""
    app = App()
    size = 5 * 1024 * 1024

    @app.post("/upload")
    async def upload(request):
        stream = _stream_of(request)
        digest, received, pieces, peak = hashlib.sha256(), 0, 0, 0
        async for chunk in request.stream():
            peak = max(peak, stream.buffered + len(chunk))
            digest.update(chunk)
            received += len(chunk)
            pieces += 1
            await asyncio.sleep(0.002)
        return {"received": received, "pieces": pieces, "peak": peak, "sha": digest.hexdigest()}

    c = client_factory(serve(app, max_body_bytes=8 * 1024 * 1024).port)
    body = bytes(range(256)) * (size // 256)
    c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    sender = threading.Thread(target=c.send, args=(body,))
    sender.start()
    r = c.read_response()
    sender.join(5)
    got = json.loads(r.body)
    assert got["received"] == size and got["sha"] == hashlib.sha256(body).hexdigest()
    assert got["pieces"] > 10
    assert got["peak"] < 1024 * 1024


def test_client_send_blocks_while_the_handler_does_not_read(serve, client_factory):
    """Backpressure seen from the client: with small socket buffers, a 5 MB
    upload stalls well before its end until the handler reads."""
    app = App()
    gate = threading.Event()
    size = 5 * 1024 * 1024

    @app.post("/upload")
    async def upload(request):
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, 10)
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
        return str(received)

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # inherited on accept
    listener.bind(("127.0.0.1", 0))
    c = client_factory(serve(app, sock=listener, max_body_bytes=8 * 1024 * 1024).port)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    piece = b"u" * 65536
    c.sock.setblocking(False)
    sent = 0
    while sent < size:
        _, writable, _ = select.select([], [c.sock], [], 0.5)
        if not writable:
            break                                   # the client's send blocks
        try:
            sent += c.sock.send(piece[:size - sent])
        except BlockingIOError:
            pass
    assert sent < 2 * 1024 * 1024
    gate.set()
    c.sock.setblocking(True)
    c.sock.settimeout(5)
    c.sock.sendall(b"u" * (size - sent))
    assert c.read_response().body == str(size).encode()


# ---- errors -----------------------------------------------------------------


def test_handler_exception_is_500_logged_with_traceback_and_the_connection_survives(
        serve, client_factory, caplog):
    app = App()

    @app.get("/boom")
    def boom(request):
        raise RuntimeError("kaboom")

    @app.get("/ok")
    async def ok(request):
        return "ok"

    c = client_factory(serve(app).port)
    with caplog.at_level(logging.ERROR, logger="fastsrv.error"):
        r = get(c, "/boom")
    assert r.status == 500 and b"kaboom" not in r.body
    records = [rec for rec in caplog.records if rec.exc_info and "/boom" in rec.getMessage()]
    assert records and isinstance(records[0].exc_info[1], RuntimeError)
    assert "kaboom" in caplog.text and "Traceback" in caplog.text
    assert get(c, "/ok").body == b"ok"


def test_http_error_sets_status_detail_and_headers(serve, client_factory):
    app = App()

    @app.get("/teapot")
    async def teapot(request):
        raise HTTPError(418, "short and stout", headers=[("x-why", "tea")])

    @app.get("/ok")
    def ok(request):
        return "ok"

    c = client_factory(serve(app).port)
    r = get(c, "/teapot")
    assert (r.status, r.body, r.header("x-why")) == (418, b"short and stout\n", "tea")
    assert get(c, "/ok").body == b"ok"


def test_http_error_with_an_invalid_status_is_500_and_harms_no_connection(serve, client_factory):
    """HTTPError(999) used to escape the core from inside data_received: no
    response, and a half-written head left in the loop's shared buffer."""
    app = App()

    @app.get("/bad")
    def bad(request):
        raise HTTPError(999, "no such status")

    @app.get("/ok")
    def ok(request):
        return "ok"

    srv = serve(app)
    c = client_factory(srv.port)
    assert get(c, "/bad").status == 500
    other = client_factory(srv.port)
    r = get(other, "/ok")
    assert (r.status, r.body) == (200, b"ok") and other.buf == b""
    assert get(c, "/ok").body == b"ok"


INJECTIONS = {
    "value-crlf": lambda: Response("x", headers=[("x-a", "v\r\nset-cookie: evil=1")]),
    "value-lf": lambda: Response("x", headers={"x-a": "v\nset-cookie: evil=1"}),
    "value-bytes-crlf": lambda: Response("x", headers=[(b"x-a", b"v\r\nset-cookie: evil=1")]),
    "value-nul": lambda: Response("x", headers=[("x-a", "v\x00set-cookie: evil=1")]),
    "name-crlf": lambda: Response("x", headers=[("set-cookie: evil=1\r\nx-a", "v")]),
    "name-colon": lambda: Response("x", headers=[("set-cookie: evil=1", "v")]),
    "content-type-crlf": lambda: Response("x", content_type="text/plain\r\nset-cookie: evil=1"),
    "streaming-value-crlf": lambda: StreamingResponse(iter([b"x"]),
                                                      headers=[("x-a", "v\r\nset-cookie: evil=1")]),
    "streaming-content-type-crlf": lambda: StreamingResponse(
        iter([b"x"]), content_type="text/plain\r\nset-cookie: evil=1"),
}


@pytest.mark.parametrize("kind", sorted(INJECTIONS))
def test_header_injection_is_500_never_a_split_response(serve, client_factory, kind):
    app = App()

    @app.get("/inject")
    def inject(request):
        return INJECTIONS[kind]()

    @app.get("/ok")
    def ok(request):
        return "ok"

    c = client_factory(serve(app).port)
    r = get(c, "/inject")
    assert r.status == 500
    assert b"evil" not in r.raw.lower() and b"evil" not in r.body
    nxt = get(c, "/ok")
    assert (nxt.status, nxt.body) == (200, b"ok")
    assert b"evil" not in nxt.raw


def test_http_error_with_an_injected_header_keeps_its_status_and_drops_the_header(
        serve, client_factory):
    app = App()

    @app.get("/")
    def denied(request):
        raise HTTPError(401, "who?", headers=[("www-authenticate", "Basic\r\nset-cookie: evil=1")])

    c = client_factory(serve(app).port)
    r = get(c, "/")
    assert (r.status, r.body) == (401, b"who?\n")
    assert b"evil" not in r.raw
    assert r.header("www-authenticate") is None


def test_handler_lying_in_content_length_is_500(serve, client_factory):
    app = App()

    @app.get("/lie")
    def lie(request):
        return Response(b"abc", headers=[("Content-Length", "10")])

    @app.get("/truth")
    def truth(request):
        return Response(b"abc", headers=[("Content-Length", "3")])

    c = client_factory(serve(app).port)
    assert get(c, "/lie").status == 500
    r = get(c, "/truth")
    assert (r.status, r.body) == (200, b"abc")
    assert [k for k, _ in r.headers].count("content-length") == 1


@pytest.mark.parametrize("status", [100, 101, 103])
def test_informational_status_is_never_sent_as_the_final_response(serve, client_factory, status):
    app = App()

    @app.get("/")
    def informational(request):
        return Response(b"", status)

    @app.get("/stream")
    def streamed(request):
        return StreamingResponse(iter([b"x"]), status)

    c = client_factory(serve(app).port)
    assert get(c, "/").status == 500
    assert get(c, "/stream").status == 500


# ---- the client going away --------------------------------------------------


def test_client_disconnect_is_visible_to_the_handler(serve, client_factory):
    app = App()
    started, saw = threading.Event(), threading.Event()
    flags: list[bool] = []

    @app.get("/poll")
    async def poll(request):
        flags.append(request.is_disconnected)
        started.set()
        await request.wait_disconnected()
        flags.append(request.is_disconnected)
        saw.set()
        return "never read"

    c = client_factory(serve(app).port)
    c.send(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n")
    assert started.wait(5)
    c.close()
    assert saw.wait(3)
    assert flags == [False, True]


def test_wait_disconnected_still_works_after_a_wait_that_timed_out(serve, client_factory):
    """A timed-out ``wait_for(request.wait_disconnected(), t)`` used to cancel
    the future every waiter shares: the next wait raised CancelledError."""
    app = App()
    started, saw = threading.Event(), threading.Event()
    outcome: list[str] = []

    @app.get("/poll")
    async def poll(request):
        try:
            await asyncio.wait_for(request.wait_disconnected(), 0.02)
        except asyncio.TimeoutError:
            outcome.append("timed out")
        started.set()
        try:
            await request.wait_disconnected()
            outcome.append("disconnected")
        except asyncio.CancelledError:
            outcome.append("cancelled")
        finally:
            saw.set()
        return "never read"

    c = client_factory(serve(app).port)
    c.send(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n")
    assert started.wait(5)
    c.close()
    assert saw.wait(3)
    assert outcome == ["timed out", "disconnected"]


def test_client_leaving_mid_body_fails_the_body_read(serve, client_factory):
    app = App()
    done = threading.Event()
    errors: list[str] = []

    @app.post("/upload")
    async def upload(request):
        try:
            await request.body()
        except BodyError as exc:
            errors.append(type(exc).__name__)
        finally:
            done.set()
        return "never read"

    c = client_factory(serve(app).port)
    c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial")
    c.close()
    assert done.wait(3)
    assert errors == ["ClientDisconnected"]


def test_streaming_response_stops_when_the_client_goes_away(serve, client_factory):
    app = App()
    finished = threading.Event()
    sent: list[int] = []

    @app.get("/endless")
    async def endless(request):
        async def ticks():
            try:
                while True:
                    sent.append(1)
                    yield b"tick\n"
                    await asyncio.sleep(0.005)
            finally:
                finished.set()
        return StreamingResponse(ticks())

    srv = serve(app)
    c = client_factory(srv.port)
    c.send(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
    while c.buf.count(b"tick") < 3:
        assert c._fill()
    c.close()
    assert finished.wait(3)
    count = len(sent)
    deadline = time.monotonic() + 2
    while srv.server.registry.open and time.monotonic() < deadline:
        time.sleep(0.005)
    assert srv.server.registry.open == 0
    assert len(sent) == count


def test_slow_stream_is_stopped_at_once_when_the_client_resets(serve, client_factory):
    """The generator waits 30 s between chunks; a client reset used to leave
    it waiting (and the connection open) until its next chunk."""
    app = App()
    finished = threading.Event()

    @app.get("/slow")
    async def slow(request):
        async def parts():
            try:
                yield b"first\n"
                await asyncio.sleep(30)
                yield b"never\n"
            finally:
                finished.set()
        return StreamingResponse(parts())

    c = client_factory(serve(app).port)
    c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    while b"first" not in c.buf:
        assert c._fill()
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()                                  # an RST, not a FIN
    assert finished.wait(3)
