"""The lifecycle from inside a program: ``await server.serve()``,
``await server.shutdown()``, states, a custom signal waiter, hooks."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from fastsrv import App, Server, ServerStateError, State
from fastsrv.server import new_event_loop


def run(coro):
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coro)


async def fetch(port: int, path: str) -> tuple[int, bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    body = await reader.readexactly(length)
    writer.close()
    return int(head.split(b" ")[1]), head, body


def slow_app() -> App:
    app = App()

    @app.get("/slow")
    async def slow(request):
        await asyncio.sleep(float(request.query.get("s", "0.3")))
        return "done"

    return app


async def started(server: Server) -> asyncio.Task:
    task = asyncio.ensure_future(server.serve())
    while server.state is State.STARTING:
        await asyncio.sleep(0.001)
    return task


def test_states_go_starting_running_draining_stopped():
    async def main():
        server = Server(slow_app(), port=0, handle_signals=False)
        seen = [server.state]
        task = await started(server)
        seen.append(server.state)
        request = asyncio.ensure_future(fetch(server.port, "/slow?s=0.3"))
        await asyncio.sleep(0.1)
        shutdown = asyncio.ensure_future(server.shutdown())
        await asyncio.sleep(0.05)
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
        server = Server(slow_app(), port=0, handle_signals=False)
        task = await started(server)
        request = asyncio.ensure_future(fetch(server.port, "/slow?s=30"))
        await asyncio.sleep(0.1)
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
    try:
        async def main():
            server = Server(slow_app(), port=0)
            task = await started(server)
            assert signal.getsignal(signal.SIGTERM) is not mine
            os.kill(os.getpid(), signal.SIGTERM)
            return await task

        assert run(main()) == 0
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("decision,status", [("graceful", 0), ("immediate", 5)])
def test_custom_signal_waiter_decides_graceful_or_immediate(decision, status):
    async def main():
        go = asyncio.Event()

        async def waiter():
            await go.wait()
            return decision

        server = Server(slow_app(), port=0, signal_waiter=waiter)
        task = await started(server)
        request = asyncio.ensure_future(fetch(server.port, "/slow?s=0.3"))
        await asyncio.sleep(0.1)
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
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        await server.shutdown()
        status, head, body = await request
        return status, head, body, time.monotonic() - t0, await task

    status, head, body, took, code = run(main())
    assert (status, body, code) == (200, b"ended early", 0)
    assert b"connection: close" in head
    assert seen == {"before": False, "after": True}
    assert took < 0.5
