"""The ASGI 3 HTTP protocol over real sockets: ``send``, errors, and the
connection (keep-alive, pipelining, isolation).  See test_asgi_scope_receive.py
for how these tests are built."""

from __future__ import annotations

import asyncio
import contextvars
import socket
import struct
import time
from typing import Any, Callable

import pytest

from asgi_helpers import (BODY, START, TEXT, Seen, eager, get, nothing_arrives, read_all,  # noqa: F401
                          recv_until_closed, respond, scope_recorder, start)
from fastsrv.asgi import ClientGoneError


# ---- send -----------------------------------------------------------------


def test_send_start_and_one_body_gets_a_content_length(serve, client_factory):
    async def app(scope, receive, send):
        await respond(send, b"x" * 1000)

    c = client_factory(start(serve, app).port)
    c.send(get())
    r = c.read_response()
    assert r.header("content-length") == "1000"
    assert r.header("transfer-encoding") is None
    assert r.body == b"x" * 1000


def test_send_a_large_single_body_gets_a_content_length(serve, client_factory):
    body = bytes(range(256)) * 4096      # 1 MiB: written apart from the head

    async def app(scope, receive, send):
        await respond(send, body)

    c = client_factory(start(serve, app).port)
    c.send(get() + get())
    for _ in range(2):
        r = c.read_response()
        assert r.header("content-length") == str(len(body))
        assert r.body == body


def stream_app(parts: list[bytes], headers: Any = None) -> Any:
    async def app(scope, receive, send):
        await send({"type": START, "status": 200, "headers": TEXT if headers is None else headers})
        for part in parts:
            await send({"type": BODY, "body": part, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": BODY, "body": b"", "more_body": False})
    return app


def test_send_streaming_is_chunked_for_http_1_1_and_keeps_the_connection(serve, client_factory):
    c = client_factory(start(serve, stream_app([b"one ", b"two ", b"three"])).port)
    for _ in range(2):
        c.send(get())
        r = c.read_response()
        assert r.header("transfer-encoding") == "chunked"
        assert r.header("content-length") is None
        assert r.body == b"one two three"


def test_send_streaming_is_close_delimited_for_http_1_0(serve, client_factory):
    c = client_factory(start(serve, stream_app([b"one ", b"two ", b"three"])).port)
    c.send(get("/", "1.0", "Connection: keep-alive\r\n"))
    data = recv_until_closed(c)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200")
    assert b"transfer-encoding" not in head.lower()
    assert b"content-length" not in head.lower()
    assert body == b"one two three"


def test_send_respects_an_app_provided_content_length_when_streaming(serve, client_factory):
    app = stream_app([b"01234", b"56789"], TEXT + [(b"content-length", b"10")])
    c = client_factory(start(serve, app).port)
    for _ in range(2):
        c.send(get())
        r = c.read_response()
        assert r.header("content-length") == "10"
        assert r.header("transfer-encoding") is None
        assert r.body == b"0123456789"


def test_send_waits_for_the_transport_to_drain_when_streaming(serve, client_factory):
    chunk, total = 256 * 1024, 48 * 1024 * 1024
    sent = [0]

    async def app(scope, receive, send):
        await send({"type": START, "status": 200,
                    "headers": [(b"content-length", str(total).encode())]})
        while sent[0] < total:
            await send({"type": BODY, "body": b"z" * chunk, "more_body": sent[0] + chunk < total})
            sent[0] += chunk

    c = client_factory(start(serve, app).port)
    c.send(get())
    time.sleep(0.5)                  # the client reads nothing
    stalled_at = sent[0]
    time.sleep(0.2)
    assert sent[0] == stalled_at, "send() kept returning while the client read nothing"
    assert stalled_at < total // 2, f"{stalled_at} bytes were queued for a client that reads nothing"
    c.sock.settimeout(5)
    data = bytearray()
    while b"\r\n\r\n" not in data:
        data += c.sock.recv(65536)
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    received = len(rest)
    while received < total:
        piece = c.sock.recv(1 << 20)
        assert piece, f"closed after {received} of {total} body bytes"
        received += len(piece)
    assert received == total


def test_head_response_has_no_body(serve, client_factory):
    async def app(scope, receive, send):
        await respond(send, b"a body HEAD must not get")

    c = client_factory(start(serve, app).port)
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" + get("/after"))
    head = c.read_response(head_request=True)
    assert head.status == 200
    assert head.header("content-length") in (None, str(len(b"a body HEAD must not get")))
    after = c.read_response()           # would read the HEAD body as its head otherwise
    assert (after.status, after.body) == (200, b"a body HEAD must not get")


def test_head_response_to_a_streaming_app_has_no_body(serve, client_factory):
    c = client_factory(start(serve, stream_app([b"one", b"two"])).port)
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" + get("/after"))
    head = c.read_response(head_request=True)
    assert head.status == 200
    after = c.read_response()
    assert (after.status, after.body) == (200, b"onetwo")


@pytest.mark.parametrize("status", [204, 304])
@pytest.mark.parametrize("app_body", [b"", b"a body the status forbids"])
def test_no_body_for_204_and_304(serve, client_factory, status, app_body):
    async def app(scope, receive, send):
        if scope["path"] == "/after":
            return await respond(send, b"after")
        await respond(send, app_body, status=status, headers=[(b"etag", b'"v1"')])

    c = client_factory(start(serve, app).port)
    c.send(get("/nobody") + get("/after"))
    r = c.read_response()
    assert r.status == status
    assert r.header("etag") == '"v1"'
    assert r.header("transfer-encoding") is None
    if status == 204:
        assert r.header("content-length") is None
    after = c.read_response()
    assert (after.status, after.body) == (200, b"after")


@pytest.mark.parametrize("name,value", [
    (b"x-evil", b"a\r\nset-cookie: pwned=1"),
    (b"x-evil", b"a\nset-cookie: pwned=1"),
    (b"x-evil", b"a\rset-cookie: pwned=1"),
    (b"x-evil", b"a\x00b"),
    (b"x-evil\r\nset-cookie: pwned=1", b"v"),
    (b"x evil", b"v"),
], ids=["value-crlf", "value-lf", "value-cr", "value-nul", "name-crlf", "name-space"])
def test_app_header_with_control_characters_gives_500_and_nothing_split(
        serve, client_factory, name, value):
    async def app(scope, receive, send):
        if scope["path"] == "/after":
            return await respond(send, b"after")
        await respond(send, b"evil", headers=[(b"content-type", b"text/plain"), (name, value)])

    c = client_factory(start(serve, app).port)
    c.send(get("/evil"))
    r = c.read_response()
    assert r.status == 500
    assert r.header("set-cookie") is None
    assert b"pwned" not in r.raw and b"evil" not in r.body
    c.send(get("/after"))
    after = c.read_response()
    assert (after.status, after.body) == (200, b"after")
    assert b"pwned" not in c.buf


def test_a_second_response_start_is_an_error(serve, client_factory):
    seen = Seen()

    async def app(scope, receive, send):
        await send({"type": START, "status": 200, "headers": TEXT})
        try:
            await send({"type": START, "status": 201, "headers": TEXT})
        except Exception as exc:
            seen.add(exc)
            raise
        seen.add("second start accepted")
        await send({"type": BODY, "body": b"body"})

    c = client_factory(start(serve, app).port)
    c.send(get())
    r = c.read_response()
    assert isinstance(seen.wait()[0], RuntimeError)
    assert r.status == 500


def test_body_before_start_gives_500(serve, client_factory):
    seen = Seen()

    async def app(scope, receive, send):
        if scope["path"] == "/after":
            return await respond(send, b"after")
        try:
            await send({"type": BODY, "body": b"too early"})
        except Exception as exc:
            seen.add(exc)
            raise

    c = client_factory(start(serve, app).port)
    c.send(get("/early"))
    r = c.read_response()
    assert r.status == 500
    assert b"too early" not in r.raw
    assert isinstance(seen.wait()[0], RuntimeError)
    c.send(get("/after"))
    assert c.read_response().body == b"after"


@pytest.mark.parametrize("where", ["at-once", "after-await", "after-start"])
def test_exception_before_the_head_is_sent_gives_500_and_keeps_the_connection(
        serve, client_factory, eager, where):
    async def app(scope, receive, send):
        if scope["path"] == "/after":
            return await respond(send, b"after")
        if where == "after-await":
            await asyncio.sleep(0.01)
        if where == "after-start":
            await send({"type": START, "status": 200, "headers": TEXT})
        raise ValueError("the app fails")

    c = client_factory(start(serve, app, asgi_eager=eager).port)
    c.send(get("/fail"))
    r = c.read_response()
    assert r.status == 500
    assert r.header("connection") != "close"
    c.send(get("/after"))
    assert c.read_response().body == b"after"


def test_exception_after_the_response_started_closes_the_connection(serve, client_factory, eager):
    async def app(scope, receive, send):
        await send({"type": START, "status": 200, "headers": TEXT})
        await send({"type": BODY, "body": b"partial", "more_body": True})
        await asyncio.sleep(0.01)
        raise ValueError("the app fails mid-response")

    c = client_factory(start(serve, app, asgi_eager=eager).port)
    c.send(get())
    data = recv_until_closed(c)
    assert data.startswith(b"HTTP/1.1 200")
    assert b"partial" in data
    assert not data.endswith(b"0\r\n\r\n"), "a failed response must not look complete"


@pytest.mark.parametrize("what", ["nothing", "start-only"])
def test_app_returning_without_a_response_gives_500(serve, client_factory, eager, what):
    async def app(scope, receive, send):
        if scope["path"] == "/after":
            return await respond(send, b"after")
        if what == "start-only":
            await send({"type": START, "status": 200, "headers": TEXT})

    c = client_factory(start(serve, app, asgi_eager=eager).port)
    c.send(get("/none"))
    assert c.read_response().status == 500
    c.send(get("/after"))
    assert c.read_response().body == b"after"


def test_app_returning_mid_stream_closes_the_connection(serve, client_factory):
    async def app(scope, receive, send):
        await send({"type": START, "status": 200, "headers": TEXT})
        await send({"type": BODY, "body": b"partial", "more_body": True})

    c = client_factory(start(serve, app).port)
    c.send(get())
    data = recv_until_closed(c)
    assert b"partial" in data and not data.endswith(b"0\r\n\r\n")


@pytest.mark.parametrize("parts", [[b"0123456789"], [b"012", b"3456789"]], ids=["one", "streamed"])
def test_body_longer_than_its_content_length_closes_the_connection(serve, client_factory, parts):
    seen = Seen()

    async def app(scope, receive, send):
        await send({"type": START, "status": 200, "headers": [(b"content-length", b"5")]})
        try:
            for i, part in enumerate(parts):
                await send({"type": BODY, "body": part, "more_body": i < len(parts) - 1})
        except Exception as exc:
            seen.add(exc)
            raise

    c = client_factory(start(serve, app).port)
    c.send(get() + get())
    data = recv_until_closed(c)
    _, _, body = data.partition(b"\r\n\r\n")
    assert len(body) <= 5, f"more than the declared length went out: {data!r}"
    assert data.count(b"HTTP/1.1") <= 1
    assert isinstance(seen.wait()[0], Exception)


def test_body_shorter_than_its_content_length_closes_the_connection(serve, client_factory):
    async def app(scope, receive, send):
        await send({"type": START, "status": 200, "headers": [(b"content-length", b"10")]})
        await send({"type": BODY, "body": b"short"})

    c = client_factory(start(serve, app).port)
    c.send(get() + get())
    data = recv_until_closed(c)
    assert data.count(b"HTTP/1.1") == 1
    assert data.endswith(b"\r\n\r\nshort")


def test_app_connection_close_header_closes_after_the_response(serve, client_factory):
    async def app(scope, receive, send):
        await respond(send, b"bye", headers=TEXT + [(b"connection", b"close")])

    c = client_factory(start(serve, app).port)
    c.send(get("/first") + get("/second"))
    data = recv_until_closed(c)
    assert data.count(b"HTTP/1.1 200") == 1
    assert data.endswith(b"bye")


def test_request_and_response_bodies_stream_at_the_same_time(serve, client_factory, eager):
    """An app may answer each piece of the body as it comes (full duplex)."""
    async def app(scope, receive, send):
        await send({"type": START, "status": 200, "headers": TEXT})
        while True:
            message = await receive()
            if message["body"]:
                await send({"type": BODY, "body": message["body"].upper(), "more_body": True})
            if not message["more_body"]:
                break
        await send({"type": BODY, "body": b""})

    c = client_factory(start(serve, app, asgi_eager=eager).port)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    for word in (b"alpha", b"beta", b"gamma"):
        c.send(b"%x\r\n%s\r\n" % (len(word), word))
        while word.upper() not in c.buf:
            assert c._fill(), f"closed before the echo of {word!r}: {c.buf!r}"
    c.send(b"0\r\n\r\n")
    while not c.buf.endswith(b"0\r\n\r\n"):
        assert c._fill()
    assert b"ALPHA" in c.buf and b"GAMMA" in c.buf


def test_send_after_the_client_disconnected_raises_client_gone_error(serve, client_factory, eager):
    seen = Seen()

    async def app(scope, receive, send):
        await send({"type": START, "status": 200, "headers": TEXT})
        try:
            for _ in range(200):
                await send({"type": BODY, "body": b"tick\n", "more_body": True})
                await asyncio.sleep(0.01)
        except BaseException as exc:
            seen.add(exc)
            raise
        seen.add("never raised")

    c = client_factory(start(serve, app, asgi_eager=eager).port)
    c.send(get())
    while b"tick" not in c.buf:
        c._fill()
    c.close()
    exc = seen.wait(timeout=3)[0]
    assert isinstance(exc, ClientGoneError), repr(exc)
    assert isinstance(exc, OSError)


def test_send_after_a_reset_seen_by_receive_raises_client_gone_error(serve, client_factory):
    seen = Seen()

    async def app(scope, receive, send):
        await read_all(receive)
        seen.add(await receive())
        await asyncio.sleep(0.05)      # the reset reaches the server
        try:
            await respond(send, b"too late")
        except BaseException as exc:
            seen.add(exc)
            raise

    c = client_factory(start(serve, app).port)
    c.send(get())
    time.sleep(0.05)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    disconnect, exc = seen.wait(2)
    assert disconnect == {"type": "http.disconnect"}
    assert isinstance(exc, ClientGoneError), repr(exc)


def test_a_half_closed_client_sees_disconnect_yet_still_gets_its_response(serve, client_factory):
    # After a FIN the server cannot tell "closed" from "done sending": the
    # app is told the client went away (so it can stop early), and whatever
    # it still sends is delivered, for a client that only half-closed.
    seen = Seen()

    async def app(scope, receive, send):
        await read_all(receive)
        seen.add(await receive())
        await respond(send, b"still delivered")

    c = client_factory(start(serve, app).port)
    c.send(get())
    c.sock.shutdown(socket.SHUT_WR)
    assert seen.wait(1) == [{"type": "http.disconnect"}]
    r = c.read_response()
    assert (r.status, r.body) == (200, b"still delivered")
    assert c.is_closed()


def test_body_after_the_response_is_complete_is_an_error(serve, client_factory):
    seen = Seen()

    async def app(scope, receive, send):
        await respond(send, scope["path"].encode())
        try:
            await send({"type": BODY, "body": b"extra"})
        except Exception as exc:
            seen.add(exc)

    c = client_factory(start(serve, app).port)
    c.send(get("/one") + get("/two"))
    assert [c.read_response().body for _ in range(2)] == [b"/one", b"/two"]
    assert all(isinstance(e, RuntimeError) for e in seen.wait(2))
    assert nothing_arrives(c, 0.1), c.buf


# ---- connections ----------------------------------------------------------


def path_echo(delay: Callable[[str], float] | None = None) -> Any:
    async def app(scope, receive, send):
        await read_all(receive)
        if delay is not None:
            await asyncio.sleep(delay(scope["path"]))
        await respond(send, scope["path"].encode())
    return app


def test_keep_alive_serves_requests_one_after_another(serve, client_factory, eager):
    c = client_factory(start(serve, path_echo(), asgi_eager=eager).port)
    for i in range(5):
        c.send(get(f"/r{i}"))
        r = c.read_response()
        assert (r.status, r.body) == (200, f"/r{i}".encode())
        assert r.header("connection") != "close"


@pytest.mark.parametrize("kind", ["at-once", "sleeping"])
def test_pipelined_requests_are_answered_in_order(serve, client_factory, eager, kind):
    n = 6
    # later requests finish sooner: answers must still come in request order
    delay = (lambda path: (n - int(path[2:])) * 0.01) if kind == "sleeping" else None
    c = client_factory(start(serve, path_echo(delay), asgi_eager=eager).port)
    requests = b"".join(
        get(f"/r{i}") if i % 2 else
        f"POST /r{i} HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc".encode()
        for i in range(n))
    c.send(requests)
    assert [c.read_response().body for _ in range(n)] == [f"/r{i}".encode() for i in range(n)]


@pytest.mark.parametrize("body", [
    b"Content-Length: 10\r\n\r\n01234",
    b"Transfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n",
], ids=["content-length", "chunked"])
def test_a_body_the_app_did_not_read_is_skipped_for_the_next_request(serve, client_factory, eager, body):
    async def app(scope, receive, send):
        await respond(send, scope["path"].encode())

    c = client_factory(start(serve, app, asgi_eager=eager).port)
    c.send(b"POST /unread HTTP/1.1\r\nHost: t\r\n" + body)
    assert c.read_response().body == b"/unread"
    rest = b"56789" if b"Content-Length" in body else b"5\r\n56789\r\n0\r\n\r\n"
    c.send(rest + get("/next"))
    r = c.read_response()
    assert (r.status, r.body) == (200, b"/next")


def test_an_upgrade_other_than_websocket_reaches_the_app(serve, client_factory):
    seen = Seen()
    c = client_factory(start(serve, scope_recorder(seen)).port)
    c.send(b"GET /h2c HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n" + get("/after"))
    assert [c.read_response().status for _ in range(2)] == [200, 200]
    assert [s["path"] for s in seen.wait(2)] == ["/h2c", "/after"]


def test_contextvars_set_in_one_request_are_not_seen_by_the_next(serve, client_factory, eager):
    var: contextvars.ContextVar[str | None] = contextvars.ContextVar("asgi_request_var", default=None)

    async def app(scope, receive, send):
        before = var.get()
        var.set(scope["path"])
        if scope["path"].endswith("sleep"):
            await asyncio.sleep(0.01)
        await respond(send, repr(before).encode())

    port = start(serve, app, asgi_eager=eager).port
    c = client_factory(port)
    for path in ("/a", "/b-sleep", "/c"):
        c.send(get(path))
        assert c.read_response().body == b"None", path
    c.send(get("/d") + get("/e-sleep") + get("/f"))
    assert [c.read_response().body for _ in range(3)] == [b"None"] * 3
    other = client_factory(port)
    other.send(get("/g"))
    assert other.read_response().body == b"None"


WS_UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def test_with_websocket_off_an_upgrade_is_refused_with_501_and_never_hangs(serve, client_factory):
    seen = Seen()

    async def app(scope, receive, send):
        seen.add(scope["type"])
        await respond(send)

    c = client_factory(start(serve, app, ws="off").port, timeout=3)
    t0 = time.monotonic()
    c.send(WS_UPGRADE)
    r = c.read_response()
    assert r.status == 501
    assert b"websocket" in r.body.lower()
    assert c.is_closed(2)
    assert time.monotonic() - t0 < 3
    assert seen.items == [], "the app was called for a WebSocket request"


def test_an_app_that_answers_a_websocket_scope_with_http_gets_a_500_and_never_hangs(serve, client_factory):
    """An HTTP-only app sent a websocket scope (uvicorn does the same)."""
    seen = Seen()

    async def app(scope, receive, send):
        seen.add(scope["type"])
        await respond(send)

    c = client_factory(start(serve, app).port, timeout=3)
    t0 = time.monotonic()
    c.send(WS_UPGRADE)
    r = c.read_response()
    assert r.status == 500 and c.is_closed(2)
    assert time.monotonic() - t0 < 3
    assert seen.items == ["websocket"]


def body_reader(seen: Seen, on_disconnect: str) -> Any:
    """Reads the body; on ``http.disconnect`` either returns ("returns") or,
    as an app that takes the disconnect for the end of the body would,
    answers 200 ("answers")."""
    async def app(scope, receive, send):
        body = b""
        while True:
            message = await receive()
            seen.add(message)
            if message["type"] == "http.disconnect":
                if on_disconnect == "answers":
                    try:
                        await respond(send, b"read %d" % len(body))
                    except ClientGoneError:
                        pass
                return
            body += message["body"]
            if not message["more_body"]:
                return await respond(send, b"read %d" % len(body))
    return app


@pytest.mark.parametrize("on_disconnect", ["returns", "answers"])
def test_body_timeout_gives_the_app_disconnect_and_the_client_408(serve, client_factory, on_disconnect):
    seen = Seen()
    c = client_factory(start(serve, body_reader(seen, on_disconnect), body_timeout=0.5).port)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nslow")
    messages = seen.wait(2, timeout=4)
    assert messages[0] == {"type": "http.request", "body": b"slow", "more_body": True}
    assert messages[-1] == {"type": "http.disconnect"}
    r = c.read_response()
    assert r.status == 408, r.raw
    assert c.is_closed(2)


@pytest.mark.parametrize("on_disconnect", ["returns", "answers"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_over_max_body_bytes_gives_413(serve, client_factory, framing, on_disconnect):
    seen = Seen()
    c = client_factory(start(serve, body_reader(seen, on_disconnect), max_body_bytes=100).port)
    if framing == "content-length":
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n" + b"x" * 101)
    else:
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"40\r\n" + b"x" * 64 + b"\r\n40\r\n" + b"y" * 64 + b"\r\n0\r\n\r\n")
    r = c.read_response()
    assert r.status == 413, r.raw
    assert c.is_closed(2)
    assert {"type": "http.request", "body": b"x" * 64 + b"y" * 64, "more_body": False} not in seen.items
