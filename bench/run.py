#!/usr/bin/env python3
"""fastsrv benchmark driver.

For every server of a suite (harness/suites.py; servers in harness/targets.py)
and every wrk scenario (plain keep-alive, pipelined), start the server pinned
to one CPU, drive it with wrk pinned to the other, and measure req/s and the
server's CPU time per request; then measure the RSS it adds per idle
keep-alive connection.  Writes the suite's part of bench/RESULTS.md, its chart
and optionally a JSON dump of every run.

    python bench/run.py                       # core suite: fastsrv, floor, uvicorn, nginx
    python bench/run.py --suite asgi          # fastsrv, uvicorn, granian on raw ASGI and Starlette
    python bench/run.py --quick               # smoke test: short runs, 1 run each
    python bench/run.py --servers floor,nginx --runs 5 --duration 15
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from harness import procs
from harness.debian import PACKAGES, ToolMissing, ensure_tools
from harness.machine import NOT_INSTALLED, describe_machine, python_versions, tool_version
from harness.memory import measure_idle_memory
from harness.report import report_lines, write_chart, write_json, write_markdown
from harness.results import Run, Scenario, ScenarioResult, ServerResult, server_result_from_json
from harness.server import ServerError, ServerProcess, running_server
from harness.suites import SUITES, Suite
from harness.targets import BENCH_DIR, HELLO, HOST, REPO_DIR, TARGETS, Exchange, LaunchContext, Target, find_tool
from harness.wrk import WrkError, run_wrk, wrk_command

log = logging.getLogger("bench")

WANTED_NOFILE = 65536
INTERFERENCE_WARN = 0.03  # share of the server CPU used by others before a run is repeated / flagged
QUIET_BUSY = 0.05  # share of all CPUs others may use while the driver waits to start a run


@dataclass(frozen=True)
class Settings:
    """The resolved command-line options."""

    suite: str
    servers: tuple[str, ...]
    duration: float
    warmup: float
    runs: int
    connections: int
    pipeline: int
    memory_steps: tuple[int, ...]
    skip_memory: bool
    python: str
    out: Path
    chart: Path
    json_path: Path | None
    server_cpu: int
    client_cpu: int
    ready_timeout: float
    quiet_wait: float
    retries: int
    report_from: Path | None = None
    nofile: int = 0  # filled in once the limit has been raised
    irq_time_accounting: bool = False  # kernel charges softirq time to nobody (see procs)

    @property
    def scenarios(self) -> tuple[Scenario, ...]:
        plain = Scenario("plain", 1, f"Plain keep-alive: wrk -t1 -c{self.connections}, one request per write")
        piped = Scenario(
            "pipelined", self.pipeline,
            f"Pipelined: wrk -t1 -c{self.connections}, {self.pipeline} requests per write (bench/pipeline.lua)",
        )
        return (plain, piped) if self.pipeline > 1 else (plain,)

    @property
    def suite_spec(self) -> Suite:
        return SUITES[self.suite]


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    """Parse the command line (and set up logging)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=f"servers known: {', '.join(TARGETS)}"
    )
    parser.add_argument("--suite", choices=SUITES, default="core",
                        help="which comparison: its servers, its report section and chart (default: core); "
                        + "; ".join(f"{s.name}: {', '.join(s.servers)}" for s in SUITES.values()))
    parser.add_argument("--servers", default=None, help="comma-separated, instead of the suite's")
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured wrk run (default: 10)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of the warm-up wrk run (default: 2, quick: 1)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per scenario; the median is reported")
    parser.add_argument("--connections", type=int, default=100, help="wrk connections (default: 100)")
    parser.add_argument("--pipeline", type=int, default=16, help="pipelining depth; 1 disables the scenario")
    parser.add_argument("--memory-connections", default="1000,10000",
                        help="idle connection counts, cumulative (default: %(default)s)")
    parser.add_argument("--skip-memory", dest="memory", action="store_false", default=None,
                        help="skip the idle-connection memory scenario (default for the asgi suite)")
    parser.add_argument("--memory", dest="memory", action="store_true",
                        help="run the idle-connection memory scenario (default for the core suite)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 s runs, 1 s warm-up, 1 run")
    parser.add_argument("--python", default=sys.executable, help="interpreter for Python servers (default: this one)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "RESULTS.md",
                        help="markdown report; a suite rewrites only its own part of it, the chart goes beside it "
                        "(default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, dest="json_path", help="also dump every run as JSON here")
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU the server is pinned to (default: 0)")
    parser.add_argument("--client-cpu", type=int, default=1, help="CPU wrk and the driver are pinned to (default: 1)")
    parser.add_argument("--ready-timeout", type=float, default=30, help="seconds to wait for a server to answer")
    parser.add_argument("--quiet-wait", type=float, default=60,
                        help="before each run, wait up to this many seconds for other processes to go idle "
                        "(default: 60)")
    parser.add_argument("--retries", type=int, default=2,
                        help="repeat a run disturbed by other processes up to this many times (default: 2)")
    parser.add_argument("--report-from", type=Path, default=None, metavar="JSON",
                        help="measure nothing: rewrite the report (--out and its chart) from a previous --json dump")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    suite = SUITES[args.suite]
    servers = suite.servers
    if args.servers:
        servers = tuple(name.strip() for name in args.servers.split(",") if name.strip())
    unknown = [name for name in servers if name not in TARGETS]
    if unknown:
        parser.error(f"unknown server(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    if args.runs < 1 or args.duration <= 0 or args.connections < 1 or args.pipeline < 1:
        parser.error("--runs, --duration, --connections and --pipeline must be positive")
    try:
        memory_steps = tuple(sorted({int(n) for n in args.memory_connections.split(",")}))
    except ValueError:
        parser.error("--memory-connections takes comma-separated integers, e.g. 1000,10000")
    if not memory_steps or memory_steps[0] < 1:
        parser.error("--memory-connections must be positive")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname).1s %(message)s",
        datefmt="%H:%M:%S",
    )
    out = args.out.resolve()
    return Settings(
        suite=suite.name,
        servers=servers,
        duration=2 if args.quick else args.duration,
        warmup=args.warmup if args.warmup is not None else (1 if args.quick else 2),
        runs=1 if args.quick else args.runs,
        connections=args.connections,
        pipeline=args.pipeline,
        memory_steps=memory_steps,
        skip_memory=not (suite.memory if args.memory is None else args.memory),
        python=args.python,
        out=out,
        chart=out.with_name(suite.chart_name),
        json_path=args.json_path,
        server_cpu=args.server_cpu,
        client_cpu=args.client_cpu,
        ready_timeout=args.ready_timeout,
        quiet_wait=0 if args.quick else args.quiet_wait,
        retries=0 if args.quick else args.retries,
        report_from=args.report_from,
    )


# --------------------------------------------------------------------------- setup


def pin_driver(cpu: int) -> None:
    """Keep the driver (and its memory-scenario client) off the server's CPU."""
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        log.warning("cannot pin the driver to CPU %d: %s", cpu, exc)


def check_cpus(settings: Settings) -> None:
    """Exit if the CPUs to pin to do not exist; warn if server and client share one."""
    available = os.sched_getaffinity(0)
    for cpu in (settings.server_cpu, settings.client_cpu):
        if cpu not in available:
            sys.exit(f"CPU {cpu} is not available (usable: {sorted(available)}); see --server-cpu/--client-cpu")
    if settings.server_cpu == settings.client_cpu:
        log.warning("server and wrk share CPU %d: CPU figures will be distorted", settings.server_cpu)


# --------------------------------------------------------------------------- servers


def server_argv(target: Target, ctx: LaunchContext, settings: Settings) -> list[str]:
    """The target's command, run with a raised fd limit and pinned to the server CPU."""
    return ["prlimit", f"--nofile={ctx.nofile}:{ctx.nofile}", "taskset", "-c", str(settings.server_cpu),
            *target.command(ctx)]


@contextmanager
def launched(
    target: Target, settings: Settings, workdir: Path, result: ServerResult
) -> Iterator[tuple[ServerProcess, int]]:
    """Start ``target`` on a free port, wait until it serves "Hello, World!", stop it on exit."""
    for tool in target.tools:
        if not find_tool(tool):
            raise ServerError(f"{tool} is not installed (apt-get install {PACKAGES.get(tool, tool)})")
    missing = [pkg for pkg in target.python_packages if result.versions.get(pkg) == NOT_INSTALLED]
    if missing:
        raise ServerError(f"{', '.join(missing)} not installed for {settings.python} (see --python)")
    port = procs.free_port(HOST)
    ctx = LaunchContext(python=settings.python, port=port, workdir=workdir, nofile=settings.nofile)
    if target.prepare is not None:
        target.prepare(ctx)
    argv = server_argv(target, ctx, settings)
    result.command = shlex.join(argv)
    log.info("  started: %s", result.command)
    started = time.monotonic()
    # Servers run from the repository root, like `python -m fastsrv ...` typed there (an in-place build works).
    with running_server(argv, workdir / "server.log", REPO_DIR, HOST, port, settings.ready_timeout,
                        target.request) as server:
        tree = procs.process_tree(server.pid)
        log.info("  ready after %.1fs, pid %d (%d process(es) in tree)",
                 time.monotonic() - started, server.pid, len(tree))
        yield server, port
    log.info("  stopped %s", target.name)


def ensure_alive(server: ServerProcess) -> None:
    """Raise ServerError if the server has exited."""
    assert server.proc is not None
    code = server.proc.poll()
    if code is not None:
        raise ServerError(f"server died during the run (status {code})\n{server.log_tail()}")


# --------------------------------------------------------------------------- scenarios


def wait_until_quiet(settings: Settings, label: str) -> None:
    """Before a run, wait (up to --quiet-wait seconds) until other processes leave the CPUs alone."""
    if settings.quiet_wait <= 0:
        return
    deadline = time.monotonic() + settings.quiet_wait
    activity = procs.sample_activity()
    if activity.busy <= QUIET_BUSY:
        return
    log.info("  [%s] machine busy (%.0f%% of all CPUs: %s); waiting up to %gs",
             label, 100 * activity.busy, activity.describe(), settings.quiet_wait)
    while time.monotonic() < deadline:
        activity = procs.sample_activity(sample=1.0)
        if activity.busy <= QUIET_BUSY:
            return
    log.warning("  [%s] still busy (%.0f%% of all CPUs: %s): measuring anyway",
                label, 100 * activity.busy, activity.describe())


def measure_run(server: ServerProcess, argv: list[str], index: int, settings: Settings) -> tuple[Run, str]:
    """One wrk run with the server tree's CPU time and its core's counters read around it."""
    core_before = procs.read_core_times(settings.server_cpu)
    cpu_before = procs.tree_cpu_seconds(server.pid)
    wrk = run_wrk(argv, settings.duration)
    server_cpu = procs.tree_cpu_seconds(server.pid) - cpu_before
    core = procs.read_core_times(settings.server_cpu) - core_before
    ensure_alive(server)
    return Run.from_wrk(index, wrk, server_cpu, core, settings.irq_time_accounting), wrk.output


def measure_scenario(
    server: ServerProcess, port: int, scenario: Scenario, settings: Settings, label: str,
    request: Exchange = HELLO,
) -> ScenarioResult:
    """Warm-up run, then ``settings.runs`` measured wrk runs with server CPU accounting.

    A run during which other processes took more than INTERFERENCE_WARN of the
    server's CPU is repeated (up to --retries times), then kept and flagged.
    """
    url = f"http://{HOST}:{port}/"
    timeout = max(2.0, settings.duration)
    label = f"{label} / {scenario.name}"

    def command(duration: float) -> list[str]:
        return wrk_command(url, settings.connections, duration, scenario.pipeline, timeout, settings.client_cpu,
                           request)

    result = ScenarioResult(scenario=scenario.name, wrk_command=shlex.join(command(settings.duration)))
    wait_until_quiet(settings, label)
    log.info("  [%s] warm-up %gs: %s", label, settings.warmup, shlex.join(command(settings.warmup)))
    run_wrk(command(settings.warmup), settings.warmup)
    ensure_alive(server)
    for index in range(1, settings.runs + 1):
        for attempt in range(settings.retries + 1):
            wait_until_quiet(settings, label)
            run, output = measure_run(server, command(settings.duration), index, settings)
            log.info(
                "  [%s] run %d/%d: %s req/s, %.2f CPU µs/req, server CPU %.0f%%, wrk CPU %.0f%%, errors %d%s",
                label, index, settings.runs, f"{run.requests_per_s:,.0f}", run.cpu_us_per_request,
                100 * run.server_cpu_util, 100 * run.client_cpu_util, run.errors,
                f" {run.socket_errors} non-2xx/3xx {run.non_2xx_3xx}" if run.errors else "",
            )
            interference = run.core_foreign_s / run.wall_s
            if interference <= INTERFERENCE_WARN:
                break
            if attempt < settings.retries:
                result.discarded_noisy += 1
                log.warning("  [%s] other processes took %.0f%% of CPU %d during the run: discarded, repeating",
                            label, 100 * interference, settings.server_cpu)
            else:
                log.warning("  [%s] other processes took %.0f%% of CPU %d during the run: kept, flagged as noisy",
                            label, 100 * interference, settings.server_cpu)
        if run.errors:
            log.warning("  [%s] wrk reported errors:\n%s", label, output.strip())
        result.runs.append(run)
    log.info("  [%s] median: %s req/s, %.2f CPU µs/req", label, f"{result.rps_median:,.0f}", result.cpu_us_median)
    return result


def bench_throughput(target: Target, settings: Settings, workdir: Path, result: ServerResult) -> None:
    """One server start for all wrk scenarios."""
    with launched(target, settings, workdir, result) as (server, port):
        for scenario in settings.scenarios:
            try:
                result.scenarios[scenario.name] = measure_scenario(server, port, scenario, settings, target.name,
                                                                   target.request)
            except WrkError as exc:
                log.error("  [%s / %s] failed: %s", target.name, scenario.name, exc)
                result.scenarios[scenario.name] = ScenarioResult(scenario.name, "", error=str(exc))
                ensure_alive(server)


def bench_memory(target: Target, settings: Settings, workdir: Path, result: ServerResult) -> None:
    """The idle-connection memory scenario, on a fresh server start."""
    log.info("  [%s / memory] idle keep-alive connections: %s", target.name, ", ".join(map(str, settings.memory_steps)))
    try:
        with launched(target, settings, workdir, result) as (server, port):
            result.memory, result.memory_error = measure_idle_memory(server.pid, HOST, port, settings.memory_steps)
            ensure_alive(server)
    except ServerError as exc:
        result.memory_error = str(exc)
    if result.memory_error:
        log.error("  [%s / memory] failed: %s", target.name, result.memory_error)


def bench_server(target: Target, settings: Settings, position: str) -> ServerResult:
    """All scenarios for one server; failures are recorded, never raised."""
    log.info("=== %s %s: %s", position, target.name, target.description)
    result = ServerResult(name=target.name, description=target.description, notes=list(target.notes))
    result.versions = server_versions(target, settings)
    log.info("  versions: %s", ", ".join(f"{k} {v}" for k, v in result.versions.items()))
    with tempfile.TemporaryDirectory(prefix=f"fastsrv-bench-{target.name}-") as tmp:
        workdir = Path(tmp)
        try:
            bench_throughput(target, settings, workdir, result)
        except ServerError as exc:
            log.error("  %s failed: %s", target.name, exc)
            result.error = str(exc)
            return result
        except Exception as exc:  # a harness bug for this target must not lose the other targets
            log.exception("  %s failed unexpectedly", target.name)
            result.error = f"{type(exc).__name__}: {exc}"
            return result
        if not settings.skip_memory:
            bench_memory(target, settings, workdir, result)
    return result


def server_versions(target: Target, settings: Settings) -> dict[str, str]:
    """Versions of what a target runs: its Python packages, or its own ``-v`` output."""
    versions: dict[str, str] = {}
    if target.python_packages:
        versions.update(python_versions(settings.python, target.python_packages, REPO_DIR))
    if target.version_argv:
        tools = target.tool_paths()
        versions[target.name] = tool_version([part.format(**tools) for part in target.version_argv])
    return versions


# --------------------------------------------------------------------------- main


def write_reports(settings: Settings, machine: dict[str, str], results: list[ServerResult], invocation: str) -> None:
    """The suite's part of RESULTS.md, its chart beside it and, with --json, the raw dump."""
    suite = settings.suite_spec
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    if settings.json_path:
        settings.json_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        charted = write_chart(settings.chart, suite, settings.scenarios, settings.memory_steps, results)
    except ImportError as exc:
        log.warning("no chart (%s): pip install matplotlib, then --report-from the JSON dump", exc)
        charted = False
    chart = settings.chart if charted else None
    wrk_commands = {
        f"{sc.name} (measured run)": wrk_command(
            f"http://{HOST}:PORT/", settings.connections, settings.duration, sc.pipeline,
            max(2.0, settings.duration), settings.client_cpu,
        )
        for sc in settings.scenarios
    }
    wrk_commands = {name: shlex.join(argv) for name, argv in wrk_commands.items()}
    report_settings = {k: v for k, v in asdict(settings).items() if k in
                       ("runs", "duration", "warmup", "connections", "pipeline", "nofile", "server_cpu", "client_cpu")}
    tools = {"wrk": tool_version(["wrk", "-v"]), "driver Python": sys.version.split()[0]}
    lines = report_lines(
        suite=suite, invocation=invocation, machine=machine, settings=report_settings, tool_versions=tools,
        scenarios=settings.scenarios, wrk_commands=wrk_commands, memory_steps=settings.memory_steps,
        results=results, chart=chart, report_dir=settings.out.parent,
    )
    write_markdown(settings.out, suite, lines)
    part = "" if suite.owns_file else f" (section of suite {suite.name})"
    log.info("wrote %s%s%s", settings.out, part, f" and {chart}" if chart else "")
    if settings.json_path:
        payload = {"invocation": invocation, "machine": machine, "settings": asdict(settings), "tools": tools,
                   "wrk_commands": wrk_commands}
        write_json(settings.json_path, payload, results)
        log.info("wrote %s", settings.json_path)


def rewrite_report(settings: Settings) -> int:
    """--report-from: rebuild the results of a --json dump and write the report again.

    The dump's suite decides which part of --out is rewritten (dumps older than
    suites are of the core suite).
    """
    assert settings.report_from is not None
    dump = json.loads(settings.report_from.read_text())
    recorded = dump["settings"]
    suite = SUITES[recorded.get("suite", "core")]
    settings = replace(
        settings,
        suite=suite.name,
        chart=settings.out.with_name(suite.chart_name),
        **{key: recorded[key] for key in ("duration", "warmup", "runs", "connections", "pipeline",
                                          "server_cpu", "client_cpu", "nofile", "irq_time_accounting")},
        memory_steps=tuple(recorded["memory_steps"]),
        servers=tuple(recorded["servers"]),
    )
    results = [server_result_from_json(server) for server in dump["servers"]]
    write_reports(settings, dump["machine"], results, dump["invocation"])
    return 0


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM: unwind like Ctrl-C, so every `finally` stops its server."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Benchmark every selected server, then write the reports. Returns the exit status."""
    signal.signal(signal.SIGTERM, _terminate)
    settings = parse_args(argv)
    if settings.report_from is not None:
        return rewrite_report(settings)
    invocation = "python bench/run.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    check_cpus(settings)
    needed = ["wrk", "taskset", "prlimit"] + [tool for name in settings.servers for tool in TARGETS[name].tools]
    try:
        ensure_tools(needed)
    except ToolMissing as exc:
        log.warning("%s", exc)      # a server whose tool is missing is reported as failed
    if not find_tool("wrk"):
        log.error("wrk is required and could not be installed")
        return 2
    nofile = procs.raise_nofile_limit(WANTED_NOFILE)
    if settings.memory_steps and nofile < max(settings.memory_steps) + 100 and not settings.skip_memory:
        log.warning("RLIMIT_NOFILE is only %d: the memory scenario may fail", nofile)
    irq_acc = procs.irq_time_accounting()
    settings = replace(settings, nofile=nofile, irq_time_accounting=bool(irq_acc))
    pin_driver(settings.client_cpu)
    machine = describe_machine()
    machine["cpu_accounting"] = {
        True: "CONFIG_IRQ_TIME_ACCOUNTING: softirq work (loopback delivery) is not in process CPU times",
        False: "tick-based: softirq work done in the server's context (loopback delivery) is in its CPU time",
        None: "unknown (kernel config not readable)",
    }[irq_acc]
    log.info("machine: %s, %s CPUs, %s; fd limit %d",
             machine["cpu"], machine["logical_cpus"], machine["kernel"], nofile)

    results: list[ServerResult] = []
    try:
        for i, name in enumerate(settings.servers, 1):
            results.append(bench_server(TARGETS[name], settings, f"[{i}/{len(settings.servers)}]"))
    except KeyboardInterrupt:
        log.error("interrupted: writing the report of what was measured")
        write_reports(settings, machine, results, invocation + "  (interrupted)")
        return 130
    write_reports(settings, machine, results, invocation)
    failed = [res.name for res in results if res.error]
    if failed:
        log.error("could not benchmark: %s", ", ".join(failed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
