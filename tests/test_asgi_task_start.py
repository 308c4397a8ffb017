"""How an ASGI request's Task starts when it needs one from its first line
(apps on anyio: Starlette, FastAPI): on Python 3.12+ eagerly, so an app that
never suspends has answered before the read callback returns, with no loop
round trip; otherwise (before 3.12, or ``--asgi-task-start scheduled``) on
the loop's next iteration.  Either way the app runs in a real asyncio Task.

These drive ``HttpProtocol`` on a transport that records writes, so what
was written when ``data_received`` returned is exact.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from fastsrv._core import ASGIApp, ConnectionRegistry, HttpProtocol, Router

EAGER_START = sys.version_info >= (3, 12)
REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


seen: dict[str, Any] = {}


async def hello(scope: dict, receive: Any, send: Any) -> None:
    seen["task"] = asyncio.current_task()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hi"})


async def suspends(scope: dict, receive: Any, send: Any) -> None:
    seen["task"] = asyncio.current_task()
    await asyncio.sleep(0.01)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"late"})


def serve_one(app: Any, eager_start: bool) -> tuple[bytes, bytes, ConnectionRegistry]:
    """What was written when data_received returned, and once the loop ran;
    ``seen["in_flight"]``: the registry's running tasks at the return."""

    async def main() -> tuple[bytes, bytes, ConnectionRegistry]:
        registry = ConnectionRegistry()
        registry.start(asyncio.get_running_loop())
        protocol = HttpProtocol(registry, Router(), ASGIApp(app, eager=False, eager_start=eager_start))
        transport = RecordingTransport()
        protocol.connection_made(transport)
        protocol.data_received(REQUEST)
        at_return = bytes(transport.out)
        seen["in_flight"] = registry.running_tasks
        for _ in range(50):
            await asyncio.sleep(0.005)
            if transport.out.endswith((b"hi", b"late")):
                break
        registry.stop()
        protocol.connection_lost(None)
        return at_return, bytes(transport.out), registry

    seen.clear()
    return asyncio.run(main())


@pytest.mark.skipif(not EAGER_START, reason="eager Task start is new in Python 3.12")
def test_an_app_that_never_suspends_is_answered_within_the_read_callback_on_312() -> None:
    at_return, total, registry = serve_one(hello, eager_start=True)
    assert at_return.startswith(b"HTTP/1.1 200 OK") and at_return.endswith(b"\r\n\r\nhi")
    assert total == at_return
    assert isinstance(seen["task"], asyncio.Task) and seen["task"].done()
    assert seen["in_flight"] == 0 and registry.running_tasks == 0


def test_a_scheduled_task_answers_on_the_next_loop_iteration() -> None:
    at_return, total, _ = serve_one(hello, eager_start=False)
    assert at_return == b""
    assert total.startswith(b"HTTP/1.1 200 OK") and total.endswith(b"\r\n\r\nhi")
    assert isinstance(seen["task"], asyncio.Task)


def test_before_312_a_task_is_always_scheduled() -> None:
    at_return, total, _ = serve_one(hello, eager_start=True)
    if EAGER_START:
        assert at_return == total
    else:
        assert at_return == b"" and total.endswith(b"hi")


@pytest.mark.parametrize("eager_start", [True, False], ids=["eager", "scheduled"])
def test_an_app_that_suspends_keeps_its_task_and_is_in_flight_until_it_answers(eager_start: bool) -> None:
    at_return, total, registry = serve_one(suspends, eager_start)
    assert at_return == b"" and seen["in_flight"] == 1
    assert total.startswith(b"HTTP/1.1 200 OK") and total.endswith(b"\r\n\r\nlate")
    assert isinstance(seen["task"], asyncio.Task) and seen["task"].done()
    assert registry.running_tasks == 0
