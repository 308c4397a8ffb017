#!/usr/bin/env python3
"""A bounded soak: many mixed requests against a fastsrv subprocess, and
whether anything grows.

Starts ``fastsrv run tests.apps.hostile:app`` (or, with ``--app``, the same
routes as raw ASGI, ``tests.apps.hostile_asgi:app``) and drives it from
``--connections`` concurrent clients (asyncio on uvloop), each looping over a
weighted mix: keep-alive runs of ``GET /``, pipelined batches of 64,
``Content-Length`` and chunked ``POST /echo`` (the echo is checked), a 256 kB
response, malformed requests (answered 400/413/414/431/505 and closed) and
requests abandoned half-way with a FIN or an RST.  Every answer is checked;
anything else counts as an unexpected error.

Reported: requests answered, unexpected errors (must be 0), the server's RSS
after warm-up (the first fifth of the run), in the middle and at the end
(their growth must stay under ``--max-growth-mb``), its open file descriptors
before the clients and after they are gone (must be equal), and the core's
connection objects created and freed (all freed but the one asking), and
for an ASGI app its request/response exchanges too.

    python bench/soak.py                 # 120 s
    python bench/soak.py --quick         # 15 s
    python bench/soak.py --seconds 600 --connections 16
    python bench/soak.py --quick --app tests.apps.hostile_asgi:app --asgi-eager off

Exit status 0 when every check held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import uvloop  # noqa: E402

from bench.harness.procs import free_port, rss_bytes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1024 * 1024
NATIVE_APP = "tests.apps.hostile:app"
ASGI_APP = "tests.apps.hostile_asgi:app"
GET = b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n"
PIPELINE_DEPTH = 64
MALFORMED: List[Tuple[bytes, int]] = [
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400),
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: v\r\n" * 101 + b"\r\n", 431),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999\r\n\r\n", 413),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
]


class Unexpected(Exception):
    """An answer the soak did not expect."""


@dataclass
class Soak:
    """What one soak run measured."""

    seconds: float = 0.0
    requests: int = 0
    by_scenario: Dict[str, int] = field(default_factory=dict)
    errors: int = 0
    error_samples: List[str] = field(default_factory=list)
    rss: Dict[str, int] = field(default_factory=dict)          # warm, middle, end
    fds: Dict[str, int] = field(default_factory=dict)          # before, after
    connections: Dict[str, int] = field(default_factory=dict)  # the core's counters at the end
    server_exit: Optional[int] = None

    @property
    def rss_growth(self) -> int:
        return self.rss.get("end", 0) - self.rss.get("warm", 0)

    @property
    def leaked_connections(self) -> int:
        c = self.connections
        return c.get("connections_created", 0) - c.get("connections_freed", 0) - 1   # the asking one

    @property
    def leaked_asgi_cycles(self) -> int:
        c = self.connections
        created = c.get("asgi_cycles_created", 0)
        return created - c.get("asgi_cycles_freed", 0) - (1 if created else 0)     # the asking one

    def failures(self, max_growth: int) -> List[str]:
        out = []
        if self.errors:
            out.append(f"{self.errors} unexpected errors, e.g. {self.error_samples[:3]}")
        if self.rss_growth > max_growth:
            out.append(f"RSS grew {self.rss_growth / MIB:.1f} MB after warm-up (limit {max_growth / MIB:.0f})")
        if self.fds.get("after") != self.fds.get("before"):
            out.append(f"open fds {self.fds.get('before')} before, {self.fds.get('after')} after")
        if self.leaked_connections:
            out.append(f"{self.leaked_connections} connection objects not freed ({self.connections})")
        if self.leaked_asgi_cycles:
            out.append(f"{self.leaked_asgi_cycles} ASGI exchanges not freed ({self.connections})")
        return out


# ---- one connection's worth of client --------------------------------------------------


async def read_response(reader: asyncio.StreamReader) -> Tuple[int, Dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            body += (await reader.readexactly(size + 2))[:-2]
            if size == 0:
                break
    else:
        body = b"" if status in (204, 304) else await reader.read()
    return status, headers, body


def chunked(body: bytes, rnd: random.Random) -> bytes:
    out, i = b"", 0
    while i < len(body):
        n = rnd.randint(1, max(1, len(body) - i))
        out += b"%x\r\n" % n + body[i:i + n] + b"\r\n"
        i += n
    return out + b"0\r\n\r\n"


class Client:
    def __init__(self, port: int, soak: Soak, seed: int) -> None:
        self.port = port
        self.soak = soak
        self.rnd = random.Random(seed)
        self.conn: Optional[Tuple[asyncio.StreamReader, asyncio.StreamWriter]] = None

    async def connection(self) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.conn is None:
            self.conn = await asyncio.open_connection("127.0.0.1", self.port, limit=4 * MIB)
        return self.conn

    def drop(self, rst: bool = False) -> None:
        if self.conn is not None:
            writer = self.conn[1]
            if rst:
                writer.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()
            self.conn = None

    def count(self, scenario: str, n: int = 1) -> None:
        self.soak.requests += n
        self.soak.by_scenario[scenario] = self.soak.by_scenario.get(scenario, 0) + n

    async def expect_ok(self, reader: asyncio.StreamReader, body: bytes = b"ok") -> None:
        status, _, got = await read_response(reader)
        if status != 200 or got != body:
            raise Unexpected(f"{status} {got[:60]!r} instead of 200 {body[:60]!r}")

    async def keep_alive(self) -> None:
        reader, writer = await self.connection()
        for _ in range(20):
            writer.write(GET)
            await self.expect_ok(reader)
            self.count("keep-alive")

    async def pipelined(self) -> None:
        reader, writer = await self.connection()
        writer.write(GET * PIPELINE_DEPTH)
        for _ in range(PIPELINE_DEPTH):
            await self.expect_ok(reader)
        self.count("pipelined", PIPELINE_DEPTH)

    async def post(self) -> None:
        reader, writer = await self.connection()
        body = self.rnd.randbytes(self.rnd.randint(0, 20000))
        if self.rnd.random() < 0.5:
            writer.write(b"POST /echo HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + chunked(body, self.rnd))
            scenario = "chunked"
        else:
            writer.write(b"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            scenario = "content-length"
        await self.expect_ok(reader, body)
        self.count(scenario)

    async def large(self) -> None:
        reader, writer = await self.connection()
        writer.write(b"GET /large?kb=256 HTTP/1.1\r\nHost: soak\r\n\r\n")
        status, _, body = await read_response(reader)
        if status != 200 or len(body) != 256 * 1024:
            raise Unexpected(f"/large: {status}, {len(body)} bytes")
        self.count("large")

    async def malformed(self) -> None:
        self.drop()
        reader, writer = await self.connection()
        data, expected = self.rnd.choice(MALFORMED)
        writer.write(data)
        status, headers, _ = await read_response(reader)
        if status != expected or headers.get(b"connection") != b"close":
            raise Unexpected(f"malformed request answered {status} {headers} instead of {expected}")
        if await reader.read() != b"":
            raise Unexpected("bytes after the answer to a malformed request")
        self.drop()
        self.count("malformed")

    async def abandoned(self) -> None:
        self.drop()
        reader, writer = await self.connection()
        writer.write(self.rnd.choice([b"GET / HTTP/1.1\r\nHost: so",
                                      b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc",
                                      b"GET /large?kb=1024 HTTP/1.1\r\nHost: a\r\n\r\n"]))
        await writer.drain()
        self.drop(rst=self.rnd.random() < 0.5)
        self.count("abandoned")

    SCENARIOS = [("keep_alive", 20), ("pipelined", 30), ("post", 20), ("large", 3), ("malformed", 4),
                 ("abandoned", 4)]

    async def run(self, until: float) -> None:
        names = [name for name, _ in self.SCENARIOS]
        weights = [w for _, w in self.SCENARIOS]
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            name = self.rnd.choices(names, weights)[0]
            try:
                await asyncio.wait_for(getattr(self, name)(), 10)
                if self.rnd.random() < 0.05:
                    self.drop()
            except (Unexpected, OSError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                    asyncio.LimitOverrunError, ValueError) as e:
                self.soak.errors += 1
                if len(self.soak.error_samples) < 10:
                    self.soak.error_samples.append(f"{name}: {e!r}")
                self.drop()
        self.drop()


# ---- the run ------------------------------------------------------------------------------


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def fetch_counters(port: int) -> Dict[str, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /debug/counters HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
    status, _, body = await read_response(reader)
    writer.close()
    return json.loads(body)


async def drive(port: int, pid: int, seconds: float, connections: int, soak: Soak, progress: float) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    until = started + seconds
    clients = [asyncio.ensure_future(Client(port, soak, seed).run(until)) for seed in range(connections)]
    marks = {"warm": started + max(seconds * 0.2, 2.0), "middle": started + seconds * 0.6}
    next_print, last_requests = started + progress, 0
    while not all(c.done() for c in clients):
        await asyncio.sleep(0.25)
        now = loop.time()
        for name, at in list(marks.items()):
            if now >= at:
                soak.rss[name] = rss_bytes(pid)
                del marks[name]
        if now >= next_print:
            rate = (soak.requests - last_requests) / progress
            last_requests = soak.requests
            print(f"{now - started:6.0f} s  {soak.requests:>9,} requests ({rate:,.0f}/s)  "
                  f"errors {soak.errors}  RSS {rss_bytes(pid) / MIB:.1f} MB  fds {open_fds(pid)}", flush=True)
            next_print += progress
    soak.rss["end"] = rss_bytes(pid)
    await asyncio.gather(*clients)


def run_soak(seconds: float = 120, connections: int = 8, progress: float = 5.0,
             app: str = NATIVE_APP, asgi_eager: str = "auto") -> Soak:
    """Run the soak against a fresh server subprocess serving ``app`` (the
    hostile routes, native or ASGI); the measurements."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fastsrv", "run", app, "--asgi-eager", asgi_eager,
                             "--port", str(port), "--log-level", "warning"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    soak = Soak(seconds=seconds)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the server did not start")
                time.sleep(0.05)
        time.sleep(0.2)
        soak.fds["before"] = open_fds(proc.pid)
        loop = uvloop.new_event_loop()
        try:
            loop.run_until_complete(drive(port, proc.pid, seconds, connections, soak, progress))
            # the clients are gone: the server's fds come back within a sweep
            deadline = time.monotonic() + 5
            while open_fds(proc.pid) != soak.fds["before"] and time.monotonic() < deadline:
                time.sleep(0.05)
            soak.fds["after"] = open_fds(proc.pid)
            soak.connections = loop.run_until_complete(fetch_counters(port))
        finally:
            loop.close()
    finally:
        proc.terminate()
        try:
            soak.server_exit = proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return soak


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--quick", action="store_true", help="a 15 s run")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--app", default=NATIVE_APP,
                    help=f"the server's app: {NATIVE_APP} (default) or the same routes as ASGI, {ASGI_APP}")
    ap.add_argument("--asgi-eager", choices=("auto", "on", "off"), default="auto",
                    help="for an ASGI app: run requests in place until they suspend (on) or in a Task (off)")
    ap.add_argument("--max-growth-mb", type=float, default=8.0,
                    help="RSS growth allowed from warm-up to the end (default 8 MB)")
    args = ap.parse_args(argv)
    seconds = 15 if args.quick else args.seconds
    print(f"soak: {seconds:.0f} s, {args.connections} connections, server {args.app}", flush=True)
    soak = run_soak(seconds, args.connections, app=args.app, asgi_eager=args.asgi_eager)
    print(f"requests: {soak.requests:,} ({soak.requests / seconds:,.0f}/s); by scenario: "
          + ", ".join(f"{k} {v:,}" for k, v in sorted(soak.by_scenario.items())))
    print(f"unexpected errors: {soak.errors}" + (f" e.g. {soak.error_samples[:3]}" if soak.errors else ""))
    print("RSS: " + ", ".join(f"{k} {v / MIB:.1f} MB" for k, v in soak.rss.items())
          + f"; growth after warm-up {soak.rss_growth / MIB:+.2f} MB")
    print(f"open fds: {soak.fds.get('before')} before the clients, {soak.fds.get('after')} after")
    print(f"connection objects: {soak.connections.get('connections_created')} created, "
          f"{soak.connections.get('connections_freed')} freed (1 is the one asking)")
    if soak.connections.get("asgi_cycles_created"):
        print(f"ASGI exchanges: {soak.connections['asgi_cycles_created']} created, "
              f"{soak.connections.get('asgi_cycles_freed')} freed (1 is the one asking)")
    failures = soak.failures(int(args.max_growth_mb * MIB))
    for failure in failures:
        print("FAIL: " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
