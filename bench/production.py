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

Prints a markdown table per suite and writes bench/results_production.json
(``--out`` elsewhere).  It does not touch README.md or RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
from harness.procs import free_port, tree_cpu_seconds  # noqa: E402
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=("metrics", "tls", "instructions", "all"), default="all",
                        help="all: metrics and tls (instructions runs only when asked for)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="1 run x 2 s of each")
    parser.add_argument("--out", type=Path, default=BENCH / "results_production.json")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.duration = 1, 2
    out: dict[str, Any] = {"settings": vars(args) | {"out": str(args.out)}}
    if args.suite == "instructions":
        ensure_tools(["valgrind"])
        out["instructions"] = summary_i = instructions_suite()
        print(instructions_table(summary_i))
        args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
        return 0
    ensure_tools(["wrk", "taskset"])
    if args.suite in ("metrics", "all"):
        summary = run_suite(metrics_configs(), args.runs, args.duration, args.connections, False)
        out["metrics"] = summary
        print(table("Metrics and proxy headers on the native hello world (keep-alive)", summary, "defaults"))
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
            print(table("TLS, keep-alive requests", keepalive, "uvicorn raw ASGI, TLS"))
            tls_only = {k: v for k, v in configs.items() if "plain" not in k}
            handshakes = run_suite(tls_only, args.runs, args.duration, min(args.connections, 50), True)
            print(table("TLS, a new connection and handshake per request (Connection: close)", handshakes,
                        "uvicorn raw ASGI, TLS"))
            out["tls_keepalive"], out["tls_handshakes"] = keepalive, handshakes
    args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
