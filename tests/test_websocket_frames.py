"""RFC 6455 framing over real sockets, against the native and the ASGI echo
endpoints: messages in any split, fragmentation with control frames in
between, UTF-8 checked as it arrives, the close handshake and its codes,
the size limit (inflated too), keepalive pings, and a client that never
reads."""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from apps import websockets as apps
from ws_helpers import (BINARY, CLOSE, CONT, PING, PONG, TEXT, WSClient, close_payload, deflate, frame)

DEFLATE = ("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",)


@pytest.fixture(params=["native", "asgi"])
def server(request, serve):
    app = apps.native if request.param == "native" else apps.asgi
    return lambda **kw: serve(app, lifespan="off", exit_wait_time=1.0, **kw)


@pytest.fixture
def port(server):
    return server().port


def test_text_and_binary_messages_are_echoed(port):
    c = WSClient(port, "/echo")
    for size in (0, 1, 125, 126, 65535, 65536, 200_000):
        data = os.urandom(size)
        c.send_bytes(data)
        got = c.read_message()
        assert (got.opcode, got.payload) == (BINARY, data)
    c.send_text("héllo ✓ 𝄞")
    got = c.read_message()
    assert (got.opcode, got.text) == (TEXT, "héllo ✓ 𝄞")
    c.shutdown()


def test_frames_split_at_every_byte_are_reassembled(port):
    c = WSClient(port, "/echo")
    data = frame(TEXT, "ünïcode text".encode()) + frame(BINARY, bytes(range(200)))
    for cut in range(1, len(data)):
        c.send(data[:cut])
        time.sleep(0.001)
        c.send(data[cut:])
        assert c.read_message().text == "ünïcode text"
        assert c.read_message().payload == bytes(range(200))
    c.shutdown()


def test_a_message_byte_by_byte(port):
    c = WSClient(port, "/echo")
    for byte in frame(TEXT, b"dribbled"):
        c.send(bytes([byte]))
    assert c.read_message().text == "dribbled"
    c.shutdown()


def test_fragments_with_pings_in_between_make_one_message(port):
    c = WSClient(port, "/echo")
    c.send(frame(TEXT, b"frag", fin=False) + frame(PING, b"p1") + frame(CONT, b"men", fin=False)
           + frame(PING, b"p2") + frame(CONT, b"ted"))
    got = [c.read_frame() for _ in range(3)]
    assert [(f.opcode, f.payload) for f in got] == [(PONG, b"p1"), (PONG, b"p2"), (TEXT, b"fragmented")]
    c.shutdown()


@pytest.mark.parametrize("case,data,code", [
    ("unmasked frame", frame(TEXT, b"x", mask=False), 1002),
    ("reserved bit 2", frame(TEXT, b"x", rsv2=True), 1002),
    ("compression bit without deflate", frame(TEXT, b"x", rsv1=True), 1002),
    ("reserved opcode 3", frame(3, b"x"), 1002),
    ("reserved opcode 11", frame(11, b"x"), 1002),
    ("fragmented ping", frame(PING, b"x", fin=False), 1002),
    ("ping over 125 bytes", frame(PING, b"x" * 126), 1002),
    ("continuation with no message", frame(CONT, b"x"), 1002),
    ("new message inside a fragmented one", frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), 1002),
    ("close with a one-byte payload", frame(CLOSE, b"\x03"), 1002),
    ("close reason not UTF-8", frame(CLOSE, close_payload(1000, b"\xff")), 1007),
    ("text not UTF-8", frame(TEXT, b"\xc3\x28"), 1007),
    ("text ending inside a sequence", frame(TEXT, b"ok\xe2\x82"), 1007),
    ("surrogate in text", frame(TEXT, b"\xed\xa0\x80"), 1007),
])
def test_a_protocol_error_closes_with_its_code(port, case, data, code):
    c = WSClient(port, "/echo")
    c.send(data)
    close = c.expect_close()
    assert close.close_code == code, case
    assert c.closed_by_server()


@pytest.mark.parametrize("position", range(0, 12))
def test_invalid_utf8_fails_fast_at_every_position(port, position):
    """The connection fails as soon as the bad byte arrives, in the first
    fragment, before the message ends."""
    text = "abcdéfghijk✓".encode()
    bad = text[:position] + b"\xff" + text[position:]
    c = WSClient(port, "/echo")
    c.send(frame(TEXT, bad, fin=False))
    assert c.expect_close().close_code == 1007
    c.shutdown()


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
def test_every_invalid_close_code_is_a_protocol_error(port, code):
    c = WSClient(port, "/echo")
    c.close(code)
    assert c.expect_close().close_code == 1002
    assert c.closed_by_server()


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999])
def test_a_valid_close_is_echoed_and_the_server_closes_tcp(port, code):
    c = WSClient(port, "/echo")
    c.close(code, b"done")
    assert c.expect_close().close_code == code
    assert c.closed_by_server(1.0)


def test_an_empty_close_is_answered_1000(port):
    c = WSClient(port, "/echo")
    c.send(frame(CLOSE, b""))
    assert c.expect_close().close_code == 1000


def test_the_app_closes_with_a_code_and_reason(port):
    c = WSClient(port, "/close/4001")
    close = c.expect_close()
    assert close.close_code == 4001 and close.payload[2:] == b"bye"
    c.close(4001)
    assert c.closed_by_server(1.0)


def test_an_oversize_message_is_refused_with_1009_before_it_is_read(server):
    port = server(ws_max_size=1000).port
    c = WSClient(port, "/echo")
    c.send_bytes(b"x" * 1000)
    assert len(c.read_message().payload) == 1000
    c.send(struct.pack("!BBQ", 0x82, 0xFF, 1 << 40) + b"mask")      # announces a terabyte
    assert c.expect_close().close_code == 1009


def test_oversize_fragments_are_refused_with_1009(server):
    port = server(ws_max_size=1000).port
    c = WSClient(port, "/echo")
    c.send(frame(BINARY, b"x" * 600, fin=False) + frame(CONT, b"x" * 600))
    assert c.expect_close().close_code == 1009


def test_permessage_deflate_is_negotiated_and_messages_are_compressed_both_ways(port):
    c = WSClient(port, "/echo", extra=DEFLATE)
    assert c.header("sec-websocket-extensions").startswith("permessage-deflate")
    text = "compress me " * 100
    c.send(frame(TEXT, deflate(text.encode()), rsv1=True))
    got = c.read_message()
    assert got.rsv1
    import zlib
    assert zlib.decompressobj(-15).decompress(got.payload + b"\x00\x00\xff\xff") == text.encode()
    c.shutdown()


def test_a_small_frame_that_inflates_over_the_limit_is_1009_with_bounded_memory(server):
    port = server(ws_max_size=1 << 20).port
    c = WSClient(port, "/echo", extra=DEFLATE)
    bomb = deflate(b"\x00" * (64 << 20))      # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < 100_000
    c.send(frame(BINARY, bomb, rsv1=True))
    assert c.expect_close().close_code == 1009


def test_deflate_off_declines_the_offer(server):
    port = server(ws_per_message_deflate=False).port
    c = WSClient(port, "/echo", extra=DEFLATE)
    assert c.header("sec-websocket-extensions") is None
    c.send_text("plain")
    assert c.read_message().text == "plain"
    c.shutdown()


def test_pings_are_answered_with_the_same_payload(port):
    c = WSClient(port, "/echo")
    c.send(frame(PING, b"are you there"))
    f = c.read_frame()
    assert (f.opcode, f.payload) == (PONG, b"are you there")
    c.shutdown()


def test_a_client_that_never_answers_pings_is_closed_with_1011(server):
    port = server(ws_ping_interval=0.2, ws_ping_timeout=0.3).port
    c = WSClient(port, "/echo")
    t0 = time.monotonic()
    pings = 0
    while True:
        f = c.read_frame()
        if f.opcode == PING:
            pings += 1
            continue
        assert f.opcode == CLOSE and f.close_code == 1011
        break
    assert pings == 1 and 0.4 < time.monotonic() - t0 < 2.0


def test_a_client_that_answers_pings_stays_open(server):
    port = server(ws_ping_interval=0.1, ws_ping_timeout=0.2).port
    c = WSClient(port, "/echo")
    deadline = time.monotonic() + 0.8
    c.sock.settimeout(0.5)
    while time.monotonic() < deadline:
        f = c.read_frame()
        assert f.opcode == PING
        c.send(frame(PONG, f.payload))
    c.send_text("still here")
    while (f := c.read_frame()).opcode == PING:
        pass
    assert f.text == "still here"
    c.shutdown()


def test_a_client_that_never_reads_holds_bounded_server_memory(port):
    """The server's sends wait while the client does not read: the flood
    endpoint's memory stays bounded by the transport's high-water mark."""
    c = WSClient(port, "/flood")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    time.sleep(1.0)
    rss = _rss_mb()
    time.sleep(1.0)
    assert _rss_mb() - rss < 5, "the server kept buffering what the client does not read"
    c.shutdown()


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_a_huge_compressed_frame_is_inflated_as_it_arrives_not_buffered(server):
    """The size limit holds for a compressed frame whose own length is over
    it: what is buffered is bounded by the inflated size."""
    port = server(ws_max_size=1 << 20).port
    c = WSClient(port, "/echo", extra=DEFLATE)
    incompressible = deflate(os.urandom(4 << 20))      # 4 MiB that deflate cannot shrink
    c.send(frame(BINARY, incompressible, rsv1=True))
    assert c.expect_close().close_code == 1009


def test_many_empty_messages_the_app_does_not_read_stop_reading(serve):
    """Messages waiting for the app count for more than their bytes, so a
    flood of empty ones pauses reading too."""
    port = serve(apps.native, ws_max_size=1 << 20, exit_wait_time=1.0).port
    c = WSClient(port, "/forever")
    c.sock.settimeout(0.5)
    batch = frame(BINARY, b"", key=b"abcd") * 10_000          # 60 kB of empty messages
    blocked = False
    try:
        for _ in range(500):                                   # up to 30 MB, 5 million messages
            c.sock.sendall(batch)
    except socket.timeout:
        blocked = True
    assert blocked, "the server kept reading what the app never takes"
    c.shutdown()


def test_compressed_bytes_that_are_not_deflate_data_fail_with_1007(port):
    c = WSClient(port, "/echo", extra=DEFLATE)
    c.send(frame(TEXT, b"\x4b\xcc\xcc\x29\x27\x48\x2e\x2a\x4f\x4f\x52\x4c\x1f\x6c\x4f\x04\x01", rsv1=True))
    assert c.expect_close().close_code == 1007
    assert c.closed_by_server()
