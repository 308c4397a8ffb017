"""Responses and their serialization to HTTP/1.1 bytes.

Status lines and common header lines are prebuilt bytes; the Date header is
formatted at most once a second.  Header names and values given by the
application are checked: a CR, LF or NUL in them raises
:class:`InvalidResponseHeader` instead of splitting the response.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from libc.string cimport memcpy
from libc.time cimport time, time_t

from fastsrv._parser cimport _ieq

from email.utils import formatdate
from http import HTTPStatus
import json as _json


class InvalidResponseHeader(ValueError):
    """A response header name or value the application gave cannot be sent
    (CR, LF or NUL in it, or a name that is not an HTTP token).  Fix the value
    in the handler; fastsrv never splits a response on it."""


class ContentLengthMismatch(ValueError):
    """The application set a Content-Length that differs from the bytes of
    the body it gave."""


cdef unsigned char NAME_OK[256]
cdef unsigned char VALUE_OK[256]


cdef void _init_tables():
    cdef int c
    for c in range(256):
        NAME_OK[c] = 0
        VALUE_OK[c] = 1 if (c >= 0x20 and c != 0x7F) or c == 9 else 0
    for c in b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        NAME_OK[c] = 1


_init_tables()


cdef class WriteBuffer:
    """A growable byte buffer; ``take`` hands its content over as bytes."""

    def __cinit__(self, Py_ssize_t capacity=16384):
        self.data = <char*>PyMem_Malloc(capacity)
        if self.data == NULL:
            raise MemoryError()
        self.capacity = capacity
        self.length = 0

    def __dealloc__(self):
        PyMem_Free(self.data)

    cdef int reserve(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t need = self.length + extra
        cdef Py_ssize_t cap
        cdef char* grown
        if need <= self.capacity:
            return 0
        cap = self.capacity * 2 if self.capacity else 16384
        while cap < need:
            cap *= 2
        grown = <char*>PyMem_Realloc(self.data, cap)
        if grown == NULL:
            raise MemoryError()
        self.data = grown
        self.capacity = cap
        return 0

    cdef int append(self, const char* p, Py_ssize_t n) except -1:
        if self.length + n > self.capacity:
            self.reserve(n)
        memcpy(self.data + self.length, p, n)
        self.length += n
        return 0

    cdef int append_bytes(self, bytes b) except -1:
        return self.append(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))

    cdef int append_int(self, long long v) except -1:
        return self.append_digits(v, 10)

    cdef int append_int_hex(self, long long v) except -1:
        return self.append_digits(v, 16)

    cdef int append_digits(self, long long v, int base) except -1:
        """``v`` (>= 0) in ``base`` (10 or 16, lower-case digits)."""
        cdef char tmp[24]
        cdef int i = 24
        if v == 0:
            return self.append(b"0", 1)
        while v > 0:
            i -= 1
            tmp[i] = b"0123456789abcdef"[v % base]
            v //= base
        return self.append(tmp + i, 24 - i)

    cdef bytes take(self):
        cdef bytes out = PyBytes_FromStringAndSize(self.data, self.length)
        self.length = 0
        if self.capacity > 1 << 20:
            # do not keep a huge buffer alive after one large response
            PyMem_Free(self.data)
            self.capacity = 0
            self.data = <char*>PyMem_Malloc(16384)
            if self.data == NULL:
                raise MemoryError()
            self.capacity = 16384
        return out


cdef WriteBuffer _shared = WriteBuffer()


cdef WriteBuffer shared_buffer():
    """The loop-wide output buffer: filled and flushed within one callback."""
    return _shared


# ---- prebuilt lines ----

cdef list _status_lines = [None] * 600


def _build_status_lines():
    for st in HTTPStatus:
        _status_lines[st.value] = f"HTTP/1.1 {st.value} {st.phrase}\r\n".encode("ascii")


_build_status_lines()


cdef bytes status_line(int status):
    cdef object line
    if status < 100 or status > 599:
        raise ValueError(f"invalid HTTP status code {status}: use 100-599")
    line = _status_lines[status]
    if line is None:
        line = f"HTTP/1.1 {status} Unknown\r\n".encode("ascii")
        _status_lines[status] = line
    return <bytes>line


cdef dict _ctype_lines = {}


cdef bytes content_type_line(str content_type):
    cdef object line
    if content_type is None:
        return None
    line = _ctype_lines.get(content_type)
    if line is None:
        line = b"content-type: " + _header_value(content_type) + b"\r\n"
        if len(_ctype_lines) < 256:
            _ctype_lines[content_type] = line
    return <bytes>line


cdef time_t _date_second = 0
cdef bytes _date_line = b""


cdef bytes date_line():
    global _date_second, _date_line
    cdef time_t now = time(NULL)
    if now != _date_second:
        _date_second = now
        _date_line = b"date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
    return _date_line


cdef class HeadLines:
    """The lines a server adds to every response head: ``date`` (formatted
    once a second), ``server`` (``server: fastsrv``, left out when the app
    sends its own Server header) and ``extra`` (``--header`` lines), each
    prebuilt once per server."""

    def __init__(self, bint date=True, server=b"fastsrv", extra_headers=()):
        cdef list lines = []
        self.date = date
        self.server = (b"server: " + _header_value(server) + b"\r\n") if server is not None else None
        for name, value in extra_headers:
            lines.append(_header_name(name) + b": " + _header_value(value) + b"\r\n")
        self.extra = b"".join(lines) if lines else None

    @property
    def server_line(self):
        """``server: ...`` as sent (bytes), or None when the header is off."""
        return self.server


cdef HeadLines _default_head = HeadLines()


cdef HeadLines default_head():
    """What a head gets when its server gave no HeadLines: Date and
    ``server: fastsrv``."""
    return _default_head


cdef bint body_allowed(int status):
    return not (status < 200 or status == 204 or status == 304)


cdef bytes _header_name(object name):
    cdef bytes b
    cdef Py_ssize_t i
    if isinstance(name, str):
        b = (<str>name).encode("latin-1")
    elif isinstance(name, bytes):
        b = <bytes>name
    else:
        raise InvalidResponseHeader(f"header name must be str or bytes, not {type(name).__name__}")
    if len(b) == 0:
        raise InvalidResponseHeader("empty header name")
    for i in range(len(b)):
        if not NAME_OK[<unsigned char>b[i]]:
            raise InvalidResponseHeader(f"invalid character {chr(b[i])!r} in header name {name!r}")
    return b


cdef bytes _header_value(object value):
    cdef bytes b
    cdef Py_ssize_t i
    if isinstance(value, str):
        b = (<str>value).encode("latin-1")
    elif isinstance(value, bytes):
        b = <bytes>value
    elif isinstance(value, int):
        b = str(value).encode("ascii")
    else:
        raise InvalidResponseHeader(f"header value must be str, bytes or int, not {type(value).__name__}")
    for i in range(len(b)):
        if not VALUE_OK[<unsigned char>b[i]]:
            raise InvalidResponseHeader(
                f"control character {b[i]:#04x} in header value {value!r}: CR, LF and NUL are never sent")
    return b


cdef int write_head(WriteBuffer out, int status, bytes ctype_line, list headers,
                    long long content_length, bint keep_alive, bint http10,
                    bint* close_requested, HeadLines head) except -1:
    """Serialize a status line and header block.

    ``content_length`` >= 0 writes Content-Length; -1 announces the chunked
    coding; -2 writes neither (the body ends with the connection).
    """
    cdef object item, name, value
    cdef bytes bname, bvalue, lname
    cdef list extra = None
    cdef bint has_ctype = False
    cdef bint own_server = False
    if headers:
        extra = []
        for item in headers:
            name, value = item
            bname = _header_name(name)
            bvalue = _header_value(value)
            lname = bname.lower()
            if lname == b"content-length":
                if status == 304:
                    # the length of the representation a 200 would carry
                    extra.append(bname)
                    extra.append(bvalue)
                    continue
                if content_length >= 0 and body_allowed(status) and \
                        bvalue.strip() != str(content_length).encode():
                    raise ContentLengthMismatch(
                        f"Content-Length header {bvalue!r} does not match the {content_length}-byte body")
                continue
            if lname == b"transfer-encoding" or lname == b"date":
                continue
            if lname == b"connection":
                if b"close" in bvalue.lower():
                    close_requested[0] = True
                continue
            if lname == b"content-type":
                has_ctype = True
            elif lname == b"server":
                own_server = True
            extra.append(bname)
            extra.append(bvalue)
    out.append_bytes(status_line(status))
    if ctype_line is not None and not has_ctype:
        out.append_bytes(ctype_line)
    if extra:
        for i in range(0, len(extra), 2):
            out.append_bytes(<bytes>extra[i])
            out.append(b": ", 2)
            out.append_bytes(<bytes>extra[i + 1])
            out.append(b"\r\n", 2)
    if content_length >= 0 and not body_allowed(status):
        # never for 1xx/204 (RFC 9110 8.6); for 304 only the application's own
        content_length = -2
    end_head(out, content_length, keep_alive and not close_requested[0], http10, head, own_server)
    return 0


cdef int end_head(WriteBuffer out, long long content_length, bint keep_alive, bint http10,
                  HeadLines head, bint own_server) except -1:
    """The framing, Date, Server, ``--header`` and Connection lines and the
    blank line that end a head.  ``content_length`` >= 0 writes
    Content-Length; -1 the chunked coding; -2 neither.  ``own_server``: the
    app sent its own Server header."""
    if content_length >= 0:
        out.append(b"content-length: ", 16)
        out.append_int(content_length)
        out.append(b"\r\n", 2)
    elif content_length == -1:
        out.append(b"transfer-encoding: chunked\r\n", 28)
    if head is None:
        head = _default_head
    if head.date:
        out.append_bytes(date_line())
    if head.server is not None and not own_server:
        out.append_bytes(head.server)
    if head.extra is not None:
        out.append_bytes(head.extra)
    if not keep_alive:
        out.append(b"connection: close\r\n\r\n", 21)
    elif http10:
        out.append(b"connection: keep-alive\r\n\r\n", 26)
    else:
        out.append(b"\r\n", 2)
    return 0


cdef inline bint _lower_is(const char* p, Py_ssize_t n, const char* lower, Py_ssize_t m) noexcept:
    return n == m and _ieq(p, lower, n)


cdef inline bint _has_token_close(const char* p, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i = 0, start
    while i < n:
        while i < n and (p[i] == 32 or p[i] == 9 or p[i] == 44):
            i += 1
        start = i
        while i < n and p[i] != 44 and p[i] != 32 and p[i] != 9:
            i += 1
        if _lower_is(p + start, i - start, b"close", 5):
            return True
    return False


cdef int write_asgi_head(WriteBuffer out, int status, object headers,
                         long long* declared_length, bint* close_requested,
                         bint* own_server) except -1:
    """The status line and an ASGI application's headers (``(name, value)``
    bytes pairs), checked as they are copied.  Content-Length is taken out
    and returned in ``declared_length`` (-1 when absent; kept in the output
    only for a 304), Transfer-Encoding and Date are left to the server,
    ``Connection: close`` sets ``close_requested``, a Server header
    ``own_server``.  The caller ends the
    head with :func:`end_head`.  On a bad header nothing is written and
    :class:`InvalidResponseHeader` is raised."""
    cdef Py_ssize_t mark = out.length, i, nlen, vlen
    cdef const char* n
    cdef const char* v
    cdef object item, name, value
    cdef long long cl
    declared_length[0] = -1
    out.append_bytes(status_line(status))
    try:
        for item in headers:
            if type(item) is tuple or type(item) is list:
                if len(item) != 2:
                    raise InvalidResponseHeader(f"an ASGI header must be a (name, value) pair, got {item!r}")
                name = item[0]
                value = item[1]
            else:
                name, value = item
            if type(name) is not bytes:
                if not isinstance(name, (bytes, bytearray)):
                    raise InvalidResponseHeader(
                        f"ASGI header names are bytes, got {type(name).__name__} {name!r}")
                name = bytes(name)
            if type(value) is not bytes:
                if not isinstance(value, (bytes, bytearray)):
                    raise InvalidResponseHeader(
                        f"ASGI header values are bytes, got {type(value).__name__} {value!r}")
                value = bytes(value)
            n = PyBytes_AS_STRING(name)
            nlen = PyBytes_GET_SIZE(name)
            v = PyBytes_AS_STRING(value)
            vlen = PyBytes_GET_SIZE(value)
            if nlen == 0:
                raise InvalidResponseHeader("empty header name")
            for i in range(nlen):
                if not NAME_OK[<unsigned char>n[i]]:
                    raise InvalidResponseHeader(f"invalid character {chr(<unsigned char>n[i])!r} "
                                                f"in header name {name!r}")
            for i in range(vlen):
                if not VALUE_OK[<unsigned char>v[i]]:
                    raise InvalidResponseHeader(
                        f"control character {<unsigned char>v[i]:#04x} in header value {value!r}: "
                        "CR, LF and NUL are never sent")
            if nlen == 14 and _lower_is(n, nlen, b"content-length", 14):
                cl = _parse_length(v, vlen)
                if cl < 0:
                    raise InvalidResponseHeader(f"Content-Length {value!r} is not a number of bytes")
                if declared_length[0] >= 0 and declared_length[0] != cl:
                    raise InvalidResponseHeader("two different Content-Length headers")
                declared_length[0] = cl
                if status != 304:
                    continue
            elif nlen == 17 and _lower_is(n, nlen, b"transfer-encoding", 17):
                continue
            elif nlen == 4 and _lower_is(n, nlen, b"date", 4):
                continue
            elif nlen == 10 and _lower_is(n, nlen, b"connection", 10):
                if _has_token_close(v, vlen):
                    close_requested[0] = True
                continue
            elif nlen == 6 and _lower_is(n, nlen, b"server", 6):
                own_server[0] = True
            out.append(n, nlen)
            out.append(b": ", 2)
            out.append(v, vlen)
            out.append(b"\r\n", 2)
    except BaseException:
        out.length = mark
        raise
    return 0


cdef long long _parse_length(const char* v, Py_ssize_t n) noexcept:
    cdef long long value = 0
    cdef Py_ssize_t i = 0
    while n and (v[n - 1] == 32 or v[n - 1] == 9):
        n -= 1
    while i < n and (v[i] == 32 or v[i] == 9):
        i += 1
    if i == n or n - i > 18:
        return -1
    while i < n:
        if not (48 <= v[i] <= 57):
            return -1
        value = value * 10 + (v[i] - 48)
        i += 1
    return value


cdef int write_simple(WriteBuffer out, int status, str text, bint keep_alive,
                      HeadLines head) except -1:
    """A short text/plain response (errors, 404, 405...)."""
    cdef bytes body = text.encode("utf-8")
    cdef bint close_requested = False
    write_head(out, status, b"content-type: text/plain; charset=utf-8\r\n", None,
               len(body), keep_alive, False, &close_requested, head)
    out.append_bytes(body)
    return 0


cdef bytes _to_body(object body):
    if body is None:
        return b""
    if isinstance(body, bytes):
        return <bytes>body
    if isinstance(body, str):
        return (<str>body).encode("utf-8")
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"response body must be bytes or str, not {type(body).__name__}")


cdef class Response:
    """A complete response: status, headers and a body held in memory.

    ``body`` may be ``bytes`` or ``str`` (encoded as UTF-8).  The default
    content type is ``text/plain; charset=utf-8`` for ``str`` bodies and
    ``application/octet-stream`` for bytes.  ``headers`` is a list of
    ``(name, value)`` pairs; Content-Length and the framing are fastsrv's.
    """

    def __init__(self, body=b"", int status=200, headers=None, str content_type=None):
        if status < 100 or status > 599:
            raise ValueError(f"invalid HTTP status code {status}: use 100-599")
        self.status = status
        if content_type is None:
            content_type = "text/plain; charset=utf-8" if isinstance(body, str) else "application/octet-stream"
        self.content_type = content_type
        self.body = _to_body(body)
        self.headers = list(headers.items() if isinstance(headers, dict) else headers) if headers else None

    @staticmethod
    def json(object data, int status=200, headers=None):
        """A JSON response (``application/json``)."""
        return Response(_json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
                        status, headers, "application/json")

    @staticmethod
    def text(str text, int status=200, headers=None):
        """A ``text/plain; charset=utf-8`` response."""
        return Response(text, status, headers, "text/plain; charset=utf-8")

    @staticmethod
    def html(str text, int status=200, headers=None):
        """A ``text/html; charset=utf-8`` response."""
        return Response(text, status, headers, "text/html; charset=utf-8")

    def __repr__(self):
        return f"<Response {self.status} {len(self.body)} bytes>"


cdef class StreamingResponse:
    """A response whose body is produced piece by piece.

    ``content`` is an async iterable (or a plain iterable) of ``bytes`` or
    ``str``.  It is sent with the chunked coding to HTTP/1.1 clients (or
    delimited by the connection's close for HTTP/1.0), waiting for the
    client to read when the socket's buffer is full.  It stops early, and
    the iterator is closed, when the client goes away.
    """

    def __init__(self, content, int status=200, headers=None,
                 str content_type="text/plain; charset=utf-8"):
        if status < 100 or status > 599:
            raise ValueError(f"invalid HTTP status code {status}: use 100-599")
        self.content = content
        self.status = status
        self.headers = list(headers.items() if isinstance(headers, dict) else headers) if headers else None
        self.content_type = content_type

    def __repr__(self):
        return f"<StreamingResponse {self.status}>"
