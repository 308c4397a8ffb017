"""Startup and shutdown hooks.

Startup hooks run in registration order before the first connection is
accepted; the first one that fails aborts the start.

Shutdown hooks run once in-flight work has ended (or the deadline cut it).
They run in registration order; hooks that share a ``group`` run
concurrently, and the group takes the place of its first member in the
order.  Each hook has its own timeout and all of them share one budget; a
hook that fails or hangs is logged and never stops the others or the exit.
Sync and async callables both work.  Sync startup hooks run on the loop's
thread, before anything is served.  Sync shutdown hooks run in a thread of
their own, so that one that hangs can be timed out; a resource bound to the
loop's thread (a ``sqlite3`` connection, say) is closed from an ``async``
hook instead.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from fastsrv.errors import StartupError

log = logging.getLogger("fastsrv.lifecycle")

Hook = Callable[[], Any]


@dataclass
class ShutdownHook:
    fn: Hook
    name: str
    group: Optional[str]
    timeout: Optional[float]


@dataclass
class HookReport:
    """What running the shutdown hooks did."""
    ran: int = 0
    failed: int = 0
    timed_out: int = 0
    skipped: int = 0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.timed_out == 0 and self.skipped == 0


def _name(fn: Hook) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _in_daemon_thread(fn: Hook) -> "asyncio.Future[Any]":
    """Run ``fn`` in a daemon thread, so one that hangs cannot hold the exit
    (an executor's threads are joined when the interpreter exits)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def target() -> None:
        try:
            value, ok = fn(), True
        except BaseException as exc:  # handed to the awaiting side
            value, ok = exc, False
        try:
            loop.call_soon_threadsafe(settle, ok, value)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    threading.Thread(target=target, name=f"hook-{_name(fn)}", daemon=True).start()
    return fut


async def _call(fn: Hook, in_thread: bool) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn()
    result = await _in_daemon_thread(fn) if in_thread else fn()
    if inspect.isawaitable(result):
        result = await result
    return result


class Hooks:
    """The registry of a server's startup and shutdown hooks."""

    def __init__(self) -> None:
        self.startup: list[Hook] = []
        self.shutdown: list[ShutdownHook] = []

    def on_startup(self, fn: Hook) -> Hook:
        """Register a startup hook (usable as a decorator)."""
        if not callable(fn):
            raise TypeError("a startup hook must be callable")
        self.startup.append(fn)
        return fn

    def on_shutdown(self, fn: Optional[Hook] = None, *, group: Optional[str] = None,
                    timeout: Optional[float] = None, name: Optional[str] = None) -> Any:
        """Register a shutdown hook; ``group`` runs it concurrently with the
        other members of that group; ``timeout`` overrides the default."""
        def register(f: Hook) -> Hook:
            if not callable(f):
                raise TypeError("a shutdown hook must be callable")
            if timeout is not None and not timeout > 0:   # also refuses NaN
                raise ValueError("a hook timeout must be > 0 seconds")
            self.shutdown.append(ShutdownHook(f, name or _name(f), group, timeout))
            return f
        return register(fn) if fn is not None else register

    def extend(self, other: "Hooks") -> None:
        self.startup.extend(other.startup)
        self.shutdown.extend(other.shutdown)

    async def run_startup(self) -> None:
        """Run the startup hooks in order; raise :class:`StartupError` on the
        first failure."""
        for fn in self.startup:
            t0 = time.monotonic()
            try:
                await _call(fn, in_thread=False)
            except Exception as exc:
                raise StartupError(f"startup hook {_name(fn)} failed: {exc!r}") from exc
            log.info("startup hook %s done in %.1f ms", _name(fn), (time.monotonic() - t0) * 1000)

    def _stages(self) -> list[list[ShutdownHook]]:
        stages: list[list[ShutdownHook]] = []
        by_group: dict[str, list[ShutdownHook]] = {}
        for hook in self.shutdown:
            if hook.group is None:
                stages.append([hook])
            elif hook.group in by_group:
                by_group[hook.group].append(hook)
            else:
                by_group[hook.group] = [hook]
                stages.append(by_group[hook.group])
        return stages

    async def run_shutdown(self, default_timeout: float, budget: float) -> HookReport:
        """Run the shutdown hooks; never raises."""
        report = HookReport()
        deadline = time.monotonic() + budget
        stages = self._stages()
        for i, stage in enumerate(stages):
            left = deadline - time.monotonic()
            if left <= 0:
                skipped = sum(len(s) for s in stages[i:])
                report.skipped += skipped
                log.error("shutdown hook budget of %.1f s used up: %d hook(s) not run", budget, skipped)
                break
            await asyncio.gather(*(self._run_one(h, min(h.timeout or default_timeout, left), report)
                                   for h in stage))
        return report

    async def _run_one(self, hook: ShutdownHook, timeout: float, report: HookReport) -> None:
        t0 = time.monotonic()
        task = asyncio.ensure_future(_call(hook.fn, in_thread=True))
        try:
            await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not task.done():
            # not awaited after the cancel: a hook that ignores cancellation
            # must not hold the others or the exit
            task.cancel()
            report.timed_out += 1
            log.error("shutdown hook %s timed out after %.1f s", hook.name, timeout)
        elif task.cancelled():
            report.failed += 1
            log.error("shutdown hook %s failed: it was cancelled", hook.name)
        elif task.exception() is not None:
            report.failed += 1
            log.error("shutdown hook %s failed", hook.name, exc_info=task.exception())
        else:
            report.ran += 1
            log.info("shutdown hook %s done in %.1f ms", hook.name, (time.monotonic() - t0) * 1000)
