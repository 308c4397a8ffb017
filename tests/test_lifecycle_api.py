"""The lifecycle from inside a program: ``await server.serve()``,
``await server.shutdown()``, states, a custom signal waiter, hooks."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from fastsrv import App, ConfigError, Server, ServerStateError, State
from fastsrv.server import run_on_uvloop


def run(coro):
    return run_on_uvloop(coro)


async def fetch(port: int, path: str) -> tuple[int, bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    body = await reader.readexactly(length)
    writer.close()
    return int(head.split(b" ")[1]), head, body


def slow_app() -> App:
    """``/slow?s=N`` answers after N seconds; ``app.entered`` is set once a
    request is being handled."""
    app = App()
    app.entered = asyncio.Event()

    @app.get("/slow")
    async def slow(request):
        app.entered.set()
        await asyncio.sleep(float(request.query.get("s", "0.3")))
        return "done"

    return app


async def in_flight(app: App) -> None:
    await asyncio.wait_for(app.entered.wait(), 5)


async def started(server: Server) -> asyncio.Task:
    task = asyncio.ensure_future(server.serve())
    while server.state is State.STARTING and not task.done():
        await asyncio.sleep(0.001)
    return task


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


def test_states_go_starting_running_draining_stopped():
    async def main():
        app = slow_app()
        server = Server(app, port=0, handle_signals=False)
        seen = [server.state]
        task = await started(server)
        seen.append(server.state)
        request = asyncio.ensure_future(fetch(server.port, "/slow?s=0.3"))
        await in_flight(app)
        shutdown = asyncio.ensure_future(server.shutdown())
        await until(lambda: server.state is not State.RUNNING)
        seen.append(server.state)
        report = await shutdown
        seen.append(server.state)
        assert (await request)[0] == 200
        assert await task == 0
        return seen, report

    seen, report = run(main())
    assert seen == [State.STARTING, State.RUNNING, State.DRAINING, State.STOPPED]
    assert (report.in_flight, report.cancelled, report.exit_status) == (1, 0, 0)


def test_programmatic_shutdown_timeout_cuts_in_flight_work():
    async def main():
        app = slow_app()
        server = Server(app, port=0, handle_signals=False)
        task = await started(server)
        request = asyncio.ensure_future(fetch(server.port, "/slow?s=30"))
        await in_flight(app)
        t0 = time.monotonic()
        report = await server.shutdown(timeout=0.3)
        took = time.monotonic() - t0
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await request
        return report, took, await task

    report, took, status = run(main())
    assert report.cancelled == 1 and status == 3
    assert took < 1.0


def test_serve_restores_the_previous_signal_handlers():
    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        async def main():
            server = Server(slow_app(), port=0)
            task = await started(server)
            assert signal.getsignal(signal.SIGTERM) is not mine
            os.kill(os.getpid(), signal.SIGTERM)
            return await asyncio.wait_for(task, 10)

        assert run(main()) == 0
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


@pytest.mark.parametrize("decision,status", [("graceful", 0), ("immediate", 5)])
def test_custom_signal_waiter_decides_graceful_or_immediate(decision, status):
    async def main():
        go = asyncio.Event()

        async def waiter():
            await go.wait()
            return decision

        app = slow_app()
        server = Server(app, port=0, signal_waiter=waiter)
        task = await started(server)
        request = asyncio.ensure_future(fetch(server.port, "/slow?s=0.3"))
        await in_flight(app)        # the request is being handled when the waiter decides
        go.set()
        code = await task
        try:
            result = (await request)[0]
        except (ConnectionError, asyncio.IncompleteReadError):
            result = None
        return code, result, server.report.trigger

    code, result, trigger = run(main())
    assert code == status
    assert result == (200 if decision == "graceful" else None)
    assert trigger == "custom signal waiter"


def test_serve_twice_is_a_clear_error():
    async def main():
        server = Server(slow_app(), port=0, handle_signals=False)
        task = await started(server)
        with pytest.raises(ServerStateError):
            await server.serve()
        await server.shutdown()
        return await task

    assert run(main()) == 0


def test_hook_budget_bounds_all_hooks_and_reports_skipped():
    app = slow_app()
    ran = []

    @app.on_shutdown
    async def slow_one():
        await asyncio.sleep(10)

    @app.on_shutdown
    def never():
        ran.append("never")

    async def main():
        server = Server(app, port=0, handle_signals=False, hook_timeout=5, hook_budget=0.3)
        task = await started(server)
        t0 = time.monotonic()
        report = await server.shutdown()
        return report, time.monotonic() - t0, await task

    report, took, status = run(main())
    assert (report.hooks.timed_out, report.hooks.skipped, status) == (1, 1, 4)
    assert ran == [] and took < 1.0


def test_request_sees_the_shutdown_context():
    app = App()
    seen = {}

    @app.get("/poll")
    async def poll(request):
        seen["before"] = request.shutting_down
        await request.wait_shutdown()
        seen["after"] = request.shutting_down
        return "ended early"

    async def main():
        server = Server(app, port=0, handle_signals=False)
        task = await started(server)
        request = asyncio.ensure_future(fetch(server.port, "/poll"))
        await until(lambda: "before" in seen)
        t0 = time.monotonic()
        await server.shutdown()
        status, head, body = await request
        return status, head, body, time.monotonic() - t0, await task

    status, head, body, took, code = run(main())
    assert (status, body, code) == (200, b"ended early", 0)
    assert b"connection: close" in head
    assert seen == {"before": False, "after": True}
    assert took < 2.0


def test_a_hook_that_ignores_cancellation_is_still_held_to_its_timeout():
    app = slow_app()
    later = []

    @app.on_shutdown(timeout=0.3)
    async def stubborn():
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue

    @app.on_shutdown
    async def next_one():
        later.append("ran")

    async def main():
        server = Server(app, port=0, handle_signals=False, hook_budget=5)
        task = await started(server)
        t0 = time.monotonic()
        report = await server.shutdown()
        took = time.monotonic() - t0
        await task
        return report, took

    report, took = run(main())
    assert (report.hooks.timed_out, report.hooks.ran, later) == (1, 1, ["ran"])
    assert took < 1.5


def test_a_hook_raising_cancelled_error_counts_as_failed_and_the_next_runs():
    app = slow_app()
    later = []

    @app.on_shutdown
    async def awaits_a_cancelled_task():
        t = asyncio.ensure_future(asyncio.sleep(10))
        t.cancel()
        await t

    @app.on_shutdown
    async def next_one():
        later.append("ran")

    async def main():
        server = Server(app, port=0, handle_signals=False)
        task = await started(server)
        report = await server.shutdown()
        return report, await task

    report, status = run(main())
    assert (report.hooks.failed, report.hooks.ran, later, status) == (1, 1, ["ran"], 4)


def test_cancelling_serve_closes_the_listener_and_the_connections():
    async def main():
        server = Server(slow_app(), port=0, handle_signals=False)
        task = await started(server)
        port = server.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.wait_for(reader.read(), 2) == b""      # the connection was closed
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        return server.state, server.registry.open

    assert run(main()) == (State.STOPPED, 0)


@pytest.mark.parametrize("setting", [{"hook_timeout": 0}, {"hook_budget": 0},
                                     {"exit_wait_time": float("nan")}, {"shutdown_delay": -1}])
def test_out_of_range_lifecycle_settings_are_refused(setting):
    with pytest.raises(ConfigError, match=next(iter(setting))):
        Server(slow_app(), **setting)
