"""The WebSocket handshake (RFC 6455 4.2): validated strictly in the core,
answered 101 only when the app accepts, refused with an HTTP response
otherwise, never left hanging.  Every test runs against the native app and
the ASGI app of tests/apps/websockets.py."""

from __future__ import annotations

import base64
import socket
import time

import pytest

from apps import websockets as apps
from ws_helpers import TEXT, WSClient, expected_accept, frame, handshake_request

KEY = base64.b64encode(b"0123456789abcdef")


@pytest.fixture(params=["native", "asgi"])
def port(request, serve):
    app = apps.native if request.param == "native" else apps.asgi
    return serve(app, lifespan="off", header_timeout=1.0, exit_wait_time=1.0).port


def answer(port: int, data: bytes, wait: float = 1.5) -> tuple[bytes, bool, float]:
    """(response bytes, whether the server closed, seconds to the first byte)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=wait)
    t0 = time.monotonic()
    s.sendall(data)
    out = b""
    closed = False
    elapsed = float("inf")
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            if not out:
                elapsed = time.monotonic() - t0
            out += chunk
    except socket.timeout:
        pass
    s.close()
    return out, closed, elapsed


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_a_valid_handshake_is_answered_101_with_the_accept_key(port):
    c = WSClient(port, "/echo")
    assert c.header("sec-websocket-accept") == expected_accept(c.key).decode()
    assert c.header("upgrade").lower() == "websocket" and "upgrade" in c.header("connection").lower()
    c.send_text("hi")
    assert c.read_message().text == "hi"
    c.shutdown()


@pytest.mark.parametrize("case,extra,expected", [
    ("no key", dict(drop="Sec-WebSocket-Key"), 400),
    ("key not base64", dict(key=b"not base64 at all!!!!!!="), 400),
    ("key of 15 bytes", dict(key=base64.b64encode(b"0123456789abcde")), 400),
    ("key of 17 bytes", dict(key=base64.b64encode(b"0123456789abcdefg")), 400),
    ("two keys", dict(add=f"Sec-WebSocket-Key: {KEY.decode()}"), 400),
    ("no version", dict(drop="Sec-WebSocket-Version"), 400),
    ("version 8", dict(version="8"), 426),
    ("version 14", dict(version="14"), 426),
    ("Upgrade not websocket", dict(upgrade="h2c, foo"), None),
    ("POST", dict(method="POST"), 400),
])
def test_a_bad_handshake_is_refused_with_an_http_status_and_closed(port, case, extra, expected):
    lines = handshake_request("/echo", extra.get("key", KEY), extra.get("version", "13")).decode().split("\r\n")
    lines = [line for line in lines if not (extra.get("drop") and line.startswith(extra["drop"] + ":"))]
    if extra.get("add"):
        lines.insert(2, extra["add"])
    if extra.get("method"):
        lines[0] = lines[0].replace("GET", extra["method"])
    if extra.get("upgrade"):
        lines = [f"Upgrade: {extra['upgrade']}" if line.startswith("Upgrade:") else line for line in lines]
    response, closed, elapsed = answer(port, "\r\n".join(lines).encode())
    assert elapsed < 1.0, "answered at once, not at a timeout"
    if expected is None:
        # not a WebSocket handshake at all: an ordinary request (the ASGI
        # app answers it, the native one has no HTTP route there)
        assert status(response) in (200, 404), response
        return
    assert status(response) == expected and closed, response
    if expected == 426:
        assert b"\r\nsec-websocket-version: 13\r\n" in response.lower()


def test_subprotocol_is_chosen_from_the_clients_offer(port):
    c = WSClient(port, "/echo", extra=("Sec-WebSocket-Protocol: other, chat",))
    assert c.header("sec-websocket-protocol") == "chat"
    c.shutdown()
    c = WSClient(port, "/echo", extra=("Sec-WebSocket-Protocol: other",))
    assert c.header("sec-websocket-protocol") is None
    c.shutdown()


def test_the_app_sees_the_request_and_adds_response_headers(port):
    c = WSClient(port, "/headers?q=x", extra=("X-Probe: seen",))
    assert c.header("x-extra") == "yes"
    assert c.read_message().text == "x|seen"
    c.shutdown()


def test_a_close_before_accept_is_a_403(port):
    response, closed, _ = answer(port, handshake_request("/refuse", KEY))
    assert status(response) == 403 and closed, response


def test_an_app_that_raises_before_accept_gets_a_500(port, caplog):
    response, closed, _ = answer(port, handshake_request("/raise", KEY))
    assert status(response) == 500 and closed, response


def test_the_asgi_denial_extension_sends_a_full_http_response(serve):
    port = serve(apps.asgi, lifespan="off").port
    response, closed, _ = answer(port, handshake_request("/deny", KEY))
    assert status(response) == 401 and closed, response
    assert b"www-authenticate: Bearer" in response and response.endswith(b"no entry")


def test_a_path_without_a_websocket_handler_is_served_as_plain_http(serve):
    port = serve(apps.native).port
    response, _, _ = answer(port, handshake_request("/", KEY), wait=0.3)
    assert status(response) == 200 and response.endswith(b"hello"), response
    response, _, _ = answer(port, handshake_request("/nowhere", KEY), wait=0.3)
    assert status(response) == 404


def test_a_plain_request_to_a_websocket_only_path_is_404(serve):
    port = serve(apps.native).port
    response, _, _ = answer(port, b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert status(response) == 404


def test_a_handshake_with_a_body_is_refused(port):
    data = handshake_request("/echo", KEY, extra=("Content-Length: 3",)) + b"abc"
    response, closed, _ = answer(port, data)
    assert status(response) == 400 and closed, response


def test_frames_sent_right_after_the_handshake_are_not_lost(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(handshake_request("/echo", KEY) + frame(TEXT, b"early"))
    data = b""
    while b"early" not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    assert data.startswith(b"HTTP/1.1 101 ")
    s.close()


def test_a_slowloris_on_the_handshake_is_cut_at_the_header_timeout(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    request = handshake_request("/echo", KEY)
    t0 = time.monotonic()
    try:
        for byte in request[:-4]:
            s.sendall(bytes([byte]))
            time.sleep(0.01)
            if time.monotonic() - t0 > 3:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.settimeout(3)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    assert data.startswith(b"HTTP/1.1 408"), data
    assert time.monotonic() - t0 < 3.5
    s.close()


def test_websocket_off_refuses_upgrades_with_501(serve):
    port = serve(apps.asgi, lifespan="off", ws="off").port
    response, closed, _ = answer(port, handshake_request("/echo", KEY))
    assert status(response) == 501 and closed, response
