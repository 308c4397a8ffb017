"""TLS: --ssl-* flags on uvloop's TLS transport, ALPN http/1.1, https in
the scope, client certificates, the drain with close_notify, and clear
errors at start for a bad certificate, key or password."""

from __future__ import annotations

import ast
import re
import signal
import ssl
import subprocess
import sys
import time

import pytest

from conftest import ROOT, RawClient
from tests.apps.production import app as native_app, asgi_app
from tls_helpers import Certs, TlsClient, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _get(client: RawClient, path: str) -> "object":
    client.send(f"GET {path} HTTP/1.1\r\nHost: example.test\r\n\r\n".encode())
    return client.read_response()


def test_https_negotiates_http11_by_alpn_and_the_app_sees_https(serve, certs):
    srv = serve(asgi_app, ssl_certfile=certs.certfile, ssl_keyfile=certs.keyfile)
    client = TlsClient(srv.port, certs.client_context(alpn=["h2", "http/1.1"]))
    assert client.sock.selected_alpn_protocol() == "http/1.1"
    resp = _get(client, "/")
    seen = ast.literal_eval(resp.body.decode())
    assert resp.status == 200
    assert seen["scheme"] == "https"
    assert seen["tls"]["tls_version"] == {"TLSv1.3": 0x0304, "TLSv1.2": 0x0303}[client.sock.version()]
    assert seen["tls"]["cipher_suite"] is not None
    assert seen["tls"]["client_cert_name"] is None and seen["chain"] == 0
    # keep-alive over TLS
    assert _get(client, "/again").status == 200
    client.close()


def test_native_request_scheme_is_https(serve, certs):
    srv = serve(native_app, ssl_certfile=certs.certfile, ssl_keyfile=certs.keyfile)
    client = TlsClient(srv.port, certs.client_context())
    resp = _get(client, "/whoami")
    assert resp.status == 200
    assert b'"scheme":"https"' in resp.body
    client.close()


def test_plain_http_to_a_tls_port_gets_no_response(serve, certs):
    srv = serve(native_app, ssl_certfile=certs.certfile, ssl_keyfile=certs.keyfile)
    client = RawClient(srv.port)
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert client.is_closed(3.0)
    assert b"HTTP/1.1 200" not in client.buf
    client.close()


def test_required_client_certificate_is_verified_and_named_in_the_scope(serve, certs):
    srv = serve(asgi_app, ssl_certfile=certs.certfile, ssl_keyfile=certs.keyfile,
                ssl_ca_certs=certs.ca_file, ssl_cert_reqs=2)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        anonymous = TlsClient(srv.port, certs.client_context())
        _get(anonymous, "/")        # TLS 1.3: the refusal arrives with the first read
    client = TlsClient(srv.port, certs.client_context(with_client_cert=True))
    seen = ast.literal_eval(_get(client, "/").body.decode())
    assert seen["tls"]["client_cert_name"].startswith("CN=client-1,")   # RFC 4514: most specific first
    assert seen["chain"] >= 1
    client.close()


def test_optional_client_certificate_lets_anonymous_clients_in(serve, certs):
    srv = serve(asgi_app, ssl_certfile=certs.certfile, ssl_keyfile=certs.keyfile,
                ssl_ca_certs=certs.ca_file, ssl_cert_reqs=1)
    client = TlsClient(srv.port, certs.client_context())
    seen = ast.literal_eval(_get(client, "/").body.decode())
    assert seen["tls"]["client_cert_name"] is None
    client.close()


def test_drain_over_tls_finishes_the_response_in_flight_and_sends_close_notify(process_server, certs):
    p = process_server(["tests.apps.production:app", "--ssl-certfile", certs.certfile,
                        "--ssl-keyfile", certs.keyfile]).wait_ready()
    assert "serving on https://127.0.0.1:" in p.log()
    busy = TlsClient(p.port, certs.client_context())
    idle = TlsClient(p.port, certs.client_context())
    silent = TlsClient(p.port, certs.client_context())     # never answers the close_notify
    assert _get(idle, "/").status == 200
    assert _get(silent, "/").status == 200
    busy.send(b"GET /sleep?ms=600 HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.2)
    p.signal(signal.SIGTERM)
    assert idle.closed_with_close_notify(), "the idle connection was closed without close_notify"
    resp = busy.read_response()
    assert resp.status == 200 and resp.body == b"slept 600 ms"
    assert resp.header("connection") == "close"
    assert busy.closed_with_close_notify(), "the drained connection was closed without close_notify"
    assert p.wait() == 0
    # the silent client held the drain for at most the close_notify wait (1 s)
    stopped_ms = float(re.search(r"stopped in ([0-9.]+) ms", p.log()).group(1))
    assert stopped_ms < 2500, p.log()
    silent.close()


def _start(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastsrv", "run", "tests.apps.production:app", "--port", "0",
                           *args], capture_output=True, text=True, timeout=30, cwd=ROOT)


@pytest.mark.parametrize("case", ["key of another certificate", "missing key file", "not a key",
                                  "encrypted key, no password", "wrong password", "unknown ciphers",
                                  "required client certs without a CA"])
def test_bad_tls_settings_exit_2_at_start_with_what_to_do(certs, tmp_path, case):
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(open(certs.keyfile, "rb").read(), None)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"right")))
    args, expected = {
        "key of another certificate": (["--ssl-keyfile", certs.other_key], "is not the private key of the certificate"),
        "missing key file": (["--ssl-keyfile", str(tmp_path / "nope.pem")], "no such file"),
        "not a key": (["--ssl-keyfile", certs.ca_file], "holds no PEM private key"),
        "encrypted key, no password": (["--ssl-keyfile", str(encrypted)], "give its password with --ssl-keyfile-password"),
        "wrong password": (["--ssl-keyfile", str(encrypted), "--ssl-keyfile-password", "wrong"],
                           "does not decrypt it"),
        "unknown ciphers": (["--ssl-keyfile", certs.keyfile, "--ssl-ciphers", "NO-SUCH-CIPHER"], "selects no cipher"),
        "required client certs without a CA": (["--ssl-keyfile", certs.keyfile, "--ssl-cert-reqs", "2"],
                                               "needs ssl_ca_certs"),
    }[case]
    out = _start("--ssl-certfile", certs.certfile, *args)
    assert out.returncode == 2, out.stderr
    assert expected in out.stderr
    assert "Traceback" not in out.stderr


def test_encrypted_key_with_its_password_serves(serve, certs, tmp_path):
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(open(certs.keyfile, "rb").read(), None)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"right")))
    srv = serve(native_app, ssl_certfile=certs.certfile, ssl_keyfile=str(encrypted), ssl_keyfile_password="right")
    client = TlsClient(srv.port, certs.client_context())
    assert _get(client, "/").body == b"Hello, World!"
    client.close()
