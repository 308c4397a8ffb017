"""One request never leaks into another: bytes, context variables, failures."""

import asyncio
import contextvars
import socket
import time

from fastsrv import App, HTTPError

user = contextvars.ContextVar("user", default="nobody")


def make_app() -> App:
    app = App()

    @app.get("/secret")
    def secret(request):
        return "secret-for-A\n"

    @app.get("/hello")
    def hello(request):
        return "hello\n"

    @app.get("/denied")
    def denied(request):
        raise HTTPError(401, "who are you", headers={"www-authenticate": "Basic"})

    @app.get("/denied-later")
    async def denied_later(request):
        await asyncio.sleep(0.01)
        raise HTTPError(401, "who are you", headers={"www-authenticate": "Basic"})

    @app.get("/cancelled")
    async def cancelled(request):
        fut = asyncio.get_running_loop().create_future()
        fut.cancel()
        await fut                   # raises CancelledError without suspending

    @app.get("/login")
    async def login(request):
        user.set(request.query["name"])
        return "ok"

    @app.get("/login-then-wait")
    async def login_then_wait(request):
        user.set(request.query["name"])
        await asyncio.sleep(0.05)
        return user.get()

    @app.get("/whoami")
    def whoami(request):
        return user.get()

    class Compiled:
        """An awaitable that is not a coroutine (what Cython/mypyc make)."""

        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            return "compiled"

    @app.get("/compiled")
    def compiled(request):
        return Compiled()

    @app.get("/big")
    def big(request):
        return b"x" * (16 << 20)

    return app


def get(client, path):
    client.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return client.read_response()


def test_http_error_with_dict_headers_is_answered_sync_and_async(serve, client_factory):
    srv = serve(make_app())
    c = client_factory(srv.port)
    for path in ("/denied", "/denied-later"):
        r = get(c, path)
        assert (r.status, r.header("www-authenticate"), r.body) == (401, "Basic", b"who are you\n")


def test_a_cancelled_handler_closes_only_its_own_connection(serve, client_factory):
    srv = serve(make_app())
    a = client_factory(srv.port)
    a.send(b"GET /secret HTTP/1.1\r\nHost: t\r\n\r\nGET /cancelled HTTP/1.1\r\nHost: t\r\n\r\n")
    b = client_factory(srv.port)
    r = get(b, "/hello")
    assert r.body == b"hello\n"
    assert b.buf == b""                                   # nothing of A's reached B
    assert a.is_closed(wait=2.0)
    assert b"secret-for-A" not in b.buf


def test_context_variables_do_not_leak_between_requests(serve, client_factory):
    srv = serve(make_app())
    a = client_factory(srv.port)
    assert get(a, "/login?name=alice").body == b"ok"
    assert get(a, "/whoami").body == b"nobody"            # same connection, next request
    b = client_factory(srv.port)
    assert get(b, "/whoami").body == b"nobody"            # another connection
    assert get(b, "/login-then-wait?name=bob").body == b"bob"   # kept across the suspension
    assert get(a, "/whoami").body == b"nobody"


def test_an_awaitable_that_is_not_a_coroutine_is_awaited(serve, client_factory):
    srv = serve(make_app())
    c = client_factory(srv.port)
    assert get(c, "/compiled").body == b"compiled"


def test_a_client_that_reads_nothing_is_cut_at_the_write_timeout(serve):
    srv = serve(make_app(), write_timeout=1.0, keepalive_timeout=60)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", srv.port))
    try:
        s.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        registry = srv.server.registry
        deadline = time.monotonic() + 10
        while registry.active == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.monotonic()
        while registry.open and time.monotonic() < deadline:
            time.sleep(0.05)
        took = time.monotonic() - t0
        assert registry.open == 0, "the connection was never cut"
        assert 0.5 < took < 3.5, took
    finally:
        s.close()
