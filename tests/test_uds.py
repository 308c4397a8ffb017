"""--uds PATH: a Unix socket with mode 0666, removed by the drain; served
behind a real nginx (Debian's, installed if missing)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.harness.debian import ToolMissing, ensure_tools
from conftest import ROOT, ProcessServer, RawClient, _free_port
from tests.apps.production import app as native_app


class UnixClient(RawClient):
    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""


class UdsServer(ProcessServer):
    """``fastsrv run ... --uds PATH``."""

    def __init__(self, path: str, args: list[str]) -> None:
        self.path = path
        super().__init__(args, preexec_fn=os.setpgrp)

    def command(self, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "fastsrv", "run", *args, "--uds", self.path, "--log-level", "info"]


@pytest.fixture
def uds_server():
    started: list[UdsServer] = []

    def start(path: str, *args: str, app: str = "tests.apps.production:app") -> UdsServer:
        s = UdsServer(path, [app, *args])
        started.append(s)
        return s

    yield start
    for s in started:
        if s.proc.poll() is None:
            os.killpg(s.proc.pid, signal.SIGKILL)
        s.kill()


def _get(client: RawClient, path: str, host: str = "t"):
    client.send(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return client.read_response()


def test_uds_serves_with_mode_0666_and_the_drain_removes_the_file(serve, tmp_path):
    path = str(tmp_path / "app.sock")
    srv = serve(native_app, uds=path)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
    client = UnixClient(path)
    resp = _get(client, "/whoami")
    assert resp.status == 200
    assert json.loads(resp.body)["client"] is None      # a Unix socket has no client address
    client.close()
    assert srv.stop() == 0
    assert not os.path.exists(path)


def test_a_stale_socket_file_is_replaced_and_a_live_one_refused(serve, tmp_path):
    path = str(tmp_path / "app.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()                       # the file stays, nobody listens: a crashed server's
    first = serve(native_app, uds=path)
    assert _get(UnixClient(path), "/").status == 200
    out = subprocess.run([sys.executable, "-m", "fastsrv", "run", "tests.apps.production:app", "--uds", path],
                         capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 1
    assert f"a server already listens on {path}" in out.stderr
    assert _get(UnixClient(path), "/").status == 200    # the first server was left alone
    first.stop()


def test_workers_share_one_unix_socket_and_the_supervisor_removes_it(uds_server, tmp_path):
    path = str(tmp_path / "app.sock")
    s = uds_server(path, "--workers", "2")
    s.READY = b"worker(s) serving on unix:"
    s.wait_ready()
    pids = {json.loads(_get(UnixClient(path), "/whoami").body)["pid"] for _ in range(30)}
    assert len(pids) >= 1
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert not os.path.exists(path)
    assert "removed the socket file" in s.log()


@pytest.fixture(scope="module")
def nginx() -> str:
    try:
        return ensure_tools(["nginx"])["nginx"]
    except ToolMissing as exc:
        pytest.skip(str(exc))


def _nginx_config(prefix: Path, port: int, sock: str) -> Path:
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
user root;
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream app {{ server unix:{sock}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
""")
    return conf


def _wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def test_behind_nginx_over_the_unix_socket(nginx, uds_server, tmp_path):
    path = str(tmp_path / "app.sock")
    app = uds_server(path, "--forwarded-allow-ips", "unix:").wait_ready()
    port = _free_port()
    proc = subprocess.Popen([nginx, "-c", str(_nginx_config(tmp_path, port, path)), "-p", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_port(port)
        client = RawClient(port)
        resp = _get(client, "/whoami", host="shop.example")
        seen = json.loads(resp.body)
        # the client nginx saw, forwarded over the socket and trusted ("unix:")
        assert seen["client"] == ["127.0.0.1", 0]
        assert seen["host"] == "shop.example"
        assert resp.header("server") == "nginx" or resp.header("server").startswith("nginx")
        # the drain: a request in flight through nginx finishes, then the file is gone
        client.send(b"GET /sleep?ms=700 HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.25)
        app.signal(signal.SIGTERM)
        time.sleep(0.1)
        assert not os.path.exists(path), "the socket file outlived the listener"
        resp = client.read_response()
        assert resp.status == 200 and resp.body == b"slept 700 ms"
        assert app.wait() == 0
        # nginx now finds no socket: 502, not a hang
        assert _get(RawClient(port), "/").status == 502
    finally:
        proc.terminate()
        proc.wait(10)
