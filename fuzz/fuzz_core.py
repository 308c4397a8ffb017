"""Fuzz target for the connection core: bytes from a client, in pieces,
through ``HttpProtocol`` on a fake transport, with a small app behind it.

Each input (``common.decode``) is fed in pieces of a fuzzer-chosen size, the
loop running between them so that async handlers, streaming responses and
body reads interleave with the bytes; then (if the flags say so) the client
half-closes, and finally the connection is lost.  The invariants:

* what the server wrote is a well-formed stream of HTTP/1.1 responses
  (interim 100s, then one final response per request, each framed by
  Content-Length or chunked, no body on HEAD/1xx/204/304), ending on a
  response boundary;
* never more final responses than the requests the parser completes in the
  bytes, plus one (the request it refused, or one whose body has not all
  arrived, answered early); every request answered when all were well formed
  and kept the connection open;
* the core logged no internal error, and the connection left the registry;
* once the connection is gone (and after a collection if need be), every
  connection, request, body stream and ASGI exchange it made was freed
  (``debug_counters()``).

A ``Variant`` says what is behind the protocol: this file's native app
(``--target core``) or the raw ASGI app of ``fuzz_core_asgi.py``
(``--target core-asgi``), which errors the app causes on purpose the core
may log, whether a response may be cut short by a reset, and what else to
check.  Run it through ``fuzz/run.py`` (which loads the four compiled
modules instrumented when clang is there).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import sys
from typing import Callable, Dict, List, NamedTuple, Optional

import atheris

import common

INSTRUMENTED = common.load_parser(common.CORE_MODULES)

from fastsrv import App, HTTPError, StreamingResponse  # noqa: E402  (after load_parser)
from fastsrv._core import ConnectionRegistry, HttpProtocol, ProtocolConfig, debug_counters  # noqa: E402
from fastsrv._parser import Limits  # noqa: E402
from parser_harness import Outcome, feed_pieces  # noqa: E402

LIMITS = Limits(max_request_line=64, max_header_bytes=512, max_header_count=8, max_body_bytes=256)


def make_app() -> App:
    app = App()

    @app.get("/")
    def index(request):
        return "ok"

    @app.post("/echo")
    async def echo(request):
        return await request.body()

    @app.post("/sync")
    def sync(request):
        return str(len(request.content))

    @app.post("/stream-in")
    async def stream_in(request):
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            await asyncio.sleep(0)
        return {"size": size}

    @app.get("/stream")
    async def stream(request):
        async def parts():
            for part in (b"a", b"", b"bc"):
                await asyncio.sleep(0)
                yield part
        return StreamingResponse(parts())

    @app.get("/wait")
    async def wait(request):
        await asyncio.sleep(0)
        return None

    @app.get("/teapot")
    def teapot(request):
        raise HTTPError(418, "short and stout")

    @app.get("/boom")
    async def boom(request):
        raise RuntimeError("a failing handler")

    return app


class FakeTransport(asyncio.Transport):
    """Records writes; closing reports the connection lost on the next turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: HttpProtocol) -> None:
        super().__init__()
        self.loop = loop
        self.protocol = protocol
        self.out = bytearray()
        self.closed = False
        self.aborted = False     # closed with a reset (a response may be cut short)
        self.reading = True

    def write(self, data) -> None:
        assert not self.closed, "a write after close"
        self.out += data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = self.aborted or not self.closed
        self.close()

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return 0


def a_failing_handler(record: logging.LogRecord) -> bool:
    """A failure of the app's own making (its handlers raise with these words)."""
    return "a failing handler" in record.getMessage() or bool(
        record.exc_info and "a failing handler" in str(record.exc_info[1]))


class InternalErrors(logging.Handler):
    """Errors the core logs about itself, not those ``expected`` says the
    app caused."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: List[str] = []
        self.expected: Callable[[logging.LogRecord], bool] = a_failing_handler

    def emit(self, record: logging.LogRecord) -> None:
        if not self.expected(record):
            message = record.getMessage()
            if record.exc_info:
                message += f" ({record.exc_info[1]!r})"
            self.messages.append(message)


STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n")


class Responses(NamedTuple):
    statuses: List[int]
    closed: bool        # the last one said Connection: close
    cut: bool = False   # the last one was cut short (by a reset)


class CutShort(Exception):
    """The output ends inside a response."""


def parse_responses(out: bytes, requests: List[dict], cut_ok: bool = False) -> Responses:
    """The final statuses in ``out`` (answering ``requests``, and maybe one
    more); AssertionError if it is not a well-formed response stream
    (nothing may follow a Connection: close; a body without framing, to an
    HTTP/1.0 request, ends with the connection).
    With ``cut_ok`` (the connection was reset) the last response may end
    short: a truncated status line, head or body, never a malformed one."""
    statuses: List[int] = []
    try:
        return _parse_responses(out, requests, statuses)
    except CutShort as exc:
        assert cut_ok, f"the response stream ends inside a response ({exc}): {out[-200:]!r}"
        return Responses(statuses, False, True)


def _need(out: bytes, end: int, what: str) -> None:
    if end > len(out):
        raise CutShort(what)


def _parse_responses(out: bytes, requests: List[dict], statuses: List[int]) -> Responses:
    closed = False
    pos = 0
    while pos < len(out):
        assert not closed, f"bytes after a Connection: close response: {out[pos:pos + 60]!r}"
        m = STATUS_LINE.match(out, pos)
        if not m and b"\r\n" not in out[pos:pos + 60]:
            assert b"HTTP/1.1 ".startswith(out[pos:pos + 9]) or out[pos:].startswith(b"HTTP/1.1 "), \
                f"no status line at {pos}: {out[pos:pos + 60]!r}"
            raise CutShort("in a status line")
        assert m, f"no status line at {pos}: {out[pos:pos + 60]!r}"
        status = int(m.group(1))
        end = out.find(b"\r\n\r\n", m.start())
        if end == -1:
            raise CutShort("in a head")
        fields = {}
        for line in out[m.end():end].split(b"\r\n") if end > m.end() - 2 else []:
            if not line:
                continue
            name, sep, value = line.partition(b":")
            assert sep and name and name == name.strip() and b"\r" not in value and b"\n" not in value, line
            fields.setdefault(name.lower(), []).append(value.strip())
        pos = end + 4
        if 100 <= status < 200:
            assert status == 100, status
            continue
        request = requests[len(statuses)] if len(statuses) < len(requests) else None
        method = request["method"] if request else b"GET"
        statuses.append(status)
        closed = b"close" in [v.lower() for v in fields.get(b"connection", [])]
        no_body = method == b"HEAD" or status in (204, 304)
        te, cl = fields.get(b"transfer-encoding"), fields.get(b"content-length")
        assert not (te and cl), f"both framings: {fields}"
        if te:
            assert te == [b"chunked"], te
            if no_body:
                continue
            while True:
                eol = out.find(b"\r\n", pos)
                if eol == -1:
                    assert re.fullmatch(rb"[0-9a-f]*", out[pos:]), f"bad chunk size {out[pos:pos + 20]!r}"
                    raise CutShort("in a chunk size")
                size = int(out[pos:eol], 16)
                pos = eol + 2 + size
                _need(out, pos + 2, "in chunk data")
                assert out[pos:pos + 2] == b"\r\n", "chunk data longer than its size"
                pos += 2
                if size == 0:
                    break
        elif cl:
            assert len(cl) == 1, cl
            if not no_body:
                pos += int(cl[0])
                _need(out, pos, "body shorter than its Content-Length")
        elif not no_body:
            # close-delimited: only to an HTTP/1.0 request (or the one the
            # parser did not complete), and the connection ends with it
            assert closed and (request is None or request["version"] == "1.0"), f"{status} without framing"
            pos = len(out)
    return Responses(statuses, closed)


LOOP = asyncio.new_event_loop()
asyncio.set_event_loop(LOOP)
REGISTRY = ConnectionRegistry(ProtocolConfig(LIMITS, body_high_water=64, pipeline_high_water=128))
REGISTRY.start(LOOP)
ERRORS = InternalErrors()
logging.getLogger("fastsrv").addHandler(ERRORS)
logging.getLogger("fastsrv").propagate = False


class Run(NamedTuple):
    """What one input did, for a variant's own checks."""
    flags: int
    data: bytes
    parsed: Outcome
    responses: "Responses"
    transport: FakeTransport


class Variant(NamedTuple):
    """What is behind the protocol, and what that changes in the checks."""
    new_protocol: Callable[[int], HttpProtocol]        # from the input's flags
    expected_log: Callable[[logging.LogRecord], bool]  # errors the app causes on purpose
    cut_ok: bool = False                               # may a reset cut a response short
    check: Optional[Callable[[Run], None]] = None      # more invariants, after the common ones


NATIVE_ROUTER = make_app().router()
NATIVE = Variant(lambda flags: HttpProtocol(REGISTRY, NATIVE_ROUTER), a_failing_handler)


def spin(turns: int = 8) -> None:
    for _ in range(turns):
        LOOP.run_until_complete(asyncio.sleep(0))


def live_objects() -> Dict[str, int]:
    """Connections, requests, body streams and ASGI exchanges not yet freed."""
    counters = debug_counters()
    return {kind[:-len("_created")]: created - counters[kind[:-len("created")] + "freed"]
            for kind, created in counters.items() if kind.endswith("_created")}


def run_one(raw: bytes, variant: Variant) -> None:
    flags, split, data = common.decode(raw)
    size = 1 + split % 97
    live_before = live_objects()
    protocol = variant.new_protocol(flags)
    transport = FakeTransport(LOOP, protocol)
    ERRORS.messages.clear()
    ERRORS.expected = variant.expected_log
    protocol.connection_made(transport)
    delivered = 0
    while delivered < len(data) and not transport.closed:
        for _ in range(50):          # a paused transport delivers nothing
            if transport.reading or transport.closed:
                break
            spin(1)
        if not transport.reading or transport.closed:
            break
        protocol.data_received(data[delivered:delivered + size])
        delivered += size
        spin(2)
    if flags & 1 and not transport.closed and delivered >= len(data):
        if not protocol.eof_received():
            transport.close()
    spin(30)
    if not transport.closed:
        transport.close()
    spin(4)
    assert not ERRORS.messages, ERRORS.messages
    assert REGISTRY.open == 0, "the connection is still in the registry"

    parsed = feed_pieces([data], LIMITS)
    responses = parse_responses(bytes(transport.out), parsed.requests, variant.cut_ok)
    statuses = responses.statuses
    # one more than the complete requests: the refused one, or one whose
    # head is complete and whose body is not (answered early, e.g. a 405)
    limit = len(parsed.requests) + 1
    assert len(statuses) <= limit, f"{len(statuses)} responses to {limit} requests: {statuses}"
    if parsed.status is None and all(r["keep_alive"] for r in parsed.requests) and not flags & 1 \
            and not responses.closed and not transport.aborted and delivered >= len(data):
        # every request was well formed and kept the connection open, and the
        # server neither declared a close (as after an unread 100-continue
        # body) nor cut the connection (an app failing mid-response): all answered
        assert len(statuses) >= len(parsed.requests), f"{statuses} for {[r['method'] for r in parsed.requests]}"
    if variant.check is not None:
        variant.check(Run(flags, data, parsed, responses, transport))

    del protocol, transport
    if live_objects() != live_before:
        gc.collect()      # an exception's traceback holds a cycle
        live = live_objects()
        assert live == live_before, f"not freed after the connection: {live} (before: {live_before})"


def main(variant: Variant = NATIVE) -> None:
    atheris.Setup(sys.argv, lambda raw: run_one(raw, variant))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
