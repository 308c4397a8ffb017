"""Fuzz target for the connection core with an ASGI app behind it: the
harness and invariants of ``fuzz_core.py``, with ``HttpProtocol(registry,
Router(), ASGIApp(app, eager))`` as the server builds it for an ASGI app.

The raw ASGI app below has routes that answer at once, read the body in
pieces, stream with ``more_body``, suspend before answering, fail before
and after the response starts (before and after its head is written), send
messages out of order (and check that each is refused), answer before
reading the whole body, and return without answering.  A request goes to
the route its path names, any other path to one picked by a hash of its
method, path and query, so every input reaches them all.  Bit 1 of the
input's first byte runs the app in a Task from its first line (``eager``
off); otherwise requests run in place until they first suspend.

On top of the core target's invariants:

* the core logs only the errors the app caused on purpose (a failing route's
  exception; "returned without starting a response" no more often than the
  silent route ran); an app failing after its head went out may cut the
  connection, and its response, short;
* the app is called at most once per request plus one, in order: the k-th
  call sees the k-th request's method and header fields (names lower-cased),
  and a body read to its end is that request's body;
* every ``receive`` message is well formed: ``http.request`` pieces with a
  bytes body and a bool ``more_body``, none after the last, then
  ``http.disconnect``; every ``send`` out of order raises;
* every ASGI exchange (and request, body stream, connection) is freed once
  the connection is gone.

Run it through ``fuzz/run.py --target core-asgi``.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import Any, Dict, List

import fuzz_core  # first: it loads the instrumented modules
from fuzz_core import REGISTRY, Run, Variant, a_failing_handler

from fastsrv._core import ASGIApp, ClientGoneError, HttpProtocol, Router

TEXT = [(b"content-type", b"text/plain")]


class Call:
    """What the app saw of one request (no reference to the exchange)."""

    def __init__(self, scope: Dict[str, Any]) -> None:
        self.method: str = scope["method"]
        self.headers: List[tuple] = list(scope["headers"])
        self.pieces: List[bytes] = []
        self.whole = False        # the body was read to its last piece


CALLS: List[Call] = []
SILENT = [0, 0]     # the silent route ran, the core logged it


async def respond(send: Any, body: bytes, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": TEXT})
    await send({"type": "http.response.body", "body": body})


async def receive_piece(receive: Any, call: Call) -> bool:
    """One ``receive``, checked; True while more body may follow."""
    message = await receive()
    assert isinstance(message, dict), message
    if message["type"] == "http.disconnect":
        return False
    assert message["type"] == "http.request", message
    assert not call.whole, f"a body piece after the last: {message}"
    body, more = message["body"], message["more_body"]
    assert type(body) is bytes and type(more) is bool, message
    call.pieces.append(body)
    call.whole = not more
    return more


async def read_body(receive: Any, call: Call) -> bytes:
    while await receive_piece(receive, call):
        await asyncio.sleep(0)
    return b"".join(call.pieces)


async def refused(send: Any, message: Dict[str, Any], what: str) -> None:
    """``send(message)`` must raise: ``what`` is out of order."""
    try:
        await send(message)
    except (RuntimeError, ClientGoneError):
        return
    raise AssertionError(f"the server took {what}")


async def now(scope, receive, send, call):
    await respond(send, b"ok")


async def pieces(scope, receive, send, call):
    await respond(send, str(len(await read_body(receive, call))).encode())


async def partial(scope, receive, send, call):
    """Answers after the first piece of the body."""
    await receive_piece(receive, call)
    await respond(send, b"early")
    assert (await receive())["type"] == "http.disconnect"


async def stream(scope, receive, send, call):
    await send({"type": "http.response.start", "status": 200, "headers": TEXT})
    for part in (b"a", b"", b"bc"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b""})


async def declared(scope, receive, send, call):
    """A Content-Length given up front, the body in two messages."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
    await send({"type": "http.response.body", "body": b"a", "more_body": True})
    await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b"bc"})


async def wait(scope, receive, send, call):
    await asyncio.sleep(0)
    await send({"type": "http.response.start", "status": 204})
    await send({"type": "http.response.body"})


async def fail_before(scope, receive, send, call):
    raise RuntimeError("a failing handler, before its response")


async def fail_started(scope, receive, send, call):
    await send({"type": "http.response.start", "status": 200, "headers": TEXT})
    await asyncio.sleep(0)
    raise RuntimeError("a failing handler, after http.response.start")


async def fail_mid_body(scope, receive, send, call):
    await send({"type": "http.response.start", "status": 200, "headers": TEXT})
    await send({"type": "http.response.body", "body": b"part", "more_body": True})
    await asyncio.sleep(0)
    raise RuntimeError("a failing handler, after its head went out")


async def disorder(scope, receive, send, call):
    await refused(send, {"type": "http.response.body", "body": b"x"}, "a body before the start")
    await refused(send, {"type": "http.response.trailers"}, "an unknown message type")
    await send({"type": "http.response.start", "status": 200, "headers": TEXT})
    await refused(send, {"type": "http.response.start", "status": 200}, "a second start")
    await send({"type": "http.response.body", "body": b"ok"})
    await refused(send, {"type": "http.response.body", "body": b"x"}, "a body after the last")


async def silent(scope, receive, send, call):
    SILENT[0] += 1
    await asyncio.sleep(0)


ROUTES = {"/now": now, "/pieces": pieces, "/partial": partial, "/stream": stream,
          "/declared": declared, "/wait": wait, "/fail-before": fail_before,
          "/fail-started": fail_started, "/fail-mid-body": fail_mid_body,
          "/disorder": disorder, "/silent": silent}
BY_HASH = list(ROUTES.values())


async def app(scope: Dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http" and scope["http_version"] in ("1.0", "1.1"), scope
    call = Call(scope)
    CALLS.append(call)
    route = ROUTES.get(scope["path"])
    if route is None:
        key = scope["method"].encode() + scope["raw_path"] + b"?" + scope["query_string"]
        route = BY_HASH[zlib.crc32(key) % len(BY_HASH)]
    await route(scope, receive, send, call)


APPS = {eager: ASGIApp(app, eager) for eager in (True, False)}


def new_protocol(flags: int) -> HttpProtocol:
    CALLS.clear()
    SILENT[:] = [0, 0]
    return HttpProtocol(REGISTRY, Router(), APPS[not flags & 2])


def expected_log(record: logging.LogRecord) -> bool:
    if "returned without starting a response" in record.getMessage():
        SILENT[1] += 1
        return True
    return a_failing_handler(record)


def answered_by_the_core(request: Dict[str, Any]) -> bool:
    """A WebSocket upgrade: 501 without calling the app."""
    return request["upgrade"] and any(
        name.lower() == b"upgrade" and b"websocket" in value.lower() for name, value in request["headers"])


def check(run: Run) -> None:
    assert SILENT[1] <= SILENT[0], f"{SILENT[1]} 'returned without' logged for {SILENT[0]} silent calls"
    requests = [r for r in run.parsed.requests if not answered_by_the_core(r)]
    assert len(CALLS) <= len(requests) + 1, f"{len(CALLS)} app calls for {len(requests)} requests"
    for k, (call, request) in enumerate(zip(CALLS, requests)):
        assert call.method == request["method"].decode("latin-1"), (k, call.method, request["method"])
        headers = [(name.lower(), value) for name, value in request["headers"]]
        assert call.headers == headers, (k, call.headers, headers)
        if call.whole:
            assert b"".join(call.pieces) == request["body"], (k, call.pieces, request["body"])


ASGI = Variant(new_protocol, expected_log, cut_ok=True, check=check)

if __name__ == "__main__":
    fuzz_core.main(ASGI)
