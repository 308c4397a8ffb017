#!/usr/bin/env python3
"""WebSocket clients that survive a rolling restart: each sends a numbered
message every ``--interval`` ms, expects ``ack:N`` back, and when its
connection ends (a Close frame, or the TCP connection dropped without one)
reconnects at once and re-sends every message not yet acknowledged.

    python bench/ws_rolling_load.py ws://127.0.0.1:8080/ --clients 100 --interval 50

Runs until SIGINT, then waits ``--drain`` seconds for the last
acknowledgements and prints one JSON object: messages ``sent`` (distinct),
``acked``, ``resent`` (sent again after a connection ended before their
ack), ``lost`` (never acknowledged), the closes seen by code (``1006`` for
a connection that ended without a Close frame), failed connection attempts,
and every reconnection's time (ms, from the end of a connection to the next
101).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import struct
import time
from collections import Counter


def frame(opcode: int, payload: bytes) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    head = struct.pack("!BB", 0x80 | opcode, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Stats:
    def __init__(self) -> None:
        self.sent = 0
        self.acked = 0
        self.resent = 0
        self.closes: Counter[int] = Counter()
        self.connect_failures: Counter[str] = Counter()
        self.reconnect_ms: list[float] = []


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    return b0 & 0x0F, await reader.readexactly(n)


class Client:
    def __init__(self, host: str, port: int, path: str, interval: float, stats: Stats, stop: asyncio.Event) -> None:
        self.host, self.port, self.path = host, port, path
        self.interval, self.stats, self.stop = interval, stats, stop
        self.next_seq = 0
        self.unacked: dict[int, bytes] = {}

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                key = base64.b64encode(os.urandom(16)).decode()
                writer.write(f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                             "Sec-WebSocket-Version: 13\r\n\r\n".encode())
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                if head.startswith(b"HTTP/1.1 101"):
                    return reader, writer
                self.stats.connect_failures[head.split(b" ")[1].decode()] += 1
                writer.close()
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
                self.stats.connect_failures[type(exc).__name__] += 1
            if self.stop.is_set():
                raise asyncio.CancelledError
            await asyncio.sleep(0.05)

    async def run(self) -> None:
        reader, writer = await self.connect()
        while True:
            receiving = asyncio.ensure_future(self.receive(reader, writer))
            sending = asyncio.ensure_future(self.send_loop(writer))
            await asyncio.wait({receiving, sending}, return_when=asyncio.FIRST_COMPLETED)
            sending.cancel()
            if self.stop.is_set() and not self.unacked:
                receiving.cancel()
                writer.close()
                return
            await asyncio.wait({receiving})
            writer.close()
            ended = time.monotonic()
            reader, writer = await self.connect()
            self.stats.reconnect_ms.append((time.monotonic() - ended) * 1000)
            for seq, data in sorted(self.unacked.items()):
                writer.write(frame(1, data))
                self.stats.resent += 1

    async def send_loop(self, writer: asyncio.StreamWriter) -> None:
        while not self.stop.is_set():
            seq = self.next_seq
            self.next_seq += 1
            data = f"{seq}:{'x' * 32}".encode()
            self.unacked[seq] = data
            writer.write(frame(1, data))
            self.stats.sent += 1
            await asyncio.sleep(self.interval)
        await asyncio.Event().wait()        # keep receiving the last acks

    async def receive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                opcode, payload = await read_frame(reader)
                if opcode == 1 and payload.startswith(b"ack:"):
                    if self.unacked.pop(int(payload[4:]), None) is not None:
                        self.stats.acked += 1
                elif opcode == 8:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    self.stats.closes[code] += 1
                    writer.write(frame(8, payload[:2]))
                    return
                elif opcode == 9:
                    writer.write(frame(10, payload))
        except (asyncio.IncompleteReadError, ConnectionError):
            self.stats.closes[1006] += 1


async def main(args: argparse.Namespace) -> dict:
    from urllib.parse import urlsplit
    url = urlsplit(args.url)
    stats, stop = Stats(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    clients = [Client(url.hostname, url.port, url.path or "/", args.interval / 1000, stats, stop)
               for _ in range(args.clients)]
    tasks = [asyncio.ensure_future(c.run()) for c in clients]
    print("started", flush=True)
    await stop.wait()
    await asyncio.wait(tasks, timeout=args.drain)
    for t in tasks:
        t.cancel()
    lost = sum(len(c.unacked) for c in clients)
    times = sorted(stats.reconnect_ms)
    return {"sent": stats.sent, "acked": stats.acked, "resent": stats.resent, "lost": lost,
            "closes": dict(stats.closes), "connect_failures": dict(stats.connect_failures),
            "reconnects": len(times), "reconnect_ms_median": times[len(times) // 2] if times else None,
            "reconnect_ms_max": times[-1] if times else None}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--interval", type=float, default=50, help="ms between a client's messages")
    parser.add_argument("--drain", type=float, default=5.0, help="seconds to wait for the last acks at the end")
    print(json.dumps(asyncio.run(main(parser.parse_args()))), flush=True)
