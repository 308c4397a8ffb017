"""Apps for the lifecycle tests, run with ``fastsrv run tests.apps.lifecycle:NAME``.

Hooks and handlers log what they do on the ``lifecycle.test`` logger, with
monotonic timestamps, so the tests can read order and overlap from the
server's output.
"""

import asyncio
import logging
import time

from fastsrv import App
from fastsrv.demo import app as demo

log = logging.getLogger("lifecycle.test")


def _event(what: str) -> None:
    log.info("EVENT %s %.6f", what, time.monotonic())


def _with_slow_route(app: App) -> App:
    @app.get("/slow")
    async def slow(request):
        ms = int(request.query.get("ms", "1000"))
        _event("slow-start")
        try:
            await asyncio.sleep(ms / 1000)
        except asyncio.CancelledError:
            _event("slow-cancelled")
            raise
        _event("slow-end")
        return f"slow {ms}\n"

    @app.get("/")
    def hello(request):
        return "Hello, World!"

    return app


def _hook(name: str, seconds: float = 0.0, fail: bool = False, sync: bool = False):
    if sync:
        def hook():
            _event(f"{name}-start")
            time.sleep(seconds)
            if fail:
                raise RuntimeError(f"{name} failed on purpose")
            _event(f"{name}-end")
    else:
        async def hook():
            _event(f"{name}-start")
            await asyncio.sleep(seconds)
            if fail:
                raise RuntimeError(f"{name} failed on purpose")
            _event(f"{name}-end")
    hook.__qualname__ = name
    return hook


# the plain app: /slow and /, no hooks
plain = _with_slow_route(App())

# ordered hooks, a concurrent group, a failing one, a hanging sync one
hooks = _with_slow_route(App())
hooks.on_startup(_hook("startup-1"))
hooks.on_startup(_hook("startup-2", sync=True))
hooks.on_shutdown(_hook("first", 0.05))
hooks.on_shutdown(_hook("group-a", 0.3), group="pools")
hooks.on_shutdown(_hook("fails", 0.0, fail=True))
hooks.on_shutdown(_hook("group-b", 0.3), group="pools")
hooks.on_shutdown(_hook("hangs", 60.0, sync=True), timeout=0.5)
hooks.on_shutdown(_hook("last", 0.0))

# every hook succeeds
clean_hooks = _with_slow_route(App())
clean_hooks.on_shutdown(_hook("flush", 0.01))

# a startup hook that fails: the server must never listen
startup_fails = _with_slow_route(App())
startup_fails.on_startup(_hook("boom", fail=True))
startup_fails.on_shutdown(_hook("never", 0.0))

# the demo app (for /stream and /sleep)
demo_app = demo


# a large response, for a client that reads it slowly
big = _with_slow_route(App())


@big.get("/big")
def big_body(request):
    return b"x" * (int(request.query.get("mb", "8")) << 20)


# a shutdown hook long enough to send a second signal during it
slow_hook = _with_slow_route(App())
slow_hook.on_shutdown(_hook("slow-hook", 4.0))

# a startup hook long enough to send a signal during it; the shutdown hook
# cleans up what a half-done startup may have opened
slow_startup = _with_slow_route(App())
slow_startup.on_startup(_hook("startup-slow", 10.0))
slow_startup.on_shutdown(_hook("cleanup", 0.0))

# an async shutdown hook that swallows its cancellation
stubborn_hook = _with_slow_route(App())


@stubborn_hook.on_shutdown(timeout=0.5)
async def stubborn():
    _event("stubborn-start")
    while True:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            continue
