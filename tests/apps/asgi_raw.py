"""A raw ASGI 3 app (no framework) for running the same requests on fastsrv
and on uvicorn: ``fastsrv run tests.apps.asgi_raw:app`` /
``uvicorn tests.apps.asgi_raw:app``.

Routes (matched on the path *after* ``root_path``):

- ``/scope...``      the scope's fields as JSON (any path under /scope, and ``*``)
- ``/echo``          the request body back, with the request's content-type
- ``/stream``        ``?n=`` chunks sent as separate ``more_body`` messages
- ``/headers``       custom headers, two cookies, a cache-control
- ``/redirect``      307 with a location
- ``/head``          a fixed body (try it with HEAD)
- ``/json``          a JSON body
- ``/status/N``      status N with no body
- ``/error``         raises before the response starts
- anything else      404
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs


def _latin1(b: bytes) -> str:
    return b.decode("latin-1")


def scope_as_json(scope: dict[str, Any]) -> dict[str, Any]:
    """The scope's fields that can be written as JSON (bytes as Latin-1)."""
    return {
        "type": scope["type"],
        "asgi": dict(scope["asgi"]),
        "http_version": scope["http_version"],
        "method": scope["method"],
        "scheme": scope["scheme"],
        "path": scope["path"],
        "raw_path": _latin1(scope["raw_path"]) if scope.get("raw_path") is not None else None,
        "query_string": _latin1(scope["query_string"]),
        "root_path": scope.get("root_path", ""),
        "headers": [[_latin1(k), _latin1(v)] for k, v in scope["headers"]],
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "state": {k: v for k, v in scope.get("state", {}).items() if isinstance(v, (str, int, bool))},
        "extensions": sorted(scope.get("extensions") or {}),
    }


async def _read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return body
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def _respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if "state" in scope:
                scope["state"]["started_by"] = "lifespan"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


TEXT = [(b"content-type", b"text/plain; charset=utf-8")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return await _lifespan(scope, receive, send)
    assert scope["type"] == "http"
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    query = parse_qs(scope["query_string"].decode("latin-1"))

    if path == "/scope" or path.startswith("/scope/") or path == "*":
        await _respond(send, 200, json.dumps(scope_as_json(scope), sort_keys=True).encode(),
                       [(b"content-type", b"application/json")])
    elif path == "/echo":
        body = await _read_body(receive)
        ctype = dict(scope["headers"]).get(b"content-type", b"application/octet-stream")
        await _respond(send, 200, body, [(b"content-type", ctype),
                                         (b"x-body-length", str(len(body)).encode())])
    elif path == "/stream":
        n = int(query.get("n", ["3"])[0])
        await send({"type": "http.response.start", "status": 200, "headers": TEXT})
        for i in range(n):
            await send({"type": "http.response.body", "body": f"chunk {i}\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/headers":
        await _respond(send, 200, b"headers\n", TEXT + [
            (b"x-app-one", b"1"),
            (b"X-App-Mixed-Case", b"Value With Spaces"),
            (b"set-cookie", b"a=1; Path=/; HttpOnly"),
            (b"set-cookie", b"b=2; Path=/; Max-Age=60"),
            (b"cache-control", b"no-store"),
        ])
    elif path == "/redirect":
        await _respond(send, 307, b"", [(b"location", b"/scope?from=redirect")])
    elif path == "/head":
        await _respond(send, 200, b"the body a HEAD request must not get\n", TEXT)
    elif path == "/json":
        await _respond(send, 200, json.dumps({"ok": True, "n": [1, 2, 3]}).encode(),
                       [(b"content-type", b"application/json")])
    elif path.startswith("/status/"):
        status = int(path[len("/status/"):])
        await send({"type": "http.response.start", "status": status, "headers": [(b"etag", b'"v1"')]})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/error":
        raise RuntimeError("the /error route fails on purpose")
    else:
        await _respond(send, 404, b"not found\n", TEXT)
