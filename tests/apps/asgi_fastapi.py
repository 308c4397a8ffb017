"""A real FastAPI app for the ASGI tests: ``fastsrv run tests.apps.asgi_fastapi:app``.

The same routes as the Starlette app (``asgi_starlette``), written the
FastAPI way: typed path and query parameters, a pydantic body, ``Depends``,
``BackgroundTasks``, ``HTTPException``.  Events (lifespan, background tasks,
sleeps) go to ``ASGI_TEST_EVENTS`` and the log, as described there.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any, AsyncIterator, Optional

from fastapi import BackgroundTasks, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from tests.apps.asgi_starlette import (
    DONE_TASKS, RouteHeaderMiddleware, StampMiddleware, TeapotError, count_upload,
    event_stream, record, sleep_ms, teapot_response, ticks,
)


class Item(BaseModel):
    name: str
    price: float = Field(gt=0)
    quantity: int = 1


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    record("startup")
    if os.environ.get("ASGI_TEST_FAIL_STARTUP") == "1":
        raise RuntimeError("the database is unreachable (ASGI_TEST_FAIL_STARTUP)")
    yield {"greeting": "hello from lifespan", "loop_thread": threading.get_ident()}
    record("shutdown")


app = FastAPI(lifespan=lifespan)
app.add_middleware(RouteHeaderMiddleware)
app.add_middleware(StampMiddleware)     # added last: outermost, like the Starlette app


@app.exception_handler(TeapotError)
async def on_teapot(request: Request, exc: TeapotError) -> JSONResponse:
    return teapot_response(exc)


@app.get("/", response_class=PlainTextResponse)
async def root() -> str:
    return "Hello from FastAPI"


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: Optional[str] = None,
                    tag: list[str] = Query(default=[])) -> dict[str, Any]:
    return {"item_id": item_id, "q": q, "tags": tag}


@app.post("/items", status_code=201)
async def create_item(item: Item) -> dict[str, Any]:
    return {"name": item.name, "price": item.price, "total": round(item.price * item.quantity, 2)}


@app.get("/stream")
async def stream(n: int = 5) -> StreamingResponse:
    return StreamingResponse(ticks(n), media_type="text/plain")


@app.post("/background")
async def background(token: str, tasks: BackgroundTasks, delay_ms: int = 0) -> dict[str, str]:
    def remember() -> None:     # a sync task: run in the threadpool after the response
        record(f"background-start-{token}")
        time.sleep(delay_ms / 1000)
        DONE_TASKS.append(token)
        record(f"background-{token}")

    tasks.add_task(remember)
    return {"queued": token}


@app.get("/tasks")
async def done_tasks() -> dict[str, list[str]]:
    return {"done": DONE_TASKS}


@app.get("/teapot")
async def teapot(who: str = "nobody") -> None:
    raise TeapotError(who)


@app.get("/widgets/{name}")
async def missing(name: str) -> None:
    raise HTTPException(404, f"no widget {name}")


@app.get("/state")
async def state(request: Request) -> dict[str, str]:
    return {"greeting": request.state.greeting}


@app.post("/upload")
async def upload(request: Request) -> dict[str, Any]:
    return await count_upload(request.stream())


@app.get("/sync")
def sync_endpoint(request: Request) -> dict[str, bool]:
    # a def endpoint: FastAPI runs it in anyio's worker threads
    return {"in_worker_thread": threading.get_ident() != request.state.loop_thread}


@app.get("/sleep", response_class=PlainTextResponse)
async def sleep(ms: int = 1000) -> str:
    await sleep_ms(ms)
    return f"slept {ms}\n"


@app.get("/events")
async def events(request: Request, limit: int = 600) -> StreamingResponse:
    shutdown = request.scope["extensions"]["fastsrv.shutdown"]["signal"]
    return StreamingResponse(event_stream(shutdown, limit), media_type="text/event-stream")
