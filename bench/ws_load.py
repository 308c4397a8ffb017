#!/usr/bin/env python3
"""WebSocket echo load: N connections, each keeping K messages in flight.

    python bench/ws_load.py ws://127.0.0.1:8000/ --connections 50 --in-flight 8 --size 32 --seconds 10

Runs on picows' client (a Cython WebSocket implementation, so the load
generator is cheap next to the servers it drives).  Each connection sends K
binary messages of ``--size`` bytes, then one more for every echo it gets
back, checking each echo's length.  After ``--warmup`` seconds it counts
echoes for ``--seconds`` and prints one JSON object: ``messages`` (echoes
in the measured window), ``seconds``, ``errors`` (connections that failed
or closed) and ``rate``.  The first line on stdout is ``connected`` once
every connection is open, for a driver that samples the server's CPU.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect


class Counter:
    def __init__(self) -> None:
        self.echoes = 0
        self.errors = 0


class Client(WSListener):
    def __init__(self, counter: Counter, payload: bytes, in_flight: int) -> None:
        self.counter = counter
        self.payload = payload
        self.in_flight = in_flight

    def on_ws_connected(self, transport: WSTransport) -> None:
        for _ in range(self.in_flight):
            transport.send(WSMsgType.BINARY, self.payload)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.BINARY:
            if frame.payload_size != len(self.payload):
                self.counter.errors += 1
            self.counter.echoes += 1
            transport.send(WSMsgType.BINARY, self.payload)
        elif frame.msg_type == WSMsgType.CLOSE:
            self.counter.errors += 1
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        pass


async def main(args: argparse.Namespace) -> dict:
    counter = Counter()
    payload = os.urandom(args.size)
    clients = [await ws_connect(lambda: Client(counter, payload, args.in_flight), args.url,
                                max_frame_size=max(args.size * 2, 1 << 20))
               for _ in range(args.connections)]
    print("connected", flush=True)
    await asyncio.sleep(args.warmup)
    start, t0 = counter.echoes, time.monotonic()
    await asyncio.sleep(args.seconds)
    end, t1 = counter.echoes, time.monotonic()
    for transport, _ in clients:
        transport.disconnect()
    await asyncio.sleep(0.1)
    return {"messages": end - start, "seconds": t1 - t0, "rate": (end - start) / (t1 - t0),
            "errors": counter.errors, "connections": args.connections, "in_flight": args.in_flight,
            "size": args.size}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    result = uvloop.run(main(parser.parse_args()))
    print(json.dumps(result), flush=True)
    sys.exit(0)
