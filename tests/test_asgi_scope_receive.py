"""The ASGI 3 HTTP protocol over real sockets: the scope and ``receive``.

Every app here is a raw ASGI callable (no framework), served in-process by
the ``serve`` fixture; requests are exact bytes sent by ``client_factory``.
What an app sees is recorded in a :class:`Seen` and checked from the test
thread.  Under pytest anyio is imported, so ``asgi_eager="auto"`` would always
mean "a Task per request"; where running in place matters both modes are
checked (the ``eager`` fixture).  Responses: test_asgi_send.py.
"""


from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time

import pytest

from asgi_helpers import (BODY, START, Seen, get, nothing_arrives, read_all, recv_until_closed, respond,
                          scope_recorder, start)


# ---- the scope ------------------------------------------------------------


def test_scope_names_an_http_request_in_asgi_3(serve, client_factory):
    seen = Seen()
    c = client_factory(start(serve, scope_recorder(seen)).port)
    c.send(b"PATCH /x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
    assert c.read_response().status == 200
    scope = seen.wait()[0]
    assert scope["type"] == "http"
    # spec 2.4: send() after a disconnect raises an OSError (ClientGoneError)
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["method"] == "PATCH"
    assert scope["scheme"] == "http"


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_scope_http_version_is_the_request_version(serve, client_factory, version):
    seen = Seen()
    c = client_factory(start(serve, scope_recorder(seen)).port)
    c.send(get("/", version))
    assert c.read_response().status == 200
    assert seen.wait()[0]["http_version"] == version


def test_scope_path_is_percent_decoded_and_raw_path_is_as_sent(serve, client_factory):
    seen = Seen()
    c = client_factory(start(serve, scope_recorder(seen)).port)
    c.send(get("/a%20b/caf%C3%A9/x%2Fy?q=a%20b&r=%C3%A9&e="))
    assert c.read_response().status == 200
    scope = seen.wait()[0]
    assert scope["path"] == "/a b/café/x/y"
    assert scope["raw_path"] == b"/a%20b/caf%C3%A9/x%2Fy"
    assert scope["query_string"] == b"q=a%20b&r=%C3%A9&e="


def test_scope_query_string_is_empty_bytes_without_a_query(serve, client_factory):
    seen = Seen()
    c = client_factory(start(serve, scope_recorder(seen)).port)
    for target in ("/plain", "/plain?"):
        c.send(get(target))
        assert c.read_response().status == 200
    for scope in seen.wait(2):
        assert scope["path"] == "/plain"
        assert scope["query_string"] == b""
        assert scope["raw_path"] == b"/plain"


def test_scope_root_path_is_prefixed_to_path_and_raw_path(serve, client_factory):
    seen = Seen()
    c = client_factory(start(serve, scope_recorder(seen), root_path="/api").port)
    c.send(get("/users/a%20b?x=1"))
    assert c.read_response().status == 200
    scope = seen.wait()[0]
    # as uvicorn does: root_path is the mount point, path the full path
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/users/a b"
    assert scope["raw_path"] == b"/api/users/a%20b"
    assert scope["query_string"] == b"x=1"


def test_scope_root_path_is_empty_without_the_setting(serve, client_factory):
    seen = Seen()
    c = client_factory(start(serve, scope_recorder(seen)).port)
    c.send(get("/users"))
    c.read_response()
    scope = seen.wait()[0]
    assert (scope["root_path"], scope["path"]) == ("", "/users")


def test_scope_headers_are_lowercased_bytes_pairs_in_order_with_repeats(serve, client_factory):
    seen = Seen()
    c = client_factory(start(serve, scope_recorder(seen)).port)
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Dup: 1\r\nUSER-AGENT: Probe/1.0\r\n"
           b"Content-Type: Text/HTML\r\nx-dup: 2\r\nX-Pad:   padded value  \r\n"
           b"X-Odd.Name~1: v\r\nX-DUP: 3\r\n\r\n")
    assert c.read_response().status == 200
    headers = seen.wait()[0]["headers"]
    assert all(type(k) is bytes and type(v) is bytes for k, v in headers)
    assert headers == [
        (b"host", b"t"), (b"x-dup", b"1"), (b"user-agent", b"Probe/1.0"),
        (b"content-type", b"Text/HTML"), (b"x-dup", b"2"), (b"x-pad", b"padded value"),
        (b"x-odd.name~1", b"v"), (b"x-dup", b"3"),
    ]


@pytest.mark.parametrize("keep", [False, True], ids=["default", "underscores_in_headers"])
def test_scope_headers_leave_out_names_with_an_underscore_unless_kept(serve, client_factory, keep):
    """Content_Length must not pass for Content-Length in an app (or a
    framework) that maps "_" and "-" alike; nginx drops such fields too."""
    seen = Seen()
    c = client_factory(start(serve, scope_recorder(seen), underscores_in_headers=keep).port)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent_Length: 9\r\nX_Forwarded_For: 10.0.0.1\r\n"
           b"Content-Length: 2\r\n\r\nhi")
    assert c.read_response().status == 200
    kept = [(b"content_length", b"9"), (b"x_forwarded_for", b"10.0.0.1")] if keep else []
    assert seen.wait()[0]["headers"] == [(b"host", b"t"), *kept, (b"content-length", b"2")]


def test_scope_host_is_the_authority_of_an_absolute_form_target(serve, client_factory):
    """RFC 9112 3.2.2: the server MUST ignore Host and use the target's
    authority; the app sees that as the host header."""
    seen = Seen()
    c = client_factory(start(serve, scope_recorder(seen)).port)
    c.send(b"GET http://a.example:8080/p?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n")
    assert c.read_response().status == 200
    scope = seen.wait()[0]
    assert scope["headers"] == [(b"host", b"a.example:8080")]
    assert (scope["path"], scope["query_string"]) == ("/p", b"q=1")


def test_scope_client_and_server_are_the_socket_addresses(serve, client_factory):
    seen = Seen()
    srv = start(serve, scope_recorder(seen))
    c = client_factory(srv.port)
    c.send(get())
    c.read_response()
    scope = seen.wait()[0]
    assert tuple(scope["client"]) == c.sock.getsockname()
    assert tuple(scope["server"]) == ("127.0.0.1", srv.port)


def test_scope_state_is_a_copy_of_the_lifespan_state_per_request(serve, client_factory):
    seen = Seen()

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    scope["state"]["db"] = "connected"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        seen.add(dict(scope["state"]))
        scope["state"]["written_by"] = scope["path"]    # must not reach the next request
        await respond(send)

    c = client_factory(start(serve, app, lifespan="on").port)
    for path in ("/one", "/two"):
        c.send(get(path))
        assert c.read_response().status == 200
    first, second = seen.wait(2)
    assert first == {"db": "connected"}
    assert second == {"db": "connected"}


def test_scope_shutdown_extension_lets_a_stream_end_before_the_deadline(serve, client_factory):
    seen = Seen()

    async def app(scope, receive, send):
        signal = scope["extensions"]["fastsrv.shutdown"]["signal"]
        seen.add(signal.is_set)
        await send({"type": START, "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": BODY, "body": b"data: hello\n\n", "more_body": True})
        await signal.wait()
        seen.add(signal.is_set)
        await send({"type": BODY, "body": b"data: bye\n\n"})

    srv = start(serve, app, exit_wait_time=8)
    c = client_factory(srv.port)
    c.send(get("/events"))
    seen.wait(1)
    t0 = time.monotonic()
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    r = c.read_response()
    elapsed = time.monotonic() - t0
    stopper.join(10)
    assert r.body == b"data: hello\n\ndata: bye\n\n"
    assert seen.items[:2] == [False, True]
    assert elapsed < 3, f"the stream ended {elapsed:.1f} s after the shutdown began"
    assert srv.status == 0


# ---- receive ----------------------------------------------------------------


def test_receive_gives_a_body_that_came_with_the_head_in_one_message(serve, client_factory):
    seen = Seen()

    async def app(scope, receive, send):
        await respond(send, await read_all(receive, seen))

    c = client_factory(start(serve, app).port)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world")
    assert c.read_response().body == b"hello world"
    assert seen.items == [{"type": "http.request", "body": b"hello world", "more_body": False}]


def test_receive_without_a_body_gives_one_empty_final_message(serve, client_factory):
    seen = Seen()

    async def app(scope, receive, send):
        await respond(send, await read_all(receive, seen))

    c = client_factory(start(serve, app).port)
    c.send(get())
    assert c.read_response().status == 200
    assert seen.items == [{"type": "http.request", "body": b"", "more_body": False}]


def test_receive_gives_a_content_length_body_in_pieces_with_more_body(serve, client_factory):
    seen = Seen()

    async def app(scope, receive, send):
        await respond(send, await read_all(receive, seen))

    c = client_factory(start(serve, app).port)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 12\r\n\r\nfirst")
    seen.wait(1)
    c.send(b"-second")
    assert c.read_response().body == b"first-second"
    messages = seen.items
    assert len(messages) >= 2
    assert all(m["type"] == "http.request" for m in messages)
    assert [m["more_body"] for m in messages] == [True] * (len(messages) - 1) + [False]
    assert b"".join(m["body"] for m in messages) == b"first-second"


def test_receive_gives_a_chunked_body_in_pieces_with_more_body(serve, client_factory):
    seen = Seen()

    async def app(scope, receive, send):
        await respond(send, await read_all(receive, seen))

    c = client_factory(start(serve, app).port)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    seen.wait(1)
    c.send(b"6\r\n world\r\n")
    seen.wait(2)
    c.send(b"0\r\n\r\n")
    assert c.read_response().body == b"hello world"
    messages = seen.items
    assert len(messages) >= 3
    assert [m["more_body"] for m in messages] == [True] * (len(messages) - 1) + [False]
    assert b"".join(m["body"] for m in messages) == b"hello world"


def test_receive_reads_a_large_upload_as_a_slow_app_asks_for_it(serve, client_factory):
    """The server stops reading while the app has not taken what it holds:
    a slow reader gets many bounded pieces, not the whole body at once."""
    size = 8 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)

    async def app(scope, receive, send):
        await asyncio.sleep(0.1)    # the whole body would be buffered by now without backpressure
        sizes, digest = [], hashlib.sha256()
        while True:
            message = await receive()
            sizes.append(len(message["body"]))
            digest.update(message["body"])
            if not message["more_body"]:
                break
            await asyncio.sleep(0.003)
        await respond(send, json.dumps({"sizes": sizes, "sha": digest.hexdigest()}).encode())

    c = client_factory(start(serve, app).port)
    c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
    c.send(payload)
    got = json.loads(c.read_response().body)
    assert sum(got["sizes"]) == size
    assert got["sha"] == hashlib.sha256(payload).hexdigest()
    assert len(got["sizes"]) >= 8, got["sizes"]
    assert max(got["sizes"]) <= 2 * 1024 * 1024, f"the server read ahead of the app: {got['sizes']}"


def test_receive_gives_disconnect_when_the_client_goes_after_the_body(serve, client_factory):
    seen = Seen()

    async def app(scope, receive, send):
        await read_all(receive)
        seen.add("body read")
        seen.add(await receive())       # a long poll waiting for the client to go

    c = client_factory(start(serve, app).port)
    c.send(get("/poll"))
    seen.wait(1)
    c.close()
    assert seen.wait(2)[1] == {"type": "http.disconnect"}


def test_receive_gives_disconnect_when_the_client_goes_mid_body(serve, client_factory):
    seen = Seen()

    async def app(scope, receive, send):
        await read_all(receive, seen)

    c = client_factory(start(serve, app).port)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\npart")
    seen.wait(1)
    c.close()
    messages = seen.wait(2)
    assert messages[0] == {"type": "http.request", "body": b"part", "more_body": True}
    assert messages[-1] == {"type": "http.disconnect"}


def test_receive_gives_disconnect_once_the_response_is_complete(serve, client_factory):
    seen = Seen()

    async def app(scope, receive, send):
        await read_all(receive)
        await respond(send, b"done")
        t0 = time.monotonic()
        seen.add(await receive())
        seen.add(time.monotonic() - t0)

    c = client_factory(start(serve, app).port)
    c.send(get())
    assert c.read_response().body == b"done"
    message, waited = seen.wait(2)
    assert message == {"type": "http.disconnect"}
    assert waited < 0.5
    c.send(get())                   # the connection is still usable
    assert c.read_response().body == b"done"


def test_receive_after_the_response_without_reading_the_body_gives_disconnect(serve, client_factory):
    """ASGI: ``http.disconnect`` is what ``receive`` gives once a response
    has been sent (uvicorn does so even when the body was never read)."""
    seen = Seen()

    async def app(scope, receive, send):
        await respond(send, b"answered first")
        seen.add(await receive())

    c = client_factory(start(serve, app).port)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
    assert c.read_response().body == b"answered first"
    assert seen.wait()[0] == {"type": "http.disconnect"}


def test_100_continue_is_sent_when_the_app_first_calls_receive(serve, client_factory):
    seen = Seen()

    async def app(scope, receive, send):
        await asyncio.sleep(0.4)
        seen.add("receiving")
        await respond(send, await read_all(receive))

    c = client_factory(start(serve, app).port)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    assert nothing_arrives(c, 0.2), f"sent before the app read: {c.buf!r}"
    seen.wait(1)
    interim = c.read_response()
    assert interim.status == 100
    c.send(b"hello")
    r = c.read_response()
    assert (r.status, r.body) == (200, b"hello")


def test_100_continue_is_not_sent_when_the_app_answers_without_reading(serve, client_factory):
    async def app(scope, receive, send):
        await respond(send, b"no thanks", status=417)

    c = client_factory(start(serve, app).port)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    r = c.read_response()
    assert (r.status, r.body) == (417, b"no thanks")
    assert b" 100 " not in r.raw
    # the body that never came cannot be told from a next request: closed
    assert b"100 Continue" not in recv_until_closed(c)
