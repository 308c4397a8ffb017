"""fastsrv answers an ASGI app as uvicorn does.

The same raw ASGI app (``tests.apps.asgi_raw``), and a FastAPI app
(``tests.apps.asgi_fastapi``), runs under ``fastsrv run``
and under ``uvicorn --loop uvloop --http httptools``, each in a subprocess
(started once per module: starting four servers per test would cost more
than the tests).  Every case sends the same bytes to both, each on a fresh
connection, and compares what the client can rely on: the status, the
decoded body, the headers that carry meaning, and the scope fields the app
echoes.

Deliberately not compared (each also excluded below where it applies):

- ``date``, ``server``: per-server values.
- the framing: ``content-length`` vs ``transfer-encoding: chunked`` vs a
  close-delimited body is each server's choice; the decoded body is compared.
- ``connection``: uvicorn closes after a 500 and fastsrv keeps the
  connection (its 500 is written by the server, the framing is sound).
- ``asgi.spec_version``: fastsrv implements 2.4 (``send`` raises
  ``ClientGoneError`` once the client is gone), uvicorn 0.x says 2.3.
- ``extensions``: fastsrv adds its documented ``fastsrv.shutdown``.
- the client's port and the server's port: two connections, two servers.
- trailing whitespace in request header values: RFC 9110 5.5 says it is
  not part of the value; fastsrv strips it, httptools keeps it.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Iterator

import pytest

from conftest import ROOT, ProcessServer, RawClient, RawResponse

APP = "tests.apps.asgi_raw:app"

# headers whose value is the app's (or the status's) meaning
COMPARED_HEADERS = ("content-type", "set-cookie", "location", "cache-control", "etag")


class UvicornServer(ProcessServer):
    """``python -m uvicorn --loop uvloop --http httptools APP`` in a subprocess."""

    READY = b"Uvicorn running on"

    def __init__(self, args: list[str], app: str = APP) -> None:
        self.app = app
        super().__init__(args, env={"PYTHONPATH": ROOT})

    def command(self, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools",
                "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "info",
                "--no-access-log", *args, self.app]


class Pair:
    """The same app on fastsrv and on uvicorn."""

    def __init__(self, fastsrv: ProcessServer, uvicorn: UvicornServer) -> None:
        self.fastsrv = fastsrv
        self.uvicorn = uvicorn

    def exchange(self, requests: bytes, count: int = 1, head: bool = False
                 ) -> tuple[list[RawResponse], list[RawResponse]]:
        """Send ``requests`` to both on fresh connections; ``count`` responses each."""
        answers = []
        for port in (self.fastsrv.port, self.uvicorn.port):
            c = RawClient(port)
            try:
                c.send(requests)
                answers.append([c.read_response(head_request=head) for _ in range(count)])
            finally:
                c.close()
        return answers[0], answers[1]


def _start_pair(extra: list[str], app: str = APP) -> Pair:
    env = {"PYTHONPATH": ROOT}
    fast = ProcessServer([app, "--lifespan", "on", *extra], env=env)
    uvi = UvicornServer(["--lifespan", "on", *extra], app)
    try:
        fast.wait_ready()
        uvi.wait_ready()
    except Exception:
        fast.kill()
        uvi.kill()
        raise
    return Pair(fast, uvi)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    p = _start_pair([])
    yield p
    p.fastsrv.kill()
    p.uvicorn.kill()


@pytest.fixture(scope="module")
def rooted_pair() -> Iterator[Pair]:
    p = _start_pair(["--root-path", "/api"])
    yield p
    p.fastsrv.kill()
    p.uvicorn.kill()


def meaning(r: RawResponse) -> dict[str, Any]:
    """What a client relies on in a response: status, body, and the headers
    that carry meaning (framing, date, server and connection excluded)."""
    headers: dict[str, list[str]] = {}
    for name, value in r.headers:
        if name in COMPARED_HEADERS or name.startswith("x-app-") or name == "x-body-length":
            headers.setdefault(name, []).append(value)
    return {"status": r.status, "body": r.body, "headers": headers}


def scope_fields(r: RawResponse) -> dict[str, Any]:
    assert r.status == 200, r.raw
    scope = json.loads(r.body)
    # spec 2.4 vs 2.3 (see the module docstring): only the ASGI version is compared
    scope["asgi"] = scope["asgi"]["version"]
    # fastsrv's documented fastsrv.shutdown extension; uvicorn has none of its own
    scope.pop("extensions")
    # two connections, two listeners: only the hosts can match
    scope["client"] = scope["client"][0]
    scope["server"] = scope["server"][0]
    # whitespace around a field value is not part of it (RFC 9110 5.5):
    # fastsrv strips it, httptools (llhttp) keeps the trailing part
    scope["headers"] = [[k, v.strip(" \t")] for k, v in scope["headers"]]
    return scope


def get(target: str, version: str = "1.1", extra: str = "") -> bytes:
    return f"GET {target} HTTP/{version}\r\nHost: example.test\r\n{extra}\r\n".encode()


# ---- scope ------------------------------------------------------------------

SCOPE_REQUESTS = {
    "plain": get("/scope"),
    "http-1.0": get("/scope", "1.0"),
    "query": get("/scope/items?id=7&tag=a%20b&tag=c&empty="),
    "empty-query": get("/scope?"),
    "percent-path": get("/scope/a%20b/caf%C3%A9/x%2Fy"),
    "plus-is-not-space": get("/scope/a+b?x=a+b"),
    "bad-utf8-escape": get("/scope/%FF%FE"),
    "headers": (b"GET /scope HTTP/1.1\r\nHost: example.test\r\nX-Dup: 1\r\nUSER-AGENT: Probe/1.0\r\n"
                b"Accept: */*\r\nx-dup: 2\r\nX-Pad:   padded value  \r\nCookie: a=1; b=2\r\n"
                b"X-Empty:\r\n\r\n"),
    "post": b"POST /scope HTTP/1.1\r\nHost: example.test\r\nContent-Length: 0\r\n\r\n",
    "delete": b"DELETE /scope/x HTTP/1.1\r\nHost: example.test\r\n\r\n",
    "options-star": b"OPTIONS * HTTP/1.1\r\nHost: example.test\r\n\r\n",
    "upgrade-h2c": (b"GET /scope HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                    b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"),
    "absolute-form": b"GET http://example.test/scope/abs?q=1 HTTP/1.1\r\nHost: example.test\r\n\r\n",
}


@pytest.mark.parametrize("name", list(SCOPE_REQUESTS))
def test_scope_fields_match_uvicorn(pair, name):
    fast, uvi = pair.exchange(SCOPE_REQUESTS[name])
    assert scope_fields(fast[0]) == scope_fields(uvi[0])


@pytest.mark.parametrize("target", ["/scope", "/scope/users/a%20b?x=1"])
def test_scope_with_root_path_matches_uvicorn(rooted_pair, target):
    fast, uvi = rooted_pair.exchange(get(target))
    fs, us = scope_fields(fast[0]), scope_fields(uvi[0])
    assert fs["root_path"] == "/api"
    assert fs == us


def test_lifespan_state_reaches_the_scope_as_in_uvicorn(pair):
    fast, uvi = pair.exchange(get("/scope"))
    assert scope_fields(fast[0])["state"] == {"started_by": "lifespan"}
    assert scope_fields(fast[0])["state"] == scope_fields(uvi[0])["state"]


# ---- responses --------------------------------------------------------------

RESPONSE_REQUESTS = {
    "json": get("/json"),
    "custom-headers-and-cookies": get("/headers"),
    "redirect": get("/redirect"),
    "not-found": get("/nowhere"),
    "get-head-route": get("/head"),
    "stream": get("/stream?n=5"),
    "stream-http-1.0": get("/stream?n=5", "1.0"),
    "stream-empty": get("/stream?n=0"),
    "echo-content-length": (b"POST /echo HTTP/1.1\r\nHost: example.test\r\nContent-Type: text/csv\r\n"
                            b"Content-Length: 11\r\n\r\nhello world"),
    "echo-chunked": (b"POST /echo HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    "echo-empty": b"POST /echo HTTP/1.1\r\nHost: example.test\r\nContent-Length: 0\r\n\r\n",
    "echo-large": (b"PUT /echo HTTP/1.1\r\nHost: example.test\r\nContent-Length: 300000\r\n\r\n"
                   + bytes(range(250)) * 1200),
    "status-201": get("/status/201"),
}


@pytest.mark.parametrize("name", list(RESPONSE_REQUESTS))
def test_response_matches_uvicorn(pair, name):
    fast, uvi = pair.exchange(RESPONSE_REQUESTS[name])
    assert meaning(fast[0]) == meaning(uvi[0])


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_status_matches_uvicorn(pair, status):
    # a second request behind it shows that neither server sent a body
    fast, uvi = pair.exchange(get(f"/status/{status}") + get("/json"), count=2)
    assert [meaning(r) for r in fast] == [meaning(r) for r in uvi]
    for r in fast:
        assert r.header("transfer-encoding") is None
    assert fast[0].header("content-length") is None or status == 304


def test_head_matches_uvicorn(pair):
    fast, uvi = pair.exchange(b"HEAD /head HTTP/1.1\r\nHost: example.test\r\n\r\n", head=True)
    assert meaning(fast[0]) == meaning(uvi[0])
    assert fast[0].body == b""


def test_head_then_get_on_one_connection_matches_uvicorn(pair):
    requests = b"HEAD /head HTTP/1.1\r\nHost: example.test\r\n\r\n" + get("/head")
    answers = []
    for port in (pair.fastsrv.port, pair.uvicorn.port):
        c = RawClient(port)
        try:
            c.send(requests)
            answers.append([meaning(c.read_response(head_request=True)), meaning(c.read_response())])
        finally:
            c.close()
    assert answers[0] == answers[1]


def test_app_error_matches_uvicorn(pair):
    fast, uvi = pair.exchange(get("/error"))
    f, u = meaning(fast[0]), meaning(uvi[0])
    assert f["status"] == u["status"] == 500
    assert f["headers"] == u["headers"]
    # the 500 body is each server's own text: fastsrv ends it with a newline
    assert f["body"].strip() == u["body"].strip()


def test_pipelined_requests_match_uvicorn(pair):
    requests = (get("/json") + get("/scope?n=2") + get("/stream?n=3")
                + b"POST /echo HTTP/1.1\r\nHost: example.test\r\nContent-Length: 3\r\n\r\nabc"
                + get("/nowhere"))
    fast, uvi = pair.exchange(requests, count=5)
    for i, (f, u) in enumerate(zip(fast, uvi)):
        if i == 1:
            assert scope_fields(f) == scope_fields(u)
        else:
            assert meaning(f) == meaning(u), f"response {i}"


def test_100_continue_matches_uvicorn(pair):
    answers = []
    for port in (pair.fastsrv.port, pair.uvicorn.port):
        c = RawClient(port)
        try:
            c.send(b"POST /echo HTTP/1.1\r\nHost: example.test\r\nExpect: 100-continue\r\n"
                   b"Content-Length: 5\r\n\r\n")
            interim = c.read_response()
            c.send(b"hello")
            answers.append([interim.status, meaning(c.read_response())])
        finally:
            c.close()
    assert answers[0] == answers[1]
    assert answers[0][0] == 100


# ---- a FastAPI app ------------------------------------------------------------

FASTAPI_APP = "tests.apps.asgi_fastapi:app"


@pytest.fixture(scope="module")
def fastapi_pair() -> Iterator[Pair]:
    p = _start_pair([], FASTAPI_APP)
    yield p
    p.fastsrv.kill()
    p.uvicorn.kill()


def _json_post(path: str, body: bytes) -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: example.test\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))


FASTAPI_REQUESTS = {
    "text": get("/"),
    "path-and-query-params": get("/items/42?q=fast"),
    "path-param-not-an-int": get("/items/abc"),
    "json-body": _json_post("/items", b'{"name": "pen", "price": 1.5}'),
    "json-body-invalid": _json_post("/items", b'{"name": "pen"}'),
    "json-body-malformed": _json_post("/items", b'{"name": '),
    "http-exception": get("/widgets/none"),
    "custom-exception-handler": get("/teapot?who=tests"),
    "not-found": get("/no/such/route"),
    "method-not-allowed": b"DELETE /items/1 HTTP/1.1\r\nHost: example.test\r\n\r\n",
    "streaming": get("/stream?n=4"),
    "lifespan-state": get("/state"),
    "sync-endpoint": get("/sync"),
    "head": b"HEAD / HTTP/1.1\r\nHost: example.test\r\n\r\n",
}


@pytest.mark.parametrize("name", list(FASTAPI_REQUESTS))
def test_fastapi_response_matches_uvicorn(fastapi_pair, name):
    request = FASTAPI_REQUESTS[name]
    fast, uvi = fastapi_pair.exchange(request, head=request.startswith(b"HEAD"))
    assert meaning(fast[0]) == meaning(uvi[0])
