# ASGI 3 on the connection core (included into _core.pyx: it shares the
# connection's internals).
#
# One ASGICycle per request: it builds the scope from the parsed head in C,
# hands the application ``receive`` and ``send``, and turns ``send`` messages
# into bytes in the shared output buffer.  The head is held back until the
# first body message, so a response sent in one body message goes out with a
# Content-Length in one write; a streamed one is chunked.  Like a native
# handler, the application's coroutine runs in place until it first
# suspends: a simple app completes with no Task (unless the app needs one
# from its first line: ``ASGIApp(eager=False)``).


class ClientGoneError(ConnectionError):
    """``send`` was called after the client closed the connection (ASGI
    spec 2.4: an ``OSError`` subclass).  Stop producing the response."""


cdef dict ASGI_SCOPE_VERSION = {"version": "3.0", "spec_version": "2.4"}
cdef str HTTP_11 = "1.1"
cdef str HTTP_10 = "1.0"
cdef str T_HTTP = "http"
cdef str T_START = "http.response.start"
cdef str T_BODY = "http.response.body"
cdef str T_REQUEST = "http.request"
cdef str T_DISCONNECT = "http.disconnect"
cdef str EXT_SHUTDOWN = "fastsrv.shutdown"
cdef str EXT_TLS = "tls"
cdef Py_ssize_t BIG_BODY = 64 * 1024

# header names sent by most clients, lower-cased once: no bytes object is
# made for them per request
cdef tuple _common_names = (
    b"host", b"user-agent", b"accept", b"accept-encoding", b"accept-language",
    b"connection", b"content-type", b"content-length", b"cookie", b"origin", b"referer",
    b"authorization", b"cache-control", b"pragma", b"upgrade", b"transfer-encoding",
    b"expect", b"te", b"if-none-match", b"if-modified-since", b"x-forwarded-for",
    b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip", b"x-request-id",
    b"sec-fetch-site", b"sec-fetch-mode", b"sec-fetch-dest", b"upgrade-insecure-requests",
)
cdef Py_ssize_t _n_common = len(_common_names)


cdef inline bytes _lower_name(const char* p, Py_ssize_t n):
    cdef bytes out
    cdef PyObject* known
    cdef char* o
    cdef Py_ssize_t i, j
    cdef char c
    for j in range(_n_common):
        known = PyTuple_GET_ITEM(_common_names, j)
        if PyBytes_GET_SIZE(<object>known) != n:
            continue
        if _ieq(p, PyBytes_AS_STRING(<object>known), n):
            return <bytes>known
    out = PyBytes_FromStringAndSize(NULL, n)
    o = PyBytes_AS_STRING(out)
    for i in range(n):
        c = p[i]
        o[i] = c + 32 if 65 <= c <= 90 else c
    return out


cdef list asgi_headers(Request req):
    """The request's header fields as ASGI wants them: ``(name, value)``
    bytes pairs in order, names lower-cased."""
    cdef const char* base = PyBytes_AS_STRING(req._raw) + req._base
    cdef list out = []
    cdef Py_ssize_t k
    cdef HeaderSpan* s
    for k in range(req._nspans):
        s = &req._spans[k]
        out.append((_lower_name(base + s.name_start, s.name_len),
                    PyBytes_FromStringAndSize(base + s.value_start, s.value_len)))
    return out


cdef dict _TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
cdef dict _cipher_ids = {}


def tls_extension(transport):
    """The ASGI ``tls`` extension of a TLS connection (made once per
    connection): the client's certificate chain (PEM) and its subject
    (RFC 4514), the TLS version and cipher suite as their IANA numbers."""
    import ssl
    sslobj = transport.get_extra_info("ssl_object") if transport is not None else None
    if sslobj is None:
        return None
    chain = []
    name = None
    der = sslobj.getpeercert(binary_form=True)
    if der:
        verified = getattr(sslobj, "get_verified_chain", None)     # Python 3.13
        try:
            certs = verified() if verified is not None else None
        except (ValueError, ssl.SSLError):
            certs = None
        if certs:
            chain = [c.public_bytes() if hasattr(c, "public_bytes") else ssl.DER_cert_to_PEM_cert(c)
                     for c in certs]
            chain = [c if isinstance(c, str) else ssl.DER_cert_to_PEM_cert(c) for c in chain]
        else:
            chain = [ssl.DER_cert_to_PEM_cert(der)]
        subject = (sslobj.getpeercert() or {}).get("subject", ())
        name = ",".join(["+".join([f"{_RDN_KEYS.get(k, k)}={_rdn_escape(v)}" for k, v in rdn])
                         for rdn in reversed(subject)]) or None
    if not _cipher_ids:
        context = transport.get_extra_info("sslcontext")
        for c in (context.get_ciphers() if context is not None else ()):
            _cipher_ids[c["name"]] = c["id"] & 0xFFFF
    cipher = sslobj.cipher()
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(sslobj.version()),
        "cipher_suite": _cipher_ids.get(cipher[0]) if cipher else None,
    }


cdef dict _RDN_KEYS = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
                       "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L",
                       "streetAddress": "STREET", "domainComponent": "DC", "userId": "UID"}


cdef str _rdn_escape(str value):
    cdef str out = value.replace("\\", "\\\\")
    for ch in ',+"<>;=':
        out = out.replace(ch, "\\" + ch)
    if out.startswith((" ", "#")):
        out = "\\" + out
    if out.endswith(" "):
        out = out[:len(out) - 1] + "\\ "
    return out


cdef list _with_host(list headers, str host):
    """``headers`` with the Host a trusted proxy forwarded in place of the client's."""
    cdef bytes value = host.encode("latin-1")
    cdef list out = [(b"host", value) if name == b"host" else (name, v) for name, v in headers]
    if len(out) == len(headers) and not any([name == b"host" for name, _ in headers]):
        out.append((b"host", value))
    return out


cdef bint _wants_websocket(Request req):
    cdef const char* base = PyBytes_AS_STRING(req._raw) + req._base
    cdef Py_ssize_t k
    cdef HeaderSpan* s
    for k in range(req._nspans):
        s = &req._spans[k]
        if s.name_len == 7 and _ieq(base + s.name_start, b"upgrade", 7):
            if b"websocket" in PyBytes_FromStringAndSize(base + s.value_start, s.value_len).lower():
                return True
    return False


cdef inline object _field(object message, str key, object default):
    cdef PyObject* v
    if type(message) is dict:
        v = PyDict_GetItem(message, key)
        return <object>v if v != NULL else default
    return message.get(key, default)


@cython.final
cdef class ASGIApp:
    """An ASGI 3 application as the core runs it.

    ``eager``: run each request's coroutine in place until it first
    suspends (no Task for an app that never does); ``False`` gives every
    request a Task from its first line, which code calling
    ``asyncio.current_task()`` at once (anyio, hence Starlette and FastAPI)
    needs.  ``eager_start``: on Python 3.12+, such a Task runs its first
    step at once (``eager_start=True``), so a request that never suspends
    is answered without a loop round trip.  ``root_path`` is prefixed to
    ``path`` and ``raw_path`` and sent as ``root_path``; ``state`` is the
    lifespan state, shallow-copied into every request's scope.
    """
    cdef readonly object app
    cdef readonly bint eager
    cdef readonly bint eager_start
    cdef readonly str root_path
    cdef bytes root_path_b
    cdef public dict state
    cdef dict ext_value

    def __init__(self, app, bint eager=True, str root_path="", dict state=None, bint eager_start=True):
        if not callable(app):
            raise TypeError(f"an ASGI application must be callable, got {type(app).__name__}")
        if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
            raise ValueError(f"root_path must start with '/' and not end with one, got {root_path!r}")
        self.app = app
        self.eager = eager
        self.eager_start = eager_start
        self.root_path = root_path
        self.root_path_b = root_path.encode("utf-8")
        self.state = state if state is not None else {}

    cdef dict scope(self, Request req, HttpProtocol conn):
        cdef str path = req.path
        cdef const char* target = PyBytes_AS_STRING(req._raw) + req._base + req._target_start
        cdef bytes raw_path, query
        cdef dict scope
        if req._path_start >= req._query_start:
            raw_path = b"/"
        else:
            raw_path = PyBytes_FromStringAndSize(target + req._path_start, req._query_start - req._path_start)
        if req._query_start >= req._target_len:
            query = b""
        else:
            query = PyBytes_FromStringAndSize(target + req._query_start + 1,
                                              req._target_len - req._query_start - 1)
        if req._path_start < req._query_start and memchr(
                target + req._path_start, 37, req._query_start - req._path_start) != NULL:
            # ASGI paths are text: a %-escape that is not UTF-8 becomes U+FFFD
            # (the native path keeps it as a surrogate, which cannot be encoded)
            path = unquote(PyUnicode_DecodeLatin1(PyBytes_AS_STRING(raw_path), PyBytes_GET_SIZE(raw_path), NULL),
                           encoding="utf-8", errors="replace")
        if self.root_path:
            path = self.root_path + path
            raw_path = self.root_path_b + raw_path
        if conn.scope_template is None:
            conn.scope_template = self.connection_template(conn)
        # a copy of a dict with every key already in place: the keys are
        # shared, only the values are set (far cheaper than building a
        # 14-key dict item by item)
        scope = PyDict_Copy(conn.scope_template)
        if req.version != 11:
            scope["http_version"] = HTTP_10
        scope["method"] = req.method
        scope["path"] = path
        scope["raw_path"] = raw_path
        scope["query_string"] = query
        scope["headers"] = asgi_headers(req)
        scope["state"] = PyDict_Copy(self.state) if self.state else {}
        scope["extensions"] = ext = {}
        ext[EXT_SHUTDOWN] = self.shutdown_ext(conn)
        if conn.tls_ext is not None:
            ext[EXT_TLS] = conn.tls_ext
        if req._client is not None:
            # what a trusted proxy forwarded (fastsrv._proxy)
            scope["client"] = req._client
        if req._scheme is not None:
            scope["scheme"] = req._scheme
        if req._host is not None:
            scope["headers"] = _with_host(scope["headers"], req._host)
        return scope

    cdef dict shutdown_ext(self, HttpProtocol conn):
        # an extension's value is a dict (ASGI); one per server, reused
        cdef dict ext = self.ext_value
        if ext is None or ext["signal"] is not conn.shutdown_signal:
            ext = self.ext_value = {"signal": conn.shutdown_signal}
        return ext

    cdef dict connection_template(self, HttpProtocol conn):
        """The scope fields one connection's requests share."""
        # filled key by key: a dict grown from empty keeps its str-only key
        # table, which makes the per-request copies and lookups faster
        cdef dict t = {}
        t["type"] = T_HTTP
        t["asgi"] = ASGI_SCOPE_VERSION
        t["http_version"] = HTTP_11
        t["server"] = conn.server_address()
        t["client"] = conn.client_address()
        t["scheme"] = conn.scheme
        if conn.config.tls:
            conn.tls_ext = tls_extension(conn.transport)
        t["method"] = None
        t["root_path"] = self.root_path
        t["path"] = None
        t["raw_path"] = None
        t["query_string"] = None
        t["headers"] = None
        t["state"] = None
        t["extensions"] = None
        return t


@cython.final
@cython.freelist(64)
cdef class ASGICycle:
    """One request/response exchange between the connection and the app."""
    cdef HttpProtocol conn
    cdef Request req
    cdef BodyStream stream
    cdef object task
    cdef object waiter
    cdef object headers
    cdef int status
    cdef bint started          # http.response.start received
    cdef bint head_written     # the head is in the output (no 500 possible now)
    cdef bint complete         # the final body message was sent
    cdef bint body_done        # the app has been given the whole body
    cdef bint chunked
    cdef bint send_body        # not HEAD, not 1xx/204/304
    cdef bint keep
    cdef long long declared
    cdef long long sent

    def __cinit__(self):
        global _cycles_created
        _cycles_created += 1

    def __dealloc__(self):
        global _cycles_freed
        _cycles_freed += 1

    @staticmethod
    cdef ASGICycle new(HttpProtocol conn, Request req, BodyStream stream):
        cdef ASGICycle c = ASGICycle.__new__(ASGICycle)
        c.conn = conn
        c.req = req
        c.stream = stream
        c.declared = -1
        return c

    # ---- receive ----

    async def receive(self):
        """The next ``http.request`` piece of the body, then
        ``http.disconnect`` once the client goes away, the body cannot be
        read (malformed, too large, too slow), or the response is sent."""
        cdef BodyStream stream = self.stream
        cdef bytes chunk
        cdef bint more
        if self.complete:
            return {"type": T_DISCONNECT}
        if not self.body_done:
            if stream is None:
                self.body_done = True
                chunk = self.req._body if self.req._body is not None else b""
                self.req._body = None
                return {"type": T_REQUEST, "body": chunk, "more_body": False}
            try:
                chunk = await stream.read()
            except BodyError:
                self.body_done = True
                return {"type": T_DISCONNECT}
            more = not (stream.complete and not stream.chunks)
            if not more:
                self.body_done = True
            return {"type": T_REQUEST, "body": chunk, "more_body": more}
        if not self.conn.disconnected:
            # one future for every caller: a poll that is cancelled (Starlette's
            # is_disconnected) must not take it away from a listener
            if self.waiter is None:
                self.waiter = self.conn.loop.create_future()
            await asyncio.shield(self.waiter)
        return {"type": T_DISCONNECT}

    cdef void wake(self):
        cdef object w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    # ---- send ----

    def send(self, message):
        """Take one ``http.response.*`` message; the awaitable returned waits
        while the client is not reading a streamed response.  Raises
        :class:`ClientGoneError` once the client has gone.

        Not a coroutine: the work is done at the call, and what is returned
        is an already-finished future (no coroutine object per message) or,
        when the client's socket is full, the future of its draining."""
        cdef HttpProtocol conn = self.conn
        cdef object mtype = _field(message, "type", None)
        cdef object body
        cdef bint more
        if type(mtype) is not str:
            raise TypeError(f"ASGI: a message must be a dict with a str 'type', got {message!r}")
        if <str>mtype == T_BODY:
            if not self.started:
                raise RuntimeError("ASGI: 'http.response.body' sent before 'http.response.start'")
            if conn.closing:
                raise ClientGoneError("the client closed the connection (or the server closed it "
                                      "after answering for the app)")
            if self.complete:
                raise RuntimeError("ASGI: 'http.response.body' sent after the response was complete")
            body = _field(message, "body", b"")
            if type(body) is not bytes:
                if not isinstance(body, (bytearray, memoryview)):
                    raise TypeError(f"ASGI: the body of 'http.response.body' must be bytes, "
                                    f"got {type(body).__name__}")
                body = bytes(body)
            more = _field(message, "more_body", False)
            self.write_body(<bytes>body, more)
            if more and conn.paused_writing and not conn.closing:
                if conn.drain_waiter is None or conn.drain_waiter.done():
                    conn.drain_waiter = conn.loop.create_future()
                return conn.drain_waiter
            return conn.registry.done_future()
        if <str>mtype == T_START:
            if conn.closing:
                raise ClientGoneError("the client closed the connection (or the server closed it "
                                      "after answering for the app)")
            if self.started:
                raise RuntimeError("ASGI: 'http.response.start' sent twice")
            if self.complete:
                raise RuntimeError("ASGI: 'http.response.start' sent after the server answered "
                                   "the request for the app")
            status = _field(message, "status", None)
            if type(status) is not int:
                # an IntEnum such as http.HTTPStatus is an int too; a bool is not a status
                if not isinstance(status, int) or isinstance(status, bool):
                    raise ValueError(f"ASGI: response status must be an int in 200-599, got {status!r}")
                status = int(status)
            if not 200 <= <int>status <= 599:
                raise ValueError(f"ASGI: response status must be an int in 200-599, got {status!r}")
            self.status = status
            self.headers = _field(message, "headers", ())
            self.started = True
            return conn.registry.done_future()
        raise RuntimeError(f"ASGI: unexpected message type {mtype!r} for an HTTP response "
                           "(expected 'http.response.start' or 'http.response.body')")

    cdef int write_head(self, WriteBuffer out, Py_ssize_t first_len, bint more) except -1:
        cdef HttpProtocol conn = self.conn
        cdef bint http10 = self.req.version == 10
        cdef bint close_requested = False
        cdef bint keep = conn.keep_after_response()
        cdef long long framing
        cdef bint own_server = False
        write_asgi_head(out, self.status, self.headers, &self.declared, &close_requested, &own_server)
        self.send_body = not self.req.is_head and body_allowed(self.status)
        if not body_allowed(self.status):
            framing = -2
        elif self.declared >= 0:
            framing = self.declared
        elif not more and (first_len or not self.req.is_head):
            # the whole body in one message: its length is known
            framing = first_len
        elif self.req.is_head:
            framing = -2
        elif http10:
            framing = -2
            keep = False     # the body ends when the connection does
        else:
            framing = -1
            self.chunked = True
        self.keep = keep and not close_requested
        end_head(out, framing, self.keep, http10, conn.head, own_server)
        self.head_written = True
        return 0

    cdef int write_body(self, bytes body, bint more) except -1:
        cdef HttpProtocol conn = self.conn
        cdef WriteBuffer out = conn.out()
        cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
        if not self.head_written:
            self.write_head(out, n, more)
        if self.send_body and n:
            if self.declared >= 0 and self.sent + n > self.declared:
                logger.error("ASGI app for %s %s sent more than its Content-Length of %d bytes: "
                             "connection closed", self.req.method, self.req.path, self.declared)
                self.complete = True
                conn.flush()
                conn.cycle = None
                conn.reset()
                raise RuntimeError(f"ASGI: response body longer than its Content-Length ({self.declared})")
            self.sent += n
            conn.sent_bytes += n
            if self.chunked:
                out.append_int_hex(n)
                out.append(b"\r\n", 2)
            if n >= BIG_BODY:
                conn.flush()
                conn.transport.write(body)
            else:
                out.append_bytes(body)
            if self.chunked:
                out.append(b"\r\n", 2)
        if more:
            conn.flush()
            return 0
        if self.chunked:
            out.append(b"0\r\n\r\n", 5)
        if self.send_body and self.declared >= 0 and self.sent < self.declared:
            logger.error("ASGI app for %s %s sent %d of its Content-Length of %d bytes: connection closed",
                         self.req.method, self.req.path, self.sent, self.declared)
            self.keep = False
        self.finish()
        return 0

    cdef int finish(self) except -1:
        """The response is complete: the connection moves on."""
        cdef HttpProtocol conn = self.conn
        self.complete = True
        self.wake()
        if conn.cycle is self:
            conn.cycle = None
        if self.stream is not None and not self.stream.complete:
            # a receive() still waiting for body bytes ends with a disconnect
            self.stream.fail(BodyError("the response was sent before the body was read"))
        conn.response_done(self.status, self.keep)
        conn.after_response()
        return 0

    # ---- the app's end ----

    cdef int returned(self) except -1:
        if self.complete or self.conn.closing:
            return 0
        if self.head_written:
            logger.error("ASGI app for %s %s returned without completing its response: connection cut",
                         self.req.method, self.req.path)
            self.complete = True
            self.conn.cycle = None
            # a reset, not a clean close: the client must not take a
            # close-delimited body cut short for a whole one
            self.conn.reset()
            return 0
        logger.error("ASGI app for %s %s returned without %s", self.req.method, self.req.path,
                     "sending the response body" if self.started else "starting a response")
        return self.answer_error(None)

    cdef int failed(self, object exc) except -1:
        cdef HttpProtocol conn = self.conn
        if self.complete:
            if not isinstance(exc, ClientGoneError):
                logger.error("ASGI app for %s %s raised after its response was sent",
                             self.req.method, self.req.path, exc_info=exc)
            return 0
        if conn.closing:
            if not isinstance(exc, (ClientGoneError, BodyError)):
                logger.error("ASGI app for %s %s raised after the client went away",
                             self.req.method, self.req.path, exc_info=exc)
            self.complete = True
            if conn.cycle is self:
                conn.cycle = None
            return 0
        if self.head_written:
            logger.error("ASGI app for %s %s raised after its response started: connection closed",
                         self.req.method, self.req.path, exc_info=exc)
            self.complete = True
            conn.flush()
            conn.cycle = None
            conn.reset()
            return 0
        if not conn.body_error_status:
            logger.error("Exception in ASGI app for %s %s", self.req.method, self.req.path, exc_info=exc)
        return self.answer_error(exc)

    cdef int answer_error(self, object exc) except -1:
        """500 (or the status of a body that could not be read) in place of
        the response the app did not give."""
        cdef HttpProtocol conn = self.conn
        cdef int status = conn.body_error_status or 500
        cdef bint keep = conn.keep_after_response() and status == 500
        if status == 500:
            conn.write_text(conn.out(), 500, "Internal Server Error\n", keep)
        else:
            conn.write_text(conn.out(), status, "the request body could not be read\n", False)
        self.status = status
        self.keep = keep
        self.finish()
        return 0

    cdef int attach(self, object task) except -1:
        """The app goes on in ``task``: in-flight work until it ends."""
        self.task = task
        self.conn.registry.track(task)
        task.add_done_callback(self._done)
        return 0

    def _done(self, task):
        self.conn.registry.untrack(task)
        self.task = None
        self.task_ended(task)

    cdef int task_ended(self, object task) except -1:
        try:
            if task.cancelled():
                if not self.complete and not self.conn.closing:
                    self.conn.cut()
                self.complete = True
                if self.conn.cycle is self:
                    self.conn.cycle = None
                return 0
            exc = task.exception()
            if exc is None:
                self.returned()
            else:
                self.failed(exc)
        except BaseException as exc:
            self.conn.internal_error(exc)
        return 0
