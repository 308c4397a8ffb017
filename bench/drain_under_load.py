"""A graceful shutdown under load: nothing the server accepted is lost.

Starts ``fastsrv run fastsrv.demo:app`` in a subprocess, drives it from
``--connections`` keep-alive clients with a mix of requests (``GET /``,
``GET /sleep?ms=20``, ``POST /echo``), sends SIGTERM part-way, and classifies
every request the clients sent:

* completed — a whole response arrived;
* not taken — the connection was refused or closed before any byte of a
  response (the server never read the request: after the listener closed,
  or an idle keep-alive connection closed as the request was being sent);
* cut — part of a response arrived, then the connection ended (must be 0);
* failed — a non-2xx response (must be 0).

Also measured: how long after SIGTERM the idle connections were closed, and
how long after the last response the process exited.

    python bench/drain_under_load.py --connections 50 --seconds 3 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n",
    b"GET /sleep?ms=20 HTTP/1.1\r\nHost: bench\r\n\r\n",
    b'POST /echo HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n'
    b'Content-Length: 17\r\n\r\n{"hello":"world"}',
]


@dataclass
class DrainRun:
    completed: int = 0
    not_taken: int = 0
    cut: int = 0
    failed: int = 0
    completed_after_signal: int = 0
    exit_status: int | None = None
    last_response_to_exit_ms: float = 0.0
    signal_to_exit_ms: float = 0.0
    server_log: str = field(default="", repr=False)

    @property
    def lost(self) -> int:
        return self.cut + self.failed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cut(Exception):
    """Part of a response arrived, then the connection ended."""


def wait_listening(port: int, proc: subprocess.Popen, name: str, timeout: float = 10) -> None:
    """Return once ``port`` accepts connections; raise if ``proc`` dies or
    ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{name} did not start") from None
            time.sleep(0.02)


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Return the status of a whole response.

    ``ConnectionError``/``IncompleteReadError`` with nothing received means
    the request was not taken; :class:`Cut` once any byte has arrived.
    """
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise Cut() from exc
        raise
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    try:
        await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise Cut() from exc
    return status


async def _client(port: int, stop_at: float, run: DrainRun, signalled: list[float], k: int) -> None:
    i = k
    while time.monotonic() < stop_at:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            run.not_taken += 1
            return                      # the listener is closed: the server is leaving
        try:
            while time.monotonic() < stop_at:
                request = REQUESTS[i % len(REQUESTS)]
                i += 1
                try:
                    writer.write(request)
                    status = await _read_response(reader)
                except Cut:
                    run.cut += 1
                    break
                except (asyncio.IncompleteReadError, ConnectionError):
                    run.not_taken += 1
                    break
                if 200 <= status < 300:
                    run.completed += 1
                    if signalled:
                        run.completed_after_signal += 1
                        signalled[1:] = [time.monotonic()]
                else:
                    run.failed += 1
        finally:
            writer.close()


async def _drive(port: int, connections: int, seconds: float, signal_after: float,
                 proc: subprocess.Popen, run: DrainRun) -> tuple[float, float]:
    stop_at = time.monotonic() + seconds
    signalled: list[float] = []

    async def send_signal() -> None:
        await asyncio.sleep(signal_after)
        signalled.append(time.monotonic())
        proc.send_signal(signal.SIGTERM)

    await asyncio.gather(send_signal(), *(_client(port, stop_at, run, signalled, k)
                                          for k in range(connections)))
    last_response = signalled[-1] if len(signalled) > 1 else signalled[0]
    return signalled[0], last_response


def drain_under_load(connections: int = 50, seconds: float = 3.0, signal_after: float = 1.0,
                     exit_wait_time: float = 5.0, python: str = sys.executable) -> DrainRun:
    """One run: load, SIGTERM after ``signal_after`` s, classify every request."""
    port = _free_port()
    proc = subprocess.Popen(
        [python, "-m", "fastsrv", "run", "fastsrv.demo:app", "--port", str(port),
         "--exit-wait-time", str(exit_wait_time), "--log-level", "info"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    run = DrainRun()
    try:
        wait_listening(port, proc, "fastsrv")
        signalled, last_response = asyncio.run(
            _drive(port, connections, seconds, signal_after, proc, run))
        run.exit_status = proc.wait(exit_wait_time + 15)
        exited = time.monotonic()
        run.signal_to_exit_ms = (exited - signalled) * 1000
        run.last_response_to_exit_ms = (exited - last_response) * 1000
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        run.server_log = proc.stdout.read().decode("utf-8", "replace")
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--signal-after", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", help="write every run's figures here")
    args = parser.parse_args()
    runs = []
    for k in range(args.runs):
        run = drain_under_load(args.connections, args.seconds, args.signal_after)
        runs.append(run)
        print(f"run {k + 1}/{args.runs}: completed {run.completed} "
              f"(after SIGTERM {run.completed_after_signal}), not taken {run.not_taken}, "
              f"cut {run.cut}, failed {run.failed}, exit {run.exit_status}, "
              f"SIGTERM->exit {run.signal_to_exit_ms:.1f} ms, "
              f"last response->exit {run.last_response_to_exit_ms:.1f} ms", flush=True)
    lost = sum(r.lost for r in runs)
    print(f"\ntotal completed {sum(r.completed for r in runs)}, cut {sum(r.cut for r in runs)}, "
          f"failed {sum(r.failed for r in runs)}; median last response->exit "
          f"{statistics.median(r.last_response_to_exit_ms for r in runs):.1f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{k: v for k, v in asdict(r).items() if k != "server_log"} for r in runs], f, indent=1)
    return 1 if lost or any(r.exit_status != 0 for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
