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
must be 0), start a replacement, wait until HAProxy marks it UP, let the
traffic spread again, go on with the next.

Where the replacement listens (``--scenarios``, both by default):

* ``same-port`` — on the port of the instance it replaces.  HAProxy's server
  slot never changes; a connection refused while the old listener is closed
  is retried one second later on the same address, where the replacement
  usually listens by then.
* ``new-address`` — on a new free port, as a new pod comes up at a new IP
  under Kubernetes.  The old address stays in the slot until the old process
  has exited (HAProxy may still route to it during its shutdown delay); once
  the replacement's /readyz answers 200 the slot is pointed at it on the
  admin socket (``set server be/a addr 127.0.0.1 port NEW``), the order a
  control plane gives: the new endpoint added when ready, the old one gone
  after its process exits.  HAProxy's own checks then mark it UP.

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
``rise × inter`` (0.5 s) after its /readyz first answers 200 (or after the
slot was pointed at it).

For every restart the timeline is recorded in seconds since the load began:
SIGTERM sent, HAProxy's first failed check and its DOWN (read from the admin
socket's ``show stat`` every 20 ms), the listener closed (the first refused
connect of a probe that tries every 10 ms), the process exited (its status),
the replacement started, its /readyz answered 200, the slot was pointed at it
(new-address), HAProxy marked it UP.

Counted: requests sent (wrk's Lua ``request()`` calls), completed (every
response), failed (wrk's socket errors — connect, read, write, timeout — plus
every response that is not 2xx/3xx: a 502 or 503 from HAProxy is a failure),
with HAProxy's log line for each failed request (its termination state says
why: ``SH`` the server closed before answering, ``SC`` it refused the
connection).  Requests still in flight when wrk is stopped at the end are
neither completed nor failed and are shown apart.  In the new-address
scenario, when an old listener closed before HAProxy marked it DOWN, the
next SIGTERM (or the end) waits until HAProxy's retries of the requests it
refused are over (``RETRY_SPAN_S`` after the slot moved) and ``--settle``
more: otherwise the next restart would meet clients still stuck on the last.

Writes the section ``rolling-restart`` of bench/RESULTS.md (other sections are
kept), bench/rolling_restart.png and, with ``--json``, the raw figures.  Exit
status 1 if a run could not be made, or a ``fastsrv`` row lost a request or
an instance of it exited non-zero.

    python bench/rolling_restart.py                      # both scenarios × three servers, ~100 s
    python bench/rolling_restart.py --servers fastsrv --scenarios new-address --restarts 6 --json /tmp/rr.json

The pieces live in ``bench/harness``: ``haproxy.py`` (its config, process,
admin socket and log), ``rolling.py`` (settings, records, backend
instances), ``rolling_load.py`` (wrk and its Lua script) and
``rolling_report.py`` (the markdown section, the chart, the table).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness.debian import ToolMissing, ensure_tools  # noqa: E402
from bench.harness.haproxy import RETRY_SPAN_S, HAProxy, StatusMonitor, haproxy_config  # noqa: E402
from bench.harness.procs import free_port, sample_activity  # noqa: E402
from bench.harness.rolling import (NEW_ADDRESS, SAME_PORT, SCENARIOS, SERVERS, Backend, Restart,  # noqa: E402
                                   RunResult, Settings, display_command, probe_listener, stop_process)
from bench.harness.rolling_load import attribute_failures, read_load, start_load  # noqa: E402
from bench.harness.rolling_report import (SECTION, describe_restart, failure_breakdown,  # noqa: E402
                                          print_table, report_config, report_lines, write_chart,
                                          write_section)

log = logging.getLogger("bench.rolling_restart")

RESULTS_MD = ROOT / "bench" / "RESULTS.md"
CHART = ROOT / "bench" / "rolling_restart.png"

__all__ = ["Settings", "RunResult", "Restart", "describe_restart", "failure_breakdown", "rolling_restart",
           "SERVERS", "SCENARIOS", "main"]


class RollingRestart:
    """One server's rolling restart in one scenario: the children it started and what it saw."""

    def __init__(self, server: str, scenario: str, settings: Settings, workdir: Path,
                 progress: Callable[[str], None]) -> None:
        self.server, self.scenario, self.settings = server, scenario, settings
        self.workdir, self.progress = workdir, progress
        self.tag = f"[{server}, {scenario}]"
        self.result = RunResult(server=server, scenario=scenario, command=display_command(server, settings))
        self.backends: dict[str, Backend] = {}
        self.retired: list[Backend] = []
        self.used_ports: set[int] = set()
        self.haproxy: Optional[HAProxy] = None
        self.monitor: Optional[StatusMonitor] = None
        self.wrk: Optional[subprocess.Popen[str]] = None
        self.t0 = 0.0

    def _new_port(self) -> int:
        """A free port this run has not used yet (a replacement must not land on an old address)."""
        while (port := free_port()) in self.used_ports:
            pass
        self.used_ports.add(port)
        return port

    def _rel(self, t: Optional[float]) -> Optional[float]:
        return None if t is None else round(t - self.t0, 3)

    def start(self) -> None:
        """Start A and B, HAProxy in front of them, the status monitor and the load."""
        self.start_load(self.start_backends())

    def start_backends(self) -> int:
        """Start A and B, HAProxy in front of them and the status monitor, and wait
        until HAProxy has both UP: the port HAProxy listens on."""
        s = self.settings
        for name in ("a", "b"):
            self.backends[name] = Backend(self.server, name, self._new_port(), s, self.workdir, 0)
        for backend in self.backends.values():
            backend.wait_ready()
        frontend = self._new_port()
        socket_path = self.workdir / "admin.sock"
        config = haproxy_config(socket_path, frontend, {n: b.port for n, b in self.backends.items()},
                                inter_ms=s.inter_ms, fall=s.fall, rise=s.rise)
        self.haproxy = HAProxy(config, self.workdir, socket_path)
        self.haproxy.wait_started()
        self.monitor = StatusMonitor(self.haproxy, list(self.backends))
        self.monitor.start()
        for name in self.backends:
            self.monitor.wait_status(name, "UP", time.monotonic(), 10)
        return frontend

    def start_load(self, frontend: int) -> None:
        """wrk through HAProxy on ``frontend``; ``t0`` is when it starts."""
        s = self.settings
        budget = s.warmup + s.tail + s.restarts * (s.shutdown_delay + s.exit_wait_time + RETRY_SPAN_S + 30)
        self.t0 = time.monotonic()
        self.wrk = start_load(f"http://127.0.0.1:{frontend}/", s.connections, budget, self.workdir)
        self.progress(f"{self.tag} load: {s.connections} keep-alive connections through HAProxy on :{frontend}, "
                      f"backends a :{self.backends['a'].port}, b :{self.backends['b'].port}")

    def restart(self, index: int) -> Restart:
        """Restart one instance (A for even ``index``, B for odd) and wait for HAProxy's UP."""
        assert self.haproxy is not None and self.monitor is not None
        s, monitor = self.settings, self.monitor
        name = "ab"[index % 2]
        old = self.backends[name]
        restart = Restart(index=index + 1, instance=name, port=old.port)
        self.result.restarts.append(restart)
        closed: list[float] = []
        sigterm = time.monotonic()
        old.proc.send_signal(signal.SIGTERM)
        self.retired.append(old)
        wait = s.shutdown_delay + s.exit_wait_time + 10
        probe = threading.Thread(target=probe_listener, daemon=True, args=(old.port, sigterm + wait, closed))
        probe.start()
        try:
            status = old.proc.wait(wait)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"instance {name} did not exit after SIGTERM:\n{old.log_tail()}") from None
        exited = time.monotonic()
        probe.join(1)
        time.sleep(s.replace_after)
        port = old.port if self.scenario == SAME_PORT else self._new_port()
        replacement = Backend(self.server, name, port, s, self.workdir, index + 1)
        self.backends[name] = replacement
        ready = replacement.wait_ready()
        switched: Optional[float] = None
        if self.scenario == NEW_ADDRESS:
            # the old process is gone and the replacement is ready: swap the slot's address
            self.haproxy.set_server_address(name, "127.0.0.1", port)
            switched = time.monotonic()
            restart.new_port = port
        up = monitor.wait_status(name, "UP", switched or ready, 10 + s.rise * s.inter_ms / 1000)
        restart.sigterm = round(sigterm - self.t0, 3)
        restart.check_failed = self._rel(monitor.first(name, sigterm, lambda st: st.startswith("UP ")))
        restart.down = self._rel(monitor.first(name, sigterm, lambda st: st == "DOWN"))
        restart.listener_closed = self._rel(closed[0] if closed else None)
        restart.exited, restart.exit_status = self._rel(exited), status
        restart.started, restart.ready = self._rel(replacement.started), self._rel(ready)
        restart.switched, restart.up = self._rel(switched), self._rel(up)
        return restart

    def settle(self, restart: Restart) -> float:
        """Seconds of load between ``restart``'s UP and the next SIGTERM.

        ``settle`` after the UP; in the new-address scenario, when the old
        listener closed before HAProxy had marked the instance DOWN (so it may
        have refused requests), also until the retries of those requests are
        over — each is retried on the old address for up to ``RETRY_SPAN_S``
        after the slot moved — so that the next restart meets the full load,
        not clients still stuck on the last one."""
        s = self.settings
        if self.scenario != NEW_ADDRESS or restart.down_before_close or restart.switched is None:
            return s.settle
        retries_over = self.t0 + restart.switched + RETRY_SPAN_S
        return max(s.settle, retries_over + s.settle - time.monotonic())

    def finish(self) -> None:
        """Stop the load and collect its counts and HAProxy's."""
        assert self.haproxy is not None and self.wrk is not None
        self.wrk.send_signal(signal.SIGINT)
        output, _ = self.wrk.communicate(timeout=30)
        read_load(output, self.t0, self.result)
        attribute_failures(self.result)
        stats = self.haproxy.show_stat()
        self.result.haproxy_retries = int(stats.get("be/BACKEND", {}).get("wretr") or 0)
        time.sleep(0.2)  # let HAProxy's log lines of the last requests reach the file
        logged = self.haproxy.read_log()
        self.result.haproxy_failures = logged.failed
        self.result.retried_ok, self.result.retried_ok_max_ms = logged.retried_ok, logged.retried_ok_max_ms

    def close(self) -> None:
        """Stop every child this run started."""
        if self.wrk is not None and self.wrk.poll() is None:
            self.wrk.kill()
            self.wrk.communicate()
        if self.monitor is not None:
            self.monitor.stop()
        for backend in [*self.backends.values(), *self.retired]:
            stop_process(backend.proc)
        if self.haproxy is not None:
            stop_process(self.haproxy.proc, signal.SIGTERM)


def rolling_restart(server: str, settings: Settings, scenario: str = SAME_PORT,
                    progress: Callable[[str], None] = log.info, keep_logs: Optional[Path] = None) -> RunResult:
    """Run one server's rolling restart behind HAProxy under wrk load; every child is gone on return.

    With ``keep_logs`` the run's files (HAProxy's config and log, every
    instance's log) are kept in ``keep_logs/SCENARIO/SERVER``."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    workdir = Path(tempfile.mkdtemp(prefix="rolling-restart-"))
    run = RollingRestart(server, scenario, settings, workdir, progress)
    result = run.result
    try:
        run.start()
        time.sleep(settings.warmup)
        for index in range(settings.restarts):
            restart = run.restart(index)
            progress(f"{run.tag} restart {index + 1}/{settings.restarts} ({restart.instance}): "
                     + describe_restart(restart))
            time.sleep(run.settle(restart))
        time.sleep(settings.tail)
        run.finish()
        progress(f"{run.tag} sent {result.sent:,}, completed {result.completed:,}, failed {result.failed:,}"
                 f"{' (' + failure_breakdown(result) + ')' if result.failed else ''}, "
                 f"exit statuses {result.exit_statuses}")
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        log.error("%s run failed: %s", run.tag, result.error)
    finally:
        run.close()
        if keep_logs is not None:
            shutil.copytree(workdir, keep_logs / scenario / server, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.sock"))
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _machine() -> str:
    """The CPUs and how busy others kept them just before the runs."""
    activity = sample_activity(1.0)
    others = f" ({activity.describe()})" if activity.busy > 0.05 else ""
    return (f"{os.cpu_count()} CPUs, {activity.busy:.0%} busy with other work over 1 s before the runs{others}, "
            f"load average {os.getloadavg()[0]:.2f}")


def _names(parser: argparse.ArgumentParser, value: str, known: Sequence[str], what: str) -> list[str]:
    """A comma-separated list of names, each one of ``known``."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        parser.error(f"unknown {what} {', '.join(unknown) or '(none given)'}; known: {', '.join(known)}")
    return names


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help=f"comma-separated, from {', '.join(SERVERS)} (default: all)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, from {', '.join(SCENARIOS)} (default: both): the replacement "
                             "listens on the old instance's port, or on a new one HAProxy is pointed at")
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
                             "(a slow start); default 0")
    parser.add_argument("--json", metavar="PATH", help="write the raw figures here")
    parser.add_argument("--out", default=str(RESULTS_MD), help="the markdown file whose section is replaced")
    parser.add_argument("--chart", default=str(CHART))
    parser.add_argument("--keep-logs", metavar="DIR",
                        help="keep each run's HAProxy config and log and the instances' logs in "
                             "DIR/SCENARIO/SERVER")
    parser.add_argument("--no-report", action="store_true", help="do not touch RESULTS.md or the chart")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    servers = _names(parser, args.servers, SERVERS, "server(s)")
    scenarios = _names(parser, args.scenarios, SCENARIOS, "scenario(s)")
    settings = Settings(restarts=args.restarts, connections=args.connections, shutdown_delay=args.shutdown_delay,
                        exit_wait_time=args.exit_wait_time, inter_ms=args.inter_ms, fall=args.fall,
                        rise=args.rise, settle=args.settle, replace_after=args.replace_after)
    if "fastsrv" in servers and settings.shutdown_delay <= settings.check_bound_s:
        log.warning("--shutdown-delay %g is not above fall × inter = %g s: HAProxy may still route to a "
                    "stopping instance", settings.shutdown_delay, settings.check_bound_s)
    try:
        ensure_tools(["haproxy", "wrk"])
    except ToolMissing as exc:
        log.error("%s", exc)
        return 2
    machine = _machine()
    log.info("rolling restart behind HAProxy: %s; scenarios %s; %d restarts each; %s", ", ".join(servers),
             ", ".join(scenarios), settings.restarts, machine)
    results: list[RunResult] = []

    def terminated(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminated)  # the children are stopped on the way out, as on Ctrl-C
    started = time.monotonic()
    try:
        for scenario in scenarios:
            for server in servers:
                results.append(rolling_restart(server, settings, scenario,
                                               keep_logs=Path(args.keep_logs) if args.keep_logs else None))
    except KeyboardInterrupt:
        log.warning("interrupted: every child was stopped; no report written")
        return 130
    log.info("all runs took %.0f s", time.monotonic() - started)
    print_table(results)
    if args.json:
        payload = {"settings": asdict(settings), "machine": machine, "haproxy_config": report_config(settings),
                   "results": [{**asdict(r), "exit_statuses": r.exit_statuses} for r in results]}
        Path(args.json).write_text(json.dumps(payload, indent=1) + "\n")
        log.info("wrote %s", args.json)
    if not args.no_report:
        given = list(argv if argv is not None else sys.argv[1:])
        invocation = " ".join(["python bench/rolling_restart.py", *given])
        write_section(Path(args.out), report_lines(results, settings, invocation, machine, Path(args.chart).name))
        write_chart(results, Path(args.chart), settings)
        log.info("wrote the %s section of %s and %s", SECTION, args.out, args.chart)
    # the comparison rows are expected to lose requests; fastsrv with its delay must not
    ok = all(not r.error for r in results) and all(
        r.failed == 0 and r.exit_statuses == [0] * len(r.restarts) for r in results if r.server == "fastsrv")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
