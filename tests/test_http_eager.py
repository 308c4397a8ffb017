"""Async handlers run in place until they suspend; ``eager=False`` gives
them a Task from their first line."""

import asyncio

from fastsrv import App


def test_eager_false_handler_runs_in_a_task_and_can_use_asyncio_timeout(serve, client_factory):
    app = App()
    seen = {}

    @app.get("/task", eager=False)
    async def in_task(request):
        seen["task"] = asyncio.current_task() is not None
        async with asyncio.timeout(1):          # needs a Task before the first await
            await asyncio.sleep(0)
        return "ok"

    @app.get("/eager")
    async def eager(request):
        seen["eager_task"] = asyncio.current_task() is not None
        return "ok"

    srv = serve(app)
    c = client_factory(srv.port)
    for path in ("/task", "/eager", "/task"):
        c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        r = c.read_response()
        assert (r.status, r.body) == (200, b"ok"), path
    assert seen == {"task": True, "eager_task": False}


def test_eager_false_handler_still_reads_a_streamed_body(serve, client_factory):
    app = App()

    @app.post("/upload", eager=False)
    async def upload(request):
        return str(len(await request.body()))

    srv = serve(app)
    c = client_factory(srv.port)
    body = b"x" * 300_000
    c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
    c.send(body)
    r = c.read_response()
    assert (r.status, r.body) == (200, b"300000")
