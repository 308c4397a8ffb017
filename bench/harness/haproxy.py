"""HAProxy as a child process for the rolling-restart check (``bench/rolling_restart.py``):
its generated configuration, its admin socket (``show stat``, ``set server ... addr``), a
thread that records every change of a server's status, and its log of failed requests."""
from __future__ import annotations

import contextlib
import csv
import io
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from bench.harness.debian import find_tool

BACKEND = "be"

# With HAProxy's default ``retries 3``, a connection the server refuses is tried
# again after a turn-around of min(timeout connect, 1 s), three times: a request
# whose connections keep being refused gets its 503 about this long after the first.
RETRY_SPAN_S = 3.0

CONFIG_TEMPLATE = """\
global
    stats socket {socket} mode 600 level admin
    log stderr format raw local0 info

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    timeout connect 2s
    timeout client 30s
    timeout server 30s

frontend fe
    bind 127.0.0.1:{frontend_port}
    default_backend {backend}

backend {backend}
    balance roundrobin
    option httpchk GET /readyz
    default-server inter {inter_ms}ms fall {fall} rise {rise}
{servers}
"""


def haproxy_config(socket_path: Path | str, frontend_port: int | str, servers: Mapping[str, int | str], *,
                   inter_ms: int, fall: int, rise: int) -> str:
    """The configuration of one run: ``servers`` maps a server's name to its port on 127.0.0.1
    (ports may be placeholders, for the report)."""
    lines = "\n".join(f"    server {name} 127.0.0.1:{port} check" for name, port in servers.items())
    return CONFIG_TEMPLATE.format(socket=socket_path, frontend_port=frontend_port, backend=BACKEND,
                                  inter_ms=inter_ms, fall=fall, rise=rise, servers=lines)


@dataclass
class HAProxyLog:
    """HAProxy's log lines of one run, counted."""

    failed: dict[str, int] = field(default_factory=dict)  # "STATUS STATE on SERVER" -> n
    retried_ok: int = 0  # answered after one or more retries of the connection
    retried_ok_max_ms: int = 0


# the fields of an ``option httplog`` line this module reads: the server, Tr (the
# response time), Ta (the total), the status, the termination state, the retries
_LOG_LINE = re.compile(r" be/(\S+) -?\d+/-?\d+/(-?\d+)/-?\d+/\+?(-?\d+) (-?\d+) \+?\d+ \S+ \S+ (\S{4}) "
                       r"\d+/\d+/\d+/\d+/\+?(\d+) ")


class HAProxy:
    """HAProxy in the foreground (``-db``) as a child, with its admin socket."""

    def __init__(self, config: str, workdir: Path, socket_path: Path) -> None:
        self.config_path = workdir / "haproxy.cfg"
        self.config_path.write_text(config)
        self.socket_path = socket_path
        self.log_path = workdir / "haproxy.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen([find_tool("haproxy") or "haproxy", "-db", "-f", str(self.config_path)],
                                         stdout=out, stderr=subprocess.STDOUT)

    def command(self, line: str) -> str:
        """Send one command on the admin socket and return the answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "replace")

    def show_stat(self) -> dict[str, dict[str, str]]:
        """``show stat`` as {"be/a": row, "be/BACKEND": row, ...}."""
        text = self.command("show stat")
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {f"{row['pxname']}/{row['svname']}": row for row in rows if row.get("pxname")}

    def set_server_address(self, server: str, host: str, port: int) -> str:
        """Point ``server``'s slot at ``host:port`` (its health checks follow); HAProxy's answer.

        ``set server be/SERVER addr HOST port PORT``: new connections and checks go
        to the new address at once; the server's state (UP, DOWN, a check count in
        progress) is kept, so a DOWN server comes UP after ``rise`` passed checks."""
        answer = self.command(f"set server {BACKEND}/{server} addr {host} port {port}").strip()
        if "changed" not in answer:
            raise RuntimeError(f"haproxy refused the address of {server}: {answer!r}")
        return answer

    def wait_started(self, timeout: float = 10.0) -> None:
        """Return once the admin socket answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited with status {self.proc.returncode}:\n"
                                   + self.log_path.read_text(errors="replace"))
            with contextlib.suppress(OSError):
                self.show_stat()
                return
            time.sleep(0.05)
        raise RuntimeError("haproxy's admin socket did not answer")

    def read_log(self) -> HAProxyLog:
        """What HAProxy logged: with ``option dontlog-normal`` only failed and retried requests."""
        found = HAProxyLog()
        with contextlib.suppress(OSError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                match = _LOG_LINE.search(line)
                if not match:
                    continue
                server, total, status, state, retries = match[1], int(match[3]), int(match[4]), match[5], int(match[6])
                if status >= 400 or status < 100 or state[:2] != "--":
                    key = f"{status} {state[:2]} on {server}"
                    found.failed[key] = found.failed.get(key, 0) + 1
                elif retries:
                    found.retried_ok += 1
                    found.retried_ok_max_ms = max(found.retried_ok_max_ms, total)
        return found


class StatusMonitor(threading.Thread):
    """Polls HAProxy's ``show stat`` and records each change of a server's status."""

    def __init__(self, haproxy: HAProxy, servers: Sequence[str], interval: float = 0.02) -> None:
        super().__init__(daemon=True, name="haproxy-status")
        self.haproxy, self.servers, self.interval = haproxy, servers, interval
        self.changes: list[tuple[float, str, str]] = []  # (monotonic, server, status)
        self.current: dict[str, str] = {}
        self.last_poll = 0.0
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._halt.is_set():
            with contextlib.suppress(OSError, KeyError, ValueError):
                stats = self.haproxy.show_stat()
                now = time.monotonic()
                with self._lock:
                    for server in self.servers:
                        status = stats[f"{BACKEND}/{server}"]["status"]
                        if self.current.get(server) != status:
                            self.current[server] = status
                            self.changes.append((now, server, status))
                    self.last_poll = now
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(2)

    def first(self, server: str, after: float, accept: Callable[[str], bool]) -> Optional[float]:
        """When ``server`` first took a status ``accept`` likes, at or after ``after``."""
        with self._lock:
            return next((t for t, s, status in self.changes if s == server and t >= after and accept(status)),
                        None)

    def wait_status(self, server: str, status: str, after: float, timeout: float) -> float:
        """Wait until a poll made after ``after`` shows ``server`` as ``status``; when it first did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.last_poll > after and self.current.get(server) == status:
                    since = [t for t, s, st in self.changes if s == server and st == status and t > after]
                    return since[-1] if since else self.last_poll
            time.sleep(self.interval / 2)
        raise RuntimeError(f"haproxy did not mark {server} {status} within {timeout:g} s "
                           f"(it says {self.current.get(server)!r})")
