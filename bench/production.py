#!/usr/bin/env python3
"""What the production flags cost: metrics on the native hello world, and TLS
against uvicorn with the same certificate.

Each configuration is a server started alone, pinned to CPU 0, with wrk
pinned to CPU 1 (``GET /``, keep-alive unless said otherwise); the figure
that compares configurations is the server's CPU time per request (its
process tree's user + system time over wrk's run, from /proc), as in
bench/run.py.  Configurations are interleaved, ``--runs`` times each, and
the report gives medians with their ranges.

Suites:

* ``metrics``: the native hello world (fastsrv.demo:app) with the defaults,
  with ``--metrics-path /metrics``, and with ``--no-proxy-headers`` (proxy
  headers are on by default, and wrk connects from a trusted 127.0.0.1, so
  each request's head is scanned for them).  The issue's bar: metrics add
  at most 3 % CPU per request.
* ``tls``: over HTTPS with one certificate made by trustme: fastsrv's native
  hello world, the raw ASGI hello world on fastsrv and on uvicorn (uvloop,
  httptools); keep-alive requests/s and CPU per request, then "handshakes":
  ``Connection: close`` on every request, so each request is a new TCP
  connection and TLS handshake (what wrk's OpenSSL resumes, it resumes
  for every server alike).

* ``instructions``: the user-space instructions per request of the native
  hello world with and without ``--metrics-path`` and proxy headers, under
  valgrind's callgrind (deterministic, so it can run on a busy machine):
  the instructions of a server that answered 3,000 requests minus those of
  one that answered 500, over 2,500 (the median of three such pairs); one
  request per round trip, and 50 pipelined.  Kernel time (the syscalls) is not in it, so a share of it
  overstates the share of CPU time.

    python bench/production.py                        # metrics and tls, 3 runs x 10 s (~6 min)
    python bench/production.py --suite instructions   # valgrind, ~6 min, any machine
    python bench/production.py --suite metrics --runs 5
    python bench/production.py --quick                # 1 run x 2 s: does it work

    python bench/production.py --report-from bench/results_production.json

Prints a markdown table per suite, keeps every suite's latest figures in
bench/results_production.json (``--out`` elsewhere; a suite run alone
replaces only its own), and from them writes the section "Production flags"
of bench/RESULTS.md and the chart ``results_production.png`` beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from harness.debian import ensure_tools  # noqa: E402
from harness.machine import describe_machine  # noqa: E402
from harness.procs import free_port, tree_cpu_seconds  # noqa: E402
from harness.report import write_section  # noqa: E402
from harness.wrk import parse_wrk  # noqa: E402

SERVER_CPU, LOAD_CPU = 0, 1


def fastsrv(app: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fastsrv", "run", app, "--host", "127.0.0.1", "--port", "{port}",
            "--log-level", "warning", "--keepalive-timeout", "600", *extra]


def uvicorn(app: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
            "--log-level", "warning", "--timeout-keep-alive", "600", "--host", "127.0.0.1", "--port", "{port}",
            *extra, app]


def metrics_configs() -> dict[str, tuple[list[str], bool]]:
    return {
        "defaults": (fastsrv("fastsrv.demo:app"), False),
        "--metrics-path /metrics": (fastsrv("fastsrv.demo:app", "--metrics-path", "/metrics"), False),
        "--no-proxy-headers": (fastsrv("fastsrv.demo:app", "--no-proxy-headers"), False),
    }


def tls_configs(cert: str, key: str) -> dict[str, tuple[list[str], bool]]:
    ssl_fastsrv = ("--ssl-certfile", cert, "--ssl-keyfile", key)
    return {
        "fastsrv native, TLS": (fastsrv("fastsrv.demo:app", *ssl_fastsrv), True),
        "fastsrv raw ASGI, TLS": (fastsrv("bench.peers.asgi_hello:app", "--interface", "asgi",
                                          "--lifespan", "off", *ssl_fastsrv), True),
        "uvicorn raw ASGI, TLS": (uvicorn("bench.peers.asgi_hello:app", "--ssl-certfile", cert,
                                          "--ssl-keyfile", key), True),
        "fastsrv native, plain": (fastsrv("fastsrv.demo:app"), False),
    }


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not listen")


def measure(argv: list[str], tls: bool, duration: float, connections: int, close: bool) -> dict[str, Any]:
    """Start the server, warm it up, run wrk, stop it: req/s and server CPU µs per request."""
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in argv]
    proc = subprocess.Popen(["taskset", "-c", str(SERVER_CPU), *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        _wait_port(port, proc)
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
        wrk = ["taskset", "-c", str(LOAD_CPU), "wrk", "-t1", f"-c{connections}", "--timeout", "5s"]
        if close:
            wrk += ["-H", "Connection: close"]
        subprocess.run([*wrk, "-d1s", url], capture_output=True, timeout=60)       # warm-up
        cpu0 = tree_cpu_seconds(proc.pid)
        done = subprocess.run([*wrk, f"-d{duration:g}s", url], capture_output=True, text=True,
                              timeout=duration + 60)
        cpu = tree_cpu_seconds(proc.pid) - cpu0
        report = parse_wrk(done.stdout + done.stderr)
        return {"requests_per_s": report.requests_per_s, "requests": report.requests,
                "server_cpu_us_per_request": cpu * 1e6 / report.requests if report.requests else None,
                "errors": report.errors}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_suite(configs: dict[str, tuple[list[str], bool]], runs: int, duration: float, connections: int,
              close: bool) -> dict[str, dict[str, Any]]:
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    for i in range(runs):
        for name, (argv, tls) in configs.items():
            result = measure(argv, tls, duration, connections, close)
            results[name].append(result)
            print(f"  run {i + 1}/{runs} {name}{' (Connection: close)' if close else ''}: "
                  f"{result['requests_per_s']:,.0f} req/s, {result['server_cpu_us_per_request']:.2f} µs/req, "
                  f"{result['errors']} errors", file=sys.stderr)
    summary = {}
    for name, rs in results.items():
        cpu = [r["server_cpu_us_per_request"] for r in rs]
        rps = [r["requests_per_s"] for r in rs]
        summary[name] = {"runs": rs, "cpu_us": statistics.median(cpu), "cpu_range": [min(cpu), max(cpu)],
                         "requests_per_s": statistics.median(rps), "rps_range": [min(rps), max(rps)],
                         "errors": sum(r["errors"] for r in rs)}
    return summary


def instructions(extra: list[str], requests: int, batch: int) -> int:
    """Instructions (callgrind's Ir) of a server that answered ``requests``
    hello-world requests, ``batch`` pipelined per round trip."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/callgrind.out"
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                                 "-m", "fastsrv", "run", "fastsrv.demo:app", "--port", str(port), "--log-level",
                                 "warning", *extra], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        try:
            _wait_port(port, proc, timeout=120)
            request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
            with socket.create_connection(("127.0.0.1", port)) as sock:
                left = requests
                while left:
                    n = min(batch, left)
                    sock.sendall(request * n)
                    got = b""
                    while got.count(b"Hello, World!") < n:
                        got += sock.recv(1 << 20)
                    left -= n
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(120)
        return max(int(line.split()[1]) for line in open(out) if line.startswith(("totals:", "summary:")))


def instructions_suite() -> dict[str, dict[str, float]]:
    configs = {"defaults": [], "--metrics-path /metrics": ["--metrics-path", "/metrics"],
               "--no-proxy-headers": ["--no-proxy-headers"]}
    out: dict[str, dict[str, float]] = {}
    for batch in (1, 50):
        for name, extra in configs.items():
            # a server also works per second (the timeout sweep, the Date
            # line), which the difference of two runs does not cancel: the
            # median of three differences
            pairs = [(instructions(extra, 3000, batch) - instructions(extra, 500, batch)) / 2500
                     for _ in range(3)]
            per_request = statistics.median(pairs)
            out.setdefault(name, {})[f"batch {batch}"] = per_request
            print(f"  {name}, {batch} per round trip: {per_request:,.0f} instructions/request "
                  f"({', '.join(f'{p:,.0f}' for p in pairs)})", file=sys.stderr)
    return out


def instructions_table(summary: dict[str, dict[str, float]]) -> str:
    base = summary["defaults"]
    lines = ["### User-space instructions per request (callgrind), native hello world", "",
             "| configuration | one per round trip | vs defaults | 50 pipelined | vs defaults |",
             "|---|---:|---:|---:|---:|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['batch 1']:,.0f} | {(s['batch 1'] / base['batch 1'] - 1) * 100:+.1f} % | "
                     f"{s['batch 50']:,.0f} | {(s['batch 50'] / base['batch 50'] - 1) * 100:+.1f} % |")
    return "\n".join(lines) + "\n"


def table(title: str, summary: dict[str, dict[str, Any]], baseline: str) -> str:
    base = summary[baseline]["cpu_us"]
    lines = [f"### {title}", "", "| configuration | req/s (range) | server CPU µs/req (range) | vs "
             f"{baseline} | errors |", "|---|---:|---:|---:|---:|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['requests_per_s']:,.0f} ({s['rps_range'][0]:,.0f}-{s['rps_range'][1]:,.0f}) "
                     f"| {s['cpu_us']:.2f} ({s['cpu_range'][0]:.2f}-{s['cpu_range'][1]:.2f}) | "
                     f"{(s['cpu_us'] / base - 1) * 100:+.1f} % | {s['errors']} |")
    return "\n".join(lines) + "\n"


TITLES = {
    "metrics": ("Metrics and proxy headers on the native hello world (keep-alive)", "defaults"),
    "tls_keepalive": ("TLS, keep-alive requests", "uvicorn raw ASGI, TLS"),
    "tls_handshakes": ("TLS, a new connection and handshake per request (Connection: close)",
                       "uvicorn raw ASGI, TLS"),
}


def write_chart(path: Path, data: dict[str, Any]) -> bool:
    """One panel per timed suite: server CPU µs per request, medians with their ranges."""
    panels = [(TITLES[key][0], data[key]) for key in TITLES if key in data]
    if not panels:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 0.6, 5.0), squeeze=False)
    for ax, (title, summary) in zip(axes[0], panels):
        names = list(summary)
        medians = [summary[n]["cpu_us"] for n in names]
        low = [m - summary[n]["cpu_range"][0] for m, n in zip(medians, names)]
        high = [summary[n]["cpu_range"][1] - m for m, n in zip(medians, names)]
        colours = ["tab:orange" if n.startswith("uvicorn") else "tab:blue" for n in names]
        bars = ax.bar(range(len(names)), medians, 0.6, yerr=[low, high], capsize=3, color=colours)
        for bar, value, top in zip(bars, medians, (summary[n]["cpu_range"][1] for n in names)):
            # the label above the range's bar, not across it
            ax.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, top), xytext=(0, 3),
                        textcoords="offset points", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
        ax.set_title(title.replace(" (", "\n("), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0][0].set_ylabel("server CPU µs / request (lower is better)")
    fig.suptitle("Production flags: what they cost (medians and ranges; server on one CPU, wrk on the other)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def report(data: dict[str, Any], charted: bool) -> list[str]:
    settings = data.get("settings", {})
    machine = data.get("machine", {})
    lines = ["## Production flags", "",
             f"Generated by `python bench/production.py` ({settings.get('runs', '?')} interleaved runs × "
             f"{settings.get('duration', '?')} s of `wrk -t1` per configuration, server on CPU 0 and wrk on "
             "CPU 1, server CPU µs per request as the median of the runs, range in brackets; the "
             "instruction counts are callgrind's, exact and repeatable). See the script's docstring for "
             "what each configuration is.", ""]
    if machine:
        dates = "; ".join(f"{suite} {date}" for suite, date in data.get("dates", {}).items())
        lines += [f"- CPU: {machine.get('cpu', '?')}, {machine.get('logical_cpus', '?')} logical CPUs; "
                  f"kernel {machine.get('kernel', '?')}; measured: {dates or '?'}", ""]
    for key, (title, baseline) in TITLES.items():
        if key in data:
            lines += table(title, data[key], baseline).splitlines() + [""]
    if "instructions" in data:
        lines += instructions_table(data["instructions"]).splitlines() + [""]
    if charted:
        lines += ["![production flags](results_production.png)", ""]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=("metrics", "tls", "instructions", "all"), default="all",
                        help="all: metrics and tls (instructions runs only when asked for)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="1 run x 2 s of each")
    parser.add_argument("--out", type=Path, default=BENCH / "results_production.json")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md",
                        help="the markdown file whose 'production' section is rewritten")
    parser.add_argument("--report-from", type=Path, default=None, metavar="JSON",
                        help="measure nothing: rewrite the section and chart from this dump")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.duration = 1, 2
    if args.report_from:
        out = json.loads(args.report_from.read_text())
    else:
        out = json.loads(args.out.read_text()) if args.out.exists() else {}
        measure_suites(args, out)
        out["machine"] = describe_machine()
        args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    try:
        charted = write_chart(args.results.parent / "results_production.png", out)
    except ImportError:
        print("matplotlib is missing: no chart (pip install matplotlib)", file=sys.stderr)
        charted = False
    write_section(args.results, "production", "python bench/production.py", report(out, charted))
    print(f"wrote {args.results} (section production)" + (" and results_production.png" if charted else ""),
          file=sys.stderr)
    return 0


def measure_suites(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Run the suites asked for, replacing their figures (and dates) in ``out``."""
    dates = out.setdefault("dates", {})
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.suite == "instructions":
        ensure_tools(["valgrind"])
        out["instructions"] = summary_i = instructions_suite()
        dates["instructions"] = now
        print(instructions_table(summary_i))
        return
    out["settings"] = {k: v for k, v in vars(args).items() if k in ("runs", "duration", "connections")}
    ensure_tools(["wrk", "taskset"])
    if args.suite in ("metrics", "all"):
        summary = run_suite(metrics_configs(), args.runs, args.duration, args.connections, False)
        out["metrics"] = summary
        dates["metrics"] = now
        print(table(TITLES["metrics"][0], summary, TITLES["metrics"][1]))
    if args.suite in ("tls", "all"):
        import trustme
        with tempfile.TemporaryDirectory() as tmp:
            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1", "localhost")
            cert_path, key_path = f"{tmp}/cert.pem", f"{tmp}/key.pem"
            cert.cert_chain_pems[0].write_to_path(cert_path)
            cert.private_key_pem.write_to_path(key_path)
            configs = tls_configs(cert_path, key_path)
            keepalive = run_suite(configs, args.runs, args.duration, args.connections, False)
            print(table(TITLES["tls_keepalive"][0], keepalive, TITLES["tls_keepalive"][1]))
            tls_only = {k: v for k, v in configs.items() if "plain" not in k}
            handshakes = run_suite(tls_only, args.runs, args.duration, min(args.connections, 50), True)
            print(table(TITLES["tls_handshakes"][0], handshakes, TITLES["tls_handshakes"][1]))
            out["tls_keepalive"], out["tls_handshakes"] = keepalive, handshakes
            dates["tls"] = now


if __name__ == "__main__":
    sys.exit(main())
