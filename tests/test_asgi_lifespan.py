"""The ASGI lifespan protocol and interface detection, with raw ASGI apps.

The apps are defined at the top of this module and served from a
subprocess as ``fastsrv run tests.test_asgi_lifespan:NAME`` (so exit
statuses and logs are the real ones).  Nothing at module level may need
pytest's path set-up: the server process imports this file too.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import time
from typing import Any

import pytest

from fastsrv import App
from fastsrv.asgi import detect_interface
from fastsrv.errors import AppLoadError

MODULE = "tests.test_asgi_lifespan"


# ---- the apps ----

async def respond(send: Any, body: Any, status: int = 200) -> None:
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": data})


async def serve_lifespan(receive: Any, send: Any, on_startup: Any = None, on_shutdown: Any = None) -> None:
    """A well-behaved lifespan loop with optional hooks."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if on_startup is not None:
                await on_startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if on_shutdown is not None:
                await on_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def startup_probe(scope: Any, receive: Any, send: Any) -> None:
    """Startup records whether the port already accepts and fills the state;
    each request reports what it sees, then scribbles on its state."""
    if scope["type"] == "lifespan":
        async def startup() -> None:
            port = int(os.environ["PROBE_PORT"])
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                accepting = True
            except OSError:
                accepting = False
            scope["state"]["accepting_during_startup"] = accepting
            scope["state"]["token"] = "set at startup"
        return await serve_lifespan(receive, send, startup)
    state = scope["state"]
    seen = {"accepting_during_startup": state.get("accepting_during_startup"),
            "token": state.get("token"), "leak": state.get("leak")}
    state["leak"] = "set by an earlier request"
    state["token"] = "overwritten by an earlier request"
    await respond(send, seen)


async def startup_fails(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "config file /etc/app.toml missing"})
        return
    await respond(send, {"served": True})


async def startup_raises(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("pool exhausted during startup")
    await respond(send, {"served": True})


async def http_only(scope: Any, receive: Any, send: Any) -> None:
    """An app without lifespan support: it raises on any other scope."""
    if scope["type"] != "http":
        raise RuntimeError(f"http_only cannot handle {scope['type']!r} scopes")
    await respond(send, {"served": True})


async def returns_at_once(scope: Any, receive: Any, send: Any) -> None:
    """An app that ignores lifespan by returning."""
    if scope["type"] != "http":
        return
    await respond(send, {"served": True})


LIFESPAN_SCOPES_SEEN = 0


async def lifespan_counter(scope: Any, receive: Any, send: Any) -> None:
    global LIFESPAN_SCOPES_SEEN
    if scope["type"] == "lifespan":
        LIFESPAN_SCOPES_SEEN += 1
        return await serve_lifespan(receive, send)
    await respond(send, {"lifespan_scopes": LIFESPAN_SCOPES_SEEN})


async def shutdown_fails(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.failed", "message": "could not flush the write-ahead log"})
        return
    await respond(send, {"served": True})


async def shutdown_raises(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        async def shutdown() -> None:
            raise RuntimeError("connection pool close failed")
        return await serve_lifespan(receive, send, on_shutdown=shutdown)
    await respond(send, {"served": True})


async def shutdown_hangs(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        async def shutdown() -> None:
            await asyncio.sleep(3600)
        return await serve_lifespan(receive, send, on_shutdown=shutdown)
    await respond(send, {"served": True})


async def startup_hangs(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        async def startup() -> None:
            print("STARTUP BEGUN", flush=True)
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                print("STARTUP CANCELLED", flush=True)
                raise
        return await serve_lifespan(receive, send, startup)
    await respond(send, {"served": True})


class Asgi2Class:
    """ASGI 2: the class is called with the scope, the instance with (receive, send)."""

    def __init__(self, scope: Any) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] == "lifespan":
            return await serve_lifespan(receive, send)
        await respond(send, {"asgi2": "class", "path": self.scope["path"]})


def asgi2_factory(scope: Any) -> Any:
    """ASGI 2 as a function returning the instance."""
    async def instance(receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await serve_lifespan(receive, send)
        await respond(send, {"asgi2": "factory", "path": scope["path"]})
    return instance


class Asgi3Instance:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await serve_lifespan(receive, send)
        await respond(send, {"asgi3": "instance"})


asgi3_instance = Asgi3Instance()

NOT_AN_APP = {"routes": ["/"]}

native = App()


@native.get("/")
def native_hello(request: Any) -> str:
    return "native hello"


# ---- helpers ----

def get(port: int, path: str = "/") -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.getheader("content-type") == "application/json":
            return resp.status, json.loads(body)
        return resp.status, body
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(process_server: Any, name: str, *args: str, **kw: Any) -> Any:
    return process_server([f"{MODULE}:{name}", *args], **kw)


def stop(proc: Any) -> int:
    proc.signal(signal.SIGTERM)
    return proc.wait(10)


# ---- startup ----

def test_lifespan_startup_completes_before_the_port_accepts(process_server: Any) -> None:
    port = free_port()
    p = run(process_server, "startup_probe", port=port, env={"PROBE_PORT": str(port)}).wait_ready()
    status, seen = get(p.port)
    assert status == 200
    assert seen["accepting_during_startup"] is False
    assert seen["token"] == "set at startup"
    log = p.log()
    assert log.index("ASGI lifespan startup complete") < log.index("serving on")
    assert stop(p) == 0


def test_lifespan_state_is_copied_into_each_request(process_server: Any) -> None:
    port = free_port()
    p = run(process_server, "startup_probe", port=port, env={"PROBE_PORT": str(port)}).wait_ready()
    for _ in range(3):
        status, seen = get(p.port)
        assert status == 200
        # an earlier request's writes to scope["state"] are not seen by the next one
        assert seen["token"] == "set at startup"
        assert seen["leak"] is None
    assert stop(p) == 0


def test_lifespan_startup_failed_exits_1_with_the_apps_message(process_server: Any) -> None:
    p = run(process_server, "startup_fails")
    assert p.wait(10) == 1, p.log()
    assert "ASGI lifespan startup failed: config file /etc/app.toml missing" in p.log()
    assert "serving on" not in p.log()


def test_lifespan_startup_raising_after_receive_exits_1(process_server: Any) -> None:
    p = run(process_server, "startup_raises")
    assert p.wait(10) == 1, p.log()
    assert "pool exhausted during startup" in p.log()
    assert "serving on" not in p.log()


# ---- --lifespan auto | on | off ----

@pytest.mark.parametrize("app", ["http_only", "returns_at_once"])
def test_lifespan_auto_serves_an_app_without_lifespan_and_says_so(process_server: Any, app: str) -> None:
    p = run(process_server, app, "--lifespan", "auto").wait_ready()
    assert get(p.port) == (200, {"served": True})
    assert "ASGI lifespan not supported by the app" in p.log()
    assert stop(p) == 0, p.log()


@pytest.mark.parametrize("app", ["http_only", "returns_at_once"])
def test_lifespan_on_refuses_an_app_without_lifespan_with_status_1(process_server: Any, app: str) -> None:
    p = run(process_server, app, "--lifespan", "on")
    assert p.wait(10) == 1, p.log()
    assert "ASGI lifespan startup failed" in p.log()
    assert "serving on" not in p.log()


@pytest.mark.parametrize("mode, scopes", [("off", 0), ("auto", 1), ("on", 1)])
def test_lifespan_off_never_calls_the_app_with_a_lifespan_scope(process_server: Any, mode: str,
                                                                 scopes: int) -> None:
    p = run(process_server, "lifespan_counter", "--lifespan", mode).wait_ready()
    assert get(p.port) == (200, {"lifespan_scopes": scopes})
    assert stop(p) == 0, p.log()


# ---- shutdown ----

def test_lifespan_shutdown_failed_exits_4_with_the_apps_message(process_server: Any) -> None:
    p = run(process_server, "shutdown_fails").wait_ready()
    assert get(p.port) == (200, {"served": True})
    assert stop(p) == 4, p.log()
    assert "could not flush the write-ahead log" in p.log()


def test_lifespan_shutdown_raising_exits_4(process_server: Any) -> None:
    p = run(process_server, "shutdown_raises").wait_ready()
    assert stop(p) == 4, p.log()
    assert "connection pool close failed" in p.log()


def test_hanging_lifespan_shutdown_is_cut_by_the_hook_timeout_with_status_4(process_server: Any) -> None:
    p = run(process_server, "shutdown_hangs", "--hook-timeout", "0.5").wait_ready()
    t0 = time.monotonic()
    assert stop(p) == 4, p.log()
    assert time.monotonic() - t0 < 3.0
    assert "timed out after 0.5 s" in p.log()


# ---- ASGI 2 and interface detection ----

@pytest.mark.parametrize("app, kind", [("Asgi2Class", "class"), ("asgi2_factory", "factory")])
def test_asgi2_apps_are_served(process_server: Any, app: str, kind: str) -> None:
    p = run(process_server, app).wait_ready()
    assert get(p.port, "/some/where") == (200, {"asgi2": kind, "path": "/some/where"})
    assert "ASGI lifespan startup complete" in p.log()
    assert stop(p) == 0, p.log()


@pytest.mark.parametrize("obj, kind", [
    (startup_probe, "asgi3"),
    (asgi3_instance, "asgi3"),
    (Asgi2Class, "asgi2"),
    (asgi2_factory, "asgi2"),
    (native, "native"),
], ids=["function", "instance", "asgi2-class", "asgi2-factory", "native"])
def test_interface_auto_tells_the_kinds_apart(obj: Any, kind: str) -> None:
    assert detect_interface(obj, "auto") == kind


def test_interface_auto_serves_an_asgi_app(process_server: Any) -> None:
    p = run(process_server, "asgi3_instance", "--interface", "auto").wait_ready()
    assert get(p.port) == (200, {"asgi3": "instance"})
    assert "ASGI app:" in p.log()
    assert stop(p) == 0


def test_interface_auto_serves_a_native_app(process_server: Any) -> None:
    p = run(process_server, "native", "--interface", "auto").wait_ready()
    assert get(p.port) == (200, b"native hello")
    assert "ASGI" not in p.log()
    assert stop(p) == 0


def test_interface_native_on_an_asgi_app_exits_2(process_server: Any) -> None:
    p = run(process_server, "asgi3_instance", "--interface", "native")
    assert p.wait(10) == 2, p.log()
    assert "--interface native needs a fastsrv App, got Asgi3Instance" in p.log()
    assert "serving on" not in p.log()


def test_interface_asgi_on_a_non_callable_exits_2(process_server: Any) -> None:
    p = run(process_server, "NOT_AN_APP", "--interface", "asgi")
    assert p.wait(10) == 2, p.log()
    assert "neither a fastsrv App nor an ASGI application" in p.log()
    assert "serving on" not in p.log()


def test_interface_asgi_on_a_native_app_exits_2_and_says_why(process_server: Any) -> None:
    p = run(process_server, "native", "--interface", "asgi")
    assert p.wait(10) == 2, p.log()
    # a fastsrv App is not an ASGI callable: the message must say that, not
    # deny that the object is a fastsrv App
    assert "neither a fastsrv App" not in p.log()
    assert "--interface asgi" in p.log()


def test_interface_asgi_refuses_a_non_callable_in_process() -> None:
    with pytest.raises(AppLoadError, match="neither a fastsrv App nor an ASGI application"):
        detect_interface(NOT_AN_APP, "asgi")


def test_signal_during_a_hanging_lifespan_startup_abandons_the_start(process_server: Any) -> None:
    p = run(process_server, "startup_hangs")
    deadline = time.monotonic() + 10
    while "STARTUP BEGUN" not in p.log():
        assert time.monotonic() < deadline, p.log()
        time.sleep(0.01)
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    status = p.wait(10)
    assert time.monotonic() - t0 < 2.0
    assert "serving on" not in p.log()
    assert "STARTUP CANCELLED" in p.log(), "the app's startup is cancelled, not left running"
    assert status == 0, p.log()
