"""A rolling restart behind HAProxy under load: does any request get lost?

Two backend instances (A and B) of a server run on 127.0.0.1; HAProxy 2.x
balances between them (``mode http``, round robin, health checks
``option httpchk GET /readyz``) with its *default* connection reuse
(``http-reuse safe``) and retry settings (``retries 3``, retry on connection
failure only, no redispatch), so a request written onto a pooled keep-alive
connection that the backend closes is not retried and reaches the client as a
failure.  wrk sends keep-alive load through HAProxy for the whole run (half
``GET /``, half ``GET /sleep?ms=20..50``, so requests are in flight whenever
an instance is stopped).  The instances are restarted one at a time (A, B,
A, B by default): SIGTERM the old process, wait for it to exit (its status
must be 0), start a replacement on the same port, wait until HAProxy marks it
UP, let the traffic spread again, go on with the next.

Servers compared (``--servers``, all three by default):

* ``fastsrv`` — ``python -m fastsrv run fastsrv.demo:app --readiness-path
  /readyz --shutdown-delay D``: on SIGTERM /readyz answers 503 for D seconds
  while the instance keeps serving; only then the listener and the idle
  connections close.
* ``fastsrv-nodelay`` — the same with ``--shutdown-delay 0``: the listener
  and the idle connections close at once, before HAProxy has noticed.
* ``uvicorn`` — ``bench/peers/asgi_rolling.py`` (same routes, /readyz always
  200) on uvicorn, which has neither a shutdown delay nor a readiness flip.

The shutdown-delay arithmetic.  HAProxy checks every ``inter`` and marks a
server DOWN after ``fall`` consecutive failed checks.  The readiness flips at
SIGTERM; the next check starts at most ``inter`` later and the ``fall``-th
failed one at most ``fall × inter`` after the flip (plus the check's own
round trip).  From then on HAProxy sends the instance nothing new; what it has
already sent finishes within the longest request (50 ms here).  So the delay
must exceed ``fall × inter`` + the longest request, and a margin for a busy
machine: with ``inter 250ms fall 2`` that bound is 0.5 s + 0.05 s, and the
default delay is 1.5 s (about 1 s of margin).  Coming back, an instance is UP
``rise × inter`` (0.5 s) after its /readyz first answers 200.

For every restart the timeline is recorded in seconds since the load began:
SIGTERM sent, HAProxy's first failed check and its DOWN (read from the admin
socket's ``show stat`` every 20 ms), the listener closed (the first refused
connect of a probe that tries every 10 ms), the process exited (its status),
the replacement started, its /readyz answered 200, HAProxy marked it UP.

Counted: requests sent (wrk's Lua ``request()`` calls), completed (every
response), failed (wrk's socket errors — connect, read, write, timeout — plus
every response that is not 2xx/3xx: a 502 or 503 from HAProxy is a failure),
with HAProxy's log line for each failed request (its termination state says
why: ``SH`` the server closed before answering, ``SC`` it refused the
connection).  Requests still in flight when wrk is stopped at the end are
neither completed nor failed and are shown apart.

Writes the section ``rolling-restart`` of bench/RESULTS.md (other sections are
kept), bench/rolling_restart.png and, with ``--json``, the raw figures.  Exit
status 1 if a run could not be made, or the ``fastsrv`` row lost a request or
an instance of it exited non-zero.

    python bench/rolling_restart.py                      # all three, ~1.5 min
    python bench/rolling_restart.py --servers fastsrv --restarts 6 --json /tmp/rr.json
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import io
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness.debian import ToolMissing, ensure_tools  # noqa: E402
from bench.harness.procs import free_port, sample_activity  # noqa: E402
from bench.harness.wrk import parse_wrk  # noqa: E402

log = logging.getLogger("bench.rolling_restart")

SERVERS = ("fastsrv", "fastsrv-nodelay", "uvicorn")
SECTION = "rolling-restart"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
CHART = ROOT / "bench" / "rolling_restart.png"
BIN_S = 0.1  # the Lua script counts responses in bins of this many seconds

# wrk's load: keep-alive, half GET /, half GET /sleep?ms=20..50.  LuaJIT's FFI
# reads CLOCK_MONOTONIC (Python's time.monotonic()) to bin each response in
# 100 ms bins; done() prints one "rr ..." line per figure for the driver.
WRK_SCRIPT = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } rr_timespec;
int clock_gettime(int clk, rr_timespec *tp);
]]
local ts = ffi.new("rr_timespec")
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  sent = 0
  ok_bins = {}
  fail_bins = {}
  statuses = {}
  math.randomseed(4242 + id)
  fast = wrk.format("GET", "/")
end

local function bin()
  ffi.C.clock_gettime(1, ts)
  return math.floor(tonumber(ts.tv_sec) * 10 + tonumber(ts.tv_nsec) / 1e8)
end

function request()
  sent = sent + 1
  if sent % 2 == 1 then
    return fast
  end
  return wrk.format("GET", "/sleep?ms=" .. math.random(20, 50))
end

function response(status, headers, body)
  local b = bin()
  if status >= 400 then
    fail_bins[b] = (fail_bins[b] or 0) + 1
    statuses[status] = (statuses[status] or 0) + 1
  else
    ok_bins[b] = (ok_bins[b] or 0) + 1
  end
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    print("rr sent " .. t:get("sent"))
    for k, v in pairs(t:get("ok_bins")) do print("rr ok " .. k .. " " .. v) end
    for k, v in pairs(t:get("fail_bins")) do print("rr fail " .. k .. " " .. v) end
    for k, v in pairs(t:get("statuses")) do print("rr status " .. k .. " " .. v) end
  end
  print("rr latency_max_us " .. latency.max)
  print("rr latency_p99_us " .. latency:percentile(99))
end
"""

HAPROXY_CONFIG = """\
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
    default_backend be

backend be
    balance roundrobin
    option httpchk GET /readyz
    default-server inter {inter_ms}ms fall {fall} rise {rise}
    server a 127.0.0.1:{port_a} check
    server b 127.0.0.1:{port_b} check
"""


# ---------------------------------------------------------------- records


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


@dataclass
class Restart:
    """One instance's restart; times in seconds since the load began (None: not seen)."""

    index: int
    instance: str
    port: int
    sigterm: float = math.nan
    check_failed: Optional[float] = None  # HAProxy's first failed check ("UP 1/2")
    down: Optional[float] = None  # HAProxy marked the server DOWN
    listener_closed: Optional[float] = None  # first refused connect
    exited: Optional[float] = None
    exit_status: Optional[int] = None
    started: Optional[float] = None  # the replacement was spawned
    ready: Optional[float] = None  # the replacement's /readyz answered 200
    up: Optional[float] = None  # HAProxy marked the replacement UP
    failed_responses: int = 0  # non-2xx/3xx responses from this SIGTERM to the next

    @property
    def down_before_close(self) -> bool:
        return (self.down is not None and self.listener_closed is not None
                and self.down < self.listener_closed)


@dataclass
class RunResult:
    """One server's rolling restart."""

    server: str
    command: str
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


# ---------------------------------------------------------------- processes


def backend_command(server: str, port: int, settings: Settings) -> list[str]:
    """argv of one backend instance of ``server`` on ``port``."""
    if server.startswith("fastsrv"):
        delay = 0.0 if server == "fastsrv-nodelay" else settings.shutdown_delay
        return [sys.executable, "-m", "fastsrv", "run", "fastsrv.demo:app", "--host", "127.0.0.1",
                "--port", str(port), "--readiness-path", "/readyz", "--shutdown-delay", f"{delay:g}",
                "--exit-wait-time", f"{settings.exit_wait_time:g}", "--log-level", "info"]
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "bench.peers.asgi_rolling:app", "--host", "127.0.0.1",
                "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--log-level", "info",
                "--no-access-log",
                "--timeout-graceful-shutdown", f"{settings.exit_wait_time:g}"]
    raise ValueError(f"unknown server {server!r}; known: {', '.join(SERVERS)}")


def _readyz(port: int) -> Optional[int]:
    """The status of ``GET /readyz`` straight to a backend, None if it does not answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def _stop(proc: Optional[subprocess.Popen[Any]], sig: int = signal.SIGKILL) -> None:
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
            if _readyz(self.port) == 200:
                return time.monotonic()
            time.sleep(0.02)
        raise RuntimeError(f"backend {self.name} was not ready within {timeout:g} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class HAProxy:
    """HAProxy in the foreground as a child, with its admin socket."""

    def __init__(self, config: str, workdir: Path, socket_path: Path) -> None:
        self.config_path = workdir / "haproxy.cfg"
        self.config_path.write_text(config)
        self.socket_path = socket_path
        self.log_path = workdir / "haproxy.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.config_path)],
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

    def wait_started(self, timeout: float = 10.0) -> None:
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

    def read_log(self) -> "HAProxyLog":
        """What HAProxy logged: with ``option dontlog-normal`` only failed and retried requests."""
        pattern = re.compile(r" be/(\S+) -?\d+/-?\d+/(-?\d+)/-?\d+/\+?(-?\d+) (-?\d+) \+?\d+ \S+ \S+ (\S{4}) "
                             r"\d+/\d+/\d+/\d+/\+?(\d+) ")
        found = HAProxyLog()
        with contextlib.suppress(OSError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                match = pattern.search(line)
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


@dataclass
class HAProxyLog:
    """HAProxy's log lines of one run, counted."""

    failed: dict[str, int] = field(default_factory=dict)  # "STATUS STATE on SERVER" -> n
    retried_ok: int = 0  # answered after one or more retries of the connection
    retried_ok_max_ms: int = 0


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
                        status = stats[f"be/{server}"]["status"]
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


# ---------------------------------------------------------------- one run


def _parse_wrk(output: str, t0: float, result: RunResult) -> None:
    report = parse_wrk(output)
    result.completed = report.requests
    result.duration_s = report.duration_s
    result.requests_per_s = report.requests_per_s
    result.socket_errors = dict(report.socket_errors)
    sent = 0
    for line in output.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0] != "rr":
            continue
        kind = parts[1]
        if kind == "sent":
            sent += int(parts[2])
        elif kind in ("ok", "fail"):
            start = round(int(parts[2]) * BIN_S - t0, 1)
            bins = result.ok_bins if kind == "ok" else result.fail_bins
            bins[start] = bins.get(start, 0) + int(parts[3])
        elif kind == "status":
            result.statuses[int(parts[2])] = result.statuses.get(int(parts[2]), 0) + int(parts[3])
        elif kind == "latency_max_us":
            result.latency_max_ms = float(parts[2]) / 1000
        elif kind == "latency_p99_us":
            result.latency_p99_ms = float(parts[2]) / 1000
    result.sent = sent
    result.failed = sum(result.socket_errors.values()) + report.non_2xx_3xx
    # every request sent got a response, a read or write error, or was still out when wrk stopped
    lost_io = result.socket_errors.get("read", 0) + result.socket_errors.get("write", 0)
    result.in_flight_at_stop = max(0, sent - result.completed - lost_io)


def _rel(t: Optional[float], t0: float) -> Optional[float]:
    return None if t is None else round(t - t0, 3)


def _attribute_failures(result: RunResult) -> None:
    """Count the failed responses between each SIGTERM and the next (and before the first)."""
    starts = [r.sigterm for r in result.restarts]
    for start, n in result.fail_bins.items():
        mid = start + BIN_S / 2
        index = max((i for i, s in enumerate(starts) if s <= mid), default=None)
        if index is None:
            result.failed_before_first_restart += n
        else:
            result.restarts[index].failed_responses += n


def rolling_restart(server: str, settings: Settings, progress: Callable[[str], None] = log.info,
                    keep_logs: Optional[Path] = None) -> RunResult:
    """Run one server's rolling restart behind HAProxy under wrk load; every child is gone on return.

    With ``keep_logs`` the run's files (HAProxy's config and log, every
    instance's log) are kept in ``keep_logs/SERVER``."""
    workdir = Path(tempfile.mkdtemp(prefix="rolling-restart-"))
    ports = {"a": free_port(), "b": free_port()}
    frontend = free_port()
    result = RunResult(server=server, command=" ".join(backend_command(server, 0, settings)).replace(
        sys.executable, "python").replace("--port 0", "--port PORT"))
    backends: dict[str, Backend] = {}
    retired: list[Backend] = []
    haproxy: Optional[HAProxy] = None
    monitor: Optional[StatusMonitor] = None
    wrk: Optional[subprocess.Popen[str]] = None
    tag = f"[{server}]"
    try:
        for name, port in ports.items():
            backends[name] = Backend(server, name, port, settings, workdir, 0)
        for backend in backends.values():
            backend.wait_ready()
        config = haproxy_config(workdir / "admin.sock", frontend, ports["a"], ports["b"], settings)
        haproxy = HAProxy(config, workdir, workdir / "admin.sock")
        haproxy.wait_started()
        monitor = StatusMonitor(haproxy, list(ports))
        monitor.start()
        for name in ports:
            monitor.wait_status(name, "UP", time.monotonic(), 10)
        script = workdir / "load.lua"
        script.write_text(WRK_SCRIPT)
        budget = settings.warmup + settings.tail + settings.restarts * (
            settings.shutdown_delay + settings.exit_wait_time + 30)
        argv = ["wrk", "-t1", f"-c{settings.connections}", f"-d{math.ceil(budget)}s", "--timeout", "10s",
                "-s", str(script), f"http://127.0.0.1:{frontend}/"]
        t0 = time.monotonic()
        wrk = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        progress(f"{tag} load: {settings.connections} keep-alive connections through HAProxy on :{frontend}, "
                 f"backends a :{ports['a']}, b :{ports['b']}")
        time.sleep(settings.warmup)
        for index in range(settings.restarts):
            name = "ab"[index % 2]
            restart = Restart(index=index + 1, instance=name, port=ports[name])
            result.restarts.append(restart)
            old = backends[name]
            closed: list[float] = []
            sigterm = time.monotonic()
            old.proc.send_signal(signal.SIGTERM)
            probe = threading.Thread(target=probe_listener, daemon=True,
                                     args=(old.port, sigterm + settings.shutdown_delay
                                           + settings.exit_wait_time + 10, closed))
            probe.start()
            try:
                status = old.proc.wait(settings.shutdown_delay + settings.exit_wait_time + 10)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"instance {name} did not exit after SIGTERM:\n{old.log_tail()}") from None
            exited = time.monotonic()
            probe.join(1)
            retired.append(old)
            time.sleep(settings.replace_after)
            replacement = Backend(server, name, ports[name], settings, workdir, index + 1)
            backends[name] = replacement
            ready = replacement.wait_ready()
            up = monitor.wait_status(name, "UP", ready, 10 + settings.rise * settings.inter_ms / 1000)
            restart.sigterm = round(sigterm - t0, 3)
            restart.check_failed = _rel(monitor.first(name, sigterm, lambda s: s.startswith("UP ")), t0)
            restart.down = _rel(monitor.first(name, sigterm, lambda s: s == "DOWN"), t0)
            restart.listener_closed = _rel(closed[0] if closed else None, t0)
            restart.exited, restart.exit_status = _rel(exited, t0), status
            restart.started, restart.ready = _rel(replacement.started, t0), _rel(ready, t0)
            restart.up = _rel(up, t0)
            progress(f"{tag} restart {index + 1}/{settings.restarts} ({name}): " + describe_restart(restart))
            time.sleep(settings.settle)
        time.sleep(settings.tail)
        wrk.send_signal(signal.SIGINT)
        output, _ = wrk.communicate(timeout=30)
        _parse_wrk(output, t0, result)
        for restart in result.restarts:
            restart.failed_responses = 0
        _attribute_failures(result)
        stats = haproxy.show_stat()
        result.haproxy_retries = int(stats.get("be/BACKEND", {}).get("wretr") or 0)
        time.sleep(0.2)  # let HAProxy's log lines of the last requests reach the file
        logged = haproxy.read_log()
        result.haproxy_failures = logged.failed
        result.retried_ok, result.retried_ok_max_ms = logged.retried_ok, logged.retried_ok_max_ms
        progress(f"{tag} sent {result.sent:,}, completed {result.completed:,}, failed {result.failed:,}"
                 f"{' (' + failure_breakdown(result) + ')' if result.failed else ''}, "
                 f"exit statuses {result.exit_statuses}")
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        log.error("%s run failed: %s", tag, result.error)
    finally:
        if wrk is not None and wrk.poll() is None:
            wrk.kill()
            wrk.communicate()
        if monitor is not None:
            monitor.stop()
        for backend in [*backends.values(), *retired]:
            _stop(backend.proc)
        if haproxy is not None:
            _stop(haproxy.proc, signal.SIGTERM)
        if keep_logs is not None:
            shutil.copytree(workdir, keep_logs / server, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.sock"))
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def haproxy_config(socket_path: Path, frontend_port: int | str, port_a: int | str, port_b: int | str,
                   settings: Settings) -> str:
    """The HAProxy configuration of one run (ports may be placeholders, for the report)."""
    return HAPROXY_CONFIG.format(socket=socket_path, frontend_port=frontend_port, port_a=port_a,
                                 port_b=port_b, inter_ms=settings.inter_ms, fall=settings.fall,
                                 rise=settings.rise)


# ---------------------------------------------------------------- report


def _t(value: Optional[float]) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def describe_restart(r: Restart) -> str:
    """One line: the restart's timeline."""
    return (f"SIGTERM {_t(r.sigterm)} s, check failed {_t(r.check_failed)}, DOWN {_t(r.down)}, "
            f"listener closed {_t(r.listener_closed)}, exited {_t(r.exited)} (status {r.exit_status}), "
            f"replacement started {_t(r.started)}, ready {_t(r.ready)}, UP {_t(r.up)}")


def failure_breakdown(result: RunResult) -> str:
    """E.g. "502 × 12, read errors 3"."""
    parts = [f"{status} × {n:,}" for status, n in sorted(result.statuses.items())]
    parts += [f"{kind} errors {n:,}" for kind, n in result.socket_errors.items()]
    return ", ".join(parts) or "none"


def _exit_statuses(result: RunResult) -> str:
    return ", ".join("–" if st is None else f"{st} ({signal.Signals(-st).name})" if st < 0 else str(st)
                     for st in result.exit_statuses)


def summary_table(results: Sequence[RunResult]) -> list[str]:
    """The comparison, as markdown table lines."""
    lines = ["| server | sent | completed | failed | failed: what | restarts | old instances' exit statuses "
             "| DOWN before listener closed | answered only after HAProxy retried (slowest) "
             "| slowest response | in flight when the load stopped |",
             "|---|---:|---:|---:|---|---:|---|---|---:|---:|---:|"]
    for r in results:
        if r.error:
            lines.append(f"| {r.server} | run failed: {r.error.splitlines()[0]} ||||||||||")
            continue
        before = sum(1 for x in r.restarts if x.down_before_close)
        retried = f"{r.retried_ok:,} ({r.retried_ok_max_ms:,} ms)" if r.retried_ok else "0"
        lines.append(
            f"| {r.server} | {r.sent:,} | {r.completed:,} | **{r.failed:,}** | {failure_breakdown(r)} | "
            f"{len(r.restarts)} | {_exit_statuses(r)} | {before} of {len(r.restarts)} | {retried} | "
            f"{r.latency_max_ms:,.0f} ms | {r.in_flight_at_stop} |")
    return lines


def timeline_table(result: RunResult) -> list[str]:
    """A server's restarts, one row each (with the failed responses after each SIGTERM, if any failed)."""
    timed = bool(result.statuses)
    lines = ["| # | instance | SIGTERM | first failed check | DOWN | listener closed | exited (status) "
             "| replacement started | ready | UP |" + (" failed responses |" if timed else ""),
             "|---:|---|---:|---:|---:|---:|---|---:|---:|---:|" + ("---:|" if timed else "")]
    for r in result.restarts:
        lines.append(f"| {r.index} | {r.instance} | {_t(r.sigterm)} | {_t(r.check_failed)} | {_t(r.down)} | "
                     f"{_t(r.listener_closed)} | {_t(r.exited)} ({r.exit_status}) | {_t(r.started)} | "
                     f"{_t(r.ready)} | {_t(r.up)} |" + (f" {r.failed_responses} |" if timed else ""))
    return lines


def report_lines(results: Sequence[RunResult], settings: Settings, invocation: str, machine: str) -> list[str]:
    """The RESULTS.md section's body."""
    s = settings
    bound = s.fall * s.inter_ms / 1000
    config = haproxy_config(Path("RUN_DIR/admin.sock"), "FRONTEND_PORT", "PORT_A", "PORT_B", s)
    out = [
        "## Rolling restart behind HAProxy",
        "",
        f"Generated by `{invocation}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine}. "
        "See [README.md](README.md#rolling-restart-behind-haproxy) for the method.",
        "",
        f"Two instances behind HAProxy with its default reuse and retry settings, wrk with {s.connections} "
        f"keep-alive connections through it (half `GET /`, half `GET /sleep?ms=20..50`), {s.restarts} restarts "
        f"one instance at a time (SIGTERM, wait for the exit, start a replacement on the same port, wait for "
        f"HAProxy's UP, {s.settle:g} s to settle). Health checks every {s.inter_ms} ms, fall {s.fall}, "
        f"rise {s.rise}: HAProxy stops routing to an instance at most {bound:g} s after its /readyz turns 503, "
        f"so fastsrv runs with `--shutdown-delay {s.shutdown_delay:g}` "
        f"(> {bound:g} s + the longest request, 0.05 s, with a margin) and `--exit-wait-time "
        f"{s.exit_wait_time:g}`. Failed = wrk's socket errors + responses that are not 2xx/3xx (HAProxy's "
        "502/503 included).",
        "",
        *summary_table(results),
        "",
        f"![rolling restart]({CHART.name})",
        "",
        "*Read errors* are HAProxy's silent closes: a request it wrote onto a pooled keep-alive connection "
        "that the instance closed got no response, and since it was not the client connection's first request "
        "HAProxy neither retries it nor answers 502, it closes the client's connection (and logs nothing). "
        "*Answered only after HAProxy retried*: the instance's listener refused the connection and HAProxy "
        "retried it on the same server one second later (its default `retries 3`), by which time the "
        "replacement was listening: not lost, but slow. Failures HAProxy logged (status, termination state, "
        "server): "
        + ("; ".join(f"{r.server}: " + (", ".join(f"{k} × {n}" for k, n in sorted(r.haproxy_failures.items()))
                                         or "none") for r in results if not r.error)) + ".",
        "",
        *(["uvicorn's exit status is −15 after a clean drain: it re-raises the signal it handled once its "
           "graceful shutdown is over (its log ends with \"Finished server process\").", ""]
          if any(r.server == "uvicorn" and not r.error for r in results) else []),
    ]
    for r in results:
        if r.error:
            continue
        note = "Seconds since the load began."
        if any(x.down is None for x in r.restarts):
            note += (" DOWN –: HAProxy never marked the instance DOWN (its replacement was listening before HAProxy "
                     f"had counted {settings.fall} failed checks), so UP is the first poll after *ready* that "
                     "showed it UP.")
        if r.statuses:
            note += (" *Failed responses*: non-2xx/3xx responses from this SIGTERM until the next ("
                     f"{r.failed_before_first_restart} before the first SIGTERM).")
        out += [f"### Timeline: {r.server}", "", note, "", *timeline_table(r), ""]
    out += ["HAProxy configuration (ports are picked per run):", "", "```", config.rstrip(), "```"]
    return out


def write_section(path: Path, lines: Sequence[str]) -> None:
    """Replace (or append) the ``rolling-restart`` section of ``path``, keeping everything else."""
    section = (f"<!-- suite {SECTION}: begin -->\n"
               "<!-- written by `python bench/rolling_restart.py`; rerun it rather than edit -->\n"
               + "\n".join(lines).rstrip("\n") + f"\n\n<!-- suite {SECTION}: end -->\n")
    existing = path.read_text() if path.exists() else ""
    pattern = re.compile(rf"<!-- suite {re.escape(SECTION)}: begin -->\n.*?<!-- suite {re.escape(SECTION)}: end -->\n?",
                         re.DOTALL)
    match = pattern.search(existing)
    if match:
        path.write_text(existing[:match.start()] + section + existing[match.end():])
        return
    if not existing.strip():
        existing = "# fastsrv benchmark results\n"
    path.write_text(existing.rstrip("\n") + "\n\n" + section)


def write_chart(results: Sequence[RunResult], path: Path, settings: Settings) -> None:
    """Per server: successful responses/s and failures over time, SIGTERM/UP marked; beside it, failed per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results if not r.error]
    if not runs:
        return
    fig = plt.figure(figsize=(12, 2.6 * len(runs) + 0.8))
    grid = fig.add_gridspec(len(runs), 2, width_ratios=[4.2, 1])
    width = 0.5  # seconds per plotted bin (five of the Lua script's)
    first = None
    for row, r in enumerate(runs):
        ax = fig.add_subplot(grid[row, 0], sharex=first)
        first = first or ax
        ok: dict[float, int] = {}
        bad: dict[float, int] = {}
        for bins, into in ((r.ok_bins, ok), (r.fail_bins, bad)):
            for t, n in bins.items():
                key = max(0.0, math.floor(t / width) * width)
                into[key] = into.get(key, 0) + n
        xs = sorted(ok)
        ax.step(xs, [ok[x] / width for x in xs], where="post", color="#2a7ab9", lw=1.2, label="2xx/3xx per s")
        ax.set_ylabel("responses / s")
        ax.set_ylim(0, max((ok[x] / width for x in xs), default=1) * 1.3)
        for k, restart in enumerate(r.restarts):
            ax.axvline(restart.sigterm, color="#c0392b", ls="--", lw=1, label="SIGTERM" if k == 0 else None)
            if restart.down is not None:
                ax.axvline(restart.down, color="#7f7f7f", ls=":", lw=1, label="DOWN" if k == 0 else None)
            if restart.up is not None:
                ax.axvline(restart.up, color="#27ae60", ls="-", lw=1, label="UP" if k == 0 else None)
        if bad:  # failed responses (502/503) have a time; socket errors do not
            fail_ax = ax.twinx()
            fail_ax.bar(list(bad), list(bad.values()), width=width, align="edge", color="#e74c3c", alpha=0.7,
                        label=f"failed responses per {width:g} s")
            fail_ax.set_ylim(0, max(bad.values()) * 1.3)
            fail_ax.set_ylabel(f"failed / {width:g} s", color="#c0392b")
            handles, labels = fail_ax.get_legend_handles_labels()
            fail_ax.legend(handles, labels, loc="lower right", fontsize=7)
        retried = f"; {r.retried_ok:,} answered only after a retry (up to {r.retried_ok_max_ms / 1000:.1f} s)" \
            if r.retried_ok else ""
        ax.set_title(f"{r.server}: {r.failed:,} failed of {r.sent:,} sent ({failure_breakdown(r)}){retried}",
                     fontsize=10)
        if row == 0:
            ax.legend(loc="lower left", fontsize=7, ncol=4)
        if row == len(runs) - 1:
            ax.set_xlabel("seconds since the load began")
    bar_ax = fig.add_subplot(grid[:, 1])
    names = [r.server for r in runs]
    values = [r.failed for r in runs]
    bars = bar_ax.bar(names, values, color=["#2a7ab9", "#b9772a", "#7a2ab9"][: len(runs)])
    bar_ax.bar_label(bars, labels=[f"{v:,}" for v in values])
    bar_ax.set_ylim(0, max(max(values), 1) * 1.25)
    bar_ax.set_title("failed requests\n(lower is better)", fontsize=10)
    bar_ax.tick_params(axis="x", labelrotation=25)
    fig.suptitle(f"Rolling restart behind HAProxy: {settings.restarts} restarts, {settings.connections} "
                 f"keep-alive connections, checks every {settings.inter_ms} ms (fall {settings.fall}, "
                 f"rise {settings.rise})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_table(results: Sequence[RunResult]) -> None:
    """The compact summary on stdout."""
    header = f"{'server':<16} {'sent':>9} {'completed':>10} {'failed':>7}  {'exit statuses':<14} what failed"
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        if r.error:
            print(f"{r.server:<16} run failed: {r.error.splitlines()[0]}")
            continue
        statuses = ",".join(str(s) for s in r.exit_statuses)
        print(f"{r.server:<16} {r.sent:>9,} {r.completed:>10,} {r.failed:>7,}  {statuses:<14} "
              f"{failure_breakdown(r) if r.failed else '-'}")


def _machine() -> str:
    """The CPUs and how busy others kept them just before the runs."""
    activity = sample_activity(1.0)
    others = f" ({activity.describe()})" if activity.busy > 0.05 else ""
    return (f"{os.cpu_count()} CPUs, {activity.busy:.0%} busy with other work over 1 s before the runs{others}, "
            f"load average {os.getloadavg()[0]:.2f}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help=f"comma-separated, from {', '.join(SERVERS)} (default: all)")
    parser.add_argument("--restarts", type=int, default=Settings.restarts)
    parser.add_argument("--connections", type=int, default=Settings.connections)
    parser.add_argument("--shutdown-delay", type=float, default=Settings.shutdown_delay,
                        help="fastsrv's --shutdown-delay (the fastsrv-nodelay row uses 0)")
    parser.add_argument("--exit-wait-time", type=float, default=Settings.exit_wait_time)
    parser.add_argument("--inter-ms", type=int, default=Settings.inter_ms, help="HAProxy's check interval")
    parser.add_argument("--fall", type=int, default=Settings.fall)
    parser.add_argument("--rise", type=int, default=Settings.rise)
    parser.add_argument("--settle", type=float, default=Settings.settle,
                        help="seconds of load between an instance's UP and the next SIGTERM")
    parser.add_argument("--replace-after", type=float, default=Settings.replace_after, metavar="SECONDS",
                        help="wait this long after an instance exits before starting its replacement "
                             "(a slow start, or a replacement at another address); default 0")
    parser.add_argument("--json", metavar="PATH", help="write the raw figures here")
    parser.add_argument("--out", default=str(RESULTS_MD), help="the markdown file whose section is replaced")
    parser.add_argument("--chart", default=str(CHART))
    parser.add_argument("--keep-logs", metavar="DIR",
                        help="keep each run's HAProxy config and log and the instances' logs in DIR/SERVER")
    parser.add_argument("--no-report", action="store_true", help="do not touch RESULTS.md or the chart")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in servers if s not in SERVERS]
    if unknown:
        parser.error(f"unknown server(s) {', '.join(unknown)}; known: {', '.join(SERVERS)}")
    settings = Settings(restarts=args.restarts, connections=args.connections, shutdown_delay=args.shutdown_delay,
                        exit_wait_time=args.exit_wait_time, inter_ms=args.inter_ms, fall=args.fall,
                        rise=args.rise, settle=args.settle, replace_after=args.replace_after)
    bound = settings.fall * settings.inter_ms / 1000
    if "fastsrv" in servers and settings.shutdown_delay <= bound:
        log.warning("--shutdown-delay %g is not above fall × inter = %g s: HAProxy may still route to a "
                    "stopping instance", settings.shutdown_delay, bound)
    try:
        ensure_tools(["haproxy", "wrk"])
    except ToolMissing as exc:
        log.error("%s", exc)
        return 2
    machine = _machine()
    log.info("rolling restart behind HAProxy: %s; %d restarts each; %s", ", ".join(servers), settings.restarts,
             machine)
    results: list[RunResult] = []

    def terminated(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminated)  # the children are stopped on the way out, as on Ctrl-C
    try:
        for server in servers:
            results.append(rolling_restart(server, settings,
                                           keep_logs=Path(args.keep_logs) if args.keep_logs else None))
    except KeyboardInterrupt:
        log.warning("interrupted: every child was stopped; no report written")
        return 130
    print_table(results)
    if args.json:
        config = haproxy_config(Path("RUN_DIR/admin.sock"), "FRONTEND_PORT", "PORT_A", "PORT_B", settings)
        payload = {"settings": asdict(settings), "machine": machine, "haproxy_config": config,
                   "results": [{**asdict(r), "exit_statuses": r.exit_statuses} for r in results]}
        Path(args.json).write_text(json.dumps(payload, indent=1) + "\n")
        log.info("wrote %s", args.json)
    if not args.no_report:
        given = list(argv if argv is not None else sys.argv[1:])
        invocation = " ".join(["python bench/rolling_restart.py", *given])
        write_section(Path(args.out), report_lines(results, settings, invocation, machine))
        write_chart(results, Path(args.chart), settings)
        log.info("wrote the %s section of %s and %s", SECTION, args.out, args.chart)
    # the comparison rows are expected to lose requests; fastsrv with its delay must not
    ok = all(not r.error for r in results) and all(
        r.failed == 0 and r.exit_statuses == [0] * len(r.restarts) for r in results if r.server == "fastsrv")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
