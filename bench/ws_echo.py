#!/usr/bin/env python3
"""WebSocket echo: server CPU per message and memory per idle WebSocket,
fastsrv side by side with picows' echo server (the floor), uvicorn
(websockets, wsproto) and granian.

    python bench/ws_echo.py                        # everything, 3 runs x 10 s per scenario
    python bench/ws_echo.py --servers fastsrv-asgi,picows --runs 1 --seconds 3
    python bench/ws_echo.py --report-from bench/results_ws.json

Each server runs pinned to CPU 0 (``taskset -c 0``), the load generator
(bench/ws_load.py, picows' client) to CPU 1.  Scenarios: binary messages
of 32 bytes and of 64 KiB, 50 connections each keeping 8 messages in
flight; the figure is the server's CPU time (its whole process tree, from
/proc) over the measured window divided by the messages echoed in it,
median of the runs.  Memory: the server's RSS with 1,000 and then 10,000
idle WebSockets open (each has done its handshake and nothing since),
minus its RSS before, per connection.

Writes the section "WebSocket echo" of bench/RESULTS.md, the chart
``results_ws.png`` and ``results_ws.json`` beside it.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from harness import procs  # noqa: E402
from harness.machine import describe_machine, python_versions  # noqa: E402
from harness.report import write_section  # noqa: E402

SECTION = "ws-echo"
ASGI_APP = "bench.peers.ws_asgi_echo:app"


@dataclass(frozen=True)
class WsTarget:
    name: str
    argv: tuple[str, ...]
    description: str
    packages: tuple[str, ...]
    path: str = "/"


def fastsrv(app: str, interface: str) -> tuple[str, ...]:
    return ("{python}", "-m", "fastsrv", "run", app, "--interface", interface, "--lifespan", "off",
            "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning", "--keepalive-timeout", "600",
            "--ws-ping-interval", "0", "--app-dir", str(ROOT))


def uvicorn(ws: str) -> tuple[str, ...]:
    return ("{python}", "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools", "--ws", ws,
            "--ws-ping-interval", "0", "--no-access-log", "--log-level", "warning", "--lifespan", "off",
            "--host", "127.0.0.1", "--port", "{port}", "--app-dir", str(ROOT), ASGI_APP)


TARGETS = {t.name: t for t in (
    WsTarget("picows", ("{python}", str(BENCH / "peers" / "ws_picows_echo.py"), "--port", "{port}"),
             "picows' echo server: the frame callback sends the payload back (the floor)", ("picows", "uvloop")),
    WsTarget("fastsrv-native", fastsrv("bench.peers.ws_native_echo:app", "native"),
             "fastsrv, a native `@app.websocket` echo handler (bench/peers/ws_native_echo.py)",
             ("fastsrv", "uvloop")),
    WsTarget("fastsrv-asgi", fastsrv(ASGI_APP, "asgi"),
             "fastsrv, the raw ASGI echo app (bench/peers/ws_asgi_echo.py)", ("fastsrv", "uvloop")),
    WsTarget("uvicorn-websockets", uvicorn("websockets"), "uvicorn --ws websockets, the raw ASGI echo app",
             ("uvicorn", "websockets", "uvloop")),
    WsTarget("uvicorn-wsproto", uvicorn("wsproto"), "uvicorn --ws wsproto, the raw ASGI echo app",
             ("uvicorn", "wsproto", "uvloop")),
    WsTarget("granian", ("{python}", "-m", "granian", "--interface", "asgi", "--loop", "uvloop", "--workers", "1",
                         "--runtime-threads", "1", "--log-level", "warning", "--backpressure", "20000",
                         "--host", "127.0.0.1", "--port", "{port}", "--working-dir", str(ROOT), ASGI_APP),
             "granian (1 worker, 1 runtime thread), the raw ASGI echo app", ("granian",)),
)}
SIZES = (32, 65536)
FLOOR = "picows"


@dataclass
class Result:
    name: str
    description: str
    versions: dict[str, str] = field(default_factory=dict)
    runs: dict[str, list[dict]] = field(default_factory=dict)      # size -> runs
    memory: dict[str, float] = field(default_factory=dict)         # connections -> bytes per connection
    error: str = ""

    def cpu_us(self, size: int) -> float | None:
        runs = self.runs.get(str(size))
        return statistics.median(r["cpu_us"] for r in runs) if runs else None

    def rate(self, size: int) -> float | None:
        runs = self.runs.get(str(size))
        return statistics.median(r["rate"] for r in runs) if runs else None


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} [ws] {message}", file=sys.stderr, flush=True)


def handshake_ok(port: int, path: str) -> bool:
    key = base64.b64encode(os.urandom(16)).decode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
            return s.recv(4096).startswith(b"HTTP/1.1 101")
    except OSError:
        return False


class Server:
    def __init__(self, target: WsTarget, python: str, nofile: int) -> None:
        self.port = procs.free_port()
        argv = [part.format(python=python, port=self.port) for part in target.argv]
        self.argv = ["prlimit", f"--nofile={nofile}:{nofile}", "taskset", "-c", "0", *argv]
        self.log = open(os.devnull, "wb")
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while not handshake_ok(self.port, target.path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{target.name} did not start: {shlex.join(self.argv)}")
            time.sleep(0.2)

    def cpu(self) -> float:
        return procs.tree_cpu_seconds(self.proc.pid)

    def rss(self) -> int:
        return procs.tree_rss_bytes(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
        self.log.close()


def echo_run(server: Server, size: int, args: argparse.Namespace) -> dict:
    """One measured load run: the server's CPU over exactly the window the
    load tool counts echoes in."""
    argv = ["taskset", "-c", "1", sys.executable, str(BENCH / "ws_load.py"), f"ws://127.0.0.1:{server.port}/",
            "--connections", str(args.connections), "--in-flight", str(args.in_flight), "--size", str(size),
            "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    load = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert load.stdout is not None
    assert load.stdout.readline().strip() == "connected", "the load tool could not connect"
    time.sleep(args.warmup)
    cpu0 = server.cpu()
    time.sleep(args.seconds)
    cpu1 = server.cpu()
    result = json.loads(load.stdout.read().strip().splitlines()[-1])
    load.wait(30)
    result["cpu_s"] = cpu1 - cpu0
    result["cpu_us"] = (cpu1 - cpu0) * 1e6 / max(result["messages"], 1)
    return result


async def _idle(port: int, n: int, keep: list) -> None:
    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        keep.append(writer)

    for start in range(0, n, 200):
        await asyncio.gather(*(one() for _ in range(min(200, n - start))))


def idle_memory(server: Server, steps: tuple[int, ...]) -> dict[str, float]:
    keep: list = []
    base = server.rss()
    out: dict[str, float] = {}
    loop = asyncio.new_event_loop()
    try:
        for n in steps:
            loop.run_until_complete(_idle(server.port, n - len(keep), keep))
            time.sleep(1.0)
            out[str(n)] = (server.rss() - base) / n
    finally:
        for writer in keep:
            writer.transport.abort()
        loop.close()
    return out


def bench(target: WsTarget, args: argparse.Namespace, nofile: int) -> Result:
    result = Result(target.name, target.description)
    result.versions = python_versions(args.python, target.packages, ROOT)
    log(f"=== {target.name}: {target.description}")
    try:
        server = Server(target, args.python, nofile)
        try:
            for size in SIZES:
                result.runs[str(size)] = []
                for i in range(args.runs):
                    run = echo_run(server, size, args)
                    result.runs[str(size)].append(run)
                    log(f"  {size} B run {i + 1}/{args.runs}: {run['rate']:,.0f} messages/s, "
                        f"{run['cpu_us']:.2f} server CPU µs/message, errors {run['errors']}")
        finally:
            server.stop()
        if not args.skip_memory:
            server = Server(target, args.python, nofile)
            try:
                result.memory = idle_memory(server, args.memory)
                log("  idle: " + ", ".join(f"{int(v):,} B/connection at {k}" for k, v in result.memory.items()))
            finally:
                server.stop()
    except Exception as exc:  # one server failing must not lose the others
        result.error = f"{type(exc).__name__}: {exc}"
        log(f"  failed: {result.error}")
    return result


def report(results: list[Result], meta: dict, chart: bool) -> list[str]:
    floor = next((r for r in results if r.name == FLOOR), None)
    lines = ["## WebSocket echo", "",
             f"Generated by `python bench/ws_echo.py` on {meta['date']}: {meta['runs']} run(s) × "
             f"{meta['seconds']:g} s per scenario after a {meta['warmup']:g} s warm-up, "
             f"{meta['connections']} connections × {meta['in_flight']} binary messages in flight, server on "
             "CPU 0, the load generator (bench/ws_load.py, picows' client) on CPU 1; server CPU µs per echoed "
             "message, median of the runs. Idle memory: the server's RSS with N idle WebSockets open minus "
             "its RSS before, per connection.", "",
             f"- CPU: {meta['machine']['cpu']}; kernel {meta['machine']['kernel']}", "",
             "| server | what | versions |", "|---|---|---|"]
    lines += [f"| {r.name} | {r.description} | {', '.join(f'{k} {v}' for k, v in r.versions.items())} |"
              for r in results]
    lines += ["", "| server | 32 B: CPU µs/msg | vs picows | msgs/s | 64 KiB: CPU µs/msg | vs picows | msgs/s "
              "| RSS/idle WS at 1,000 | at 10,000 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if r.error:
            lines.append(f"| {r.name} | failed: {r.error} |||||||")
            continue
        cells = []
        for size in SIZES:
            cpu, ref = r.cpu_us(size), floor.cpu_us(size) if floor and not floor.error else None
            cells += [f"{cpu:.2f}" if cpu else "–", f"{cpu / ref:.2f}×" if cpu and ref else "–",
                      f"{r.rate(size):,.0f}" if r.rate(size) else "–"]
        cells += [f"{r.memory[k]:,.0f} B" if k in r.memory else "–" for k in ("1000", "10000")]
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    if chart:
        lines += ["", "![WebSocket echo](results_ws.png)"]
    lines.append("")
    return lines


def write_chart(path: Path, results: list[Result]) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if not r.error]
    if not ok:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    colours = [plt.get_cmap("tab10")(i) for i in range(len(ok))]
    panels = [(f"server CPU µs per message, {s // 1024} KiB" if s >= 1024 else f"server CPU µs per message, {s} B",
               [r.cpu_us(s) or 0 for r in ok]) for s in SIZES]
    panels.append(("RSS per idle WebSocket at 10,000 (bytes)", [r.memory.get("10000", 0) for r in ok]))
    for ax, (title, values) in zip(axes, panels):
        bars = ax.bar([r.name for r in ok], values, color=colours)
        for bar, value in zip(bars, values):
            ax.annotate(f"{value:,.1f}" if value < 1000 else f"{value:,.0f}",
                        (bar.get_x() + bar.get_width() / 2, value), xytext=(0, 2),
                        textcoords="offset points", ha="center", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelrotation=25)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    fig.suptitle("WebSocket echo (lower is better; server on one CPU, picows client on the other)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default=",".join(TARGETS))
    ap.add_argument("--python", default=sys.executable, help="interpreter for the servers (default: this one)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--in-flight", type=int, default=8)
    ap.add_argument("--memory", default="1000,10000", help="idle WebSocket counts, cumulative")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--out-dir", type=Path, default=BENCH)
    ap.add_argument("--report-from", type=Path, default=None, metavar="JSON")
    args = ap.parse_args()
    args.memory = tuple(int(n) for n in args.memory.split(","))
    if args.report_from:
        dump = json.loads(args.report_from.read_text())
        results = [Result(**r) for r in dump["results"]]
        meta = dump["meta"]
    else:
        names = [n.strip() for n in args.servers.split(",") if n.strip()]
        unknown = [n for n in names if n not in TARGETS]
        if unknown:
            log(f"unknown server(s) {unknown}; known: {list(TARGETS)}")
            return 2
        nofile = procs.raise_nofile_limit(max(args.memory) * 2 + 1000)
        os.sched_setaffinity(0, {1})
        results = [bench(TARGETS[n], args, nofile) for n in names]
        meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": describe_machine(),
                "runs": args.runs, "seconds": args.seconds, "warmup": args.warmup,
                "connections": args.connections, "in_flight": args.in_flight}
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / "results_ws.json").write_text(json.dumps(
            {"meta": meta, "results": [r.__dict__ for r in results]}, indent=2) + "\n")
    charted = write_chart(args.out_dir / "results_ws.png", results)
    write_section(args.out_dir / "RESULTS.md", SECTION, "python bench/ws_echo.py", report(results, meta, charted))
    log(f"wrote {args.out_dir / 'RESULTS.md'} (section {SECTION})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
