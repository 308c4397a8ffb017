"""``fastsrv bench``: start a server, load it with wrk or locust, report what it cost.

One run reads top to bottom in :func:`main`: pick the load tool, start
``python -m fastsrv run APP`` on a free port and wait until it serves, warm it
up with a short unmeasured run, then measure: sample the server's process tree
CPU (``/proc/<pid>/stat``, supervisor and workers), run the tool, sample again.
The server is stopped with SIGTERM and its exit status is part of the result.

The result goes to stdout (a table, or one JSON object with ``--json``);
progress and errors go to stderr.
"""
from __future__ import annotations

import argparse
import functools
import http.client
import importlib.util
import json
import logging
import math
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, TextIO

from fastsrv.config import INTERFACES
from fastsrv.errors import FastsrvError

log = logging.getLogger("fastsrv.bench")

HOST = "127.0.0.1"
DEFAULT_LOCUSTFILE = Path(__file__).with_name("bench_locust.py")
PATH_ENV = "FASTSRV_BENCH_PATH"     # the path the packaged locustfile requests
START_TIMEOUT_S = 30.0
STOP_MARGIN_S = 10.0                # after SIGTERM, past the server's own worst-case stop; then SIGKILL
LOAD_GRACE_S = 60.0                 # a load tool taking this much longer than asked is killed
PROGRESS_EVERY_S = 2.0
WRK_TIMEOUT = "5s"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(FastsrvError):
    """A benchmark run could not be done; the message says why."""
    exit_status = 1


class UsageError(BenchError):
    """The options do not fit together or do not fit this machine."""
    exit_status = 2


class ToolUnavailable(BenchError):
    """The load tool asked for is not installed; the message says how to get it."""
    exit_status = 2


class ServerFailed(BenchError):
    """The server did not start or did not answer; the message shows its output."""


class LoadFailed(BenchError):
    """The load tool failed or printed something that cannot be read."""


class Interrupted(BenchError):
    """SIGINT or SIGTERM arrived; the server and the load tool were stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}; the server was stopped")
        self.exit_status = 128 + signum


# --- the command line -------------------------------------------------------

def _cpu_list(text: str) -> frozenset[int]:
    """``0``, ``0,2`` or ``0-3`` as a set of CPU numbers."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            low, dash, high = part.strip().partition("-")
            cpus.update(range(int(low), int(high if dash else low) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a CPU list (e.g. 0 or 0,1 or 0-3): {text!r}") from None
    if not cpus:
        raise argparse.ArgumentTypeError(f"empty CPU list: {text!r}")
    return frozenset(cpus)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to the CLI's subparsers."""
    bench = sub.add_parser(
        "bench", help="benchmark a fastsrv server with wrk or locust",
        description="Start `fastsrv run APP` on a free port, load it with wrk or locust, and report "
                    "throughput, latency, errors and the server's CPU per request.")
    bench.add_argument("app", nargs="?", default="fastsrv.demo:app",
                       help="the app to serve, as MODULE:ATTR (default: fastsrv.demo:app)")
    bench.add_argument("--workers", type=int, default=None, metavar="N",
                       help="passed to `fastsrv run --workers` (default: one process, no supervisor)")
    bench.add_argument("--interface", default=None, choices=INTERFACES, help="passed to `fastsrv run --interface`")
    bench.add_argument("--duration", type=int, default=10, metavar="SECONDS",
                       help="measured run (default 10)")
    bench.add_argument("--warmup", type=int, default=1, metavar="SECONDS",
                       help="unmeasured run before it, 0 for none (default 1)")
    bench.add_argument("--path", default="/", help="the path requested (default /)")
    bench.add_argument("--tool", default="auto", choices=("auto", "wrk", "locust"),
                       help="auto: wrk when it is on the PATH, else locust")
    bench.add_argument("--connections", type=int, default=100, metavar="N", help="wrk connections (default 100)")
    bench.add_argument("--threads", type=int, default=1, metavar="N", help="wrk threads (default 1)")
    bench.add_argument("--pipeline", type=int, default=1, metavar="N",
                       help="wrk: send N requests per write on each connection (HTTP/1.1 pipelining; default 1)")
    bench.add_argument("--users", type=int, default=50, metavar="N", help="locust users (default 50)")
    bench.add_argument("--spawn-rate", type=float, default=None, metavar="PER_S",
                       help="locust users started per second (default: all in the first second)")
    bench.add_argument("--locustfile", default=None, metavar="FILE",
                       help="locust scenario (default: the packaged one, GET --path as fast as it can)")
    bench.add_argument("--server-cpus", type=_cpu_list, default=None, metavar="LIST",
                       help="pin the server to these CPUs, e.g. 0")
    bench.add_argument("--load-cpus", type=_cpu_list, default=None, metavar="LIST",
                       help="pin the load tool to these CPUs, e.g. 1")
    bench.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                       help="extra argument for `fastsrv run` (repeatable), e.g. --server-arg=--access-log")
    bench.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return bench


# --- the server's process tree ----------------------------------------------

@dataclass(frozen=True)
class TreeCPU:
    """CPU seconds used so far by a process tree.  A process's figure includes
    its reaped children's, so a worker that exits (and is reaped by the
    supervisor) stays counted."""

    total_s: float          # root and every descendant
    root_s: float           # the root alone, without its children: the supervisor when there are workers
    pids: frozenset[int]

    @property
    def processes(self) -> int:
        return len(self.pids)

    def __sub__(self, before: TreeCPU) -> TreeCPU:
        return TreeCPU(self.total_s - before.total_s, self.root_s - before.root_s, self.pids)


def tree_cpu(root: int) -> TreeCPU:
    """Sample the CPU of ``root`` and all its descendants (found by ppid in /proc/<pid>/stat)."""
    ticks_of: dict[int, int] = {}          # utime + stime + cutime + cstime
    own_ticks: dict[int, int] = {}         # utime + stime
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        try:
            with open(f"/proc/{int(entry.name)}/stat") as stat:
                raw = stat.read()
        except (ValueError, OSError):       # not a process, or it exited meanwhile
            continue
        fields = raw[raw.rindex(")") + 2:].split()      # the command name may hold spaces
        pid = int(entry.name)
        own_ticks[pid] = int(fields[11]) + int(fields[12])
        ticks_of[pid] = own_ticks[pid] + int(fields[13]) + int(fields[14])
        children.setdefault(int(fields[1]), []).append(pid)
    if root not in ticks_of:
        return TreeCPU(0.0, 0.0, frozenset())
    ticks, todo, pids = 0, [root], set()
    while todo:
        pid = todo.pop()
        ticks += ticks_of[pid]
        pids.add(pid)
        todo.extend(children.get(pid, ()))
    return TreeCPU(ticks / CLOCK_TICKS, own_ticks[root] / CLOCK_TICKS, frozenset(pids))


def _pin(cpus: Optional[frozenset[int]]) -> Optional[Callable[[], None]]:
    """A preexec_fn that pins the child to ``cpus`` (None: no pinning)."""
    return functools.partial(os.sched_setaffinity, 0, cpus) if cpus else None


# --- the server ---------------------------------------------------------------

class BenchServer:
    """``fastsrv run`` as a child process in its own session, its output in a file."""

    def __init__(self, argv: list[str], log_path: Path, cpus: Optional[frozenset[int]],
                 stop_timeout: float) -> None:
        self.argv = argv
        self.stop_timeout = stop_timeout
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_pin(cpus))

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 20) -> str:
        return "\n".join("  | " + line for line in self.output().splitlines()[-lines:]) or "  | (no output)"

    def wait_ready(self, ready_line: str, port: int, path: str) -> None:
        """Wait for ``ready_line`` in the log, then for ``GET path`` to answer 2xx."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerFailed(f"the server exited with status {self.proc.returncode} before it served:\n"
                                   f"{self.tail()}")
            if ready_line in self.output():
                status = _get_status(port, path)
                if status is not None:
                    if 200 <= status < 300:
                        return
                    raise ServerFailed(f"the server answered GET {path} with {status}, not 2xx: "
                                       f"check --path and the app\n{self.tail()}")
            time.sleep(0.05)
        raise ServerFailed(f"the server did not log {ready_line!r} and answer GET {path} within "
                           f"{START_TIMEOUT_S:.0f} s (did a --server-arg lower its --log-level?)\n{self.tail()}")

    def stop(self) -> int:
        """SIGTERM, wait (bounded), SIGKILL every process of the server if
        needed (workers run in sessions of their own); the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.error("the server did not exit %.0f s after SIGTERM: killing it", self.stop_timeout)
                for pid in tree_cpu(self.proc.pid).pids:
                    try:
                        if os.getpgid(pid) == pid:
                            os.killpg(pid, signal.SIGKILL)     # a worker leads its own group
                        else:
                            os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def _get_status(port: int, path: str) -> Optional[int]:
    """The status of ``GET path``; None if nothing answers yet."""
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except (ConnectionError, socket.timeout, http.client.HTTPException):
        return None
    finally:
        conn.close()


# --- the load tools -------------------------------------------------------------

@dataclass
class LoadResult:
    """What one run of a load tool measured."""

    requests: int
    duration_s: float
    requests_per_s: float
    p50_ms: Optional[float]
    p90_ms: Optional[float]
    p99_ms: Optional[float]
    error_kinds: dict[str, int]
    endpoints: Optional[dict[str, dict[str, int]]] = None     # locust: per request name

    @property
    def errors(self) -> int:
        return sum(self.error_kinds.values())


class Wrk:
    """wrk: fixed connections, each with one request (or ``--pipeline`` requests) in flight."""

    name = "wrk"
    _UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
    # every write carries DEPTH copies of one GET; wrk counts each response
    _PIPELINE_LUA = (
        "local batch\n"
        "init = function(args)\n"
        "  local depth, path = tonumber(args[1]), args[2]\n"
        "  local one = wrk.format('GET', path)\n"
        "  batch = string.rep(one, depth)\n"
        "end\n"
        "request = function() return batch end\n"
    )

    def __init__(self, args: argparse.Namespace) -> None:
        self.connections, self.threads, self.pipeline, self.path = (
            args.connections, args.threads, args.pipeline, args.path)
        self.settings = {"connections": self.connections, "threads": self.threads, "pipeline": self.pipeline}
        self.env = dict(os.environ)

    def command(self, url: str, seconds: int, workdir: Path) -> list[str]:
        argv = ["wrk", "-t", str(self.threads), "-c", str(self.connections), "-d", f"{seconds}s",
                "--latency", "--timeout", WRK_TIMEOUT]
        if self.pipeline > 1:
            script = workdir / "pipeline.lua"
            script.write_text(self._PIPELINE_LUA)
            return [*argv, "-s", str(script), url, "--", str(self.pipeline), self.path]
        return [*argv, url]

    @classmethod
    def _ms(cls, text: str) -> float:
        match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
        if not match:
            raise LoadFailed(f"cannot read wrk's duration {text!r}")
        return float(match[1]) * cls._UNIT_MS[match[2]]

    def parse(self, output: str, workdir: Path) -> LoadResult:
        total = re.search(r"^\s*(\d+) requests in ([\d.]+\w+),", output, re.M)
        rate = re.search(r"^Requests/sec:\s*([\d.]+)", output, re.M)
        if not (total and rate):
            raise LoadFailed(f"cannot read wrk's report:\n{output}")
        percentiles = dict(re.findall(r"^\s*(50|90|99)(?:\.0+)?%\s+([\d.]+\w+)\s*$", output, re.M))
        sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
        kinds = dict(zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()))) if sockets else \
            dict.fromkeys(("connect", "read", "write", "timeout"), 0)
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        kinds["non_2xx_3xx"] = int(bad[1]) if bad else 0
        requests = int(total[1])
        p = {q: self._ms(percentiles[q]) if requests and q in percentiles else None for q in ("50", "90", "99")}
        # with pipelining wrk times only some responses and can print a 99th
        # percentile of 0: a figure below the one before it is not a figure
        if p["50"] is not None and p["90"] is not None and p["90"] < p["50"]:
            p["90"] = None
        if p["99"] is not None and (p["90"] is None or p["99"] < p["90"]):
            p["99"] = None
        return LoadResult(requests, self._ms(total[2]) / 1e3, float(rate[1]), p["50"], p["90"], p["99"], kinds)


class Locust:
    """locust, headless: a bounded number of users running a locustfile."""

    name = "locust"

    def __init__(self, args: argparse.Namespace) -> None:
        self.locustfile = str(Path(args.locustfile or DEFAULT_LOCUSTFILE).resolve())
        self.users = args.users
        self.spawn_rate = args.spawn_rate or float(args.users)
        self.env = {**os.environ, PATH_ENV: args.path}
        self.settings: dict[str, Any] = {"users": self.users, "spawn_rate": self.spawn_rate}
        if args.locustfile:
            self.settings["locustfile"] = self.locustfile

    def command(self, url: str, seconds: int, workdir: Path) -> list[str]:
        # The CSV files are what `locust --csv` users look at; the numbers come from
        # --json-file, which locust writes after the run ends (the CSV files are
        # rewritten once a second and miss the last second).
        return [sys.executable, "-m", "locust", "-f", self.locustfile, "--headless",
                "-u", str(self.users), "-r", f"{self.spawn_rate:g}", "-t", f"{seconds}s", "--host", url,
                "--csv", str(workdir / "locust"), "--json-file", str(workdir / "locust"),
                "--only-summary", "--loglevel", "WARNING"]

    def parse(self, output: str, workdir: Path) -> LoadResult:
        try:
            entries = json.loads((workdir / "locust.json").read_text())
        except (OSError, ValueError) as exc:
            raise LoadFailed(f"locust wrote no statistics ({exc}); its output:\n{output[-3000:]}") from None
        buckets: dict[float, int] = {}
        for entry in entries:
            for ms, count in entry["response_times"].items():
                buckets[float(ms)] = buckets.get(float(ms), 0) + count
        requests = sum(e["num_requests"] for e in entries)
        failures = sum(e["num_failures"] for e in entries)
        span = max((e["last_request_timestamp"] or 0 for e in entries), default=0) - \
            min((e["start_time"] for e in entries), default=0)
        counted = sum(buckets.values())
        p = {q: _percentile(buckets, counted, q) for q in (0.5, 0.9, 0.99)}
        endpoints = {f"{e['method']} {e['name']}": {"requests": e["num_requests"], "failures": e["num_failures"]}
                     for e in entries}
        return LoadResult(requests, span, requests / span if span > 0 else 0.0, p[0.5], p[0.9], p[0.99],
                          {"failures": failures}, endpoints)


def _percentile(buckets: dict[float, int], total: int, q: float) -> Optional[float]:
    """The nearest-rank ``q`` quantile of a histogram {value: count}."""
    if total == 0:
        return None
    rank, seen = max(1, math.ceil(q * total)), 0
    for value in sorted(buckets):
        seen += buckets[value]
        if seen >= rank:
            return value
    return max(buckets)


def choose_tool(args: argparse.Namespace) -> Wrk | Locust:
    """The load tool to use; :class:`ToolUnavailable` (nothing is installed) if it is missing."""
    have_wrk = shutil.which("wrk") is not None
    have_locust = importlib.util.find_spec("locust") is not None
    get_wrk = "install wrk (`apt-get install wrk` on Debian/Ubuntu, `brew install wrk` on macOS)"
    get_locust = "pip install 'fastsrv[bench]'"
    if args.tool == "wrk" and args.locustfile:
        raise UsageError("--locustfile is a locust scenario: use it with --tool locust (or auto)")
    if args.tool == "wrk":
        if not have_wrk:
            raise ToolUnavailable(f"wrk is not on the PATH: {get_wrk}, or use --tool locust")
        return Wrk(args)
    if args.tool == "auto" and have_wrk and not args.locustfile:
        return Wrk(args)
    if not have_locust:
        raise ToolUnavailable(f"locust is not installed: {get_locust}" +
                              ("" if have_wrk else f", or {get_wrk}"))
    if args.tool == "auto" and not args.locustfile:
        log.info("wrk is not on the PATH; using locust")
    return Locust(args)


# --- running the load ---------------------------------------------------------------

class Progress:
    """Elapsed time and server CPU on stderr every few seconds during the measured run."""

    def __init__(self, server_pid: int, seconds: int, before: TreeCPU, stream: TextIO = sys.stderr) -> None:
        self.server_pid, self.seconds, self.before, self.stream = server_pid, seconds, before, stream
        self.started = time.monotonic()
        self.tty = stream.isatty()
        self.shown = False

    def tick(self) -> None:
        elapsed = time.monotonic() - self.started
        cpu = (tree_cpu(self.server_pid) - self.before).total_s
        text = (f"fastsrv bench: {min(elapsed, self.seconds):.0f}/{self.seconds} s, "
                f"server CPU {cpu:.2f} s ({cpu / elapsed:.0%} of one core)")
        self.stream.write(f"\r{text}\x1b[K" if self.tty else text + "\n")
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()


def run_load(tool: Wrk | Locust, url: str, seconds: int, workdir: Path, cpus: Optional[frozenset[int]],
             progress: Optional[Callable[[], Progress]] = None) -> tuple[LoadResult, float, list[str]]:
    """Run ``tool`` for ``seconds``; its result, its own CPU seconds and its argv."""
    workdir.mkdir()
    argv = tool.command(url, seconds, workdir)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(workdir / "output.txt", "w+") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=tool.env, preexec_fn=_pin(cpus))
        shown = progress() if progress else None
        deadline = time.monotonic() + seconds + LOAD_GRACE_S
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise LoadFailed(f"{tool.name} did not finish within {seconds + LOAD_GRACE_S:.0f} s")
                try:
                    proc.wait(PROGRESS_EVERY_S)
                except subprocess.TimeoutExpired:
                    if shown:
                        shown.tick()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if shown:
                shown.done()
        out.seek(0)
        output = out.read()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0 and tool.name == "wrk":
        raise LoadFailed(f"wrk exited with status {proc.returncode}:\n{output}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return tool.parse(output, workdir), cpu, argv


# --- the result -------------------------------------------------------------------------

def _result(args: argparse.Namespace, tool: Wrk | Locust, load: LoadResult, server: TreeCPU, load_cpu: float,
            exit_status: int, commands: dict[str, list[str]]) -> dict[str, Any]:
    """The run as one flat dict: what ``--json`` prints and the table shows."""
    return {
        "app": args.app, "path": args.path, "tool": tool.name, "load": tool.settings,
        "workers": args.workers, "server_processes": server.processes,
        "duration_s": args.duration, "warmup_s": args.warmup, "measured_s": round(load.duration_s, 3),
        "requests": load.requests, "requests_per_s": round(load.requests_per_s, 1),
        "p50_ms": load.p50_ms, "p90_ms": load.p90_ms, "p99_ms": load.p99_ms,
        "errors": load.errors, "error_kinds": load.error_kinds,
        "server_cpu_s": round(server.total_s, 3),
        "server_cpu_us_per_request": round(server.total_s * 1e6 / load.requests, 2) if load.requests else None,
        "server_cpu_utilisation": round(server.total_s / load.duration_s, 3) if load.duration_s > 0 else None,
        "supervisor_cpu_s": round(server.root_s, 3) if args.workers else None,
        "load_cpu_s": round(load_cpu, 3),
        "server_exit_status": exit_status,
        "endpoints": load.endpoints,
        "commands": commands,
    }


def _table(r: dict[str, Any]) -> str:
    """The human form of :func:`_result`."""
    def ms(value: Optional[float]) -> str:
        return "-" if value is None else f"{value:.2f}"
    load = ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in r["load"].items())
    per_request = r["server_cpu_us_per_request"]
    rows = [
        ("app", r["app"] + (f"  GET {r['path']}" if "locustfile" not in r["load"] else "")),
        ("tool", f"{r['tool']} ({load})"),
        ("workers", f"{r['workers']} ({r['server_processes']} processes)" if r["workers"] else "- (one process)"),
        ("duration", f"{r['measured_s']:.2f} s measured, after {r['warmup_s']} s warm-up"),
        ("requests", f"{r['requests']}"),
        ("req/s", f"{r['requests_per_s']:.1f}"),
        ("latency p50/p90/p99", f"{ms(r['p50_ms'])} / {ms(r['p90_ms'])} / {ms(r['p99_ms'])} ms"),
        ("errors", f"{r['errors']}" + (f"  ({', '.join(f'{k} {v}' for k, v in r['error_kinds'].items() if v)})"
                                      if r["errors"] else "")),
        ("server CPU", (f"{per_request:.2f} µs/request, " if per_request is not None else "")
         + f"{r['server_cpu_s']:.2f} s"),
        ("server CPU use", "-" if r["server_cpu_utilisation"] is None
         else f"{r['server_cpu_utilisation']:.0%} of one core"),
    ]
    if r["supervisor_cpu_s"] is not None:
        rows.append(("supervisor CPU", f"{r['supervisor_cpu_s']:.2f} s"))
    rows.append(("load tool CPU", f"{r['load_cpu_s']:.2f} s"))
    if r["endpoints"] and len(r["endpoints"]) > 1:
        rows += [(f"  {name}", f"{e['requests']} requests, {e['failures']} failed")
                 for name, e in r["endpoints"].items()]
    rows.append(("server exit status", f"{r['server_exit_status']}"))
    rows += [(f"{name} command", shlex.join(argv)) for name, argv in r["commands"].items()]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


# --- fastsrv bench ------------------------------------------------------------------------

def _check_cpus(args: argparse.Namespace) -> None:
    usable = os.sched_getaffinity(0)
    for option, cpus in (("--server-cpus", args.server_cpus), ("--load-cpus", args.load_cpus)):
        if cpus and not cpus <= usable:
            raise UsageError(f"{option}: CPU {min(cpus - usable)} is not available here "
                             f"(usable: {','.join(map(str, sorted(usable)))})")


def _server_argv(args: argparse.Namespace, port: int) -> list[str]:
    argv = [sys.executable, "-m", "fastsrv", "run", args.app, "--host", HOST, "--port", str(port)]
    if args.interface:
        argv += ["--interface", args.interface]
    if args.workers:
        argv += ["--workers", str(args.workers)]
    return argv + args.server_arg


def bench(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    """Do one benchmark run; the result and the exit status (1 if the server did not exit cleanly)."""
    for option in ("duration", "connections", "threads", "pipeline", "users", "spawn_rate", "workers"):
        if getattr(args, option) is not None and getattr(args, option) <= 0:
            raise UsageError(f"--{option.replace('_', '-')} must be > 0")
    if args.warmup < 0:
        raise UsageError("--warmup must be >= 0 seconds")
    if not args.path.startswith("/"):
        raise UsageError(f"--path must start with /, got {args.path!r}")
    if args.connections < args.threads:
        raise UsageError("--connections must be at least --threads (each wrk thread needs a connection)")
    _check_cpus(args)
    stop_budget = _server_stop_budget(args)
    tool = choose_tool(args)
    if args.pipeline > 1 and tool.name != "wrk":
        raise UsageError("--pipeline needs wrk (locust sends one request at a time per user)")
    with tempfile.TemporaryDirectory(prefix="fastsrv-bench-") as tmp:
        workdir = Path(tmp)
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        url = f"http://{HOST}:{port}"
        started = time.monotonic()
        server = BenchServer(_server_argv(args, port), workdir / "server.log", args.server_cpus,
                             stop_budget + STOP_MARGIN_S)
        try:
            server.wait_ready("worker(s) serving on" if args.workers else "serving on", port, args.path)
            log.info("server ready at %s (pid %d, %.1f s)", url, server.proc.pid, time.monotonic() - started)
            target = url + (args.path if tool.name == "wrk" else "")
            if args.warmup:
                log.info("warming up for %d s", args.warmup)
                run_load(tool, target, args.warmup, workdir / "warmup", args.load_cpus)
            log.info("measuring for %d s with %s", args.duration, tool.name)
            before = tree_cpu(server.proc.pid)
            load, load_cpu, load_argv = run_load(
                tool, target, args.duration, workdir / "measure", args.load_cpus,
                lambda: Progress(server.proc.pid, args.duration, before))
            after = tree_cpu(server.proc.pid)
            cpu = after - before
            if server.proc.poll() is not None:
                raise ServerFailed(f"the server exited with status {server.proc.returncode} during the run:\n"
                                   f"{server.tail()}")
            gone = len(before.pids - after.pids)
            if gone:
                log.warning("%d server process(es) exited during the measured run (a worker died and was "
                            "restarted?): the figures are not those of a steady server", gone)
        finally:
            status = server.stop()
    result = _result(args, tool, load, cpu, load_cpu, status,
                     {"server": server.argv, tool.name: load_argv})
    result["server_processes_exited"] = gone
    if status != 0:
        log.error("the server exited with status %d after SIGTERM (a clean drain exits 0)", status)
    return result, 0 if status == 0 else 1


_OWN_OPTIONS = ("--host", "--port", "--fd", "--workers", "--interface")


def _server_stop_budget(args: argparse.Namespace) -> float:
    """How long the server may take to stop after SIGTERM, from its own
    options; UsageError for ``--server-arg``s that do not fit a bench run."""
    from fastsrv.cli import _parser
    from fastsrv.supervisor import STOP_MARGIN
    for arg in args.server_arg:
        if arg.split("=", 1)[0] in _OWN_OPTIONS:
            raise UsageError(f"--server-arg {arg}: fastsrv bench sets the address itself, and --workers and "
                             "--interface are options of fastsrv bench")
    try:
        run = _parser().parse_args(["run", args.app, *args.server_arg])
    except SystemExit:
        raise UsageError(f"--server-arg does not parse as fastsrv run options: {args.server_arg}") from None
    if run.log_level not in ("info", "debug"):
        raise UsageError(f"--server-arg --log-level {run.log_level}: fastsrv bench waits for the server's "
                         "info line saying it serves")
    budget = run.shutdown_delay + run.exit_wait_time + run.hook_budget
    return budget + STOP_MARGIN if args.workers else budget + 4.0     # a server's own fixed waits


def _interrupt(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def main(args: argparse.Namespace) -> int:
    """Run ``fastsrv bench``; return the exit status."""
    logging.basicConfig(level=logging.INFO, format="fastsrv bench: %(message)s")
    # The server runs in its own session, so a signal that ended this process
    # would leave it running: turn SIGINT and SIGTERM into an exception instead.
    wanted = [signal.SIGTERM] + ([signal.SIGINT] if signal.getsignal(signal.SIGINT) != signal.SIG_IGN else [])
    previous = {signum: signal.signal(signum, _interrupt) for signum in wanted}
    try:
        result, status = bench(args)
    except BenchError as exc:
        log.error("%s", exc)
        return exc.exit_status
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(json.dumps(result, indent=2) if args.json else _table(result))
    return status
