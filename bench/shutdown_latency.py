"""Shutdown latency, fastsrv beside uvicorn, on real processes and signals.

For each server and run: open ``--idle`` keep-alive connections (each has
made one request), start one request that takes 500 ms, send SIGTERM, then
measure

* idle close: from SIGTERM until the last idle connection sees its close;
* exit after last response: from the in-flight response's arrival until the
  process has exited.

Then the drain under load (``drain_under_load.py``) for fastsrv.  Writes
``bench/SHUTDOWN.md`` and ``bench/shutdown.png``.

    python bench/shutdown_latency.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.drain_under_load import ROOT, _free_port, drain_under_load, wait_listening  # noqa: E402

SERVERS = {
    "fastsrv": ["{python}", "-m", "fastsrv", "run", "tests.apps.lifecycle:plain", "--port", "{port}",
                "--log-level", "warning"],
    "uvicorn": ["{python}", "-m", "uvicorn", "bench.peers.asgi_slow:app", "--port", "{port}",
                "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
                "--timeout-graceful-shutdown", "5"],
}


@dataclass
class Latency:
    idle_close_ms: float
    exit_after_last_response_ms: float
    exit_status: int


def _request(port: int, path: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    return s


def _read_response(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the body")
        body += chunk
    return head


def measure(name: str, idle: int) -> Latency:
    port = _free_port()
    argv = [a.format(python=sys.executable, port=port) for a in SERVERS[name]]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conns: list[socket.socket] = []
    try:
        wait_listening(port, proc, name)
        for _ in range(idle):
            s = _request(port, "/")
            _read_response(s)
            conns.append(s)
        busy = _request(port, "/slow?ms=500")
        time.sleep(0.1)
        answered: list[float] = []
        reader = threading.Thread(target=lambda: (_read_response(busy), answered.append(time.monotonic())),
                                  daemon=True)
        reader.start()
        sel = selectors.DefaultSelector()
        for s in conns:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        open_ = set(conns)
        last_close = float("nan")
        while open_ and time.monotonic() - t0 < 10:
            for key, _ in sel.select(timeout=0.5):
                try:
                    eof = key.fileobj.recv(65536) == b""
                except ConnectionError:
                    eof = True
                if eof:
                    last_close = time.monotonic() if len(open_) == 1 else last_close
                    sel.unregister(key.fileobj)
                    open_.discard(key.fileobj)
        reader.join(10)
        status = proc.wait(15)
        exited = time.monotonic()
        return Latency((last_close - t0) * 1000, (exited - answered[0]) * 1000 if answered else float("nan"),
                       status)
    finally:
        for s in conns:
            s.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _chart(medians: dict[str, Latency], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(medians)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, attr, title in ((axes[0], "idle_close_ms", "SIGTERM → idle keep-alive closed (ms)"),
                            (axes[1], "exit_after_last_response_ms", "last in-flight response → exit (ms)")):
        values = [getattr(medians[n], attr) for n in names]
        bars = ax.bar(names, values, color=["#2a7ab9", "#b9772a"][: len(names)])
        ax.bar_label(bars, fmt="%.1f")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, max(values) * 1.25 + 1)
    fig.suptitle("Shutdown latency, median of runs (lower is better)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=int, default=100)
    parser.add_argument("--servers", default="fastsrv,uvicorn")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "SHUTDOWN.md"))
    args = parser.parse_args()
    results: dict[str, list[Latency]] = {}
    for name in args.servers.split(","):
        for k in range(args.runs):
            r = measure(name, args.idle)
            results.setdefault(name, []).append(r)
            print(f"{name} run {k + 1}/{args.runs}: idle close {r.idle_close_ms:.1f} ms, "
                  f"exit after last response {r.exit_after_last_response_ms:.1f} ms, "
                  f"status {r.exit_status}", flush=True)
    medians = {n: Latency(statistics.median(r.idle_close_ms for r in rs),
                          statistics.median(r.exit_after_last_response_ms for r in rs),
                          rs[0].exit_status) for n, rs in results.items()}
    loads = []
    for k in range(args.runs):
        run = drain_under_load(connections=50, seconds=3.0, signal_after=1.0)
        loads.append(run)
        print(f"drain under load run {k + 1}/{args.runs}: completed {run.completed}, "
              f"after SIGTERM {run.completed_after_signal}, not taken {run.not_taken}, cut {run.cut}, "
              f"failed {run.failed}, exit {run.exit_status}", flush=True)
    png = os.path.join(os.path.dirname(args.out), "shutdown.png")
    _chart(medians, png)
    lines = [
        "# Shutdown latency",
        "",
        f"`python bench/shutdown_latency.py --runs {args.runs} --idle {args.idle}` — "
        f"{args.idle} idle keep-alive connections and one 500 ms request in flight when SIGTERM "
        "arrives; medians of the runs. uvicorn runs `bench/peers/asgi_slow.py` with uvloop + "
        "httptools and `--timeout-graceful-shutdown 5`.",
        "",
        "![shutdown latency](shutdown.png)",
        "",
        "| server | idle connections closed after SIGTERM (ms) | exit after the last in-flight response (ms) | exit status |",
        "|---|---|---|---|",
    ]
    for n, m in medians.items():
        lines.append(f"| {n} | {m.idle_close_ms:.1f} | {m.exit_after_last_response_ms:.1f} | {m.exit_status} |")
    lines += [
        "",
        "## SIGTERM under load (fastsrv)",
        "",
        "`bench/drain_under_load.py`: 50 keep-alive clients (GET /, GET /sleep?ms=20, POST /echo), "
        "SIGTERM after 1 s of 3. *Not taken*: refused after the listener closed, or closed idle "
        "before the server read the request; *cut*: a response started and not finished.",
        "",
        "| run | completed | completed after SIGTERM | not taken | cut | failed | exit |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, r in enumerate(loads, 1):
        lines.append(f"| {k} | {r.completed} | {r.completed_after_signal} | {r.not_taken} | {r.cut} | "
                     f"{r.failed} | {r.exit_status} |")
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
