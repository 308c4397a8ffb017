"""Apps for the production-flag tests: what the request looks like to the
app (client, scheme, host, TLS), native and ASGI."""

import asyncio
import os

from fastsrv import App, Response

app = App()


@app.get("/")
def hello(request):
    return "Hello, World!"


@app.get("/whoami")
def whoami(request):
    return {"client": list(request.client) if request.client else None, "scheme": request.scheme,
            "host": request.host, "pid": os.getpid()}


@app.get("/pid")
def pid(request):
    return str(os.getpid())


@app.get("/sleep")
async def sleep(request):
    ms = int(request.query.get("ms", "500"))
    await asyncio.sleep(ms / 1000)
    return f"slept {ms} ms"


@app.post("/upload")
async def upload(request):
    body = await request.body()
    return Response.json({"bytes": len(body)})


@app.get("/env")
def env(request):
    return os.environ.get(request.query["name"], "")


@app.get("/with-server")
def with_server(request):
    return Response("mine", headers=[("server", "my-app/1.0")])


def make_app():
    """For --factory: a new App."""
    made = App()

    @made.get("/")
    def made_here(request):
        return "made by the factory"

    return made


async def asgi_app(scope, receive, send):
    """Answers with what the scope says about the connection."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        host = dict(scope["headers"]).get(b"host", b"").decode()
        await send({"type": "websocket.send", "text": f"{scope['scheme']} {scope['client']} {host}"})
        await send({"type": "websocket.close", "code": 1000})
        return
    if scope["path"] == "/sleep":
        await asyncio.sleep(0.5)
    tls = scope["extensions"].get("tls")
    body = repr({
        "scheme": scope["scheme"], "client": scope["client"], "server": scope["server"],
        "host": dict(scope["headers"]).get(b"host", b"").decode(),
        "tls": None if tls is None else {k: tls[k] for k in ("client_cert_name", "tls_version", "cipher_suite")},
        "chain": None if tls is None else len(tls["client_cert_chain"]),
    }).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
