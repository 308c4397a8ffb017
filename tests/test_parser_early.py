"""A request is refused at its first invalid byte, not at the end of its head.

Each entry of ``parser_cases.EARLY`` ends with the byte after which no valid
request can follow.  The parser refuses it fed whole, split at every offset
and byte by byte, and waits (no verdict) one byte earlier; every completion
of it gets the same verdict.  Over a real socket, on the native and the ASGI
path and under ``--workers``: the bytes before the offending one get no
answer, and the offending one gets its status with ``Connection: close``,
then the close, within 50 ms (the header and body timeouts are 30 s here, so
an answer at a timeout cannot pass for it).  And the check of an incomplete
head costs in proportion to its bytes: a client dripping it byte by byte is
not a quadratic rescan.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest

from apps import hostile, hostile_asgi
from conftest import RawClient, ThreadServer, nothing_arrives
from fastsrv._core import ConnectionRegistry, HttpProtocol, ProtocolConfig, Router
from fastsrv._parser import Limits
from parser_cases import EARLY
from parser_harness import feed_pieces, outcome

TABLE = [pytest.param(data, status, id=case) for case, data, status in EARLY]
ANSWER_WITHIN = 0.050       # seconds from the offending byte to the whole answer
QUIET = 0.030               # how long the bytes before it must go unanswered
LONG_TIMEOUTS = {"header_timeout": 30.0, "body_timeout": 30.0}
# what may follow the offending byte: none of it changes the verdict
COMPLETIONS = [b"\r\n\r\n", b"Host: a\r\n\r\n", b" / HTTP/1.1\r\nHost: a\r\n\r\n", b"0\r\n\r\n" * 3]


# ---- the parser ---------------------------------------------------------------------


@pytest.mark.parametrize("data, status", TABLE)
def test_request_is_refused_at_its_first_invalid_byte(data, status):
    result = outcome(data)          # the same fed whole, split anywhere, byte by byte
    assert (result.requests, result.status) == ([], status), result.reason
    assert outcome(data[:-1]) == ([], None, None), "refused before its offending byte"
    for more in COMPLETIONS:
        assert feed_pieces([data + more]) == result, more


def test_table_ids_are_unique():
    assert len({case[0] for case in EARLY}) == len(EARLY)


# ---- over a real socket -------------------------------------------------------------


def _refused_at_once(port: int, data: bytes, status: int) -> None:
    client = RawClient(port)
    try:
        client.send(data[:-1])
        assert nothing_arrives(client, QUIET), f"answered before the offending byte: {client.buf!r}"
        started = time.monotonic()
        client.send(data[-1:])
        response = client.read_response()
        elapsed = time.monotonic() - started
        assert response.status == status, response.raw
        assert response.header("connection") == "close", response.raw
        assert client.is_closed(1.0)
        assert elapsed < ANSWER_WITHIN, f"answered {elapsed * 1000:.0f} ms after the offending byte"
    finally:
        client.close()


@pytest.fixture(scope="module")
def servers():
    """A native and an ASGI server on the same routes, with long timeouts."""
    started = {"native": ThreadServer(hostile.app, **LONG_TIMEOUTS).start(),
               "asgi": ThreadServer(hostile_asgi.app, lifespan="off", **LONG_TIMEOUTS).start()}
    yield started
    for srv in started.values():
        srv.stop()


@pytest.mark.parametrize("interface", ["native", "asgi"])
@pytest.mark.parametrize("data, status", TABLE)
def test_first_invalid_byte_is_answered_at_once_and_the_connection_closed(servers, interface, data, status):
    _refused_at_once(servers[interface].port, data, status)


@pytest.mark.parametrize("app", ["tests.apps.hostile:app", "tests.apps.hostile_asgi:app"],
                         ids=["native", "asgi"])
def test_workers_refuse_at_the_first_invalid_byte_as_one_process_does(process_server, app):
    srv = process_server([app, "--workers", "2", "--lifespan", "off", "--header-timeout", "30",
                          "--body-timeout", "30"], preexec_fn=os.setpgrp)
    srv.READY = b"worker(s) serving on"
    try:
        srv.wait_ready(20)
        for case, data, status in EARLY:
            _refused_at_once(srv.port, data, status)
        srv.signal(signal.SIGTERM)
        assert srv.wait(15) == 0
    finally:
        if srv.proc.poll() is None:
            os.killpg(srv.proc.pid, signal.SIGKILL)


# ---- cost ---------------------------------------------------------------------------


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)


def _seconds_to_drip(head: bytes) -> float:
    """CPU seconds the core spends on ``head`` delivered one byte per read."""

    async def drip() -> float:
        registry = ConnectionRegistry(ProtocolConfig(Limits(max_header_bytes=1 << 20), header_timeout=60))
        registry.start(asyncio.get_running_loop())
        protocol = HttpProtocol(registry, Router())
        transport = _Transport()
        protocol.connection_made(transport)
        receive = protocol.data_received
        pieces = [head[i:i + 1] for i in range(len(head))]
        started = time.process_time()
        for piece in pieces:
            receive(piece)
        elapsed = time.process_time() - started
        assert transport.out == b"" and not transport.closed, "a valid-so-far head was answered"
        registry.stop()
        protocol.connection_lost(None)
        return elapsed

    return asyncio.run(drip())


def test_a_head_dripped_byte_by_byte_costs_in_proportion_to_its_bytes():
    """Each read judges only the bytes it brought: four times the bytes,
    about four times the work (a rescan of the head on each read would be
    sixteen)."""
    def head(size: int) -> bytes:
        return b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * size

    _seconds_to_drip(head(4096))    # warm up
    small = min(_seconds_to_drip(head(16384)) for _ in range(3))
    large = min(_seconds_to_drip(head(65536)) for _ in range(3))
    assert large < 8 * small, (small, large)
