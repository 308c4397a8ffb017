"""Proxy headers: X-Forwarded-For/-Proto/-Host and RFC 7239 Forwarded set
the client, scheme and host apps see, from trusted peers only
(--forwarded-allow-ips: addresses, CIDRs, '*'); from anyone else they
change nothing."""

from __future__ import annotations

import ast
import base64
import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import ROOT, RawClient
from fastsrv._proxy import ProxyHeaders
from tests.apps.production import app as native_app, asgi_app

SPOOF = ("X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example\r\n"
         "Forwarded: for=198.51.100.9;proto=https;host=evil.example\r\n")


def _get(port: int, headers: str = "", path: str = "/whoami", source: str = "127.0.0.1") -> bytes:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    client = RawClient.__new__(RawClient)
    client.sock, client.buf = sock, b""
    sock.settimeout(5)
    client.send(f"GET {path} HTTP/1.1\r\nHost: origin.test\r\n{headers}\r\n".encode())
    resp = client.read_response()
    client.close()
    assert resp.status == 200, resp.raw
    return resp.body


def native(port: int, headers: str = "", source: str = "127.0.0.1") -> dict:
    return json.loads(_get(port, headers, source=source))


def asgi(port: int, headers: str = "", source: str = "127.0.0.1") -> dict:
    return ast.literal_eval(_get(port, headers, "/", source).decode())


@pytest.mark.parametrize("look", [native, asgi], ids=["native", "asgi"])
def test_x_forwarded_headers_from_a_trusted_peer_set_client_scheme_and_host(serve, look):
    srv = serve(native_app if look is native else asgi_app)      # default: trust 127.0.0.1
    seen = look(srv.port, "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n"
                          "X-Forwarded-Host: shop.example\r\n")
    assert tuple(seen["client"]) == ("203.0.113.7", 0)
    assert seen["scheme"] == "https"
    assert seen["host"] == "shop.example"


@pytest.mark.parametrize("look", [native, asgi], ids=["native", "asgi"])
def test_rfc7239_forwarded_wins_over_x_forwarded(serve, look):
    srv = serve(native_app if look is native else asgi_app)
    seen = look(srv.port, 'Forwarded: for="[2001:db8::17]:4711";proto=https;host="shop.example:8443"\r\n'
                          "X-Forwarded-For: 203.0.113.7\r\n")
    assert tuple(seen["client"]) == ("2001:db8::17", 4711)
    assert seen["scheme"] == "https"
    assert seen["host"] == "shop.example:8443"


@pytest.mark.parametrize("look", [native, asgi], ids=["native", "asgi"])
def test_spoofed_headers_from_an_untrusted_peer_change_nothing(serve, look):
    # the server trusts 127.0.0.1 only; this client connects from 127.0.0.2
    srv = serve(native_app if look is native else asgi_app, forwarded_allow_ips="127.0.0.1")
    seen = look(srv.port, SPOOF, source="127.0.0.2")
    assert seen["client"][0] == "127.0.0.2"
    assert seen["scheme"] == "http"
    assert seen["host"] == "origin.test"


def test_proxy_headers_off_ignores_even_a_trusted_peer(serve):
    srv = serve(native_app, proxy_headers=False)
    seen = native(srv.port, SPOOF)
    assert seen["client"][0] == "127.0.0.1" and seen["scheme"] == "http" and seen["host"] == "origin.test"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right(serve):
    hops = "X-Forwarded-For: 198.51.100.1, 192.0.2.200, 10.1.2.3\r\n"
    inner = serve(native_app, forwarded_allow_ips="127.0.0.1, 10.0.0.0/8")
    assert native(inner.port, hops)["client"][0] == "192.0.2.200"       # the first untrusted from the right
    wide = serve(native_app, forwarded_allow_ips="127.0.0.1,10.0.0.0/8,192.0.2.0/24")
    assert native(wide.port, hops)["client"][0] == "198.51.100.1"
    narrow = serve(native_app)
    assert native(narrow.port, hops)["client"][0] == "10.1.2.3"


def test_star_trusts_every_peer(serve):
    srv = serve(native_app, forwarded_allow_ips="*")
    assert native(srv.port, "X-Forwarded-For: 203.0.113.7\r\n", source="127.0.0.2")["client"][0] == "203.0.113.7"


def test_websocket_scope_takes_wss_and_the_forwarded_client(serve):
    srv = serve(asgi_app)
    key = base64.b64encode(os.urandom(16)).decode()
    client = RawClient(srv.port)
    client.send(f"GET /ws HTTP/1.1\r\nHost: origin.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n"
                f"X-Forwarded-Host: shop.example\r\n\r\n".encode())
    assert client.read_response(head_request=True).status == 101
    while len(client.buf) < 2 or len(client.buf) < 2 + client.buf[1]:
        client._fill()
    text = client.buf[2:2 + client.buf[1]].decode()
    assert text == "wss ('203.0.113.7', 0) shop.example"
    client.close()


def test_bad_forwarded_header_values_are_ignored():
    proxy = ProxyHeaders("127.0.0.1")
    assert proxy.resolve(None, "203.0.113.7", "gopher", "bad host\\") == (("203.0.113.7", 0), None, None)
    assert proxy.resolve('for="_hidden";proto=HTTPS, for=127.0.0.1', None, None, None) == (("_hidden", 0), "https", None)


def test_a_bad_allow_list_exits_2():
    out = subprocess.run([sys.executable, "-m", "fastsrv", "run", "fastsrv.demo:app", "--forwarded-allow-ips",
                          "127.0.0.1,not-an-ip"], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 2
    assert "'not-an-ip' is not an IP address, a CIDR network" in out.stderr
