"""Real Starlette and FastAPI apps served by ``fastsrv run``, over real sockets.

Each feature test runs against both apps (``tests/apps/asgi_starlette.py``
and ``tests/apps/asgi_fastapi.py``, which serve the same routes), each in one
server subprocess shared by the module.  The shutdown tests start a server
of their own and signal it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from conftest import ProcessServer, RawClient, RawResponse

APPS = {"starlette": "tests.apps.asgi_starlette:app", "fastapi": "tests.apps.asgi_fastapi:app"}
FASTAPI = APPS["fastapi"]


@dataclass
class Running:
    name: str
    proc: ProcessServer
    events_file: Path

    @property
    def port(self) -> int:
        return self.proc.port

    def events(self) -> list[str]:
        return read_events(self.events_file)


def read_events(path: Path) -> list[str]:
    """The names recorded by the app, in order."""
    if not path.exists():
        return []
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module", params=sorted(APPS))
def app(request: Any, tmp_path_factory: Any) -> Iterator[Running]:
    """One server subprocess per app for the feature tests; stopped with SIGTERM."""
    events_file = tmp_path_factory.mktemp(request.param) / "events.txt"
    proc = ProcessServer([APPS[request.param]], env={"ASGI_TEST_EVENTS": str(events_file)})
    try:
        proc.wait_ready(20)
        yield Running(request.param, proc, events_file)
        proc.signal(signal.SIGTERM)
        assert proc.wait(10) == 0, proc.log()
    finally:
        proc.kill()


def http(port: int, method: str, path: str, body: bytes = b"",
         headers: Optional[dict[str, str]] = None, timeout: float = 10) -> RawResponse:
    c = RawClient(port, timeout=timeout)
    try:
        c.send(request_bytes(method, path, body, headers))
        return c.read_response(head_request=method == "HEAD")
    finally:
        c.close()


def request_bytes(method: str, path: str, body: bytes = b"",
                  headers: Optional[dict[str, str]] = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def as_json(resp: RawResponse) -> Any:
    assert resp.header("content-type") == "application/json", resp.raw
    return json.loads(resp.body)


def wait_until(predicate: Any, timeout: float = 5, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_log(proc: ProcessServer, pattern: str, timeout: float = 10) -> None:
    wait_until(lambda: re.search(pattern, proc.log()), timeout, f"{pattern!r} in the log:\n{proc.log()}")


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


# ---- features, on both apps ----

def test_routing_path_and_query_params_reach_the_endpoint(app: Running) -> None:
    resp = http(app.port, "GET", "/items/42?q=hello%20world&tag=a&tag=b%2Fc")
    assert resp.status == 200
    assert as_json(resp) == {"item_id": 42, "q": "hello world", "tags": ["a", "b/c"]}
    root = http(app.port, "GET", "/")
    assert (root.status, root.body) == (200, f"Hello from {'FastAPI' if app.name == 'fastapi' else 'Starlette'}".encode())


def test_unknown_route_is_the_frameworks_404(app: Running) -> None:
    resp = http(app.port, "GET", "/no/such/route")
    assert resp.status == 404


def test_keepalive_connection_serves_several_requests(app: Running) -> None:
    c = RawClient(app.port)
    try:
        for i in range(3):
            c.send(request_bytes("GET", f"/items/{i}?q=k{i}"))
            resp = c.read_response()
            assert resp.status == 200
            assert as_json(resp)["q"] == f"k{i}"
    finally:
        c.close()


def test_json_body_is_parsed_into_the_model(app: Running) -> None:
    body = json.dumps({"name": "pen", "price": 2.5, "quantity": 4}).encode()
    resp = http(app.port, "POST", "/items", body, {"Content-Type": "application/json"})
    assert resp.status == 201
    assert as_json(resp) == {"name": "pen", "price": 2.5, "total": 10.0}


def test_invalid_json_body_is_refused_with_422(app: Running) -> None:
    body = json.dumps({"name": 3}).encode()
    resp = http(app.port, "POST", "/items", body, {"Content-Type": "application/json"})
    assert resp.status == 422
    assert "detail" in as_json(resp)


def test_streaming_response_arrives_as_separate_chunks(app: Running) -> None:
    c = RawClient(app.port)
    try:
        c.send(request_bytes("GET", "/stream?n=5"))
        while not c.buf.endswith(b"\r\n0\r\n\r\n"):
            assert c._fill(), f"closed mid-stream: {c.buf!r}"
        raw = c.buf
    finally:
        c.close()
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"transfer-encoding: chunked" in head.lower()
    assert b"content-length" not in head.lower()
    # one chunk per yielded piece, in order
    assert body == b"".join(b"8\r\nchunk %d\n\r\n" % i for i in range(5)) + b"0\r\n\r\n"


def test_background_task_runs_after_the_response(app: Running) -> None:
    token = uuid.uuid4().hex[:12]
    resp = http(app.port, "POST", f"/background?token={token}")
    assert resp.status == 200
    assert as_json(resp) == {"queued": token}
    wait_until(lambda: token in as_json(http(app.port, "GET", "/tasks"))["done"], 5, "the background task")
    assert f"background-{token}" in app.events()


def test_custom_exception_goes_through_the_exception_handler(app: Running) -> None:
    resp = http(app.port, "GET", "/teapot?who=alice")
    assert resp.status == 418
    assert as_json(resp) == {"error": "teapot", "who": "alice"}


def test_http_exception_gives_its_status_and_detail(app: Running) -> None:
    resp = http(app.port, "GET", "/widgets/sprocket")
    assert resp.status == 404
    assert b"no widget sprocket" in resp.body


def test_lifespan_state_reaches_every_request(app: Running) -> None:
    for _ in range(2):
        resp = http(app.port, "GET", "/state")
        assert resp.status == 200
        assert as_json(resp) == {"greeting": "hello from lifespan"}
    assert app.events()[0] == "startup"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_large_upload_is_read_in_chunks_through_request_stream(app: Running, framing: str) -> None:
    payload = os.urandom(8 * 1024 * 1024)
    c = RawClient(app.port, timeout=20)
    try:
        if framing == "chunked":
            head = b"POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
            piece = 256 * 1024
            body = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + piece]), payload[i:i + piece])
                            for i in range(0, len(payload), piece)) + b"0\r\n\r\n"
        else:
            head = f"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            body = payload
        c.send(head + body)
        resp = c.read_response()
    finally:
        c.close()
    assert resp.status == 200, resp.body
    result = as_json(resp)
    assert result["bytes"] == len(payload)
    assert result["sha256"] == hashlib.sha256(payload).hexdigest()
    assert result["chunks"] > 1, "the body was handed over in one piece, not streamed"


def test_sync_endpoint_runs_in_the_threadpool(app: Running) -> None:
    resp = http(app.port, "GET", "/sync")
    assert resp.status == 200
    assert as_json(resp) == {"in_worker_thread": True}


def test_pure_asgi_and_base_http_middleware_both_apply(app: Running) -> None:
    resp = http(app.port, "GET", "/items/7")
    assert resp.status == 200
    assert resp.header("x-asgi-middleware") == "stamped"
    assert resp.header("x-base-middleware") == "/items/7"
    # also on a response made by an exception handler
    resp = http(app.port, "GET", "/teapot")
    assert (resp.status, resp.header("x-asgi-middleware")) == (418, "stamped")


def test_requests_run_concurrently(app: Running) -> None:
    t0 = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda _: http(app.port, "GET", "/sleep?ms=300"), range(20)))
    elapsed = time.monotonic() - t0
    assert [r.status for r in responses] == [200] * 20
    assert all(r.body == b"slept 300\n" for r in responses)
    assert elapsed < 2.5, f"20 concurrent 300 ms sleeps took {elapsed:.2f} s: serialized?"


def test_event_stream_runs_to_its_own_end_while_serving(app: Running) -> None:
    resp = http(app.port, "GET", "/events?limit=3")
    assert resp.status == 200
    assert resp.header("content-type").startswith("text/event-stream")
    assert resp.body == (b"data: tick 0\n\ndata: tick 1\n\ndata: tick 2\n\n"
                         b"event: bye\ndata: server shutting down\n\n")


# ---- startup failure, on both apps ----

@pytest.mark.parametrize("name", sorted(APPS))
def test_lifespan_startup_error_stops_the_start_with_status_1(process_server: Any, name: str) -> None:
    p = process_server([APPS[name]], env={"ASGI_TEST_FAIL_STARTUP": "1"})
    assert p.wait(20) == 1, p.log()
    assert "the database is unreachable" in p.log()
    assert "serving on" not in p.log()


# ---- graceful shutdown mid-request (FastAPI; the drain tests also on Starlette) ----

def app_server(process_server: Any, tmp_path: Path, spec: str, *args: str) -> tuple[ProcessServer, Path]:
    events_file = tmp_path / "events.txt"
    p = process_server([spec, *args], env={"ASGI_TEST_EVENTS": str(events_file)})
    p.wait_ready(20)
    return p, events_file


@pytest.mark.parametrize("name", ["fastapi", "starlette"])
def test_sigterm_lets_the_in_flight_request_finish_then_runs_lifespan_shutdown(
        process_server: Any, tmp_path: Path, name: str) -> None:
    p, events_file = app_server(process_server, tmp_path, APPS[name], "--exit-wait-time", "10")
    c = RawClient(p.port, timeout=10)
    try:
        c.send(request_bytes("GET", "/sleep?ms=1500"))
        wait_for_log(p, r"EVENT sleep-start-1500")
        p.signal(signal.SIGTERM)
        wait_for_log(p, "new connections are refused")
        assert refused(p.port)
        resp = c.read_response()
    finally:
        c.close()
    assert resp.status == 200
    assert resp.body == b"slept 1500\n"
    assert resp.header("connection") == "close"
    assert p.wait(10) == 0, p.log()
    assert read_events(events_file) == ["startup", "sleep-start-1500", "sleep-end-1500", "shutdown"]


def test_exit_wait_time_cuts_the_in_flight_request_with_status_3(
        process_server: Any, tmp_path: Path) -> None:
    p, events_file = app_server(process_server, tmp_path, FASTAPI, "--exit-wait-time", "0.3")
    c = RawClient(p.port, timeout=10)
    try:
        c.send(request_bytes("GET", "/sleep?ms=5000"))
        wait_for_log(p, r"EVENT sleep-start-5000")
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        with pytest.raises(ConnectionError):
            c.read_response()
    finally:
        c.close()
    assert p.wait(10) == 3, p.log()
    assert time.monotonic() - t0 < 3.0
    events = read_events(events_file)
    assert "sleep-cancelled-5000" in events and "sleep-end-5000" not in events
    assert events[-1] == "shutdown", "the lifespan shutdown runs after a cut drain too"


@pytest.mark.parametrize("name", ["fastapi", "starlette"])
def test_event_stream_ends_early_through_the_shutdown_extension(
        process_server: Any, tmp_path: Path, name: str) -> None:
    p, events_file = app_server(process_server, tmp_path, APPS[name], "--exit-wait-time", "10")
    c = RawClient(p.port, timeout=10)
    try:
        c.send(request_bytes("GET", "/events"))
        while b"tick 1" not in c.buf:
            assert c._fill(), c.buf
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        resp = c.read_response()
    finally:
        c.close()
    assert resp.status == 200
    assert resp.body.endswith(b"event: bye\ndata: server shutting down\n\n")
    assert p.wait(10) == 0, p.log()
    assert time.monotonic() - t0 < 2.0, "the stream should end at the signal, not at the deadline"
    assert read_events(events_file)[-2:] == ["events-end", "shutdown"]


@pytest.mark.parametrize("name", ["fastapi", "starlette"])
def test_drain_waits_for_a_background_task_started_before_the_signal(
        process_server: Any, tmp_path: Path, name: str) -> None:
    p, events_file = app_server(process_server, tmp_path, APPS[name], "--exit-wait-time", "10")
    resp = http(p.port, "POST", "/background?token=late&delay_ms=800")
    assert resp.status == 200
    wait_for_log(p, "EVENT background-start-late")
    p.signal(signal.SIGTERM)
    assert p.wait(10) == 0, p.log()
    events = read_events(events_file)
    assert events.index("background-late") < events.index("shutdown"), events
