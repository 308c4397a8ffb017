"""The request object handlers receive.

A :class:`Request` points into the bytes its head arrived in; the method and
path are made at once (routing needs them), everything else — headers,
query, client address — becomes a Python object only when asked for.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.string cimport memchr, memcmp, memcpy

from fastsrv._parser cimport HeaderSpan, RequestParser, scratch_spans

import asyncio
import json as _json
from urllib.parse import parse_qsl, unquote


class BodyError(Exception):
    """The request body could not be read: the client sent a malformed or
    oversized body, or went away before sending all of it."""


class ClientDisconnected(BodyError):
    """The client closed the connection before the request body was read."""


# body pieces shorter than this are gathered into bytearrays of up to
# GATHER_LIMIT bytes
cdef Py_ssize_t SMALL_PIECE = 4096
cdef Py_ssize_t GATHER_LIMIT = 256 * 1024

# objects made and freed since start (debug_counters() in the core): a
# request or a body stream that is never freed holds the client's bytes
cdef long long _requests_created = 0
cdef long long _requests_freed = 0
cdef long long _streams_created = 0
cdef long long _streams_freed = 0


def object_counters():
    """Requests and body streams created and freed since start."""
    return {"requests_created": _requests_created, "requests_freed": _requests_freed,
            "body_streams_created": _streams_created, "body_streams_freed": _streams_freed}


cdef str M_GET = "GET"
cdef str M_POST = "POST"
cdef str M_HEAD = "HEAD"
cdef str M_PUT = "PUT"
cdef str M_DELETE = "DELETE"
cdef str M_PATCH = "PATCH"
cdef str M_OPTIONS = "OPTIONS"


cdef inline str _method(const char* p, Py_ssize_t n):
    if n == 3 and memcmp(p, b"GET", 3) == 0:
        return M_GET
    if n == 4 and memcmp(p, b"POST", 4) == 0:
        return M_POST
    if n == 4 and memcmp(p, b"HEAD", 4) == 0:
        return M_HEAD
    if n == 3 and memcmp(p, b"PUT", 3) == 0:
        return M_PUT
    if n == 6 and memcmp(p, b"DELETE", 6) == 0:
        return M_DELETE
    if n == 5 and memcmp(p, b"PATCH", 5) == 0:
        return M_PATCH
    if n == 7 and memcmp(p, b"OPTIONS", 7) == 0:
        return M_OPTIONS
    return PyUnicode_DecodeLatin1(p, n, NULL)


cdef class ShutdownSignal:
    """Set once when the server begins its graceful shutdown.

    Handlers see it as ``request.shutting_down`` and
    ``await request.wait_shutdown()`` (Hertz's ``ctx.Done()``), so long
    polls and streams can end early instead of being cut at the deadline.
    """

    def __cinit__(self):
        self.is_set = False
        self._event = None

    cdef void set(self):
        self.is_set = True
        if self._event is not None:
            self._event.set()

    async def wait(self):
        """Return once the shutdown has begun."""
        if self.is_set:
            return
        if self._event is None:
            import asyncio
            self._event = asyncio.Event()
        await self._event.wait()


cdef class ConnectionBase:
    """What a request needs from its connection (the core fills this in)."""

    cdef int on_body_consumed(self) except -1:
        return 0

    cdef int send_continue(self) except -1:
        return 0


@cython.final
cdef class BodyStream:
    """Request body bytes on their way from the socket to the handler."""

    def __cinit__(self, ConnectionBase conn):
        global _streams_created
        _streams_created += 1
        self.conn = conn
        self.chunks = []
        self.buffered = 0
        self.complete = False
        self.discard = False
        self.continue_pending = False
        self.error = None
        self.waiter = None
        self.trailers = None

    def __dealloc__(self):
        global _streams_freed
        _streams_freed += 1

    cdef void _wake(self):
        cdef object w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    cdef int feed(self, bytes data) except -1:
        cdef Py_ssize_t n = len(data)
        cdef object last
        # the client sends its body without waiting: no 100 Continue is due
        self.continue_pending = False
        if self.discard:
            return 0
        if n < SMALL_PIECE:
            # small pieces (a body sent as tiny chunks, or a byte per packet)
            # are gathered in one bytearray: one object per piece would cost
            # tens of bytes of memory for each byte of body
            if self.chunks:
                last = self.chunks[len(self.chunks) - 1]
                if type(last) is bytearray and len(<bytearray>last) < GATHER_LIMIT:
                    (<bytearray>last).extend(data)
                    self.buffered += n
                    self._wake()
                    return 0
            self.chunks.append(bytearray(data))
        else:
            self.chunks.append(data)
        self.buffered += n
        self._wake()
        return 0

    cdef bytes take(self):
        """Everything buffered, as one bytes object (the buffer is emptied)."""
        cdef object chunk
        if len(self.chunks) == 1:
            chunk = self.chunks[0]
            chunk = bytes(chunk) if type(chunk) is bytearray else chunk
        else:
            chunk = b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        return <bytes>chunk

    cdef int finish(self, list trailers) except -1:
        self.complete = True
        self.trailers = trailers
        self._wake()
        return 0

    cdef int fail(self, object exc) except -1:
        if not self.complete and self.error is None:
            self.error = exc
        self._wake()
        return 0

    async def read(self):
        """Every body byte received so far and not yet read, as one piece;
        ``b""`` once the body has all been read."""
        cdef bytes chunk
        while True:
            if self.chunks:
                # all at once: popping pieces one by one from the front is
                # quadratic when a client sends a body as many tiny chunks
                chunk = self.take()
                self.conn.on_body_consumed()
                return chunk
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            if self.waiter is not None and not self.waiter.done():
                # two readers would each get parts of the body, and the first
                # would never be woken: say so instead of hanging
                raise RuntimeError("the request body is already being read by another task")
            if self.continue_pending:
                self.continue_pending = False
                self.conn.send_continue()
            self.waiter = self.conn.loop.create_future()
            await self.waiter


@cython.final
cdef class Headers:
    """Request header fields: case-insensitive, in the order they were sent.

    Values are ``str`` (decoded as Latin-1, as HTTP defines);
    ``Request.raw_headers`` holds the ``(name, value)`` bytes pairs.  Fields
    named with an underscore are dropped unless the server keeps them
    (``--underscores-in-headers``); for an absolute-form request-target,
    ``host`` is the target's authority, whatever Host said (RFC 9112 3.2.2).
    """
    cdef list _items

    def __cinit__(self, list items):
        self._items = items

    def get(self, str name, default=None):
        """The first value of ``name``, or ``default``."""
        cdef str key = name.lower()
        for k, v in self._items:
            if k == key:
                return v
        return default

    def getall(self, str name):
        """Every value of ``name``, in order (an empty list if absent)."""
        cdef str key = name.lower()
        return [v for k, v in self._items if k == key]

    def __getitem__(self, str name):
        cdef object v = self.get(name, None)
        if v is None:
            raise KeyError(name)
        return v

    def __contains__(self, name):
        return isinstance(name, str) and self.get(name, None) is not None

    def __iter__(self):
        return iter([k for k, _ in self._items])

    def __len__(self):
        return len(self._items)

    def items(self):
        """``(lower-case name, value)`` pairs in order, repeats included."""
        return list(self._items)

    def keys(self):
        return [k for k, _ in self._items]

    def values(self):
        return [v for _, v in self._items]

    def __repr__(self):
        return f"Headers({self._items!r})"


@cython.final
@cython.freelist(256)
cdef class Request:
    """An HTTP request as a handler sees it.

    Attributes made at once: ``method`` and ``path`` (percent-decoded);
    ``params`` (path parameters from the route).  Made when first used:
    ``headers``, ``query``, ``query_string``, ``raw_path``, ``client``.
    The body: ``await request.body()``, ``await request.json()`` or
    ``async for chunk in request.stream()``; sync handlers are called once the
    whole body has arrived, and read it as ``request.content``.
    """

    def __cinit__(self):
        global _requests_created
        _requests_created += 1
        self._spans = NULL
        self._nspans = 0

    def __init__(self):
        raise TypeError("Request objects are made by the server")

    def __dealloc__(self):
        global _requests_freed
        _requests_freed += 1
        if self._spans != NULL and self._spans != self._inline_spans:
            PyMem_Free(self._spans)
        self._spans = NULL

    @staticmethod
    cdef Request new(bytes raw, Py_ssize_t base, RequestParser parser, ConnectionBase conn):
        cdef Request r = Request.__new__(Request)
        cdef const char* head = PyBytes_AS_STRING(raw) + base
        cdef const char* t
        cdef const char* q
        cdef Py_ssize_t n = parser.nheaders, plen, pstart
        r._raw = raw
        r._base = base
        r._conn = conn
        r.method = _method(head, parser.method_len)
        r.is_head = r.method is M_HEAD
        r.version = parser.version
        r.keep_alive = parser.keep_alive
        r.expect_continue = parser.expect_continue
        r.upgrade = parser.upgrade
        r._target_start = parser.target_start
        r._target_len = parser.target_len
        r._body = None
        r._stream = None
        r._params = None
        r._headers = None
        r._query = None
        r._state = None
        if n:
            if n <= 8:
                r._spans = r._inline_spans
            else:
                r._spans = <HeaderSpan*>PyMem_Malloc(n * sizeof(HeaderSpan))
            if r._spans == NULL:
                raise MemoryError()
            memcpy(r._spans, scratch_spans(), n * sizeof(HeaderSpan))
        r._nspans = n
        t = head + parser.target_start
        q = <const char*>memchr(t, 63, parser.target_len)
        plen = (q - t) if q != NULL else parser.target_len
        r._query_start = plen
        pstart = 0
        if t[0] != 47 and not (plen == 1 and t[0] == 42):
            # absolute-form: the path starts after "scheme://authority"
            pstart = (<const char*>memchr(t, 58, plen) - t) + 3
            while pstart < plen and t[pstart] != 47:
                pstart += 1
        r._path_start = pstart
        if pstart >= plen:
            r.path = "/"
        else:
            r.path = PyUnicode_DecodeLatin1(t + pstart, plen - pstart, NULL)
            if memchr(t + pstart, 37, plen - pstart) != NULL:
                r.path = unquote(r.path, encoding="utf-8", errors="surrogateescape")
        return r

    cdef int set_body(self, bytes body) except -1:
        self._body = body
        return 0

    cdef BodyStream open_stream(self):
        self._stream = BodyStream(self._conn)
        # an HTTP/1.0 client's expectation is ignored (RFC 9110 10.1.1)
        self._stream.continue_pending = self.expect_continue and self.version == 11
        return self._stream

    @property
    def params(self):
        """Path parameters of the matched route (``{}`` for a static path)."""
        if self._params is None:
            self._params = {}
        return self._params

    @params.setter
    def params(self, dict value):
        self._params = value

    @property
    def http_version(self):
        """``"1.1"`` or ``"1.0"``."""
        return "1.1" if self.version == 11 else "1.0"

    @property
    def target(self):
        """The request-target exactly as sent (bytes)."""
        cdef Py_ssize_t s = self._base + self._target_start
        return self._raw[s:s + self._target_len]

    @property
    def raw_path(self):
        """The path as sent, before percent-decoding (bytes); for an
        absolute-form target, its path part (``b"/"`` when it has none)."""
        cdef Py_ssize_t s = self._base + self._target_start
        if self._path_start >= self._query_start:
            return b"/"
        return self._raw[s + self._path_start:s + self._query_start]

    @property
    def query_string(self):
        """The query after ``?`` as sent, without the ``?`` (bytes)."""
        cdef Py_ssize_t s = self._base + self._target_start
        if self._query_start >= self._target_len:
            return b""
        return self._raw[s + self._query_start + 1:s + self._target_len]

    @property
    def query(self):
        """Query parameters as a ``dict`` (the first value of each name)."""
        if self._query is None:
            q = {}
            for k, v in parse_qsl(self.query_string.decode("latin-1"), keep_blank_values=True):
                q.setdefault(k, v)
            self._query = q
        return self._query

    def query_all(self, str name):
        """Every value of query parameter ``name``."""
        return [v for k, v in parse_qsl(self.query_string.decode("latin-1"), keep_blank_values=True)
                if k == name]

    @property
    def headers(self):
        """The header fields (:class:`Headers`), built on first use."""
        cdef list items
        cdef Py_ssize_t k
        cdef const char* base
        if self._headers is None:
            base = PyBytes_AS_STRING(self._raw) + self._base
            items = []
            for k in range(self._nspans):
                items.append((
                    PyUnicode_DecodeLatin1(base + self._spans[k].name_start, self._spans[k].name_len, NULL).lower(),
                    PyUnicode_DecodeLatin1(base + self._spans[k].value_start, self._spans[k].value_len, NULL),
                ))
            if self._host is not None:
                # the host a trusted proxy forwarded is the one the app sees
                items = [(k, self._host) if k == "host" else (k, v) for k, v in items]
            self._headers = Headers(items)
        return self._headers

    @property
    def raw_headers(self):
        """``(name, value)`` bytes pairs as received, in order; as in
        ``headers``, fields named with an underscore are left out (unless the
        server keeps them) and an absolute-form target's authority is the
        Host value (RFC 9112 3.2.2)."""
        cdef const char* base = PyBytes_AS_STRING(self._raw) + self._base
        cdef Py_ssize_t k
        cdef list out = []
        for k in range(self._nspans):
            out.append((base[self._spans[k].name_start:self._spans[k].name_start + self._spans[k].name_len],
                        base[self._spans[k].value_start:self._spans[k].value_start + self._spans[k].value_len]))
        return out

    @property
    def client(self):
        """The client's ``(host, port)``, or ``None`` when unknown (a Unix
        socket).  Behind a trusted proxy, the address it forwarded."""
        if self._client is not None:
            return self._client
        if self._conn.peer is None and self._conn.transport is not None:
            peer = self._conn.transport.get_extra_info("peername")
            self._conn.peer = tuple(peer[:2]) if peer else None
        return self._conn.peer

    @property
    def scheme(self):
        """``"https"`` over TLS, else ``"http"``; behind a trusted proxy,
        the scheme it forwarded."""
        if self._scheme is not None:
            return self._scheme
        return self._conn.scheme or "http"

    @property
    def host(self):
        """The host the client asked for (the Host header; behind a trusted
        proxy, the host it forwarded), or None."""
        if self._host is not None:
            return self._host
        return self.headers.get("host")

    @property
    def state(self):
        """A ``dict`` for middleware and handlers to share per-request data."""
        if self._state is None:
            self._state = {}
        return self._state

    @property
    def is_disconnected(self):
        """True once the client has closed the connection."""
        return self._conn.disconnected

    async def wait_disconnected(self):
        """Return when the client closes the connection."""
        if self._conn.disconnected:
            return
        w = self._conn.disconnect_waiter
        if w is None or w.cancelled():
            w = self._conn.disconnect_waiter = self._conn.loop.create_future()
        # shielded: one waiter given up (a timeout) must not cancel the
        # future every other waiter of this connection shares
        await asyncio.shield(w)

    @property
    def shutting_down(self):
        """True once the server has begun its graceful shutdown."""
        return self._conn.shutdown_signal is not None and self._conn.shutdown_signal.is_set

    async def wait_shutdown(self):
        """Return once the server begins its graceful shutdown."""
        if self._conn.shutdown_signal is None:
            import asyncio
            await asyncio.get_running_loop().create_future()
        await self._conn.shutdown_signal.wait()

    @property
    def content(self):
        """The whole body, when it has been received.

        Always available in sync handlers (they are called once the body
        has arrived).  In async handlers use ``await request.body()``.
        """
        if self._body is None:
            if self._stream is None:
                return b""
            raise RuntimeError("the body has not been read yet: use `await request.body()`")
        return self._body

    async def body(self):
        """The whole request body as ``bytes``."""
        cdef list parts
        if self._body is not None:
            return self._body
        if self._stream is None:
            self._body = b""
            return self._body
        parts = []
        while True:
            chunk = await self._stream.read()
            if not chunk:
                break
            parts.append(chunk)
        self._body = b"".join(parts)
        return self._body

    async def json(self):
        """The body decoded as JSON."""
        return _json.loads(await self.body())

    async def stream(self):
        """Iterate over the body as it arrives (``bytes`` pieces)."""
        if self._body is not None:
            if self._body:
                yield self._body
            return
        if self._stream is None:
            return
        while True:
            chunk = await self._stream.read()
            if not chunk:
                return
            yield chunk

    @property
    def trailers(self):
        """Trailer fields of a chunked body, once it has been read."""
        if self._stream is None or self._stream.trailers is None:
            return []
        return self._stream.trailers

    def __repr__(self):
        return f"<Request {self.method} {self.path}>"
