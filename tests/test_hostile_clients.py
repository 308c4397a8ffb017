"""Hostile clients over real sockets on 127.0.0.1: each keeps being served
what it is owed, nothing more, and costs the server bounded memory, file
descriptors and connection objects.

Bounded in count and time: a few hundred slow connections, a few thousand
dropped ones, responses of a few megabytes.  Timeouts are set to 1 s and the
core sweeps them once a second, so a timeout fires 1-2 s after it was armed.
Memory is measured as the RSS of a server in a subprocess.

Each test runs against the native app (``tests/apps/hostile.py``) and the
same routes as a raw ASGI app (``tests/apps/hostile_asgi.py``); where how the
app is run matters (the handler awaits, streams or is reset under it), the
ASGI app runs both in place (``asgi_eager`` on) and in a Task (off).
"""

from __future__ import annotations

import gc
import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List

import pytest

from bench.harness.procs import rss_bytes as rss
from fastsrv._core import debug_counters

from apps import hostile, hostile_asgi
from conftest import RawClient

MIB = 1024 * 1024


@dataclass(frozen=True)
class Flavor:
    """One way of serving the hostile routes: in a thread (``app`` with
    ``settings``) or as ``fastsrv run`` in a subprocess (``cli``)."""

    app: Any
    cli: List[str]
    settings: Dict[str, Any] = field(default_factory=dict)


NATIVE = pytest.param(Flavor(hostile.app, ["tests.apps.hostile:app"]), id="native")
ASGI = pytest.param(Flavor(hostile_asgi.app,
                           ["tests.apps.hostile_asgi:app", "--lifespan", "off", "--asgi-eager", "on"],
                           {"lifespan": "off", "asgi_eager": "on"}), id="asgi")
ASGI_TASK = pytest.param(Flavor(hostile_asgi.app,
                                ["tests.apps.hostile_asgi:app", "--lifespan", "off", "--asgi-eager", "off"],
                                {"lifespan": "off", "asgi_eager": "off"}), id="asgi-task")
# where the app is not called or runs straight through, one ASGI mode is enough
BOTH = pytest.mark.parametrize("flavor", [NATIVE, ASGI])
EVERY = pytest.mark.parametrize("flavor", [NATIVE, ASGI, ASGI_TASK])


# ---- helpers ------------------------------------------------------------------


def reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def get(port: int, path: str = "/", timeout: float = 5.0) -> int:
    c = RawClient(port, timeout=timeout)
    try:
        c.send(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return c.read_response().status
    finally:
        c.close()


OBJECTS = ("connections", "requests", "body_streams", "asgi_cycles")


def live_objects() -> Dict[str, int]:
    """Of each kind of object the core counts, how many are alive."""
    counters = debug_counters()
    return {kind: counters[f"{kind}_created"] - counters[f"{kind}_freed"] for kind in OBJECTS}


def wait_until(predicate: Any, timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def settle(srv: Any, live_before: Dict[str, int], timeout: float = 5.0) -> None:
    """Wait until the server holds no connection and every connection,
    request, body stream and ASGI exchange created since ``live_before``
    was counted is freed."""
    assert wait_until(lambda: srv.call(lambda: srv.server.registry.open) == 0, timeout), \
        f"{srv.call(lambda: srv.server.registry.open)} connections still open"

    def leaked() -> Dict[str, int]:
        live = live_objects()
        return {kind: live[kind] - live_before[kind] for kind in OBJECTS if live[kind] > live_before[kind]}

    def freed() -> bool:
        srv.call(gc.collect)
        return not leaked()

    assert wait_until(freed, timeout, 0.05), f"objects not freed: {leaked()}"


class Background:
    """Plain clients sending ``GET /`` on fresh connections, one after the
    other, in a thread, until stopped: how a well-behaved client fares."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.latencies: List[float] = []
        self.failures: List[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Background":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                status = get(self.port, timeout=3)
                if status == 200:
                    self.latencies.append(time.monotonic() - started)
                else:
                    self.failures.append(f"status {status}")
            except OSError as e:
                self.failures.append(repr(e))
            self._stop.wait(0.02)


# ---- slowloris ------------------------------------------------------------------

SLOWLORIS = 300


@BOTH
def test_slowloris_connections_get_408_at_the_header_timeout_while_others_are_served(serve, flavor):
    """300 connections each send a request head a byte at a time, never
    finishing it: each is answered 408 and closed 1-2 s after its first byte
    (the head timeout counts from there, not from the last byte), and a
    plain client meanwhile is served every time, promptly."""
    srv = serve(flavor.app, **flavor.settings, header_timeout=1.0)
    live_before = live_objects()
    slow = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(SLOWLORIS)]
    for s in slow:
        s.setblocking(False)
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: "
    received = {s: b"" for s in slow}
    closed_after: dict = {}
    started = time.monotonic()
    with Background(srv.port) as plain:
        sent = 0
        while len(closed_after) < len(slow) and time.monotonic() - started < 5:
            byte = head[sent:sent + 1] or b"a"
            sent += 1
            for s in slow:
                if s in closed_after:
                    continue
                try:
                    while True:
                        data = s.recv(4096)
                        if not data:
                            closed_after[s] = time.monotonic() - started
                            break
                        received[s] += data
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    closed_after[s] = time.monotonic() - started
                if s not in closed_after:
                    try:
                        s.send(byte)
                    except OSError:
                        pass
            time.sleep(0.05)
    for s in slow:
        s.close()
    answered_408 = sum(data.startswith(b"HTTP/1.1 408 ") for data in received.values())
    assert len(closed_after) == SLOWLORIS, f"{SLOWLORIS - len(closed_after)} slow connections still open"
    assert answered_408 == SLOWLORIS
    assert all(b"\r\nconnection: close\r\n" in data.lower() for data in received.values())
    assert 0.8 <= min(closed_after.values()) and max(closed_after.values()) <= 3.5
    assert not plain.failures, plain.failures[:5]
    assert len(plain.latencies) >= 20 and max(plain.latencies) < 1.0, \
        (len(plain.latencies), max(plain.latencies, default=None))
    settle(srv, live_before)


# ---- slow bodies --------------------------------------------------------------------


@BOTH
def test_body_with_a_gap_longer_than_the_body_timeout_is_answered_408(serve, flavor):
    """A body that stops arriving for longer than the body timeout is cut
    with 408, even after a good start; the server then closes."""
    srv = serve(flavor.app, **flavor.settings, body_timeout=1.0)
    c = RawClient(srv.port)
    c.send(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(5):
        c.send(b"x" * 10)
        time.sleep(0.2)
    started = time.monotonic()
    r = c.read_response()
    assert r.status == 408
    assert 0.8 <= time.monotonic() - started <= 3.5
    assert c.is_closed()
    c.close()


@BOTH
def test_chunked_body_stalled_mid_chunk_is_answered_408(serve, flavor):
    srv = serve(flavor.app, **flavor.settings, body_timeout=1.0)
    c = RawClient(srv.port)
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100\r\nabc")
    started = time.monotonic()
    assert c.read_response().status == 408
    assert 0.8 <= time.monotonic() - started <= 3.5
    assert c.is_closed()
    c.close()


# ---- connections opened and dropped --------------------------------------------------

DROPPED = 4000
BATCH = 250
# what a dropped connection sent before going away
DROP_SHAPES = [
    b"",
    b"GET / HTTP/1.1\r\nHo",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
    b"POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    b"GET /slow?ms=200 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 20,
    b"GARBAGE\r\n\r\n",
]


@EVERY
def test_thousands_of_connections_opened_and_dropped_leave_nothing_behind(serve, caplog, flavor):
    """4000 connections, in batches of 250, each sending one of
    ``DROP_SHAPES`` and going away with a FIN or an RST: afterwards the
    server holds no connection, every connection object is freed, nothing
    was logged as an error, and it still serves."""
    caplog.set_level(logging.WARNING)
    srv = serve(flavor.app, **flavor.settings)
    live_before = live_objects()
    created_before = debug_counters()["connections_created"]
    for batch in range(DROPPED // BATCH):
        socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(BATCH)]
        for i, s in enumerate(socks):
            shape = DROP_SHAPES[i % len(DROP_SHAPES)]
            if shape:
                s.sendall(shape)
        for i, s in enumerate(socks):
            if (i + batch) % 2:
                reset(s)
            else:
                s.close()
    assert wait_until(lambda: debug_counters()["connections_created"] - created_before >= DROPPED, 5)
    settle(srv, live_before)
    assert get(srv.port) == 200
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# ---- resets ----------------------------------------------------------------------------


@EVERY
@pytest.mark.parametrize("request_bytes, read_first", [
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000, 0,
                 id="mid-body"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ", 0, id="mid-head"),
    pytest.param(b"GET /large?kb=8192 HTTP/1.1\r\nHost: x\r\n\r\n", 65536, id="mid-large-response"),
    pytest.param(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", 40000, id="mid-streaming-response"),
    pytest.param(b"GET /slow?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n", 0, id="while-the-handler-awaits"),
])
def test_client_resetting_mid_exchange_leaves_nothing_behind(serve, caplog, request_bytes, read_first, flavor):
    """20 clients send a request, read part of the answer, then reset the
    connection (SO_LINGER 0): the server frees every connection, logs no
    error and keeps serving."""
    caplog.set_level(logging.WARNING)
    srv = serve(flavor.app, **flavor.settings)
    live_before = live_objects()
    for _ in range(20):
        c = RawClient(srv.port)
        c.send(request_bytes)
        got = 0
        while got < read_first:
            got += len(c.sock.recv(65536))
        reset(c.sock)
    time.sleep(0.35)            # let the slow handlers finish into closed sockets
    settle(srv, live_before)
    assert get(srv.port) == 200
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# ---- memory under clients that do not read -----------------------------------------------


@EVERY
def test_pipelining_flood_from_a_client_that_does_not_read_keeps_memory_bounded(process_server, flavor):
    """A client pipelines requests for 16 kB responses (a 400-fold
    amplification) and reads nothing: the server stops reading it once its
    responses back up, so its RSS grows by a few MB, not by the gigabytes the
    requests sent would ask for; other clients are served meanwhile."""
    server = process_server(flavor.cli).wait_ready()
    assert get(server.port, "/large?kb=16") == 200           # warm up the cached payload
    before = rss(server.proc.pid)
    flood = socket.create_connection(("127.0.0.1", server.port))
    flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    flood.setblocking(False)
    batch = b"GET /large?kb=16 HTTP/1.1\r\nHost: x\r\n\r\n" * 1000
    sent, stalled_since, started = 0, None, time.monotonic()
    while time.monotonic() - started < 6:
        try:
            sent += flood.send(batch)
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.0:
                break
            time.sleep(0.01)
    requests_sent = sent // (len(batch) // 1000)
    grown = rss(server.proc.pid) - before
    assert get(server.port) == 200
    reset(flood)
    assert stalled_since is not None, "the server kept reading a client that reads nothing"
    # unbounded, the responses to what was sent would be requests_sent * 16 kB
    assert grown < 32 * MIB, f"RSS grew {grown / MIB:.1f} MB for {requests_sent} requests"
    assert get(server.port) == 200


SLOW_READERS = 20
PIPELINED = 8


@BOTH
def test_slow_readers_of_large_responses_keep_memory_bounded(process_server, flavor):
    """20 clients each pipeline 8 requests for 1 MB and read 16 kB every
    50 ms: the server holds about one response per client, not eight, and
    each client gets the bytes it reads in order.  Each body is a new object
    (``fresh=1``): the transport keeps a reference to what it buffers, so
    eight answers of one cached body would cost nothing."""
    server = process_server(flavor.cli).wait_ready()
    assert get(server.port, "/large?kb=1024") == 200
    before = rss(server.proc.pid)
    readers = []
    for _ in range(SLOW_READERS):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /large?kb=1024&fresh=1 HTTP/1.1\r\nHost: x\r\n\r\n" * PIPELINED)
        readers.append([s, b""])
    peak = 0
    started = time.monotonic()
    while time.monotonic() - started < 3:
        for reader in readers:
            reader[1] += reader[0].recv(16384)
        peak = max(peak, rss(server.proc.pid) - before)
        time.sleep(0.05)
    for s, data in readers:
        assert data.startswith(b"HTTP/1.1 200 ")
        body = data.split(b"\r\n\r\n", 1)[1]
        assert body == (b"0123456789abcdef" * 4 + b"\n") * (len(body) // 65) + body[len(body) // 65 * 65:]
        reset(s)
    unbounded = SLOW_READERS * PIPELINED * MIB
    assert peak < 48 * MIB, f"RSS grew {peak / MIB:.1f} MB (unbounded: {unbounded / MIB:.0f} MB)"
    assert get(server.port) == 200


@BOTH
def test_slow_readers_of_streaming_responses_keep_memory_bounded(process_server, flavor):
    """20 clients read 16 MB streams 4 kB every 50 ms: the producers are
    held back by the transport (the core awaits its drain for a native
    generator; an ASGI ``send`` does not return while the client is not
    reading), so the server buffers next to nothing.  Chunks come 1 ms apart
    as new objects, so that unheld producers would outrun the kernel's few
    MB of socket buffer within the run (an ASGI stream not awaiting ``send``
    grew the RSS by ~250 MB)."""
    server = process_server(flavor.cli).wait_ready()
    assert get(server.port, "/large?kb=16") == 200
    before = rss(server.proc.pid)
    readers = []
    for _ in range(SLOW_READERS):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /stream?chunks=1000&ms=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        readers.append(s)
    peak, received = 0, 0
    started = time.monotonic()
    while time.monotonic() - started < 2.5:
        for s in readers:
            received += len(s.recv(4096))
        peak = max(peak, rss(server.proc.pid) - before)
        time.sleep(0.05)
    for s in readers:
        reset(s)
    assert received > SLOW_READERS * 65536
    assert peak < 16 * MIB, f"RSS grew {peak / MIB:.1f} MB"
    assert get(server.port) == 200


def peak_rss(pid: int) -> int:
    """Peak resident set size of process ``pid`` so far (VmHWM), bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def send_in_one_byte_chunks(port: int, path: str, size: int) -> bytes:
    """POST ``size`` body bytes as chunks of one byte (6 bytes on the wire
    each); the status line of the answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        piece = b"1\r\na\r\n" * 16384
        for _ in range(size // 16384):
            s.sendall(piece)
        s.sendall(b"0\r\n\r\n")
        return s.recv(4096).split(b"\r\n", 1)[0]
    finally:
        s.close()


TINY_CHUNKED_BODY = 2 * MIB


@BOTH
def test_body_in_one_byte_chunks_costs_a_sync_handler_about_its_size(process_server, flavor):
    """A 2 MB body sent as 1-byte chunks (12 MB on the wire) to a sync
    handler, which the core reads whole before calling it, should cost the
    server a few times 2 MB.  (Kept as one ``bytes`` object per chunk, it
    cost ~180 MB: max_body_bytes bounded the payload, not the memory.)"""
    server = process_server(flavor.cli).wait_ready()
    assert get(server.port) == 200
    before = peak_rss(server.proc.pid)
    assert send_in_one_byte_chunks(server.port, "/sync-count", TINY_CHUNKED_BODY) == b"HTTP/1.1 200 OK"
    grown = peak_rss(server.proc.pid) - before
    assert grown < 8 * TINY_CHUNKED_BODY, f"peak RSS grew {grown / MIB:.0f} MB for a 2 MB body"


@BOTH
def test_body_in_one_byte_chunks_is_held_back_at_the_high_water_for_a_late_reader(process_server, flavor):
    """An async handler that reads its body only after 1 s: the core stops
    reading the socket once body_high_water (256 kB) is buffered, which
    should hold the server's memory to about that, however small the chunks
    (one ``bytes`` object per chunk made it ~48 MB)."""
    server = process_server(flavor.cli).wait_ready()
    assert get(server.port) == 200
    before = peak_rss(server.proc.pid)
    status = send_in_one_byte_chunks(server.port, "/late-count?ms=1000", TINY_CHUNKED_BODY)
    assert status == b"HTTP/1.1 200 OK"
    grown = peak_rss(server.proc.pid) - before
    assert grown < 16 * MIB, f"peak RSS grew {grown / MIB:.0f} MB with 256 kB of body buffered"


# ---- oversize everything ----------------------------------------------------------------

LIMITS = dict(max_request_line=1024, max_header_bytes=4096, max_header_count=20, max_body_bytes=65536)


@BOTH
@pytest.mark.parametrize("request_bytes, status", [
    pytest.param(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, id="request-line"),
    pytest.param(b"GET /" + b"a" * 100_000, 414, id="request-line-never-ending"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"v" * 5000 + b"\r\n\r\n", 431,
                 id="header-field"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: v\r\n" * 1000, 431, id="header-section-never-ending"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: v\r\n" * 20 + b"\r\n", 431, id="header-count"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n", 413, id="content-length"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400,
                 id="content-length-overflow"),       # not a number the server can hold
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10001\r\n", 413,
                 id="chunk-size"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + b"8000\r\n" + b"x" * 0x8000 + b"\r\n" + b"8001\r\n", 413, id="chunked-body-total"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + b"F" * 40 + b"\r\n", 400, id="chunk-size-overflow"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;"
                 + b"e" * 5000, 400, id="chunk-extension"),
])
def test_oversize_request_is_answered_with_its_status_and_closed(serve, request_bytes, status, flavor):
    srv = serve(flavor.app, **flavor.settings, **LIMITS)
    c = RawClient(srv.port)
    try:
        c.send(request_bytes)
    except (BrokenPipeError, ConnectionResetError):
        pass                     # refused before all was sent; the answer is already there
    r = c.read_response()
    assert r.status == status
    assert r.header("connection") == "close"
    assert c.is_closed()
    c.close()
