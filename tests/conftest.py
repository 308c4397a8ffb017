"""Shared fixtures: servers on port 0 and a raw-socket HTTP client."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import pytest

import fastsrv
from fastsrv import Server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STOP_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)


def _ignored(signum: int, frame: Any) -> None:
    """Catches what the suite was started ignoring: still ignored here, but a
    caught signal is reset to its default across exec, an ignored one is not."""


def pytest_configure(config: Any) -> None:
    """The servers the tests start must begin with the stop signals at their
    defaults, however the suite was launched: under nohup (SIGHUP ignored),
    as a background job of a script (SIGINT ignored), or with the signals
    blocked.  An ignored signal would be inherited by every child, and the
    server rightly leaves an ignored SIGHUP alone."""
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, _ignored)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    os.umask(0o022)


class Calls:
    """Handler invocations, counted across the server thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.names: list[str] = []

    def add(self, name: str) -> None:
        with self.lock:
            self.names.append(name)

    def __len__(self) -> int:
        with self.lock:
            return len(self.names)


class ThreadServer:
    """A fastsrv Server running on its own uvloop in a background thread."""

    def __init__(self, app: Any, **settings: Any) -> None:
        settings.setdefault("port", 0)
        settings.setdefault("handle_signals", False)
        self.server = Server(app, **settings)
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.status: Optional[int] = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        loop = fastsrv.server.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)

        async def main() -> int:
            task = asyncio.ensure_future(self.server.serve())
            while self.server.state.value == "starting" and not task.done():
                await asyncio.sleep(0.005)
            self._started.set()
            return await task

        try:
            self.status = loop.run_until_complete(main())
        finally:
            self._started.set()
            loop.close()

    def start(self) -> "ThreadServer":
        self._thread.start()
        self._started.wait(10)
        if self.server.state.value != "running":
            raise RuntimeError(f"server did not start (state {self.server.state.value})")
        return self

    @property
    def port(self) -> int:
        return self.server.port

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the server's loop and return its result."""
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            try:
                box.append(fn(*args))
            finally:
                done.set()

        self.loop.call_soon_threadsafe(run)
        done.wait(5)
        return box[0] if box else None

    def stop(self, timeout: float = 10) -> Optional[int]:
        if self._thread.is_alive() and self.loop is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self.server.request_stop, "graceful", "test")
            except RuntimeError:
                pass
        self._thread.join(timeout)
        return self.status


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(app, **config)`` starts a server on port 0; stopped after the test."""
    servers: list[ThreadServer] = []

    def start(app: Any, **settings: Any) -> ThreadServer:
        srv = ThreadServer(app, **settings).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def header(self, name: str) -> Optional[str]:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None


class RawClient:
    """A blocking HTTP/1.1 client over a plain socket, for exact bytes."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_response(self, head_request: bool = False) -> RawResponse:
        """Read one response (``ConnectionError`` if the server closed first)."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError(f"connection closed before a response head (got {self.buf!r})")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        _, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        headers = [(k.strip().lower(), v.strip()) for k, v in (l.split(":", 1) for l in lines[1:])]
        resp = RawResponse(int(status), reason, headers, b"", head + b"\r\n\r\n")
        code = resp.status
        if head_request or code < 200 or code in (204, 304):
            return resp
        te = resp.header("transfer-encoding")
        cl = resp.header("content-length")
        if te and "chunked" in te.lower():
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    if not self._fill():
                        raise ConnectionError("closed inside a chunked body")
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    if not self._fill():
                        raise ConnectionError("closed inside a chunk")
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
            resp.body = body
        elif cl is not None:
            n = int(cl)
            while len(self.buf) < n:
                if not self._fill():
                    raise ConnectionError("closed inside a body")
            resp.body, self.buf = self.buf[:n], self.buf[n:]
        else:
            while self._fill():
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def is_closed(self, wait: float = 2.0) -> bool:
        """True when the server closes the connection within ``wait`` s."""
        self.sock.settimeout(wait)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def client_factory() -> Iterator[Any]:
    clients: list[RawClient] = []

    def make(port: int, **kw: Any) -> RawClient:
        c = RawClient(port, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


class ProcessServer:
    """``python -m fastsrv run ...`` in a subprocess, for signals and exits."""

    READY = b"serving on"      # what the server logs once it accepts connections

    def __init__(self, args: list[str], env: Optional[dict[str, str]] = None,
                 preexec_fn: Any = None, port: Optional[int] = None) -> None:
        self.port = port or _free_port()
        self.proc = subprocess.Popen(self.command(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     cwd=ROOT, env={**os.environ, **(env or {})},
                                     preexec_fn=preexec_fn)
        self.output = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def command(self, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "fastsrv", "run", *args, "--port", str(self.port),
                "--log-level", "info"]

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.output += line

    def wait_ready(self, timeout: float = 10) -> "ProcessServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.READY in self.output:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError(f"{' '.join(self.command([])[:4])} did not start: {self.output.decode()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(2)
        return code

    def log(self) -> str:
        return self.output.decode("utf-8", "replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def nothing_arrives(client: "RawClient", wait: float) -> bool:
    """True when the server sends no byte (and does not close) for ``wait`` s."""
    client.sock.settimeout(wait)
    try:
        chunk = client.sock.recv(65536)
    except socket.timeout:
        return True
    finally:
        client.sock.settimeout(5.0)
    client.buf += chunk
    return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def process_server() -> Iterator[Any]:
    """``process_server([args...])`` runs the CLI in a subprocess; killed after."""
    procs: list[ProcessServer] = []

    def start(args: list[str], **kw: Any) -> ProcessServer:
        p = ProcessServer(args, **kw)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()
