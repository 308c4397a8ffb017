"""ASGI applications on fastsrv: interface detection and the lifespan protocol.

The HTTP side of ASGI 3 lives in the core (``fastsrv._core.ASGIApp``): the
scope is built from the parsed head in C, and ``receive`` / ``send`` write
straight into the connection.  This module decides how an object is served
(:func:`detect_interface`), adapts ASGI 2 applications, and runs the
lifespan protocol as a startup and a shutdown hook, so that an app's
``startup`` runs before the first connection is accepted and its
``shutdown`` after the drain, under the hook timeout.

Scope extension: every HTTP scope has
``scope["extensions"]["fastsrv.shutdown"]["signal"]``, the server's shutdown
signal: ``.is_set`` is true once the graceful shutdown has begun, and
``await signal.wait()`` returns then, so a long poll or an event stream can
end its response before the exit wait time runs out.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from typing import Any, Awaitable, Callable, MutableMapping, Optional

from fastsrv._core import ASGIApp, ClientGoneError
from fastsrv.config import EAGER_MODES, INTERFACES, LIFESPAN_MODES
from fastsrv.errors import AppLoadError, StartupError

log = logging.getLogger("fastsrv.lifecycle")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGI3App = Callable[[Scope, Receive, Send], Awaitable[None]]


__all__ = [
    "ASGIApp", "ClientGoneError", "Lifespan", "as_asgi3", "detect_interface",
    "wants_task", "INTERFACES", "LIFESPAN_MODES", "EAGER_MODES",
]


def _is_native(app: Any) -> bool:
    from fastsrv.app import App
    return isinstance(app, App)


def detect_interface(app: Any, interface: str = "auto") -> str:
    """``"native"``, ``"asgi3"`` or ``"asgi2"`` for ``app``.

    ``interface`` forces the answer (``"native"`` or ``"asgi"``; ASGI 2 vs 3
    is still told apart).  Raises :class:`AppLoadError` when the object
    cannot be served that way."""
    if interface not in INTERFACES:
        raise AppLoadError(f"interface must be one of {', '.join(INTERFACES)}, got {interface!r}")
    if interface == "native" or (interface == "auto" and _is_native(app)):
        if not _is_native(app):
            raise AppLoadError(f"--interface native needs a fastsrv App, got {type(app).__name__}")
        return "native"
    if interface == "asgi" and _is_native(app):
        raise AppLoadError("--interface asgi needs an ASGI application, but this is a fastsrv App: "
                           "serve it with --interface native (or auto)")
    if not callable(app):
        raise AppLoadError(f"{type(app).__name__} object is neither a fastsrv App nor an ASGI "
                           "application (a callable taking scope, receive, send)")
    if inspect.isclass(app):
        # ASGI 2: a class made with the scope whose instances take (receive, send)
        return "asgi3" if hasattr(app, "__await__") else "asgi2"
    fn = app if inspect.isfunction(app) or inspect.ismethod(app) else getattr(app, "__call__", app)
    if inspect.iscoroutinefunction(fn):
        return "asgi3"
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return "asgi3"
    return "asgi2" if len(params) == 1 else "asgi3"


def as_asgi3(app: Any, kind: str) -> ASGI3App:
    """An ASGI 3 callable for ``app`` (ASGI 2 apps are wrapped)."""
    if kind == "asgi3":
        return app  # type: ignore[no-any-return]

    async def asgi2_adapter(scope: Scope, receive: Receive, send: Send) -> None:
        instance = app(scope)
        await instance(receive, send)

    return asgi2_adapter


def wants_task(mode: str) -> bool:
    """Whether requests need a Task from their first line.

    ``"auto"``: yes when the app has imported anyio or sniffio (Starlette,
    FastAPI and what they run on ask ``asyncio.current_task()`` at once);
    otherwise requests run in place until they first suspend."""
    if mode not in EAGER_MODES:
        raise ValueError(f"asgi_eager must be one of {', '.join(EAGER_MODES)}, got {mode!r}")
    if mode == "on":
        return False
    if mode == "off":
        return True
    return "anyio" in sys.modules or "sniffio" in sys.modules


class LifespanFailed(StartupError):
    """The app answered ``lifespan.startup.failed`` or raised during startup."""


class Lifespan:
    """The ASGI lifespan protocol, driven by the server's hooks.

    ``mode``: ``"on"`` requires the app to support it (an app that raises
    or returns at once fails the start), ``"auto"`` goes on without it,
    ``"off"`` never calls the app with a lifespan scope.  ``state`` is the
    dict the app fills at startup; it is copied into every request scope.
    """

    def __init__(self, app: ASGI3App, mode: str = "auto", state: Optional[dict[str, Any]] = None) -> None:
        if mode not in LIFESPAN_MODES:
            raise ValueError(f"lifespan must be one of {', '.join(LIFESPAN_MODES)}, got {mode!r}")
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = state if state is not None else {}
        self.supported = False
        self._task: Optional[asyncio.Task[None]] = None
        self._inbox: Optional[asyncio.Queue[Message]] = None
        self._reply: Optional[asyncio.Future[Message]] = None
        self._received = False

    async def _receive(self) -> Message:
        assert self._inbox is not None
        message = await self._inbox.get()
        self._received = True
        return message

    async def _send(self, message: Message) -> None:
        if self._reply is not None and not self._reply.done():
            self._reply.set_result(message)
        else:
            # e.g. a lifespan task cancelled by an immediate stop reporting failure
            log.debug("ASGI lifespan: message %r while none was expected: ignored", message.get("type"))

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        await self.app(scope, self._receive, self._send)

    async def _exchange(self, event: str) -> Optional[Message]:
        """Send ``event`` and wait for the app's answer; None if the app's
        lifespan task ended instead (its exception is left on the task)."""
        loop = asyncio.get_running_loop()
        assert self._inbox is not None and self._task is not None
        self._reply = loop.create_future()
        await self._inbox.put({"type": event})
        waiting: set[asyncio.Future[Any]] = {self._reply, self._task}
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._task.cancel()     # the hook was cut (timeout, immediate stop)
            raise
        if self._reply.done():
            return self._reply.result()
        self._reply.cancel()
        return None

    def _error(self) -> Optional[BaseException]:
        """What the app's lifespan coroutine ended with (it has ended)."""
        assert self._task is not None
        return None if self._task.cancelled() else self._task.exception()

    async def startup(self) -> None:
        """Run ``lifespan.startup``; raise :class:`LifespanFailed` when the
        app reports a failure (or, with ``mode="on"``, lacks lifespan)."""
        if self.mode == "off":
            return
        loop = asyncio.get_running_loop()
        self._inbox = asyncio.Queue()
        self._task = loop.create_task(self._main())
        reply = await self._exchange("lifespan.startup")
        if reply is None:
            exc = self._error()
            if self._received or self.mode == "on":
                why = f"raised {exc!r}" if exc is not None else "returned"
                raise LifespanFailed(f"ASGI lifespan startup failed: the app {why} "
                                     "without completing startup") from exc
            log.info("ASGI lifespan not supported by the app (%s): going on without it",
                     repr(exc) if exc is not None else "it returned at once")
            return
        if reply.get("type") == "lifespan.startup.complete":
            self.supported = True
            log.info("ASGI lifespan startup complete")
            return
        if reply.get("type") == "lifespan.startup.failed":
            self._task.cancel()
            raise LifespanFailed(f"ASGI lifespan startup failed: {reply.get('message') or 'no message'}")
        self._task.cancel()
        raise LifespanFailed(f"ASGI lifespan: expected lifespan.startup.complete, got {reply.get('type')!r}")

    async def shutdown(self) -> None:
        """Run ``lifespan.shutdown`` (a shutdown hook: its timeout applies).
        Raises when the app reports a failure or fails."""
        if not self.supported or self._task is None:
            return
        if self._task.done():
            # the app's lifespan returned after startup: nothing left to shut
            # down (an exception it ended with is a failure)
            exc = self._error()
            if exc is not None:
                raise RuntimeError(f"ASGI lifespan ended with {exc!r} before shutdown") from exc
            return
        reply = await self._exchange("lifespan.shutdown")
        if reply is None:
            exc = self._error()
            if exc is not None:
                raise RuntimeError(f"ASGI lifespan shutdown failed: the app raised {exc!r}") from exc
            raise RuntimeError("ASGI lifespan shutdown: the app returned without completing shutdown")
        if reply.get("type") == "lifespan.shutdown.failed":
            raise RuntimeError(f"ASGI lifespan shutdown failed: {reply.get('message') or 'no message'}")
        if reply.get("type") != "lifespan.shutdown.complete":
            raise RuntimeError(f"ASGI lifespan: expected lifespan.shutdown.complete, got {reply.get('type')!r}")
        # let the app's lifespan coroutine return (it usually does at once)
        await asyncio.wait({self._task}, timeout=1.0)
        if not self._task.done():
            self._task.cancel()
