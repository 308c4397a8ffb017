"""The demo app, a stable target for examples, benchmarks and checks.

* ``GET /`` — ``Hello, World!`` (text/plain)
* ``/echo`` and every path below it, any method — the request as JSON
  (``method``, ``path``, ``query``, ``headers``, ``body``), after reading the
  whole body
* ``GET /sleep?ms=N`` — answers after N milliseconds
* ``GET /stream?chunks=N&ms=M`` — N chunks, M milliseconds apart; it ends
  early when the server begins a graceful shutdown
"""

import asyncio

from fastsrv import App, HTTPError, Response, StreamingResponse

app = App()

ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@app.get("/")
def hello(request):
    return "Hello, World!"


async def echo(request):
    body = await request.body()
    return Response.json({
        "method": request.method,
        "path": request.path,
        "query": request.query_string.decode("latin-1"),
        "headers": [[k, v] for k, v in request.headers.items()],
        "body": body.decode("utf-8", "replace"),
    })


app.add_route("/echo", echo, ALL_METHODS)
app.add_route("/echo/{rest:path}", echo, ALL_METHODS)


def _int_param(request, name, default, upper):
    raw = request.query.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise HTTPError(400, f"{name} must be an integer") from None
    if not 0 <= value <= upper:
        raise HTTPError(400, f"{name} must be between 0 and {upper}")
    return value


@app.get("/sleep")
async def sleep(request):
    ms = _int_param(request, "ms", 0, 600_000)
    await asyncio.sleep(ms / 1000)
    return f"slept {ms} ms\n"


async def _pause_unless_shutdown(request, seconds):
    """Sleep ``seconds``; False (at once) if the server begins shutting down."""
    if request.shutting_down:
        return False
    try:
        await asyncio.wait_for(request.wait_shutdown(), seconds)
    except asyncio.TimeoutError:
        return True
    return False


@app.get("/stream")
async def stream(request):
    chunks = _int_param(request, "chunks", 10, 1_000_000)
    ms = _int_param(request, "ms", 100, 600_000)

    async def body():
        for i in range(chunks):
            if i and not await _pause_unless_shutdown(request, ms / 1000):
                yield "server shutting down\n"
                return
            yield f"chunk {i}\n"

    return StreamingResponse(body())
