"""Async handlers run in place until they suspend, under a stand-in task, so
code that asks for its Task from its first line works there on every Python;
``eager=False`` gives them a real Task from their first line."""

import asyncio
import sys

import pytest

from fastsrv import App

needs_311 = pytest.mark.skipif(sys.version_info < (3, 11),
                               reason="asyncio.timeout and TaskGroup are new in Python 3.11")


def get(client, path: str):
    client.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return client.read_response()


def test_a_handler_in_place_has_a_current_task_and_a_task_after_it_suspends(serve, client_factory):
    app = App()
    seen = {}

    @app.get("/")
    async def handler(request):
        first = asyncio.current_task()
        await asyncio.sleep(0)
        second = asyncio.current_task()
        seen["first"], seen["second"] = first, second
        return "ok"

    c = client_factory(serve(app).port)
    r = get(c, "/")
    assert (r.status, r.body) == (200, b"ok")
    assert seen["first"] is not None and isinstance(seen["second"], asyncio.Task)
    # the stand-in forwards to the Task that carried the handler on
    assert seen["first"].done() and seen["second"].done()


def test_wait_for_works_on_the_first_line_of_a_handler_in_place(serve, client_factory):
    """From Python 3.12, wait_for is built on asyncio.timeout, which needs a
    current task."""
    app = App()

    @app.get("/quick")
    async def quick(request):
        return str(await asyncio.wait_for(asyncio.sleep(0, result=7), 1))

    @app.get("/slow")
    async def slow(request):
        try:
            await asyncio.wait_for(asyncio.sleep(5), 0.05)
        except asyncio.TimeoutError:
            return "timed out"
        return "not timed out"

    c = client_factory(serve(app).port)
    assert get(c, "/quick").body == b"7"
    assert get(c, "/slow").body == b"timed out"


@needs_311
def test_timeout_and_task_group_work_on_the_first_line_of_a_handler_in_place(serve, client_factory):
    app = App()

    @app.get("/")
    async def handler(request):
        results = []
        async with asyncio.timeout(1):
            async with asyncio.TaskGroup() as group:
                group.create_task(asyncio.sleep(0))
                results.append("in group")
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(5)
        except TimeoutError:
            results.append("timed out")
        return ",".join(results)

    c = client_factory(serve(app).port)
    r = get(c, "/")
    assert (r.status, r.body) == (200, b"in group,timed out")


@needs_311
def test_a_task_group_child_failing_in_place_cancels_the_handler_and_raises(serve, client_factory):
    app = App()

    async def boom():
        raise ValueError("child failed")

    @app.get("/")
    async def handler(request):
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(boom())
                await asyncio.sleep(5)      # cancelled by the failing child
        except Exception as errors:     # an ExceptionGroup (no except* on 3.10)
            return f"caught {errors.exceptions[0]!r}"
        return "not caught"

    c = client_factory(serve(app).port)
    r = get(c, "/")
    assert (r.status, r.body) == (200, b"caught ValueError('child failed')")


def test_eager_false_handler_runs_in_a_real_task_from_its_first_line(serve, client_factory):
    app = App()
    seen = {}

    @app.get("/task", eager=False)
    async def in_task(request):
        seen["task"] = isinstance(asyncio.current_task(), asyncio.Task)
        await asyncio.wait_for(asyncio.sleep(0), 1)
        return "ok"

    @app.get("/eager")
    async def eager(request):
        seen["eager_is_task"] = isinstance(asyncio.current_task(), asyncio.Task)
        return "ok"

    c = client_factory(serve(app).port)
    for path in ("/task", "/eager", "/task"):
        r = get(c, path)
        assert (r.status, r.body) == (200, b"ok"), path
    assert seen == {"task": True, "eager_is_task": False}


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
