"""The app the hostile-client tests and ``bench/soak.py`` serve:
``fastsrv run tests.apps.hostile:app``.

Responses are cached per size, so that what the server holds for a client
that does not read is the transport's buffer, not a new body per request.
"""

import asyncio
import gc
from functools import lru_cache

from fastsrv import App, StreamingResponse
from fastsrv._core import debug_counters

app = App()


@lru_cache(maxsize=16)
def payload(size: int) -> bytes:
    """``size`` bytes of 64-character lines, the same object for the same size."""
    line = b"0123456789abcdef" * 4 + b"\n"
    return (line * (size // len(line) + 1))[:size]


def fresh_chunk() -> bytes:
    """16 kB of the payload as a new object, as a real producer makes them:
    chunks that were all one cached object would cost a server that buffers
    them without bound next to nothing, hiding it."""
    return bytes(bytearray(payload(16384)))


@app.get("/")
def index(request):
    return "ok"


@app.get("/large")
def large(request):
    """``?kb=N`` bytes of text (default 1024 kB, at most 64 MB); ``&fresh=1``
    makes a new body rather than answering the cached one."""
    body = payload(min(int(request.query.get("kb", "1024")), 65536) * 1024)
    return bytes(bytearray(body)) if request.query.get("fresh") == "1" else body


@app.post("/echo")
async def echo(request):
    return await request.body()


@app.post("/count")
async def count(request):
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return str(size)


@app.get("/stream")
async def stream(request):
    """``?chunks=N`` chunks of 16 kB (default 1000), ``&ms=M`` apart (default 10)."""
    chunks = int(request.query.get("chunks", "1000"))
    pause = int(request.query.get("ms", "10")) / 1000

    async def parts():
        for _ in range(chunks):
            yield fresh_chunk()
            await asyncio.sleep(pause)
    return StreamingResponse(parts())


@app.get("/slow")
async def slow(request):
    await asyncio.sleep(int(request.query.get("ms", "100")) / 1000)
    return "slow"


@app.get("/debug/counters")
def counters(request):
    """The core's connection counters, after a collection (soak checks)."""
    gc.collect()
    return debug_counters()


@app.post("/sync-count")
def sync_count(request):
    """A sync handler: the core reads the whole body before calling it."""
    return str(len(request.content))


@app.post("/late-count")
async def late_count(request):
    """Reads its body only after ``?ms=`` milliseconds (default 1000)."""
    await asyncio.sleep(int(request.query.get("ms", "1000")) / 1000)
    return str(len(await request.body()))
