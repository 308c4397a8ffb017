"""The demo app answers over a real socket."""

from fastsrv.demo import app


def test_demo_hello(serve, client_factory):
    srv = serve(app)
    c = client_factory(srv.port)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.read_response()
    assert (r.status, r.body) == (200, b"Hello, World!")
    assert r.header("content-type") == "text/plain; charset=utf-8"


def test_core_is_compiled():
    """The suite exercises the compiled core, never a silent fallback."""
    import fastsrv._core as core
    import fastsrv._parser as parser
    for mod in (core, parser):
        assert mod.__file__.endswith((".so", ".pyd")), mod.__file__
