"""The connection core: an HTTP/1.1 protocol on uvloop transports.

One :class:`HttpProtocol` per connection parses requests in C over the bytes
it receives, routes them with :class:`Router`, runs the handler (a coroutine
that finishes without suspending is completed in place, without a Task) and
serializes every response of one read into one ``transport.write``.  The
:class:`ConnectionRegistry` is where the control plane meets the core: it
knows which connections are idle and which are handling a request, closes the
idle ones on request, and wakes a waiter when the last active one goes idle.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.ref cimport PyObject, Py_XDECREF
from cpython.dict cimport PyDict_Copy, PyDict_DelItem, PyDict_GetItem, PyDict_SetDefault
from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.contextvars cimport PyContext_Copy, PyContext_CopyCurrent, PyContext_Enter, PyContext_Exit
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.string cimport memchr
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from fastsrv._parser cimport (
    RequestParser, Limits, HeaderSpan, _ieq,
    PARSE_NEED_MORE, PARSE_DONE, PARSE_ERROR, BODY_NONE, BODY_LENGTH,
)
from fastsrv._request cimport Request, BodyStream, ConnectionBase, ShutdownSignal
from fastsrv._inplace cimport run_in_place, start_task, as_coroutine
from fastsrv._websocket cimport WebSocketConnection, WsConfig, Deflate, Closed, WebSocket, new_connection
from fastsrv._response cimport (
    WriteBuffer, Response, StreamingResponse, shared_buffer, write_head, write_simple,
    write_asgi_head, end_head, content_type_line, body_allowed, HeadLines, default_head,
)
from fastsrv._proxy cimport ProxyHeaders, has_proxy_headers
from fastsrv._metrics cimport (Metrics, G_IN_FLIGHT, G_OPEN, G_WEBSOCKETS, G_DRAINING,
                               F_CONNECTIONS_TOTAL, F_WEBSOCKETS_TOTAL)

import asyncio
import logging
import json as _json
import types
from socket import SOL_SOCKET, SO_LINGER
from struct import pack as _pack
from urllib.parse import unquote

from fastsrv._request import BodyError, ClientDisconnected
from fastsrv._websocket import (ConnectionClosed, HandshakeError, WebSocketDisconnect, accept_key,
                                check_handshake, negotiate_deflate)
from fastsrv._request import object_counters as _request_counters

logger = logging.getLogger("fastsrv.error")

cdef object CoroutineType = types.CoroutineType
cdef object _Future = asyncio.Future
cdef bytes CT_TEXT = content_type_line("text/plain; charset=utf-8")
cdef bytes CT_OCTET = content_type_line("application/octet-stream")
cdef bytes CT_JSON = content_type_line("application/json")
cdef str SCHEME_HTTP = "http"
cdef str SCHEME_HTTPS = "https"

cdef enum Deadline:
    DL_NONE = 0
    DL_IDLE = 1
    DL_HEADER = 2
    DL_BODY = 3
    DL_WRITE = 4

# The connection whose read callback is running: the shared output buffer
# holds its bytes only.  Anything written for another connection meanwhile
# (an ASGI app calling a different connection's send, say) goes through
# _side and is flushed to that connection at once.
cdef object _dispatching = None
cdef WriteBuffer _side = WriteBuffer(4096)

cdef bytes _LINGER_RESET = _pack("ii", 1, 0)
cdef long long _cycles_created = 0
cdef long long _cycles_freed = 0
cdef long long _conn_created = 0
cdef long long _conn_freed = 0


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


def monotonic():
    """The clock the core's deadlines use (seconds)."""
    return _now()


def debug_counters():
    """Connections, requests, request body streams and ASGI exchanges
    created and freed since start: each pair is equal once all are gone."""
    counters = {"connections_created": _conn_created, "connections_freed": _conn_freed,
                "asgi_cycles_created": _cycles_created, "asgi_cycles_freed": _cycles_freed}
    counters.update(_request_counters())
    return counters


class HTTPError(Exception):
    """Raise in a handler to answer with ``status`` and a short text body."""

    def __init__(self, int status, str detail=None, headers=None):
        super().__init__(status, detail)
        self.status = status
        self.detail = detail
        self.headers = list(headers.items() if isinstance(headers, dict) else headers) if headers else None


cdef class ProtocolConfig:
    """Per-server settings the connections read (limits and timeouts in s).

    ``access_log``: None, or a callable ``(client, request, status, bytes,
    seconds)`` called once per response.  ``head``: the lines every response
    head gets (Date, Server, ``--header``).  ``tls``: the listener speaks
    TLS (``scheme`` is https).  ``proxy``: whose proxy headers are trusted
    (None: proxy headers are ignored).  ``metrics``: where requests are
    counted (None: nothing is).  ``limit_concurrency``: past this many
    requests in flight, a request is answered 503 (0: no limit)."""
    cdef public Limits limits
    cdef public double header_timeout
    cdef public double body_timeout
    cdef public double keepalive_timeout
    cdef public double write_timeout
    cdef public Py_ssize_t body_high_water
    cdef public Py_ssize_t pipeline_high_water
    cdef public object access_log
    cdef public WsConfig ws            # None: WebSocket upgrades are refused (501)
    cdef public bint underscores_in_headers   # keep fields named with "_" (dropped by default)
    cdef public HeadLines head
    cdef public bint tls
    cdef public ProxyHeaders proxy
    cdef public Metrics metrics
    cdef public Py_ssize_t limit_concurrency

    def __init__(self, Limits limits=None, double header_timeout=10.0, double body_timeout=30.0,
                 double keepalive_timeout=5.0, Py_ssize_t body_high_water=256 * 1024,
                 Py_ssize_t pipeline_high_water=256 * 1024, access_log=None, double write_timeout=30.0,
                 WsConfig ws=WsConfig(), HeadLines head=None, bint tls=False, ProxyHeaders proxy=None,
                 Metrics metrics=None, Py_ssize_t limit_concurrency=0,
                 bint underscores_in_headers=False):
        self.limits = limits if limits is not None else Limits()
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.keepalive_timeout = keepalive_timeout
        self.write_timeout = write_timeout
        self.body_high_water = body_high_water
        self.pipeline_high_water = pipeline_high_water
        self.access_log = access_log
        self.ws = ws
        self.head = head if head is not None else default_head()
        self.tls = tls
        self.proxy = proxy
        self.metrics = metrics
        self.limit_concurrency = limit_concurrency
        self.underscores_in_headers = underscores_in_headers


@cython.final
cdef class Route:
    """The handlers of one path, by method, and its WebSocket handler."""
    cdef dict handlers
    cdef frozenset async_methods
    cdef str allow
    cdef object websocket

    def __init__(self, dict handlers, async_methods=(), websocket=None):
        self.handlers = dict(handlers)
        self.async_methods = frozenset(async_methods)
        self.websocket = websocket
        methods = set(handlers)
        if "GET" in methods:
            methods.add("HEAD")
        self.allow = ", ".join(sorted(methods))


@cython.final
cdef class Router:
    """Static paths are one dict lookup; other paths go to ``dynamic``,
    a callable ``path -> (Route, params) | None`` (the app's matcher)."""
    cdef dict static
    cdef object dynamic
    cdef str last_allow

    def __init__(self):
        self.static = {}
        self.dynamic = None

    def add(self, str path, Route route):
        self.static[path] = route

    def set_dynamic(self, matcher):
        self.dynamic = matcher

    def copy(self):
        """A router with the same routes, for a server to add its own paths
        (health, metrics) to without changing the app's."""
        cdef Router r = Router()
        r.static = dict(self.static)
        r.dynamic = self.dynamic
        return r

    cdef inline object resolve(self, Request req, bint* is_async, int* status):
        cdef object route_obj = self.static.get(req.path)
        cdef Route route
        cdef object handler
        cdef object match
        if route_obj is None:
            if self.dynamic is None:
                status[0] = 404
                return None
            match = self.dynamic(req.path)
            if match is None:
                status[0] = 404
                return None
            route_obj, req._params = match
        route = <Route?>route_obj
        handler = route.handlers.get(req.method)
        if handler is None:
            if req.method == "HEAD":
                handler = route.handlers.get("GET")
            if handler is None:
                # a path with only a WebSocket handler has no HTTP resource
                status[0] = 405 if route.handlers else 404
                self.last_allow = route.allow
                return None
            is_async[0] = "GET" in route.async_methods
        else:
            is_async[0] = req.method in route.async_methods
        return handler

    cdef object resolve_websocket(self, Request req):
        """The WebSocket handler of the request's path, or None."""
        cdef object route_obj = self.static.get(req.path)
        cdef object match
        if route_obj is None and self.dynamic is not None:
            match = self.dynamic(req.path)
            if match is not None:
                route_obj, params = match
                if (<Route?>route_obj).websocket is not None:
                    req._params = params
        if route_obj is None:
            return None
        return (<Route?>route_obj).websocket


@cython.final
cdef class ConnectionRegistry:
    """Every open connection of a server, and whether it is handling a request.

    A connection is *active* from the first byte of a request until its
    response is written with nothing more pending; *idle* otherwise.
    """
    cdef set connections
    cdef set websockets
    cdef readonly Py_ssize_t active
    cdef readonly long long requests_total
    cdef readonly long long closed_total
    cdef readonly long long websockets_total
    cdef public Py_ssize_t max_connections
    cdef readonly bint draining
    cdef readonly ProtocolConfig config
    cdef readonly ShutdownSignal shutdown_signal
    cdef object loop
    cdef object _idle_waiters
    cdef object _closed_waiters
    cdef object _ws_waiters
    cdef object _sweeper
    cdef set tasks
    cdef set ws_tasks
    cdef object base_context
    cdef object _done_future
    cdef Metrics metrics
    cdef readonly bint gentle
    cdef double idle_grace
    cdef public long long request_limit
    cdef public object on_request_limit

    def __init__(self, ProtocolConfig config=None, Py_ssize_t max_connections=0):
        self.connections = set()
        self.websockets = set()
        self.active = 0
        self.requests_total = 0
        self.closed_total = 0
        self.max_connections = max_connections
        self.draining = False
        self.config = config if config is not None else ProtocolConfig()
        self.shutdown_signal = ShutdownSignal()
        self.loop = None
        self._idle_waiters = []
        self._closed_waiters = []
        self._ws_waiters = []
        self._sweeper = None
        self.tasks = set()
        self.ws_tasks = set()
        # every request starts from a copy of this context, wherever the
        # connection happens to be processing it
        self.base_context = PyContext_CopyCurrent()
        self.metrics = self.config.metrics
        # after this many responses on_request_limit() is called, once (0: never)
        self.request_limit = 0
        self.on_request_limit = None

    @property
    def open(self):
        """Connections currently open."""
        return len(self.connections)

    @property
    def idle(self):
        """Open connections with no request in progress."""
        return len(self.connections) - self.active

    @property
    def open_websockets(self):
        """WebSocket connections currently open (or closing)."""
        return len(self.websockets)

    def close_websockets(self, int code, double timeout):
        """Start the close handshake with ``code`` on every open WebSocket;
        each waits at most ``timeout`` seconds for its client's Close, then
        closes TCP.  Return how many."""
        cdef WebSocketConnection ws
        cdef int n = 0
        for ws in list(self.websockets):
            if not ws.closing:
                ws.close_for_shutdown(code, timeout)
                n += 1
        return n

    async def wait_websockets_closed(self):
        """Return when no WebSocket is open (at once if none is)."""
        if not self.websockets:
            return
        fut = self.loop.create_future()
        self._ws_waiters.append(fut)
        await fut

    def _websocket_closed(self, WebSocketConnection ws):
        self.websockets.discard(ws)
        if self.metrics is not None:
            self.metrics.set(G_WEBSOCKETS, len(self.websockets))
        if not self.websockets and self._ws_waiters:
            waiters = self._ws_waiters
            self._ws_waiters = []
            _wake_all(waiters)
        self._maybe_all_closed()

    cdef void _maybe_all_closed(self):
        if not self.connections and not self.tasks and not self.websockets and self._closed_waiters:
            waiters = self._closed_waiters
            self._closed_waiters = []
            _wake_all(waiters)

    def start(self, loop):
        """Attach to ``loop`` and start the once-a-second timeout sweep."""
        self.loop = loop
        if self._sweeper is None:
            self._sweeper = loop.call_later(1.0, self._sweep)

    def stop(self):
        """Stop the timeout sweep."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _sweep(self):
        cdef double now = _now()
        cdef HttpProtocol p
        self._sweeper = self.loop.call_later(1.0, self._sweep)
        for p in list(self.connections):
            if p.deadline_kind != DL_NONE and p.deadline <= now:
                try:
                    p.on_timeout()
                except Exception:
                    logger.exception("timeout handling failed; closing the connection")
                    p.cut()

    def begin_drain(self, bint gentle=False):
        """Enter the drain: every response from now on carries
        ``Connection: close``, idle connections are closed as they appear,
        and the shutdown signal handlers can await is set.

        ``gentle`` (a worker being replaced while its siblings serve):
        a connection is closed after its next response rather than the
        moment it is idle, and one accepted meanwhile is still served, so a
        client writing its next request at that instant never finds the
        connection closed under it; :meth:`expire_idle` bounds the wait."""
        self.draining = True
        self.gentle = gentle
        self.shutdown_signal.set()
        if self.metrics is not None:
            self.metrics.set(G_DRAINING, 1.0)

    def expire_idle(self, double grace):
        """Close every idle connection that stays idle for ``grace`` more
        seconds (by the timeout sweep); return how many are idle now."""
        cdef HttpProtocol p
        cdef int n = 0
        cdef double at = _now() + grace
        self.idle_grace = grace
        for p in self.connections:
            if not p.active and not p.closing:
                n += 1
                if p.deadline_kind != DL_IDLE or p.deadline > at:
                    p.deadline_kind = DL_IDLE
                    p.deadline = at
        return n

    cdef void response_counted(self):
        self.requests_total += 1
        if self.requests_total == self.request_limit and self.on_request_limit is not None:
            # the control plane decides what to do, outside this read callback
            self.loop.call_soon(self.on_request_limit)

    def close_idle(self):
        """Close every idle connection now; return how many were closed."""
        cdef HttpProtocol p
        cdef int n = 0
        for p in list(self.connections):
            if not p.active and not p.closing:
                p.close()
                n += 1
        return n

    async def wait_idle(self):
        """Return when no connection is active (at once if none is)."""
        if self.active == 0:
            return
        fut = self.loop.create_future()
        self._idle_waiters.append(fut)
        await fut

    async def wait_closed(self):
        """Return when every connection is closed and every handler task
        has ended (at once if that is so already).

        During the drain this is the end of in-flight work: a connection
        closes once its last response has been written out, not merely
        handed to the transport; a handler still running after its client
        left (or an ASGI app's work after its response) is waited for too,
        and every WebSocket until it is closed."""
        if not self.connections and not self.tasks and not self.websockets:
            return
        fut = self.loop.create_future()
        self._closed_waiters.append(fut)
        await fut

    @property
    def running_tasks(self):
        """Handler tasks not yet finished."""
        return len(self.tasks)

    def detached_tasks(self):
        """How many handler tasks run with no active connection waiting on
        them: work after the response was sent, or for a client that left."""
        cdef HttpProtocol p
        cdef set attached = set()
        for p in self.connections:
            if p.active:
                if p.task is not None:
                    attached.add(p.task)
                if p.cycle is not None and p.cycle.task is not None:
                    attached.add(p.cycle.task)
        return sum([1 for t in self.tasks if not t.done() and t not in attached])

    def active_tasks(self):
        """The handler tasks still running."""
        return [t for t in self.tasks if not t.done()]

    def cancel_active(self):
        """Cancel the handlers of active connections and close those
        connections, then cancel every other handler task still running;
        return how many requests were cut."""
        cdef HttpProtocol p
        cdef int n = 0
        cdef set cut_tasks = set()
        for p in list(self.connections):
            if p.active:
                if p.task is not None:
                    cut_tasks.add(p.task)
                if p.cycle is not None and p.cycle.task is not None:
                    cut_tasks.add(p.cycle.task)
                p.cut()
                n += 1
        for t in list(self.tasks):
            if not t.done() and t not in cut_tasks:
                t.cancel()
                if t not in self.ws_tasks:
                    n += 1
        return n

    def websocket_handlers(self):
        """How many WebSocket handlers (and ASGI WebSocket apps) are still running."""
        return sum([1 for t in self.ws_tasks if not t.done()])

    def cut_websockets(self):
        """Drop every WebSocket still open, with no close handshake (the
        exit wait deadline); return how many."""
        cdef WebSocketConnection ws
        cdef list left = list(self.websockets)
        for ws in left:
            ws.abort()
        return len(left)

    cdef object done_future(self):
        """A finished future of this loop, awaited by whoever needs an
        awaitable that does not wait."""
        if self._done_future is None:
            self._done_future = self.loop.create_future()
            self._done_future.set_result(None)
        return self._done_future

    cdef void track(self, object task):
        """Count ``task`` as in-flight work; its done callback must call
        :meth:`untrack` (one callback per task instead of two)."""
        self.tasks.add(task)

    cdef void untrack(self, object task):
        self.tasks.discard(task)
        if self.ws_tasks:
            self.ws_tasks.discard(task)
        self._maybe_all_closed()

    def close_all(self):
        """Abort every connection and cancel every handler task still
        running (an immediate stop); return how many connections."""
        cdef HttpProtocol p
        cdef WebSocketConnection ws
        cdef list left = list(self.connections)
        cdef list sockets = list(self.websockets)
        for p in left:
            p.cut()
        for ws in sockets:
            ws.abort()
        for t in list(self.tasks):
            if not t.done():
                t.cancel()
        return len(left) + len(sockets)

    cdef inline void became_active(self, HttpProtocol p):
        p.active = True
        self.active += 1
        if self.metrics is not None:
            self.metrics.set(G_IN_FLIGHT, self.active)

    cdef inline void became_idle(self, HttpProtocol p):
        p.active = False
        self.active -= 1
        if self.metrics is not None:
            self.metrics.set(G_IN_FLIGHT, self.active)
        if self.active == 0 and self._idle_waiters:
            self._wake_idle_waiters()

    cdef void _wake_idle_waiters(self):
        waiters = self._idle_waiters
        self._idle_waiters = []
        _wake_all(waiters)

    cdef void removed(self, HttpProtocol p):
        if p in self.connections:
            self.connections.discard(p)
            self.closed_total += 1
            if self.metrics is not None:
                self.metrics.set(G_OPEN, len(self.connections))
            if p.active:
                self.became_idle(p)
            self._maybe_all_closed()


cdef class ASGIApp
cdef class ASGICycle


cdef void _wake_all(list waiters):
    for w in waiters:
        if not w.done():
            w.set_result(None)


@cython.final
cdef class HttpProtocol(ConnectionBase):
    """One client connection speaking HTTP/1.1."""
    cdef ConnectionRegistry registry
    cdef Router router
    cdef ProtocolConfig config
    cdef RequestParser parser
    cdef bytearray buf
    cdef bint active
    cdef bint busy
    cdef bint reading_body
    cdef bint closing
    cdef bint paused_reading
    cdef bint paused_writing
    cdef bint response_started
    cdef bint keep_alive
    cdef bint eof
    cdef int body_error_status
    cdef int stream_status
    cdef Request cur
    cdef BodyStream cur_stream
    cdef object pending_handler
    cdef object task
    cdef object drain_waiter
    cdef double deadline
    cdef int deadline_kind
    cdef readonly long long requests
    cdef ASGIApp asgi
    cdef ASGICycle cycle
    cdef object server_addr
    cdef dict scope_template
    cdef ProxyHeaders proxy         # set when the peer may send proxy headers
    cdef Metrics metrics
    cdef HeadLines head
    cdef bint timed                 # a response's duration is wanted (metrics, access log)
    cdef double read_at             # when the bytes being parsed were read
    cdef double started             # ... for the current request
    cdef long long sent_bytes       # body bytes of the current response
    cdef dict tls_ext               # the ASGI tls extension of this connection

    def __cinit__(self):
        global _conn_created
        _conn_created += 1

    def __dealloc__(self):
        global _conn_freed
        _conn_freed += 1

    def __init__(self, ConnectionRegistry registry, Router router, ASGIApp asgi=None):
        self.registry = registry
        self.router = router
        self.asgi = asgi
        self.config = registry.config
        self.loop = registry.loop
        self.parser = RequestParser(self.config.limits, self.config.underscores_in_headers)
        self.shutdown_signal = registry.shutdown_signal
        self.metrics = self.config.metrics
        self.head = self.config.head
        self.timed = self.metrics is not None or self.config.access_log is not None

    # ---- asyncio.Protocol ----

    def connection_made(self, transport):
        self.transport = transport
        self.registry.connections.add(self)
        self.scheme = SCHEME_HTTPS if self.config.tls else SCHEME_HTTP
        if self.metrics is not None:
            self.metrics.set(G_OPEN, len(self.registry.connections))
            self.metrics.add(F_CONNECTIONS_TOTAL, 1.0)
        if self.config.proxy is not None and self.config.proxy.trusts_peer(self.client_address()):
            self.proxy = self.config.proxy
        if (self.registry.max_connections and
                len(self.registry.connections) > self.registry.max_connections):
            out = self.out()
            write_simple(out, 503, "server at its connection limit\n", False, self.head)
            self.flush()
            self.close()
            return
        if self.registry.draining:
            if not self.registry.gentle:
                self.close()
                return
            # accepted as the listener closed: served, but not waited for long
            self.set_deadline(DL_IDLE, self.registry.idle_grace)
            return
        self.set_deadline(DL_IDLE, self.config.keepalive_timeout)

    def connection_lost(self, exc):
        self.closing = True
        self.disconnected = True
        self.deadline_kind = DL_NONE
        self.registry.removed(self)
        self._wake_disconnect()
        if self.cur_stream is not None and self.reading_body:
            self.cur_stream.fail(ClientDisconnected("the client closed the connection mid-body"))
        self._wake_drain()
        if self.response_started and self.task is not None and not self.task.done():
            # a streaming response: stop its generator now, not at its next chunk
            self.task.cancel()
        self.buf = None

    cdef void _wake_disconnect(self):
        cdef object w = self.disconnect_waiter
        if w is not None and not w.done():
            w.set_result(None)
        if self.cycle is not None:
            self.cycle.wake()

    def data_received(self, bytes data):
        if self.closing:
            return
        try:
            self.receive(data)
        except BaseException as exc:
            self.internal_error(exc)

    cdef int receive(self, bytes data) except -1:
        cdef Py_ssize_t consumed, n
        cdef bytearray b
        global _dispatching
        if self.timed:
            self.read_at = _now()
        _dispatching = self
        try:
            if self.buf is None or PyByteArray_GET_SIZE(self.buf) == 0:
                n = PyBytes_GET_SIZE(data)
                consumed = self.process(data, PyBytes_AS_STRING(data), n)
                if consumed < n and not self.closing:
                    self.buf = bytearray(data[consumed:])
            else:
                b = self.buf
                b += data
                consumed = self.process(None, PyByteArray_AS_STRING(b), PyByteArray_GET_SIZE(b))
                if not self.closing:
                    del b[:consumed]
        finally:
            _dispatching = None
        self.flush()
        self.after_io()
        return 0

    cdef int internal_error(self, object exc) except -1:
        """A failure inside the core itself: drop what this connection had
        queued in the shared buffer (it must never reach another client),
        log it, cut the connection."""
        self.out().length = 0
        self.cut()
        if not isinstance(exc, Exception):
            raise exc
        logger.error("internal error on a connection; closing it", exc_info=exc)
        return 0

    def eof_received(self):
        # The client will send nothing more.  A body cut short can never be
        # completed: treat that as a disconnect.  Otherwise still answer what
        # was sent (a half-closed client), but let the handler see that the
        # client went away, and close once the last response is written.
        self.eof = True
        if self.reading_body:
            return False
        if self.busy or (self.paused_writing and self.buf is not None and
                         PyByteArray_GET_SIZE(self.buf) > 0):
            self.disconnected = True
            self._wake_disconnect()
            return True
        return False

    def pause_writing(self):
        self.paused_writing = True
        if self.deadline_kind != DL_WRITE:
            self.set_deadline(DL_WRITE, self.config.write_timeout)

    def resume_writing(self):
        self.paused_writing = False
        if self.deadline_kind == DL_WRITE:
            if self.reading_body:
                self.set_deadline(DL_BODY, self.config.body_timeout)
            else:
                self.deadline_kind = DL_NONE
        try:
            self._wake_drain()
            if not self.busy and self.buf:
                self.resume()
            else:
                self.after_io()
        except BaseException as exc:
            self.internal_error(exc)

    # ---- parsing and dispatch ----

    cdef Py_ssize_t process(self, object owner, const char* p, Py_ssize_t n) except -1:
        cdef Py_ssize_t pos = 0, consumed = 0, ds = 0, dl = 0
        cdef RequestParser parser = self.parser
        cdef int rc
        cdef Request req
        cdef bytes raw
        while pos < n and not self.closing:
            if self.reading_body:
                rc = parser.parse_body(p + pos, n - pos, &consumed, &ds, &dl)
                if rc == PARSE_ERROR:
                    self.body_failed()
                    return n
                if dl:
                    self.cur_stream.feed(PyBytes_FromStringAndSize(p + pos + ds, dl))
                pos += consumed
                if rc == PARSE_DONE:
                    self.body_complete()
                elif self.deadline_kind == DL_BODY:
                    self.deadline = _now() + self.config.body_timeout
                continue
            if self.busy or self.paused_writing:
                break
            if parser.scan_pos == 0 and parser.line_count == 0:
                pos += parser.skip_empty_lines(p + pos, n - pos)
                if pos == n:
                    break
                if not self.active:
                    self.registry.became_active(self)
            rc = parser.read_head(p + pos, n - pos)
            if rc == PARSE_NEED_MORE:
                # the bytes so far can still begin a valid request (read_head
                # refuses a head at its first invalid byte); the head timeout
                # runs from its first partial read (a whole head needs no clock)
                if self.deadline_kind != DL_HEADER:
                    self.set_deadline(DL_HEADER, self.config.header_timeout)
                break
            if rc == PARSE_ERROR:
                self.reject(parser.error_status, parser.error_reason)
                return n
            if owner is None:
                raw = PyBytes_FromStringAndSize(p + pos, parser.head_len)
                req = Request.new(raw, 0, parser, self)
            else:
                req = Request.new(<bytes>owner, pos, parser, self)
            pos += parser.head_len
            pos = self.start_request(req, p, pos, n)
            if self.out().length >= self.config.pipeline_high_water:
                # many pipelined responses: hand them to the transport now so
                # that a client that does not read pauses us (pause_writing)
                self.flush()
        return pos

    cdef Py_ssize_t start_request(self, Request req, const char* p, Py_ssize_t pos,
                                  Py_ssize_t n) except -1:
        cdef RequestParser parser = self.parser
        cdef bint is_async = False
        cdef int status = 0
        cdef object handler
        cdef Py_ssize_t cl
        self.requests += 1
        self.busy = True
        self.cur = req
        self.response_started = False
        self.body_error_status = 0
        self.keep_alive = req.keep_alive
        self.deadline_kind = DL_NONE
        if self.timed:
            # from the read that completed its head (pipelined requests share
            # it: one clock read per batch, and their wait behind the ones
            # before them is part of their time)
            self.started = self.read_at
            self.sent_bytes = 0
        if self.proxy is not None and has_proxy_headers(req):
            self.proxy.apply(req)
        if req.upgrade and _wants_websocket(req) and self.start_websocket(req, p, pos, n):
            return n
        if self.config.limit_concurrency and self.registry.active > self.config.limit_concurrency:
            handler = None
            status = 503
        else:
            handler = self.router.resolve(req, &is_async, &status)
        if handler is None and self.asgi is not None and status != 503:
            is_async = True     # an ASGI app reads the body as it comes
        if parser.body_kind == BODY_NONE:
            parser.reset()
        elif parser.body_kind == BODY_LENGTH and n - pos >= parser.remaining:
            cl = <Py_ssize_t>parser.remaining
            req.set_body(PyBytes_FromStringAndSize(p + pos, cl))
            pos += cl
            parser.reset()
        else:
            self.cur_stream = req.open_stream()
            self.reading_body = True
            self.set_deadline(DL_BODY, self.config.body_timeout)
            if handler is not None and not is_async:
                # a sync handler runs once the whole body is here
                self.pending_handler = handler
                if self.cur_stream.continue_pending:
                    self.cur_stream.continue_pending = False
                    self.send_continue()
                return pos
        if handler is not None:
            self.invoke(handler, req)
        elif self.asgi is not None and status != 503:
            self.start_asgi(req)
        else:
            self.respond_error(status, self.router.last_allow)
        return pos

    cdef int body_complete(self) except -1:
        cdef object handler = self.pending_handler
        cdef BodyStream stream = self.cur_stream
        self.reading_body = False
        self.deadline_kind = DL_NONE
        stream.finish(self.parser.trailers if self.parser.body_kind != BODY_LENGTH else None)
        self.parser.reset()
        if handler is not None:
            self.pending_handler = None
            self.cur.set_body(stream.take())
            self.invoke(handler, self.cur)
        elif not self.busy:
            self.cur_stream = None
        return 0

    cdef int body_failed(self) except -1:
        cdef int status = self.parser.error_status
        cdef str reason = self.parser.error_reason
        self.reading_body = False
        self.keep_alive = False
        self.body_error_status = status
        self.cur_stream.fail(BodyError(f"{status}: {reason}"))
        if self.pending_handler is not None:
            self.pending_handler = None
            self.reject(status, reason)
        elif not self.busy:
            # the response was already written: a second one would answer
            # a request the client never sent
            self.close()
        elif self.cycle is not None and not self.cycle.head_written:
            # an ASGI app must not answer an upload that was cut short as if
            # it had arrived whole: the client gets the error status now
            self.cycle.answer_error(None)
        return 0

    cdef int invoke(self, object handler, Request req) except -1:
        # each request runs in its own copy of the context: a ContextVar set
        # by one handler is never seen by another request
        cdef object ctx = PyContext_Copy(self.registry.base_context)
        PyContext_Enter(ctx)
        try:
            self.run_handler(handler, req, ctx)
        finally:
            PyContext_Exit(ctx)
        return 0

    cdef int start_asgi(self, Request req) except -1:
        cdef ASGICycle cycle
        cdef object ctx, coro
        if req.upgrade and _wants_websocket(req):
            # WebSocket is off (--ws off): refused, never left hanging
            self.keep_alive = False
            self.write_text(self.out(), 501,
                            "WebSocket is turned off on this server (--ws off)\n", False)
            self.response_done(501, False)
            return 0
        cycle = ASGICycle.new(self, req, self.cur_stream if self.reading_body else None)
        self.cycle = cycle
        ctx = PyContext_Copy(self.registry.base_context)
        PyContext_Enter(ctx)
        try:
            coro = self.call_asgi(cycle)
            if coro is not None and self.asgi.eager and type(coro) is CoroutineType:
                self.run_asgi_in_place(cycle, coro, ctx)
                return 0
        finally:
            PyContext_Exit(ctx)
        if coro is not None:
            self.run_asgi_task(cycle, coro, ctx)
        return 0

    cdef object call_asgi(self, ASGICycle cycle):
        """The app's awaitable for this exchange; None if calling it failed
        (the failure is answered)."""
        try:
            return self.asgi.app(self.asgi.scope(cycle.req, self), cycle.receive, cycle.send)
        except Exception as exc:
            cycle.failed(exc)
        except BaseException as exc:
            self.cut()
            if not isinstance(exc, asyncio.CancelledError):
                raise
        return None

    cdef int run_asgi_in_place(self, ASGICycle cycle, object coro, object ctx) except -1:
        cdef bint finished = False
        cdef object task
        try:
            task = run_in_place(self.loop, coro, ctx, &finished)
            if finished:
                cycle.returned()
            else:
                cycle.attach(task)
        except Exception as exc:
            cycle.failed(exc)
        except BaseException as exc:
            self.cut()
            if not isinstance(exc, asyncio.CancelledError):
                raise
        return 0

    cdef int run_asgi_task(self, ASGICycle cycle, object coro, object ctx) except -1:
        cdef object task
        if type(coro) is not CoroutineType:
            coro = as_coroutine(coro)
        task = start_task(self.loop, coro, ctx, self.asgi.eager_start)
        if task.done():
            # an eager Task that finished in its first step
            cycle.task_ended(task)
        else:
            cycle.attach(task)
        return 0

    # ---- WebSocket: the handshake, then the hand-over ----

    cdef bint start_websocket(self, Request req, const char* p, Py_ssize_t pos, Py_ssize_t n) except -1:
        """Take a WebSocket upgrade request: False when nothing serves it
        (it is then an ordinary request), True when it is answered here or
        waits for the app (the bytes after its head wait for the 101)."""
        cdef object handler = None
        cdef WebSocketUpgrade upgrade
        cdef list headers
        if self.config.ws is None:
            return False
        if self.asgi is None:
            handler = self.router.resolve_websocket(req)
            if handler is None:
                return False
        if self.parser.body_kind != BODY_NONE:
            self.reject(400, "a WebSocket handshake request has no body")
            return True
        self.parser.reset()
        self.buf = bytearray(p[pos:n]) if pos < n else None
        headers = asgi_headers(req)
        try:
            key, subprotocols, offers = check_handshake(req.method, req.version, headers)
        except HandshakeError as exc:
            answer_handshake_error(self, exc)
            return True
        if self.registry.draining:
            self.keep_alive = False
            self.write_text(self.out(), 503, "the server is shutting down\n", False)
            self.response_done(503, False)
            return True
        upgrade = WebSocketUpgrade.new(self, key, offers)
        if self.asgi is not None:
            self.run_asgi_websocket(req, upgrade, headers, subprotocols)
        else:
            self.run_native_websocket(req, upgrade, handler, subprotocols)
        return True

    cdef int run_asgi_websocket(self, Request req, WebSocketUpgrade upgrade, list headers,
                                list subprotocols) except -1:
        cdef ASGIWebSocket adapter = ASGIWebSocket.new(self, upgrade)
        cdef object coro
        try:
            coro = self.asgi.app(ws_scope(self.asgi, self, req, headers, subprotocols),
                                 adapter.receive, adapter.send)
            if type(coro) is not CoroutineType:
                coro = as_coroutine(coro)
        except Exception as exc:
            logger.error("Exception in ASGI app for WebSocket %s", req.path, exc_info=exc)
            upgrade.deny(500, None, b"Internal Server Error\n")
            return 0
        self.start_websocket_task(coro, adapter._done)
        return 0

    cdef int run_native_websocket(self, Request req, WebSocketUpgrade upgrade, object handler,
                                  list subprotocols) except -1:
        cdef WebSocket ws = WebSocket.new(upgrade, req, subprotocols, self.shutdown_signal)
        cdef NativeWebSocketRun run = NativeWebSocketRun.__new__(NativeWebSocketRun)
        cdef object coro
        run.http = self
        run.upgrade = upgrade
        run.ws = ws
        try:
            coro = handler(ws)
            if type(coro) is not CoroutineType:
                coro = as_coroutine(coro)
        except Exception as exc:
            logger.error("WebSocket handler for %s raised", req.path, exc_info=exc)
            upgrade.deny(500, None, b"Internal Server Error\n")
            return 0
        self.start_websocket_task(coro, run._done)
        return 0

    cdef int start_websocket_task(self, object coro, object done) except -1:
        """The app's side of a WebSocket in its own Task (started eagerly
        on Python 3.12+): it lives as long as the connection."""
        cdef object task = start_task(self.loop, coro, PyContext_Copy(self.registry.base_context), True)
        if task.done():
            done(task)
            return 0
        self.registry.track(task)
        if self.closing:
            # accepted and handed over already (in its first step)
            self.registry.ws_tasks.add(task)
        else:
            self.task = task
        task.add_done_callback(done)
        return 0

    cdef WebSocketConnection hand_over(self, Deflate deflate):
        """After the 101: the transport becomes a WebSocket connection's and
        this HTTP protocol is done."""
        cdef object transport = self.transport
        cdef bytearray rest = self.buf
        cdef object task = self.task
        cdef WebSocketConnection ws = new_connection(self.loop, transport, self.config.ws, deflate,
                                                     self.shutdown_signal, self.registry._websocket_closed)
        cdef Request req = self.cur
        self.registry.websockets.add(ws)
        self.registry.websockets_total += 1
        if task is not None:
            self.registry.ws_tasks.add(task)
        self.registry.response_counted()
        if self.metrics is not None:
            self.metrics.set(G_WEBSOCKETS, len(self.registry.websockets))
            self.metrics.add(F_WEBSOCKETS_TOTAL, 1.0)
        if self.timed and req is not None:
            self.count_response(req, 101)
        self.busy = False
        self.cur = None
        self.task = None
        self.buf = None
        self.closing = True
        self.deadline_kind = DL_NONE
        self.registry.removed(self)
        self.transport = None
        transport.set_protocol(ws)
        if self.paused_reading:
            self.paused_reading = False
            transport.resume_reading()
        if rest:
            ws.data_received(bytes(rest))
        return ws

    cdef int after_response(self) except -1:
        """An ASGI response completed: outside the read callback (in the
        app's Task) write it out and carry on with the connection."""
        if _dispatching is self or self.closing:
            return 0
        self.flush()
        if self.buf is not None and PyByteArray_GET_SIZE(self.buf):
            # pipelined requests: parsed outside the app's Task and context
            self.loop.call_soon(self._resume_later, context=PyContext_Copy(self.registry.base_context))
        else:
            self.after_io()
        return 0

    def _resume_later(self):
        try:
            self.resume()
        except BaseException as exc:
            self.internal_error(exc)

    cdef object server_address(self):
        if self.server_addr is None and self.transport is not None:
            addr = self.transport.get_extra_info("sockname")
            self.server_addr = tuple(addr[:2]) if isinstance(addr, tuple) else None
        return self.server_addr

    cdef object client_address(self):
        if self.peer is None and self.transport is not None:
            peer = self.transport.get_extra_info("peername")
            self.peer = tuple(peer[:2]) if isinstance(peer, tuple) else None
        return self.peer

    cdef int run_handler(self, object handler, Request req, object ctx) except -1:
        cdef object result
        cdef bint finished = False
        try:
            result = handler(req)
            if type(result) is CoroutineType:
                result = run_in_place(self.loop, result, ctx, &finished)
                if not finished:
                    self.task = result
                    self.registry.track(self.task)
                    self.task.add_done_callback(self._handler_done)
                    return 0
            self.send_result(result)
        except Exception as exc:
            self.handler_failed(exc)
        except BaseException as exc:
            # CancelledError before the first suspension, KeyboardInterrupt...
            self.cut()
            if not isinstance(exc, asyncio.CancelledError):
                raise
        return 0

    def _handler_done(self, task):
        self.registry.untrack(task)
        try:
            self.handler_done(task)
        except BaseException as exc:
            self.internal_error(exc)

    cdef int handler_done(self, object task) except -1:
        self.task = None
        if task.cancelled():
            self.cut()
            return 0
        exc = task.exception()
        if self.closing:
            if exc is not None and not isinstance(exc, BodyError):
                logger.error("handler failed after the client went away", exc_info=exc)
            return 0
        if exc is not None:
            self.handler_failed(exc)
        else:
            try:
                self.send_result(task.result())
            except Exception as e:
                self.handler_failed(e)
        self.flush()
        self.resume()
        return 0

    cdef int send_result(self, object result) except -1:
        cdef Response r
        if type(result) is Response:
            r = <Response>result
            return self.send_response(r.status, content_type_line(r.content_type), r.headers, r.body)
        if type(result) is str:
            return self.send_response(200, CT_TEXT, None, (<str>result).encode("utf-8"))
        if type(result) is bytes:
            return self.send_response(200, CT_OCTET, None, <bytes>result)
        if type(result) is StreamingResponse:
            self.task = self.loop.create_task(self.stream_body(<StreamingResponse>result))
            self.registry.track(self.task)
            self.task.add_done_callback(self._stream_done)
            return 0
        if result is None:
            return self.send_response(204, None, None, b"")
        if isinstance(result, (dict, list)):
            return self.send_response(200, CT_JSON, None,
                                      _json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode())
        if isinstance(result, Response):
            r = <Response>result
            return self.send_response(r.status, content_type_line(r.content_type), r.headers, r.body)
        if isinstance(result, _Future):
            # a handler that asked to run in a Task (eager=False)
            self.task = result
            self.registry.track(self.task)
            self.task.add_done_callback(self._handler_done)
            return 0
        if hasattr(result, "__await__"):
            # an awaitable that is not a plain coroutine (a compiled async def)
            self.task = self.loop.create_task(as_coroutine(result))
            self.registry.track(self.task)
            self.task.add_done_callback(self._handler_done)
            return 0
        raise TypeError(f"a handler returned {type(result).__name__}: return a Response, "
                        "StreamingResponse, str, bytes, dict, list or None")

    cdef bint keep_after_response(self):
        """Whether the connection stays open after the response being written."""
        if not self.keep_alive or self.registry.draining:
            return False
        if self.reading_body and self.cur_stream is not None and self.cur_stream.continue_pending:
            # the client waits for 100 Continue that will never come: its
            # body cannot be told apart from its next request
            return False
        return True

    cdef int write_text(self, WriteBuffer out, int status, str text, bint keep,
                        list headers=None) except -1:
        cdef bytes body = text.encode("utf-8")
        cdef bint close_requested = False
        write_head(out, status, CT_TEXT, headers, len(body), keep,
                   self.cur.version == 10, &close_requested, self.head)
        if not self.cur.is_head:
            out.append_bytes(body)
            self.sent_bytes += len(body)
        return 0

    cdef int send_response(self, int status, bytes ctype, list headers, bytes body) except -1:
        cdef WriteBuffer out = self.out()
        cdef Py_ssize_t mark = out.length
        cdef bint close_requested = False
        cdef bint keep = self.keep_after_response()
        try:
            if status < 200:
                raise ValueError(f"status {status} cannot be a final response (use 200-599)")
            write_head(out, status, ctype, headers, PyBytes_GET_SIZE(body), keep,
                       self.cur.version == 10, &close_requested, self.head)
        except ValueError as exc:
            out.length = mark
            close_requested = False
            logger.error("bad response from handler for %s %s: %s", self.cur.method, self.cur.path, exc)
            self.write_text(out, 500, "Internal Server Error\n", keep)
            status = 500
        else:
            if not self.cur.is_head and body_allowed(status):
                out.append_bytes(body)
                self.sent_bytes = PyBytes_GET_SIZE(body)
        self.response_done(status, keep and not close_requested)
        return 0

    cdef int respond_error(self, int status, str allow) except -1:
        """404, 405 with the methods the path allows, or 503 past
        ``limit_concurrency``."""
        cdef bint keep = self.keep_after_response()
        if status == 405:
            self.write_text(self.out(), 405, "Method Not Allowed\n", keep, [("allow", allow)])
        elif status == 503:
            self.write_text(self.out(), 503, "Service Unavailable: too many requests in flight\n", keep,
                            [("retry-after", "1")])
        else:
            self.write_text(self.out(), status, "Not Found\n", keep, None)
        self.response_done(status, keep)
        return 0

    cdef int handler_failed(self, object exc) except -1:
        cdef WriteBuffer out = self.out()
        cdef bint close_requested = False
        cdef int status
        if self.response_started or self.closing:
            if not isinstance(exc, BodyError):
                logger.error("handler for %s %s failed after the response started",
                             self.cur.method if self.cur else "?", self.cur.path if self.cur else "?",
                             exc_info=exc)
            self.reset()
            return 0
        keep = self.keep_after_response()
        http10 = self.cur.version == 10
        if isinstance(exc, HTTPError) and isinstance(exc.status, int) and 200 <= exc.status <= 599:
            status = exc.status
            body = ((exc.detail or "") + "\n").encode() if exc.detail else b""
            try:
                write_head(out, status, CT_TEXT, exc.headers, len(body), keep, http10, &close_requested,
                           self.head)
            except (ValueError, TypeError) as bad:
                logger.error("HTTPError(%d) from handler for %s %s has bad headers: %s",
                             status, self.cur.method, self.cur.path, bad)
                close_requested = False
                write_head(out, status, CT_TEXT, None, len(body), keep, http10, &close_requested,
                           self.head)
            if not self.cur.is_head and body_allowed(status):
                out.append_bytes(body)
                self.sent_bytes = len(body)
        elif isinstance(exc, BodyError):
            status = self.body_error_status or 400
            keep = False
            self.write_text(out, status, f"the request body could not be read ({exc})\n", False)
        else:
            status = 500
            logger.error("handler for %s %s raised", self.cur.method, self.cur.path, exc_info=exc)
            self.write_text(out, 500, "Internal Server Error\n", keep)
        self.response_done(status, keep and not close_requested)
        return 0

    cdef int response_done(self, int status, bint keep) except -1:
        """The response to the current request is written (or queued);
        ``keep``: whether the connection may stay open after it."""
        cdef Request req = self.cur
        if not keep:
            self.keep_alive = False
        self.registry.response_counted()
        if self.timed:
            self.count_response(req, status)
        self.busy = False
        self.cur = None
        self.response_started = False
        if self.reading_body:
            if self.cur_stream.continue_pending:
                # the client waits for 100 Continue that will never come
                self.keep_alive = False
            else:
                self.cur_stream.discard = True
                self.cur_stream.chunks.clear()
                self.cur_stream.buffered = 0
        else:
            self.cur_stream = None
        if not self.keep_alive:
            self.flush()
            self.close()
        return 0

    cdef int count_response(self, Request req, int status) except -1:
        """Metrics and the access log of a response."""
        cdef double seconds = _now() - self.started
        if self.metrics is not None:
            self.metrics.request_done(req.method, status, seconds)
        if self.config.access_log is not None:
            try:
                self.config.access_log(self.client_host() if req._client is None else req._client[0],
                                       req, status, self.sent_bytes, seconds)
            except Exception:
                logger.exception("the access log failed")
        return 0

    cdef int reject(self, int status, str reason) except -1:
        """Answer a request that cannot be parsed, then close."""
        if self.metrics is not None:
            self.metrics.request_done("", status, 0.0)
        write_simple(self.out(), status, reason + "\n", False, self.head)
        self.flush()
        self.close()
        return 0

    # ---- streaming responses ----

    async def stream_body(self, StreamingResponse resp):
        cdef WriteBuffer out = self.out()
        cdef bint close_requested = False
        cdef bint http10 = self.cur.version == 10
        cdef bint chunked = not http10
        cdef bint keep = self.keep_after_response() and chunked
        cdef bint send_body = not self.cur.is_head and body_allowed(resp.status)
        cdef Py_ssize_t mark = out.length
        self.stream_status = resp.status
        try:
            if resp.status < 200:
                raise ValueError(f"status {resp.status} cannot be a final response (use 200-599)")
            write_head(out, resp.status, content_type_line(resp.content_type), resp.headers,
                       -1 if (chunked and send_body) else -2, keep, http10, &close_requested, self.head)
        except ValueError as exc:
            out.length = mark
            logger.error("bad streaming response from handler for %s %s: %s",
                         self.cur.method, self.cur.path, exc)
            keep = self.keep_after_response()
            self.write_text(out, 500, "Internal Server Error\n", keep)
            self.stream_status = 500
            if not keep:
                self.keep_alive = False
            self.flush()
            return
        if close_requested or not keep:
            self.keep_alive = False
        self.flush()
        self.response_started = True
        if not send_body:
            return
        content = resp.content
        if hasattr(content, "__aiter__"):
            it = content.__aiter__()
            try:
                while not self.closing:
                    try:
                        chunk = await it.__anext__()
                    except StopAsyncIteration:
                        break
                    await self.write_chunk(chunk, chunked)
            finally:
                if hasattr(it, "aclose"):
                    await it.aclose()
        else:
            for chunk in content:
                if self.closing:
                    break
                await self.write_chunk(chunk, chunked)
        if chunked and not self.closing:
            self.transport.write(b"0\r\n\r\n")

    async def write_chunk(self, chunk, bint chunked):
        cdef bytes data
        if isinstance(chunk, str):
            data = (<str>chunk).encode("utf-8")
        else:
            data = bytes(chunk)
        if not data or self.closing:
            return
        self.sent_bytes += len(data)
        if chunked:
            self.transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self.transport.write(data)
        if self.paused_writing and not self.closing:
            self.drain_waiter = self.loop.create_future()
            await self.drain_waiter

    def _stream_done(self, task):
        self.registry.untrack(task)
        self.task = None
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled() and not self.closing:
                logger.error("streaming response for %s %s failed", self.cur.method, self.cur.path,
                             exc_info=task.exception())
            self.reset()
            return
        if self.closing:
            return
        try:
            self.response_done(self.stream_status, self.keep_alive)
            self.flush()
            self.resume()
        except BaseException as exc:
            self.internal_error(exc)

    cdef void _wake_drain(self):
        cdef object w = self.drain_waiter
        if w is not None:
            self.drain_waiter = None
            if not w.done():
                w.set_result(None)

    # ---- I/O helpers ----

    cdef inline WriteBuffer out(self):
        """Where this connection's output goes until the next flush."""
        if _dispatching is None or _dispatching is self:
            return shared_buffer()
        return _side

    cdef int flush(self) except -1:
        cdef WriteBuffer out = self.out()
        if out.length:
            data = out.take()
            if self.transport is not None and not self.closing:
                self.transport.write(data)
        return 0

    cdef int resume(self) except -1:
        """Carry on after an async response: parse pipelined bytes left."""
        cdef bytearray b = self.buf
        cdef Py_ssize_t consumed
        global _dispatching
        if self.closing:
            return 0
        if b is not None and PyByteArray_GET_SIZE(b) and not self.busy and not self.paused_writing:
            if self.timed:
                self.read_at = _now()
            _dispatching = self
            try:
                consumed = self.process(None, PyByteArray_AS_STRING(b), PyByteArray_GET_SIZE(b))
            finally:
                _dispatching = None
            if not self.closing:
                del b[:consumed]
            self.flush()
        self.after_io()
        return 0

    cdef inline int after_io(self) except -1:
        if self.closing:
            return 0
        if self.active and not self.busy and not self.reading_body and not self.paused_writing and (
                self.buf is None or PyByteArray_GET_SIZE(self.buf) == 0) and self.parser.scan_pos == 0:
            # idle: nothing pending, and the last response is not stuck in the
            # transport's buffer (a slow reader keeps the connection active)
            self.registry.became_idle(self)
            if self.registry.draining:
                self.close()
                return 0
            self.set_deadline(DL_IDLE, self.config.keepalive_timeout)
        if self.eof and not self.busy and not self.reading_body and not (
                self.paused_writing and self.buf is not None and PyByteArray_GET_SIZE(self.buf)):
            # the client half-closed and everything it sent is answered
            self.close()
            return 0
        self.update_reading()
        return 0

    cdef int update_reading(self) except -1:
        cdef bint pause = self.paused_writing
        if self.eof:
            return 0    # reading stopped for good at EOF
        if (not pause and self.cur_stream is not None and self.reading_body
                and self.pending_handler is None):
            # an async handler reads the body: wait for it to catch up.  A sync
            # handler (pending) needs the whole body first, so keep reading.
            pause = self.cur_stream.buffered > self.config.body_high_water
        if not pause and self.busy and self.buf is not None:
            # pipelined requests wait behind a running handler.  (An incomplete
            # head is bounded by max_header_bytes and must be read to the end.)
            pause = PyByteArray_GET_SIZE(self.buf) > self.config.pipeline_high_water
        if pause != self.paused_reading and not self.closing:
            self.paused_reading = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()
                if self.deadline_kind == DL_BODY:
                    # the silence was ours: the client gets a full body timeout again
                    self.deadline = _now() + self.config.body_timeout
        return 0

    cdef inline void set_deadline(self, int kind, double seconds):
        if seconds > 0:
            self.deadline_kind = kind
            self.deadline = _now() + seconds
        else:
            self.deadline_kind = DL_NONE

    cdef int on_body_consumed(self) except -1:
        if self.paused_reading:
            self.update_reading()
        return 0

    cdef int send_continue(self) except -1:
        if self.cycle is not None and self.cycle.head_written:
            return 0    # never an interim response inside a final one
        if not self.closing and not self.response_started:
            # responses to earlier pipelined requests may still be in the
            # shared buffer: they go first, or the client takes this 100 for
            # one of theirs
            self.flush()
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return 0

    cdef object client_host(self):
        cdef object peer = self.client_address()
        return peer[0] if peer else "-"

    def on_timeout(self):
        """Called by the registry's sweep when this connection's deadline passed."""
        cdef int kind = self.deadline_kind
        self.deadline_kind = DL_NONE
        if self.closing:
            return
        if kind == DL_IDLE:
            self.close()
        elif kind == DL_WRITE:
            logger.warning("client %s read nothing for %.0f s: connection cut",
                           self.client_host(), self.config.write_timeout)
            self.cut()
        elif kind == DL_HEADER:
            self.reject(408, "Request Timeout: the request head took too long")
        elif kind == DL_BODY and self.paused_reading:
            # we stopped reading (a slow handler, a client not reading our
            # output): the body is late by our doing, not the client's
            self.set_deadline(DL_BODY, self.config.body_timeout)
        elif kind == DL_BODY:
            self.body_error_status = 408
            self.keep_alive = False
            self.reading_body = False
            self.cur_stream.fail(BodyError("408: the request body took too long"))
            if self.pending_handler is not None:
                self.pending_handler = None
                self.reject(408, "Request Timeout: the request body took too long")
            elif not self.busy:
                self.close()
            elif self.cycle is not None and not self.cycle.head_written:
                self.cycle.answer_error(None)

    def close(self):
        """Close once pending writes are flushed."""
        if not self.closing:
            self.closing = True
            self.deadline_kind = DL_NONE
            if self.transport is not None:
                self.transport.close()

    cdef int reset(self) except -1:
        """Cut with a TCP reset: for a response broken off half-way, which
        the client must not take for a whole one (an HTTP/1.0 body ends
        with the connection, so a clean close would look complete)."""
        cdef object sock
        if self.transport is not None and not self.closing:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(SOL_SOCKET, SO_LINGER, _LINGER_RESET)
                except OSError:
                    pass
        self.cut()
        return 0

    def cut(self):
        """Cancel the running handler and drop the connection now."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.cycle is not None and self.cycle.task is not None and not self.cycle.task.done():
            self.cycle.task.cancel()
        self.closing = True
        if self.transport is not None:
            self.transport.abort()


include "_asgi.pxi"
include "_ws_handshake.pxi"
include "_asgi_ws.pxi"


@cython.final
cdef class NativeWebSocketRun:
    """A native WebSocket handler's Task, and what is owed when it ends:
    the handshake answered (403, or 500 if it raised), the connection closed
    (1000, or 1011 if it raised)."""
    cdef HttpProtocol http
    cdef WebSocketUpgrade upgrade
    cdef WebSocket ws

    def _done(self, task):
        self.http.registry.untrack(task)
        exc = None if task.cancelled() else task.exception()
        try:
            if not self.upgrade.answered:
                if not self.http.closing:
                    if exc is not None:
                        logger.error("WebSocket handler raised before accepting", exc_info=exc)
                    self.upgrade.deny(500 if exc is not None else 403, None,
                                      b"Internal Server Error\n" if exc is not None else b"")
                return
            if exc is not None and not isinstance(exc, (ConnectionClosed, WebSocketDisconnect)):
                logger.error("WebSocket handler for %s raised", self.ws.path, exc_info=exc)
            self.ws.finish_handler(exc is not None and not isinstance(exc, (ConnectionClosed, WebSocketDisconnect)))
        except BaseException as error:
            logger.error("internal error ending a WebSocket", exc_info=error)
