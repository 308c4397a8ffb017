"""The server: startup, serving, and the graceful shutdown.

It reads top to bottom as the lifecycle runs: ``serve`` -> ``startup`` ->
wait for a stop -> ``drain`` (or ``stop_now``) -> release.  States:
``starting -> running -> draining -> stopped``.

Exit statuses (``serve`` returns them; the CLI exits with them):

=====  ==============================================================
0      clean: every in-flight request finished, every hook succeeded
1      the server did not start (a startup hook failed, bind failed)
3      the exit wait time ran out and in-flight requests were cut
4      a shutdown hook failed, timed out or was not run
5      immediate stop (second signal, or SIGTERM under ``legacy``)
=====  ==============================================================
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import random
import signal
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

from fastsrv import listen
from fastsrv._core import ASGIApp, ConnectionRegistry, HttpProtocol, ProtocolConfig, Route, Router
from fastsrv._metrics import Metrics
from fastsrv._proxy import ProxyHeaders
from fastsrv._response import HeadLines, Response
from fastsrv.asgi import Lifespan, as_asgi3, detect_interface, wants_task
from fastsrv.config import Config
from fastsrv.errors import ConfigError, ServerStateError, StartupError
from fastsrv.hooks import HookReport, Hooks

log = logging.getLogger("fastsrv.lifecycle")

EXIT_OK = 0
EXIT_STARTUP_FAILED = 1
EXIT_DEADLINE = 3
EXIT_HOOK_FAILED = 4
EXIT_FORCED = 5

GRACEFUL = "graceful"
IMMEDIATE = "immediate"
# a worker being replaced (recycling, --reload) closes a connection idle for
# this long; busier ones close after their next response
REPLACED_IDLE_GRACE = 1.0
# after sending close_notify, how long a TLS connection waits for the client's
TLS_CLOSE_WAIT = 1.0


class State(str, enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


@dataclass
class ShutdownReport:
    """What the shutdown did, with the exit status it implies."""
    trigger: str = ""
    mode: str = GRACEFUL
    idle_closed: int = 0
    in_flight: int = 0
    cancelled: int = 0
    websockets: int = 0              # open when the drain began
    websockets_closed_by_app: int = 0
    websockets_closed_by_server: int = 0
    websockets_cut: int = 0          # still open at the exit wait deadline
    websocket_handlers_cut: int = 0  # still running at the deadline (cancelled)
    hooks: HookReport = field(default_factory=HookReport)
    elapsed_ms: float = 0.0
    forced: bool = False

    @property
    def exit_status(self) -> int:
        if self.forced:
            return EXIT_FORCED
        if self.cancelled or self.websockets_cut or self.websocket_handlers_cut:
            return EXIT_DEADLINE
        if not self.hooks.ok:
            return EXIT_HOOK_FAILED
        return EXIT_OK


def _ms(t0: float) -> float:
    return (time.monotonic() - t0) * 1000


def _task_start(eager: bool) -> str:
    if sys.version_info < (3, 12):
        return "scheduled on the loop (eager start needs Python 3.12)"
    return "started eagerly" if eager else "scheduled on the loop (--asgi-task-start scheduled)"


def http_url(sock: socket.socket, tls: bool = False) -> str:
    """``http(s)://host:port`` of a listening socket (an IPv6 host in
    brackets), or ``unix:PATH``."""
    return listen.url(sock, tls)


class Server:
    """One fastsrv server process.

    ``await server.serve()`` runs it inside an existing loop (signal
    handlers are restored afterwards); :func:`fastsrv.run` runs it on a new
    uvloop.  ``await server.shutdown()`` runs the same graceful sequence as
    SIGTERM.
    """

    def __init__(self, app: Any, config: Optional[Config] = None, **settings: Any) -> None:
        self.app = app
        self.config = replace(config, **settings) if config is not None else Config(**settings)
        self.hooks = Hooks()
        self.interface = detect_interface(app, self.config.interface)
        self.asgi: Optional[ASGIApp] = None
        self.lifespan: Optional[Lifespan] = None
        if self.interface == "native":
            app_hooks = getattr(app, "hooks", None)
            if isinstance(app_hooks, Hooks):
                self.hooks.extend(app_hooks)
        else:
            asgi3 = as_asgi3(app, self.interface)
            self.lifespan = Lifespan(asgi3, self.config.lifespan)
            self.asgi = ASGIApp(asgi3, not wants_task(self.config.asgi_eager),
                                self.config.root_path, self.lifespan.state,
                                eager_start=self.config.asgi_task_start == "eager")
            # the app's lifespan is the first startup and the first shutdown
            # hook (hooks added to server.hooks later run after it), under the
            # hook timeout
            self.hooks.on_startup(self.lifespan.startup)
            self.hooks.on_shutdown(self.lifespan.shutdown, name="ASGI lifespan shutdown")
        self.state = State.STARTING
        self.report = ShutdownReport()
        self.registry: Optional[ConnectionRegistry] = None
        self.sockets: list[socket.socket] = []
        self._listeners: list[asyncio.AbstractServer] = []
        self._serving = False
        self._prev_handlers: dict[int, Any] = {}
        self._waiter_task: Optional[asyncio.Task[Any]] = None
        self._exit_wait_time = self.config.exit_wait_time
        self._ready_callbacks: list[Callable[[], None]] = []
        self._gentle = False
        self._uds_identity: Optional[tuple[int, int]] = None
        # requests are counted in the core; a worker's supervisor replaces
        # this with its slot of the block every worker shares
        self.metrics: Optional[Metrics] = Metrics() if self.config.metrics_path else None
        self._metrics_endpoint: Any = None
        if self.metrics is not None:
            from fastsrv.metrics import MetricsEndpoint
            # a ConfigError without prometheus_client
            self._metrics_endpoint = MetricsEndpoint(lambda: self.metrics)
        # after this many responses: drain (a worker: ask to be replaced)
        self.request_limit = 0
        if self.config.limit_max_requests:
            self.request_limit = self.config.limit_max_requests + random.randint(
                0, self.config.limit_max_requests_jitter)
        self.on_request_limit: Optional[Callable[[], None]] = None

    # made by serve(): a stop was asked for (its mode), a forced stop, the end
    _stop: "asyncio.Future[str]"
    _force: "asyncio.Future[None]"
    _stopped: asyncio.Event

    # ---- public API ----

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``; 0 on a Unix socket)."""
        if self.sockets and self.sockets[0].family == socket.AF_UNIX:
            return 0
        return self.sockets[0].getsockname()[1] if self.sockets else self.config.port

    async def serve(self) -> int:
        """Start, serve until told to stop, shut down; return the exit status."""
        if self._serving:
            raise ServerStateError("serve() can only be called once per Server")
        self._serving = True
        loop = asyncio.get_running_loop()
        self._stop = loop.create_future()
        self._force = loop.create_future()
        self._stopped = asyncio.Event()
        self._install_signal_handlers(loop)
        try:
            status = await self._start(loop)
            if status is not None:
                return status
            mode = await self._stop
            if mode == GRACEFUL:
                await self.drain()
            else:
                await self.stop_now()
            return self.report.exit_status
        finally:
            self._release()     # also when serve() itself is cancelled
            self._restore_signal_handlers(loop)
            if self._waiter_task is not None:
                self._waiter_task.cancel()
            self._stopped.set()

    async def _start(self, loop: asyncio.AbstractEventLoop) -> Optional[int]:
        """Run :meth:`startup` unless a stop comes first; None once serving,
        else the exit status."""
        starting = asyncio.ensure_future(self.startup(loop))
        await asyncio.wait({starting, self._stop}, return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
        if starting.done():
            try:
                starting.result()
            except StartupError as exc:
                log.error("%s", exc, exc_info=exc.__cause__)
                return EXIT_STARTUP_FAILED
            return None
        starting.cancel()
        await asyncio.wait({starting})
        log.warning("%s while starting: startup abandoned, nothing was served", self.report.trigger)
        if self._stop.result() == IMMEDIATE or self._force.done():
            self.report.forced = True
        else:
            await self._run_hooks()
        return self.report.exit_status

    async def shutdown(self, timeout: Optional[float] = None) -> ShutdownReport:
        """Run the graceful shutdown (as on SIGTERM) and wait for its end.

        ``timeout`` replaces ``exit_wait_time`` for this shutdown, unless a
        shutdown is already under way.  A request handler must not await it
        (its own request would hold the drain until the deadline): call
        :meth:`request_stop` there instead."""
        if not self._serving:
            raise ServerStateError("shutdown() needs a running serve()")
        if timeout is not None:
            self._exit_wait_time = timeout
        self.request_stop(GRACEFUL, "shutdown()")
        await self._stopped.wait()
        return self.report

    def add_ready_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` on the loop once the server accepts connections
        (after the startup hooks); a worker uses it to tell its supervisor."""
        self._ready_callbacks.append(callback)

    def request_stop(self, mode: str = GRACEFUL, trigger: str = "request", replaced: bool = False) -> None:
        """Ask for a stop; a second request during the drain escalates to an
        immediate one when ``mode`` is immediate.  ``replaced``: another
        process serves the same socket meanwhile (a recycled or reloaded
        worker), so idle keep-alive connections are closed after their next
        response or once idle for a second, not at once."""
        if not self._serving:
            raise ServerStateError("the server is not serving")
        if not self._stop.done():
            self._gentle = replaced
            self.report.trigger = trigger
            self.report.mode = mode
            self._stop.set_result(mode)
        elif mode == IMMEDIATE and not self._force.done():
            log.warning("%s during the shutdown: stopping immediately", trigger)
            self.report.trigger += f", then {trigger}"
            self._force.set_result(None)

    # ---- startup ----

    async def startup(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run startup hooks, then bind and start accepting."""
        t0 = time.monotonic()
        await self.hooks.run_startup()
        cfg = self.config
        try:
            sock = cfg.sock or self._bind()
        except OSError as exc:
            where = cfg.uds if cfg.uds else f"{cfg.host}:{cfg.port}"
            raise StartupError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
        pconfig = self._protocol_config()
        self.registry = registry = ConnectionRegistry(pconfig, cfg.max_connections)
        registry.start(loop)
        if self.request_limit:
            registry.request_limit = self.request_limit
            registry.on_request_limit = self._request_limit_reached
        # the server's own paths go into a copy: the app's router may serve another server too
        router = self.app.router().copy() if self.asgi is None else Router()
        self._add_health_routes(router)
        asgi = self.asgi
        ssl_context = cfg.ssl_context
        tls_timeouts = {}
        if ssl_context is not None:
            # a handshake gets the header timeout; at a close, close_notify is
            # sent and the client's own close_notify (or its FIN) waited for
            # at most TLS_CLOSE_WAIT, so a client that never answers it does
            # not hold the drain
            tls_timeouts = {"ssl_handshake_timeout": cfg.header_timeout or None,
                            "ssl_shutdown_timeout": TLS_CLOSE_WAIT}
        listener = await loop.create_server(lambda: HttpProtocol(registry, router, asgi), sock=sock,
                                            backlog=cfg.backlog, ssl=ssl_context, **tls_timeouts)
        self._listeners.append(listener)
        self.sockets = [sock]
        self.state = State.RUNNING
        if asgi is not None:
            log.info("ASGI app: %s", "requests run in place until they first suspend" if asgi.eager
                     else "each request runs in its own Task (the app uses anyio/sniffio, or "
                          f"--asgi-eager off), {_task_start(asgi.eager_start)}")
        log.info("serving on %s (started in %.1f ms)", http_url(sock, ssl_context is not None), _ms(t0))
        for callback in self._ready_callbacks:
            try:
                callback()
            except Exception:
                log.exception("a ready callback failed")

    def _protocol_config(self) -> ProtocolConfig:
        """What the core's connections read: limits, timeouts, and what the
        production flags turned on (all of them off the request path when off)."""
        cfg = self.config
        access_log = None
        if cfg.access_log:
            from fastsrv.logs import AccessLog
            access_log = AccessLog(cfg.access_log_format)
        head = HeadLines(cfg.date_header, b"fastsrv" if cfg.server_header else None, cfg.headers)
        proxy = ProxyHeaders(cfg.forwarded_allow_ips) if cfg.proxy_headers else None
        return ProtocolConfig(cfg.limits(), cfg.header_timeout, cfg.body_timeout, cfg.keepalive_timeout,
                              access_log=access_log, write_timeout=cfg.write_timeout, ws=cfg.ws_config(),
                              head=head, tls=cfg.ssl_context is not None, proxy=proxy, metrics=self.metrics,
                              limit_concurrency=cfg.limit_concurrency,
                              underscores_in_headers=cfg.underscores_in_headers)

    def _request_limit_reached(self) -> None:
        """``limit_max_requests`` responses served: a worker asks its
        supervisor for a replacement (``on_request_limit``); a single
        process drains and exits 0, as uvicorn's does."""
        log.info("served %d requests (--limit-max-requests)%s", self.request_limit,
                 ": asking for a replacement" if self.on_request_limit else ": shutting down")
        if self.on_request_limit is not None:
            self.on_request_limit()
        elif self.state is State.RUNNING:
            self.request_stop(GRACEFUL, "request limit")

    def _bind(self) -> socket.socket:
        cfg = self.config
        if cfg.uds:
            sock = listen.bind_unix(cfg.uds)
            self._uds_identity = listen.socket_identity(cfg.uds)
        else:
            sock = listen.bind_tcp(cfg.host, cfg.port, cfg.reuse_port)
        sock.setblocking(False)
        return sock

    def _add_health_routes(self, router: Any) -> None:
        def live(request: Any) -> Response:
            return Response("alive\n")

        def ready(request: Any) -> Response:
            if self.state is State.RUNNING and not self._stop.done():
                return Response("ready\n")
            return Response("draining\n", 503)

        if self.config.liveness_path:
            router.add(self.config.liveness_path, Route({"GET": live}))
        if self.config.readiness_path:
            router.add(self.config.readiness_path, Route({"GET": ready}))
        if self._metrics_endpoint is not None:
            router.add(self.config.metrics_path, Route({"GET": self._metrics_endpoint}))

    # ---- the graceful shutdown ----

    async def drain(self) -> None:
        """Delay, stop accepting, close idle, finish in-flight, run hooks."""
        registry = self.registry
        assert registry is not None, "drain() runs after a successful startup"
        report = self.report
        t0 = time.monotonic()
        log.info("graceful shutdown started by %s", report.trigger)

        delay = self.config.shutdown_delay
        if delay > 0:
            log.info("shutdown delay: serving for %.1f s more, readiness answers 503", delay)
            await self._unless_forced(asyncio.sleep(delay), None)
        if self._force.done():
            return await self.stop_now()
        self.state = State.DRAINING

        step = time.monotonic()
        self._close_listeners()
        log.info("listeners closed in %.1f ms: new connections are refused", _ms(step))

        step = time.monotonic()
        registry.begin_drain(self._gentle)
        report.in_flight = registry.active
        report.websockets = registry.open_websockets
        if self._gentle:
            idle = registry.expire_idle(REPLACED_IDLE_GRACE)
            log.info("replaced by a new process: %d idle connection(s) close after their next response "
                     "or %.0f s idle", idle, REPLACED_IDLE_GRACE)
        else:
            report.idle_closed = registry.close_idle()
        background = registry.detached_tasks()
        log.info("closed %d idle connection(s) in %.1f ms; %d request(s) in flight%s%s",
                 report.idle_closed, _ms(step), report.in_flight,
                 f", {report.websockets} WebSocket(s) open" if report.websockets else "",
                 f", {background} handler task(s) still running after their response or client"
                 if background else "")

        # every connection closes once its last response is written out (not
        # merely handed to the transport): that is the end of in-flight work;
        # WebSockets, which never end by themselves, are closed meanwhile
        step = time.monotonic()
        closing = asyncio.ensure_future(self._close_websockets()) if report.websockets else None
        finished = await self._unless_forced(registry.wait_closed(), self._exit_wait_time)
        if closing is not None:
            closing.cancel()
        if self._force.done():
            return await self.stop_now()
        if not finished:
            report.websockets_cut = registry.cut_websockets()
            report.websocket_handlers_cut = registry.websocket_handlers()
            if report.websockets_cut or report.websocket_handlers_cut:
                log.warning("exit wait time of %.1f s reached: cut %d WebSocket(s) still open, "
                            "cancelling %d WebSocket handler(s) still running", self._exit_wait_time,
                            report.websockets_cut, report.websocket_handlers_cut)
            handlers = registry.active_tasks()
            unsent = registry.open - registry.active    # answered, output not yet written out
            report.cancelled = registry.cancel_active() + unsent
            registry.close_all()
            if handlers:
                # let cancelled handlers run their finally blocks before the hooks
                await self._unless_forced(asyncio.wait(handlers), 1.0)
            log.warning("exit wait time of %.1f s reached: cancelled %d request(s) still in flight",
                        self._exit_wait_time, report.cancelled)
            if self.metrics is not None:
                self.metrics.add_counter("cut", report.cancelled)
        else:
            log.info("in-flight requests finished in %.1f ms", _ms(step))

        if not await self._run_hooks():
            return await self.stop_now()
        await self._wait_listeners_closed()
        self._release()
        report.elapsed_ms = _ms(t0)
        log.info("stopped in %.1f ms, exit status %d", report.elapsed_ms, report.exit_status)

    async def _close_websockets(self) -> None:
        """The drain of WebSockets: apps, which see the shutdown signal, get
        ``ws_shutdown_grace`` to close theirs; then the server starts the
        close handshake on the others with ``ws_shutdown_code``."""
        registry = self.registry
        assert registry is not None
        cfg, report = self.config, self.report
        started = time.monotonic()
        grace = min(cfg.ws_shutdown_grace, self._exit_wait_time / 2)
        if grace > 0:
            try:
                await asyncio.wait_for(registry.wait_websockets_closed(), grace)
            except asyncio.TimeoutError:
                pass
        step = time.monotonic()
        report.websockets_closed_by_app = report.websockets - registry.open_websockets
        # the client's Close is waited for within what is left of the exit
        # wait (with a margin), so that a silent client is closed, not cut
        left = self._exit_wait_time - (time.monotonic() - started) - 0.25
        report.websockets_closed_by_server = registry.close_websockets(cfg.ws_shutdown_code, max(left, 0.0))
        log.info("WebSockets: %d closed by their app within the %.1f s grace; sent close %d to %d",
                 report.websockets_closed_by_app, grace, cfg.ws_shutdown_code,
                 report.websockets_closed_by_server)
        await registry.wait_websockets_closed()
        log.info("WebSockets closed in %.1f ms", _ms(step))

    async def _run_hooks(self) -> bool:
        """Run the shutdown hooks; False if a forced stop cut them short."""
        step = time.monotonic()
        running = asyncio.ensure_future(
            self.hooks.run_shutdown(self.config.hook_timeout, self.config.hook_budget))
        if not await self._unless_forced(running, None):
            log.warning("shutdown hooks cut short by the immediate stop")
            return False
        h = self.report.hooks = running.result()
        log.info("shutdown hooks: %d ran, %d failed, %d timed out, %d skipped in %.1f ms",
                 h.ran, h.failed, h.timed_out, h.skipped, _ms(step))
        return True

    async def stop_now(self) -> None:
        """The immediate stop: close everything, run no (more) hooks."""
        t0 = time.monotonic()
        self.report.forced = True
        self.state = State.DRAINING
        if self.registry is not None:
            self.report.cancelled = max(self.report.cancelled, self.registry.active)
        self._release()
        self.report.elapsed_ms = _ms(t0)
        log.warning("stopped immediately (%s): %d request(s) cut, no further shutdown hook run",
                    self.report.trigger, self.report.cancelled)

    async def _unless_forced(self, aw: Any, timeout: Optional[float]) -> bool:
        """Await ``aw`` unless the stop is forced or ``timeout`` passes first;
        True when ``aw`` finished."""
        task = asyncio.ensure_future(aw)
        done, _ = await asyncio.wait({task, self._force}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            task.cancel()
            return False
        return True

    def _close_listeners(self) -> None:
        for listener in self._listeners:
            listener.close()
        if self.config.uds and listen.remove_unix(self.config.uds, self._uds_identity):
            # a proxy now gets "no such file" at once
            self._uds_identity = None
            log.info("removed the socket file %s", self.config.uds)

    async def _wait_listeners_closed(self) -> None:
        for listener in self._listeners:
            try:
                await asyncio.wait_for(listener.wait_closed(), 1.0)
            except asyncio.TimeoutError:
                log.warning("listener did not close within 1 s")

    def _release(self) -> None:
        """Close the listeners, abort whatever connection is left, stop the
        timeout sweep.  Safe to call more than once."""
        self._close_listeners()
        self._listeners.clear()
        if self.registry is not None:
            self.registry.begin_drain()
            self.registry.close_all()
            self.registry.stop()
        self.state = State.STOPPED

    # ---- signals ----

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.config.signal_waiter is not None:
            self._waiter_task = loop.create_task(self._run_signal_waiter())
            return
        if not self.config.handle_signals:
            return
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            prev = signal.getsignal(sig)
            if sig == signal.SIGHUP and prev == signal.SIG_IGN:
                log.info("SIGHUP is ignored (nohup): leaving it alone")
                continue
            self._prev_handlers[sig] = prev
            loop.add_signal_handler(sig, self._on_signal, sig)
        # a supervisor starts its workers with these signals blocked, so one
        # that comes while the worker starts up waits for these handlers
        signal.pthread_sigmask(signal.SIG_UNBLOCK, self._prev_handlers)

    def _restore_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig, prev in self._prev_handlers.items():
            loop.remove_signal_handler(sig)
            if prev is not None:
                signal.signal(sig, prev)
        self._prev_handlers.clear()

    def _on_signal(self, sig: int) -> None:
        """Runs on the loop (not in the C signal handler): decide and record."""
        name = signal.Signals(sig).name
        draining = self._stop.done()
        if draining:
            if sig in (signal.SIGTERM, signal.SIGINT):
                self.request_stop(IMMEDIATE, f"second {name}")
            else:
                log.info("%s during the drain: ignored", name)
            return
        if self.config.signal_policy == "legacy" and sig == signal.SIGTERM:
            self.request_stop(IMMEDIATE, name)
        else:
            self.request_stop(GRACEFUL, name)

    async def _run_signal_waiter(self) -> None:
        waiter = self.config.signal_waiter
        assert waiter is not None
        try:
            mode = await waiter()
        except Exception:
            log.exception("the custom signal waiter failed: stopping immediately")
            mode = IMMEDIATE
        if mode not in (GRACEFUL, IMMEDIATE):
            log.error("the custom signal waiter returned %r (expected %r or %r): stopping immediately",
                      mode, GRACEFUL, IMMEDIATE)
            mode = IMMEDIATE
        self.request_stop(mode, "custom signal waiter")


def new_event_loop() -> asyncio.AbstractEventLoop:
    import uvloop
    return uvloop.new_event_loop()


def run(app: Any, config: Optional[Config] = None, workers: Optional[int] = None, **settings: Any) -> int:
    """Run ``app`` on a new uvloop until it is stopped; return the exit status.

    ``workers=N`` runs N worker processes under a supervisor, as ``fastsrv
    run --workers N``: each worker imports the app, so ``app`` must be
    importable: a ``"module:attr"`` string, or an object bound to a name in
    an importable module (or in the script being run, guarded by ``if
    __name__ == "__main__":``)."""
    if workers is None:
        return run_on_uvloop(Server(app, config, **settings).serve())
    from fastsrv import cli
    from fastsrv.supervisor import SUPERVISOR_FD_ENV
    if SUPERVISOR_FD_ENV in os.environ:
        raise ServerStateError("fastsrv.run(..., workers=N) ran again inside a worker importing the app: "
                               "call it under `if __name__ == \"__main__\":`")
    spec, app_dir = app_reference(app)
    final = replace(config, **settings) if config is not None else Config(**settings)
    return cli.main(["run", spec, "--app-dir", app_dir, "--workers", str(workers), *cli.config_argv(final)])


def app_reference(app: Any) -> tuple[str, str]:
    """``("module:attr", app_dir)`` by which a worker process can import ``app``."""
    if isinstance(app, str):
        return app, os.getcwd()
    for name, module in list(sys.modules.items()):
        if module is None or name.startswith("fastsrv."):
            continue
        for attr, value in list(vars(module).items()):
            if value is app and not attr.startswith("__"):
                if name == "__main__":
                    path = getattr(module, "__file__", None)
                    if not path:
                        continue
                    return f"{os.path.splitext(os.path.basename(path))[0]}:{attr}", os.path.dirname(
                        os.path.abspath(path))
                return f"{name}:{attr}", os.getcwd()
    raise ConfigError("workers=N needs an app each worker can import: pass it as 'module:attr', or bind it "
                      "to a name at the top level of a module")


def run_on_uvloop(main: Any, leftover_timeout: float = 1.0) -> Any:
    """Run the coroutine ``main`` on a new uvloop and close the loop.

    Unlike ``asyncio.run``, tasks still pending at the end (a shutdown hook
    that ignored its cancellation, say) are cancelled and given
    ``leftover_timeout`` seconds, never waited for without end.
    """
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            if leftovers:
                _, pending = loop.run_until_complete(asyncio.wait(leftovers, timeout=leftover_timeout))
                if pending:
                    log.warning("%d task(s) ignored cancellation at exit: abandoned", len(pending))
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), leftover_timeout))
        except (asyncio.TimeoutError, RuntimeError) as exc:
            log.warning("loop clean-up at exit incomplete: %r", exc)
        finally:
            asyncio.set_event_loop(None)
            loop.close()
