"""A real Starlette app for the ASGI tests: ``fastsrv run tests.apps.asgi_starlette:app``.

Each route exercises one thing fastsrv's ASGI support promises (routing,
params, JSON, streaming, background tasks, exception handlers, lifespan
state, chunked uploads, the threadpool, middleware, the shutdown
extension).  The FastAPI app (``asgi_fastapi``) serves the same routes and
reuses the pieces below that are not Starlette-specific.

What happens outside a response is made observable:

* ``ASGI_TEST_EVENTS``: a file each event is appended to as
  ``<name> <monotonic time>`` (lifespan startup/shutdown, background tasks,
  sleeps), and the same line is logged as ``EVENT <name> <time>``;
* ``ASGI_TEST_FAIL_STARTUP=1`` makes the lifespan raise during startup.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
import time
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

log = logging.getLogger("asgi.test")

# background tasks that ran, in order, reported by GET /tasks
DONE_TASKS: list[str] = []


def record(what: str) -> None:
    """Append ``what`` to the events file (if any) and log it."""
    line = f"{what} {time.monotonic():.6f}"
    path = os.environ.get("ASGI_TEST_EVENTS")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
    log.info("EVENT %s", line)


class TeapotError(Exception):
    """Raised by /teapot; the app's exception handler turns it into a 418."""

    def __init__(self, who: str) -> None:
        super().__init__(who)
        self.who = who


def teapot_response(exc: TeapotError) -> JSONResponse:
    return JSONResponse({"error": "teapot", "who": exc.who}, status_code=418)


class StampMiddleware:
    """Pure ASGI middleware: adds ``x-asgi-middleware`` to every HTTP response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def stamped(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                   (b"x-asgi-middleware", b"stamped")]}
            await send(message)

        await self.app(scope, receive, stamped)


class RouteHeaderMiddleware(BaseHTTPMiddleware):
    """BaseHTTPMiddleware: reports the path it saw in ``x-base-middleware``."""

    async def dispatch(self, request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["x-base-middleware"] = request.url.path
        return response


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
    record("startup")
    if os.environ.get("ASGI_TEST_FAIL_STARTUP") == "1":
        raise RuntimeError("the database is unreachable (ASGI_TEST_FAIL_STARTUP)")
    yield {"greeting": "hello from lifespan", "loop_thread": threading.get_ident()}
    record("shutdown")


async def sleep_ms(ms: int) -> None:
    record(f"sleep-start-{ms}")
    try:
        await asyncio.sleep(ms / 1000)
    except asyncio.CancelledError:
        record(f"sleep-cancelled-{ms}")
        raise
    record(f"sleep-end-{ms}")


async def count_upload(chunks: AsyncIterator[bytes]) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = pieces = 0
    async for chunk in chunks:
        if chunk:
            pieces += 1
            size += len(chunk)
            digest.update(chunk)
    return {"bytes": size, "chunks": pieces, "sha256": digest.hexdigest()}


async def ticks(n: int) -> AsyncIterator[str]:
    for i in range(n):
        yield f"chunk {i}\n"
        await asyncio.sleep(0.01)


async def event_stream(shutdown: Any, limit: int) -> AsyncIterator[str]:
    """Server-sent events every 50 ms until the server begins its shutdown."""
    for i in range(limit):
        if shutdown.is_set:
            break
        yield f"data: tick {i}\n\n"
        try:
            await asyncio.wait_for(shutdown.wait(), 0.05)
        except asyncio.TimeoutError:
            pass
    record("events-end")
    yield "event: bye\ndata: server shutting down\n\n"


# ---- endpoints ----

async def root(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello from Starlette")


async def item(request: Request) -> JSONResponse:
    return JSONResponse({"item_id": request.path_params["item_id"],
                         "q": request.query_params.get("q"),
                         "tags": request.query_params.getlist("tag")})


async def create_item(request: Request) -> JSONResponse:
    try:
        data = await request.json()
    except ValueError:
        raise HTTPException(400, "body is not JSON")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) \
            or not isinstance(data.get("price"), (int, float)):
        return JSONResponse({"detail": "name (str) and price (number) are required"}, 422)
    return JSONResponse({"name": data["name"], "price": float(data["price"]),
                         "total": round(float(data["price"]) * int(data.get("quantity", 1)), 2)},
                        status_code=201)


async def stream(request: Request) -> StreamingResponse:
    n = int(request.query_params.get("n", "5"))
    return StreamingResponse(ticks(n), media_type="text/plain")


async def background(request: Request) -> JSONResponse:
    token = request.query_params["token"]
    delay_ms = int(request.query_params.get("delay_ms", "10"))

    async def remember() -> None:
        record(f"background-start-{token}")
        await asyncio.sleep(delay_ms / 1000)
        DONE_TASKS.append(token)
        record(f"background-{token}")

    return JSONResponse({"queued": token}, background=BackgroundTask(remember))


async def tasks(request: Request) -> JSONResponse:
    return JSONResponse({"done": DONE_TASKS})


async def teapot(request: Request) -> None:
    raise TeapotError(request.query_params.get("who", "nobody"))


async def missing(request: Request) -> None:
    raise HTTPException(404, f"no widget {request.path_params['name']}")


async def state(request: Request) -> JSONResponse:
    return JSONResponse({"greeting": request.state.greeting})


async def upload(request: Request) -> JSONResponse:
    return JSONResponse(await count_upload(request.stream()))


def sync_endpoint(request: Request) -> JSONResponse:
    # a def endpoint: Starlette runs it in anyio's worker threads
    return JSONResponse({"in_worker_thread": threading.get_ident() != request.state.loop_thread})


async def sleep(request: Request) -> PlainTextResponse:
    ms = int(request.query_params.get("ms", "1000"))
    await sleep_ms(ms)
    return PlainTextResponse(f"slept {ms}\n")


async def events(request: Request) -> StreamingResponse:
    shutdown = request.scope["extensions"]["fastsrv.shutdown"]["signal"]
    limit = int(request.query_params.get("limit", "600"))
    return StreamingResponse(event_stream(shutdown, limit), media_type="text/event-stream")


app = Starlette(
    routes=[
        Route("/", root),
        Route("/items/{item_id:int}", item),
        Route("/items", create_item, methods=["POST"]),
        Route("/stream", stream),
        Route("/background", background, methods=["POST"]),
        Route("/tasks", tasks),
        Route("/teapot", teapot),
        Route("/widgets/{name}", missing),
        Route("/state", state),
        Route("/upload", upload, methods=["POST"]),
        Route("/sync", sync_endpoint),
        Route("/sleep", sleep),
        Route("/events", events),
    ],
    middleware=[Middleware(StampMiddleware), Middleware(RouteHeaderMiddleware)],
    exception_handlers={TeapotError: lambda request, exc: teapot_response(exc)},
    lifespan=lifespan,
)
