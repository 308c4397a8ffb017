"""Start a server under test, check it serves the right thing, stop it (and its children)."""
from __future__ import annotations

import http.client
import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from . import procs
from .targets import HELLO, Exchange

log = logging.getLogger("bench")

EXPECTED_BODY = HELLO.expected


class ServerError(RuntimeError):
    """The server did not start, died, or answered something else than expected."""


def probe(host: str, port: int, request: Exchange = HELLO, timeout: float = 2.0) -> tuple[int, bytes]:
    """One ``request`` on a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"Content-Type": request.content_type} if request.content_type else {}
        conn.request(request.method, request.path, body=request.body or None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class ServerProcess:
    """A server started in its own session (process group), output to a log file."""

    def __init__(self, argv: Sequence[str], log_path: Path, cwd: Path) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    def start(self) -> None:
        log.debug("starting: %s", shlex.join(self.argv))
        with open(self.log_path, "ab") as out:
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    cwd=self.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServerError(f"cannot execute {self.argv[0]!r}: {exc}") from exc

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the server printed, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no output)"
        tail = text.strip().splitlines()[-lines:]
        return "\n".join("    | " + line for line in tail) or "    | (no output)"

    def wait_ready(self, host: str, port: int, timeout: float, request: Exchange = HELLO) -> None:
        """Send ``request`` until it is answered 200 with the expected body; raise ServerError
        on any other answer."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise ServerError(f"exited with status {code} before serving\n{self.log_tail()}")
            try:
                status, body = probe(host, port, request)
            except (OSError, http.client.HTTPException) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(0.1)
                continue
            if status != 200 or body != request.expected:
                raise ServerError(
                    f"{request.method} {request.path} on port {port} answered {status} {body[:80]!r}, "
                    f"expected 200 {request.expected!r} -- wrong server or wrong app?"
                )
            return
        raise ServerError(f"not answering on port {port} after {timeout:.0f}s ({last_error})\n{self.log_tail()}")

    def stop(self, grace: float = 8.0) -> None:
        """SIGTERM the server, SIGKILL what is left of its tree after ``grace`` seconds."""
        proc = self.proc
        if proc is None:
            return
        tree = procs.process_tree(proc.pid)
        pgid = proc.pid  # start_new_session: the server leads its own process group
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("server pid %d ignored SIGTERM for %.0fs; killing its process group", proc.pid, grace)
                _killpg(pgid)
                proc.wait(timeout=grace)
        # Sweep descendants that outlived their parent (still in our process group).
        for stat in tree:
            current = procs.read_stat(stat.pid)
            if current is not None and current.pgrp == pgid and stat.pid != proc.pid:
                _kill(stat.pid)
        self.proc = None


def _killpg(pgid: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _kill(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextmanager
def running_server(
    argv: Sequence[str], log_path: Path, cwd: Path, host: str, port: int, ready_timeout: float,
    request: Exchange = HELLO,
) -> Iterator[ServerProcess]:
    """Start a server, wait until it answers ``request`` as expected, always stop it afterwards."""
    server = ServerProcess(argv, log_path, cwd)
    try:
        server.start()
        server.wait_ready(host, port, ready_timeout, request)
        yield server
    finally:
        server.stop()
