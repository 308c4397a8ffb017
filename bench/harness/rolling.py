"""The pieces of a rolling restart behind HAProxy (``bench/rolling_restart.py``): what a run
is configured with, what it records, and the backend instances it starts and stops."""
from __future__ import annotations

import contextlib
import http.client
import math
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent.parent

SERVERS = ("fastsrv", "fastsrv-nodelay", "uvicorn")
# the WebSocket rolling restart (bench/ws_rolling_restart.py): the app of bench/peers/ws_rolling.py
WS_SERVERS = ("fastsrv-ws", "uvicorn-ws", "granian-ws")
WS_APP = "bench.peers.ws_rolling:app"

# Where a replacement listens.  same-port: on the address of the instance it
# replaces, which HAProxy's server slot keeps.  new-address: on a new port,
# which the slot is pointed at through HAProxy's admin socket once the
# replacement is ready and the old process has exited (as a control plane
# adds a new pod's endpoint and drops the old one).
SAME_PORT = "same-port"
NEW_ADDRESS = "new-address"
SCENARIOS = (SAME_PORT, NEW_ADDRESS)


@dataclass
class Settings:
    """What one comparison runs with."""

    restarts: int = 4
    connections: int = 64
    shutdown_delay: float = 1.5
    exit_wait_time: float = 5.0
    inter_ms: int = 250
    fall: int = 2
    rise: int = 2
    warmup: float = 2.0
    settle: float = 1.0
    tail: float = 1.5
    replace_after: float = 0.0  # seconds between the old instance's exit and its replacement's start

    @property
    def check_bound_s(self) -> float:
        """HAProxy stops routing to an instance at most this long after its /readyz turns 503."""
        return self.fall * self.inter_ms / 1000


@dataclass
class Restart:
    """One instance's restart; times in seconds since the load began (None: not seen)."""

    index: int
    instance: str
    port: int
    new_port: Optional[int] = None  # the replacement's port, when it is not ``port``
    sigterm: float = math.nan
    check_failed: Optional[float] = None  # HAProxy's first failed check ("UP 1/2")
    down: Optional[float] = None  # HAProxy marked the server DOWN
    listener_closed: Optional[float] = None  # first refused connect
    exited: Optional[float] = None
    exit_status: Optional[int] = None
    started: Optional[float] = None  # the replacement was spawned
    ready: Optional[float] = None  # the replacement's /readyz answered 200
    switched: Optional[float] = None  # HAProxy's slot was pointed at the replacement (new-address)
    up: Optional[float] = None  # HAProxy marked the replacement UP
    failed_responses: int = 0  # non-2xx/3xx responses from this SIGTERM to the next

    @property
    def down_before_close(self) -> bool:
        return (self.down is not None and self.listener_closed is not None
                and self.down < self.listener_closed)


@dataclass
class RunResult:
    """One server's rolling restart in one scenario."""

    server: str
    command: str
    scenario: str = SAME_PORT
    sent: int = 0
    completed: int = 0  # responses of any status
    failed: int = 0  # socket errors + non-2xx/3xx responses
    socket_errors: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)  # non-2xx/3xx responses by status
    in_flight_at_stop: int = 0
    duration_s: float = 0.0
    requests_per_s: float = 0.0
    latency_max_ms: float = 0.0
    latency_p99_ms: float = 0.0
    haproxy_retries: int = 0  # HAProxy's wretr for the backend
    haproxy_failures: dict[str, int] = field(default_factory=dict)  # "502 SH on a" -> n, from its log
    retried_ok: int = 0  # requests HAProxy answered only after retrying a refused connection
    retried_ok_max_ms: int = 0
    restarts: list[Restart] = field(default_factory=list)
    ok_bins: dict[float, int] = field(default_factory=dict)  # bin start (s since load began) -> responses
    fail_bins: dict[float, int] = field(default_factory=dict)
    failed_before_first_restart: int = 0
    error: str = ""

    @property
    def exit_statuses(self) -> list[Optional[int]]:
        return [r.exit_status for r in self.restarts]


def backend_command(server: str, port: int, settings: Settings) -> list[str]:
    """argv of one backend instance of ``server`` on ``port``."""
    if server == "fastsrv-ws":
        return [sys.executable, "-m", "fastsrv", "run", WS_APP, "--host", "127.0.0.1", "--port", str(port),
                "--lifespan", "off", "--readiness-path", "/readyz", "--shutdown-delay", f"{settings.shutdown_delay:g}",
                "--exit-wait-time", f"{settings.exit_wait_time:g}", "--log-level", "info"]
    if server.startswith("fastsrv"):
        delay = 0.0 if server == "fastsrv-nodelay" else settings.shutdown_delay
        return [sys.executable, "-m", "fastsrv", "run", "fastsrv.demo:app", "--host", "127.0.0.1",
                "--port", str(port), "--readiness-path", "/readyz", "--shutdown-delay", f"{delay:g}",
                "--exit-wait-time", f"{settings.exit_wait_time:g}", "--log-level", "info"]
    if server == "uvicorn-ws":
        return [sys.executable, "-m", "uvicorn", WS_APP, "--host", "127.0.0.1", "--port", str(port), "--loop",
                "uvloop", "--http", "httptools", "--ws", "websockets", "--lifespan", "off", "--log-level", "info",
                "--no-access-log", "--timeout-graceful-shutdown", f"{settings.exit_wait_time:g}"]
    if server == "granian-ws":
        return [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
                "--loop", "uvloop", "--workers", "1", "--log-level", "info", WS_APP]
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "bench.peers.asgi_rolling:app", "--host", "127.0.0.1",
                "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--log-level", "info",
                "--no-access-log",
                "--timeout-graceful-shutdown", f"{settings.exit_wait_time:g}"]
    raise ValueError(f"unknown server {server!r}; known: {', '.join(SERVERS + WS_SERVERS)}")


def display_command(server: str, settings: Settings) -> str:
    """The backend's command line as the report shows it."""
    return " ".join(backend_command(server, 0, settings)).replace(sys.executable, "python").replace(
        "--port 0", "--port PORT")


def readyz(port: int) -> Optional[int]:
    """The status of ``GET /readyz`` straight to a backend, None if it does not answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def stop_process(proc: Optional[subprocess.Popen[Any]], sig: int = signal.SIGKILL) -> None:
    """Make sure ``proc`` (one we started) is gone."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Backend:
    """One backend instance (a process on a fixed port), its output in a log file."""

    def __init__(self, server: str, name: str, port: int, settings: Settings, log_dir: Path,
                 generation: int) -> None:
        self.name, self.port = name, port
        self.argv = backend_command(server, port, settings)
        self.log_path = log_dir / f"{name}{generation}.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.started = time.monotonic()

    def wait_ready(self, timeout: float = 20.0) -> float:
        """Return when /readyz answers 200 (the monotonic time it did)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"backend {self.name} exited with status {self.proc.returncode}:\n"
                                   + self.log_tail())
            if readyz(self.port) == 200:
                return time.monotonic()
            time.sleep(0.02)
        raise RuntimeError(f"backend {self.name} was not ready within {timeout:g} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def probe_listener(port: int, deadline: float, result: list[float]) -> None:
    """Connect to ``port`` every 10 ms until it refuses; append the time it first did."""
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except ConnectionRefusedError:
            result.append(time.monotonic())
            return
        except OSError:
            pass
        time.sleep(0.01)
