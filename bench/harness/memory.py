"""Memory scenario: resident memory the server adds per idle keep-alive connection.

The client lives in the driver process (asyncio streams).  Every connection
sends one ``GET /`` and reads the full response, so the server has set the
connection up completely (protocol object, parser, buffers), then stays idle.
The server tree's RSS is read before any connection is opened and after each
step (e.g. 1,000 then 10,000 connections in total); the figure reported is
(RSS after - RSS before) / connections open.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from . import procs
from .server import EXPECTED_BODY

log = logging.getLogger("bench")

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class MemoryScenarioError(RuntimeError):
    """Connections could not be opened or the server answered wrongly."""


@dataclass
class MemoryStep:
    """RSS of the server tree with ``connections`` idle keep-alive connections open."""

    connections: int
    alive: int  # connections still open (not closed by the server) when RSS was read
    rss_before: int
    rss_after: int
    open_seconds: float

    @property
    def bytes_per_connection(self) -> float:
        return (self.rss_after - self.rss_before) / self.connections


async def _read_response(reader: asyncio.StreamReader) -> None:
    """Read one response with a Content-Length body and check it is 200 "Hello, World!"."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if lines[0].split(" ")[1:2] != ["200"]:
        raise MemoryScenarioError(f"unexpected status line {lines[0]!r}")
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length is None:
        raise MemoryScenarioError("response without Content-Length (chunked?) -- not supported here")
    body = await reader.readexactly(length)
    if body != EXPECTED_BODY:
        raise MemoryScenarioError(f"unexpected body {body[:80]!r}")


class IdleConnections:
    """A growing set of idle keep-alive connections to one server."""

    def __init__(self, host: str, port: int, concurrency: int, timeout: float) -> None:
        self.host, self.port = host, port
        self.concurrency, self.timeout = concurrency, timeout
        self.streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.ready = 0  # connections that got their response

    async def _open_one(self, gate: asyncio.Semaphore) -> None:
        async with gate:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.streams.append((reader, writer))  # tracked at once, so close() gets it on failure
            writer.write(REQUEST)
            await _read_response(reader)
            self.ready += 1

    async def open(self, count: int) -> None:
        """Open ``count`` more connections, ``concurrency`` handshakes at a time."""
        gate = asyncio.Semaphore(self.concurrency)
        tasks = [asyncio.ensure_future(self._open_one(gate)) for _ in range(count)]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), self.timeout)
        except asyncio.TimeoutError:
            raise MemoryScenarioError(
                f"timed out after {self.timeout:.0f}s with {self.ready:,} connections served "
                f"(the server stopped accepting or answering)"
            ) from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise MemoryScenarioError(f"{type(exc).__name__}: {exc} (after {self.ready:,} connections)") from exc
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def alive(self) -> int:
        """Connections the server has not closed (no EOF seen)."""
        return sum(1 for reader, writer in self.streams if not reader.at_eof() and not writer.is_closing())

    async def close(self) -> None:
        streams, self.streams = self.streams, []
        self.ready = 0
        for _, writer in streams:
            writer.close()
        await asyncio.gather(*(writer.wait_closed() for _, writer in streams), return_exceptions=True)


async def _measure(
    pid: int, pool: IdleConnections, steps: Sequence[int], settle: float, results: list[MemoryStep]
) -> None:
    """Append one MemoryStep per step to ``results`` (kept even if a later step fails)."""
    loop = asyncio.get_running_loop()
    try:
        # Warm-up: a few short-lived connections, so lazy first-request work is not counted.
        await pool.open(min(50, steps[0]))
        await pool.close()
        await asyncio.sleep(settle)
        baseline = procs.tree_rss_bytes(pid)
        for total in steps:
            started = loop.time()
            await pool.open(total - len(pool.streams))
            opened_in = loop.time() - started
            await asyncio.sleep(settle)
            step = MemoryStep(
                connections=total,
                alive=pool.alive(),
                rss_before=baseline,
                rss_after=procs.tree_rss_bytes(pid),
                open_seconds=opened_in,
            )
            log.info(
                "    %6d idle connections (%d alive, opened in %.1fs): RSS %.1f -> %.1f MiB, %.0f bytes/conn",
                total, step.alive, opened_in, baseline / 2**20, step.rss_after / 2**20, step.bytes_per_connection,
            )
            if step.alive < total:
                log.warning("    server closed %d of %d idle connections: figure understated",
                            total - step.alive, total)
            results.append(step)
    finally:
        await pool.close()


def measure_idle_memory(
    pid: int,
    host: str,
    port: int,
    steps: Sequence[int] = (1000, 10000),
    concurrency: int = 100,
    step_timeout: float = 60.0,
    settle: float = 1.0,
) -> tuple[list[MemoryStep], str | None]:
    """Open idle keep-alive connections in ``steps`` (cumulative totals) and measure the RSS added.

    Returns the steps measured and, if a step failed, why (the earlier steps are kept).
    """
    results: list[MemoryStep] = []
    pool = IdleConnections(host, port, concurrency, step_timeout)
    try:
        asyncio.run(_measure(pid, pool, sorted(steps), settle, results))
    except MemoryScenarioError as exc:
        return results, str(exc)
    return results, None
