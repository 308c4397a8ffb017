"""A Starlette "Hello, World!" app, the framework workload for ASGI servers.

One route, ``GET /`` -> ``PlainTextResponse("Hello, World!")`` (200,
``text/plain; charset=utf-8``), and nothing beyond Starlette's default
middleware stack (ServerErrorMiddleware, ExceptionMiddleware).  Unlike
``asgi_hello``, the app's own cost is a real share of each request here: the
benchmark shows what a server saves a typical framework app, not only itself.

    uvicorn --loop uvloop --http httptools --no-access-log --log-level warning \\
        bench.peers.starlette_hello:app         # from the repository root
"""
from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(request: Request) -> PlainTextResponse:
    """The whole app: a fixed plain-text answer."""
    return PlainTextResponse("Hello, World!")


app = Starlette(routes=[Route("/", hello, methods=["GET"])])
