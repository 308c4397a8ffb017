"""The "floor": the cheapest HTTP/1.1 server we can write in Python on uvloop.

It parses requests with ``httptools`` and answers every one of them with the
same prebuilt response, so it measures the cost of the event loop, the
parser and the socket calls -- the part of any uvloop + httptools server that
no framework code can remove.  A real server that gets close to this floor in
CPU time per request has almost no overhead of its own.

All responses produced by one ``data_received`` call (one per complete
request in the received bytes, e.g. 16 for a 16-deep pipeline) are written
with a single ``transport.write``.

Usage: ``python bench/peers/floor.py --port 8080 [--host 127.0.0.1]``
"""
from __future__ import annotations

import argparse
import asyncio
import signal

import httptools
import uvloop

RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 13\r\n"
    b"\r\n"
    b"Hello, World!"
)


class FloorProtocol(asyncio.Protocol):
    """One connection: count complete requests, answer them in one write."""

    __slots__ = ("keep_alive", "parser", "pending", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending = 0
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    # httptools parser callback
    def on_message_complete(self) -> None:
        self.pending += 1
        if not self.parser.should_keep_alive():
            self.keep_alive = False

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            transport.close()
            return
        if self.pending:
            transport.write(RESPONSE * self.pending)
            self.pending = 0
        if not self.keep_alive:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FloorProtocol, host, port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
