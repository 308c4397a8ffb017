# cython: freethreading_compatible = False
"""A zero-copy, incremental HTTP/1.1 request parser.

A head (request line and header fields) that arrives whole is found by
scanning for its empty line, then parsed in one pass over the buffer,
picohttpparser-style: the result is a set of offsets into the caller's
buffer, never a copy.  The bytes of a head that arrives in pieces are also
judged as they come, each once, so a request that is already invalid is
refused at its first invalid byte instead of waiting for the rest of the
head.  Bodies are framed by Content-Length or by the chunked coding, decoded
by a byte-level state machine that can be split at any offset.  Everything
RFC 9112 says a server MUST reject is rejected, with the status code the
connection core answers with.
"""

import logging

cimport cython
from libc.string cimport memchr, memcmp, memset
from libc.stdint cimport uint32_t, int64_t
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE

DEF MAX_SPANS = 256
# the largest values that one more decimal / hex digit cannot overflow int64
# (one more than CL_MAX_BEFORE_DIGIT still takes the digits 0-7)
DEF CL_MAX_BEFORE_DIGIT = 922337203685477579
DEF CHUNK_MAX_BEFORE_DIGIT = 0x7FFFFFFFFFFFFFF
DEF MAX_CHUNK_LINE = 4096

logger = logging.getLogger("fastsrv.error")

cdef HeaderSpan _scratch[MAX_SPANS]

# character classes; TOKEN is 2 for "_" (a name holding one is dropped
# unless kept: RequestParser.underscores_in_headers), 1 for other tchars
cdef unsigned char TOKEN[256]
cdef unsigned char VALUE_OK[256]
cdef unsigned char TARGET_OK[256]
cdef unsigned char HOST_OK[256]
cdef signed char HEXVAL[256]
cdef const char* HTTP_SCHEME = b"http://"
cdef const char* HTTP_NAME = b"HTTP/"

# Fields a sender must not put in a trailer (RFC 9110 6.5.1): they frame or
# route the message, control the connection, modify or authenticate the
# request, or describe the content's format, so they must be known before
# the content.  The parser drops them from the trailers it hands over.
TRAILER_FORBIDDEN = frozenset([
    b"content-length", b"transfer-encoding", b"trailer", b"te",
    b"host",
    b"connection", b"keep-alive", b"proxy-connection", b"upgrade",
    b"authorization", b"proxy-authorization", b"cookie",
    b"expect", b"max-forwards", b"cache-control", b"pragma", b"range",
    b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since", b"if-range",
    b"content-type", b"content-encoding", b"content-range",
])


cdef void _init_tables():
    cdef int c
    for c in range(256):
        TOKEN[c] = 0
        VALUE_OK[c] = 0
        TARGET_OK[c] = 0
        HOST_OK[c] = 0
        HEXVAL[c] = -1
    for c in b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        TOKEN[c] = 1
    TOKEN[95] = 2
    for c in range(0x20, 0x7F):
        VALUE_OK[c] = 1
    VALUE_OK[9] = 1
    for c in range(0x80, 0x100):
        VALUE_OK[c] = 1       # obs-text
    for c in range(0x21, 0x7F):
        TARGET_OK[c] = 1
    TARGET_OK[35] = 0         # "#": a fragment is never part of a request-target
    # uri-host [ ":" port ] (RFC 3986 3.2.2): unreserved, pct-encoded,
    # sub-delims, and the ":" "[" "]" of ports and IP literals
    for c in b"-._~%!$&'()*+,;=:[]0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        HOST_OK[c] = 1
    for c in range(10):
        HEXVAL[48 + c] = c
    for c in range(6):
        HEXVAL[97 + c] = 10 + c
        HEXVAL[65 + c] = 10 + c


_init_tables()


class ParseError(Exception):
    """A request that RFC 9112 says must be rejected.

    ``status`` is the HTTP status the server answers with (400, 413, 414,
    431, 501, 505, 417); ``reason`` says what was wrong.  ``requests`` holds
    the requests that the failing :meth:`RequestParser.feed` call completed
    before the error (pipelined requests ahead of the bad one).
    """

    def __init__(self, int status, str reason, list requests=None):
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason
        self.requests = requests if requests is not None else []


cdef inline bint _next_element(const char* v, Py_ssize_t vlen, Py_ssize_t* i,
                               Py_ssize_t* start, Py_ssize_t* end) noexcept:
    """The next element of a comma-separated field value (``#rule``,
    RFC 9110 5.6.1): skip empty elements, trim OWS; False at the end."""
    cdef Py_ssize_t k = i[0], e
    while k < vlen and (v[k] == 32 or v[k] == 9 or v[k] == 44):
        k += 1
    if k == vlen:
        i[0] = k
        return False
    start[0] = k
    while k < vlen and v[k] != 44:
        k += 1
    i[0] = k
    e = k
    while e > start[0] and (v[e - 1] == 32 or v[e - 1] == 9):
        e -= 1
    end[0] = e
    return True


cdef inline int _bad_target(RequestParser parser, unsigned char c) except -2:
    if c == 35:
        return parser.fail(400, "fragment in request-target")
    return parser.fail(400, "invalid request-target")


cdef class Limits:
    """Size limits a request must fit in; exceeding one is answered with
    414 (request line), 431 (header block or count) or 413 (body)."""

    def __init__(self, Py_ssize_t max_request_line=8192, Py_ssize_t max_header_bytes=65536,
                 Py_ssize_t max_header_count=100, int64_t max_body_bytes=10 * 1024 * 1024):
        if max_request_line < 16 or max_header_bytes < max_request_line:
            raise ValueError("max_request_line must be >= 16 and <= max_header_bytes")
        if max_header_bytes > 0xFFFFFF:
            raise ValueError("max_header_bytes must be at most 16 MiB")
        if not 1 <= max_header_count <= MAX_SPANS - 1:
            raise ValueError(f"max_header_count must be between 1 and {MAX_SPANS - 1}")
        if max_body_bytes < 0:
            raise ValueError("max_body_bytes must be >= 0")
        self.max_request_line = max_request_line
        self.max_header_bytes = max_header_bytes
        self.max_header_count = max_header_count
        self.max_body_bytes = max_body_bytes

    def __repr__(self):
        return (f"Limits(max_request_line={self.max_request_line}, "
                f"max_header_bytes={self.max_header_bytes}, "
                f"max_header_count={self.max_header_count}, "
                f"max_body_bytes={self.max_body_bytes})")


cdef HeaderSpan* scratch_spans():
    return _scratch


cdef list build_header_list(const char* base, const HeaderSpan* spans, Py_ssize_t n, bint lower):
    cdef list out = []
    cdef Py_ssize_t k
    cdef bytes name
    for k in range(n):
        name = PyBytes_FromStringAndSize(base + spans[k].name_start, spans[k].name_len)
        if lower:
            name = name.lower()
        out.append((name, PyBytes_FromStringAndSize(base + spans[k].value_start, spans[k].value_len)))
    return out


@cython.final
cdef class RequestParser:
    """Parses one request at a time from a connection's bytes.

    The connection core drives it through C-level methods; ``feed`` is the
    Python-level entry used by tests and tools: give it bytes in any split,
    get back the complete requests, or a :class:`ParseError`.

    Header and trailer fields whose name holds an underscore are dropped
    (``Content_Length`` is read as ``Content-Length`` by CGI-style
    normalizers) unless ``underscores_in_headers`` is true.
    """

    def __cinit__(self):
        self.error_status = 0
        self.error_reason = None
        self.trailer_buf = None
        self._pending = bytearray()
        self._done = []
        self._head = None

    def __init__(self, Limits limits=None, bint underscores_in_headers=False):
        self.limits = limits if limits is not None else Limits()
        self.underscores_in_headers = underscores_in_headers
        self.reset()

    cdef void reset(self):
        self.error_status = 0
        self.error_reason = None
        self.scan_pos = 0
        self.line_start = 0
        self.line_count = 0
        self.skipped = 0
        self.check.pos = 0
        self.head_len = 0
        self.nheaders = 0
        self.expect_continue = False
        self.upgrade = False
        self.keep_alive = False
        self.body_kind = BODY_NONE
        self.content_length = 0
        self.remaining = 0
        self.body_seen = 0
        self.chunk_state = CH_SIZE
        self.chunk_size = 0
        self.chunk_digits = 0
        self.chunk_line = 0
        self.trailer_buf = None

    cdef int fail(self, int status, str reason) except -2:
        self.error_status = status
        self.error_reason = reason
        return PARSE_ERROR

    cdef int _dropped(self, object name, str why) except -1:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("dropped the field %r: %s", name, why)
        return 0

    cdef Py_ssize_t skip_empty_lines(self, const char* p, Py_ssize_t n):
        """Bytes of CRLF to ignore before a request line (RFC 9112 2.2)."""
        cdef Py_ssize_t i = 0
        while i + 1 < n and p[i] == 13 and p[i + 1] == 10 and self.skipped < 8:
            i += 2
            self.skipped += 1
        return i

    # ---- the head ----

    cdef int read_head(self, const char* p, Py_ssize_t n) except -2:
        """The head starting at ``p``, of which ``n`` bytes have arrived.

        PARSE_DONE: it is complete and valid (``head_len``; its fields in
        the scratch spans).  PARSE_NEED_MORE: every byte so far can still
        begin a valid request.  PARSE_ERROR: refused, with the verdict of
        its first invalid byte.

        A head that arrives whole takes the one-pass path (``scan_head``,
        then ``parse_head``) and nothing else.  The bytes of a head that
        arrives in pieces are judged by ``check_head`` as they come, each
        once.  When the one-pass path refuses a head, ``check_head`` judges
        the bytes it has not seen yet and its verdict (that of the first
        invalid byte) is the answer, so a head gets the same verdict however
        its bytes were split; the one-pass verdict stands only where
        ``check_head`` finds nothing, for the rules of the whole head (a
        missing Host, the final transfer coding, the body limit).
        """
        cdef int rc = self.scan_head(p, n)
        cdef int status
        cdef str reason
        if rc == PARSE_NEED_MORE:
            return self.check_head(p, n)
        if rc == PARSE_DONE:
            rc = self.parse_head(p, _scratch)
            if rc != PARSE_ERROR:
                return rc
            n = self.head_len
        status = self.error_status
        reason = self.error_reason
        if self.check_head(p, n) != PARSE_ERROR:
            self.error_status = status
            self.error_reason = reason
        return PARSE_ERROR

    cdef int scan_head(self, const char* p, Py_ssize_t n) except -2:
        """Find the end of the head in ``p[:n]``; resumable as bytes arrive."""
        cdef Py_ssize_t i = self.scan_pos
        cdef Py_ssize_t end, line_len, head_bytes
        cdef bint cr
        cdef const char* nl
        cdef Limits lim = self.limits
        while True:
            nl = <const char*>memchr(p + i, 10, n - i) if i < n else NULL
            end = (nl - p) if nl != NULL else n     # the current line ends at its LF, or so far
            # The limits come first and judge only what the bytes so far make
            # certain, so that the refusal does not depend on how the reads
            # split them: a CR at the end of a line (or of the bytes, where its
            # LF may follow) is not part of the line.
            cr = end > self.line_start and p[end - 1] == 13
            line_len = end - self.line_start - cr
            head_bytes = end + 1 if nl != NULL else end - cr
            if self.line_count == 0 and line_len > lim.max_request_line:
                return self.fail(414, "request line too long")
            if head_bytes > lim.max_header_bytes:
                return self.fail(431, "header section too large")
            if nl == NULL:
                # a lone CR before the request line may start an empty line
                # that skip_empty_lines must see again once its LF arrives
                self.scan_pos = 0 if (self.line_count == 0 and n == 1 and p[0] == 13) else n
                return PARSE_NEED_MORE
            if end == 0 or p[end - 1] != 13:
                return self.fail(400, "bare LF in request head")
            if line_len == 0:
                if self.line_count == 0:
                    return self.fail(400, "empty request line")
                self.head_len = end + 1
                return PARSE_DONE
            self.line_count += 1
            if self.line_count - 1 > lim.max_header_count:
                return self.fail(431, "too many header fields")
            i = end + 1
            self.line_start = i

    cdef int parse_head(self, const char* p, HeaderSpan* spans) except -2:
        """Validate the head found by ``scan_head`` and record its fields."""
        cdef Py_ssize_t i = 0, start, last, nh = 0
        cdef unsigned char c, t, name_chars
        cdef int rc
        cdef HeadFields f
        memset(&f, 0, sizeof(HeadFields))

        # request-line = method SP request-target SP HTTP-version CRLF
        while TOKEN[<unsigned char>p[i]]:
            i += 1
        if i == 0 or p[i] != 32:
            return self.fail(400, "invalid method")
        self.method_len = i
        i += 1
        self.target_start = i
        while TARGET_OK[<unsigned char>p[i]]:
            i += 1
        self.target_len = i - self.target_start
        if self.target_len == 0 or p[i] != 32:
            return _bad_target(self, <unsigned char>p[i])
        i += 1
        if i + 10 > self.head_len or memcmp(p + i, b"HTTP/", 5) != 0 or p[i + 8] != 13:
            return self.fail(400, "invalid HTTP version")
        if p[i + 9] != 10:
            return self.fail(400, "bare CR in request line")
        if not (48 <= p[i + 5] <= 57 and p[i + 6] == 46 and 48 <= p[i + 7] <= 57):
            return self.fail(400, "invalid HTTP version")
        if p[i + 5] == 49 and p[i + 7] == 49:
            self.version = 11
        elif p[i + 5] == 49 and p[i + 7] == 48:
            self.version = 10
        else:
            return self.fail(505, "HTTP version not supported")
        f.version = self.version
        i += 10

        if self.method_len == 7 and memcmp(p, b"CONNECT", 7) == 0:
            return self.fail(501, "CONNECT is not supported")
        c = p[self.target_start]
        if c != 47:  # not origin-form
            if c == 42 and self.target_len == 1:
                if not (self.method_len == 7 and memcmp(p, b"OPTIONS", 7) == 0):
                    return self.fail(400, "asterisk-form is only allowed for OPTIONS")
            elif self._absolute_form(p, &f) == PARSE_ERROR:
                return PARSE_ERROR

        # field-line = field-name ":" OWS field-value OWS CRLF
        while p[i] != 13:
            c = p[i]
            if c == 32 or c == 9:
                return self.fail(400, "obsolete line folding")
            start = i
            name_chars = 0
            while True:
                t = TOKEN[<unsigned char>p[i]]
                if not t:
                    break
                name_chars |= t
                i += 1
            if i == start:
                return self.fail(400, "invalid header field name")
            if p[i] != 58:
                if p[i] == 32 or p[i] == 9:
                    return self.fail(400, "whitespace between field name and colon")
                if p[i] == 13 and p[i + 1] == 10:
                    return self.fail(400, "field line without a colon")
                return self.fail(400, "invalid character in header field name")
            spans[nh].name_start = <uint32_t>start
            spans[nh].name_len = <uint32_t>(i - start)
            i += 1
            while p[i] == 32 or p[i] == 9:
                i += 1
            start = i
            last = i
            while True:
                c = p[i]
                if c == 13:
                    if p[i + 1] != 10:
                        return self.fail(400, "bare CR in header field value")
                    break
                if not VALUE_OK[c]:
                    if c == 0:
                        return self.fail(400, "NUL in header field value")
                    return self.fail(400, "control character in header field value")
                i += 1
                if c != 32 and c != 9:
                    last = i
            i += 2
            if name_chars & 2 and not self.underscores_in_headers:
                self._dropped(PyBytes_FromStringAndSize(p + spans[nh].name_start, spans[nh].name_len),
                              "its name has an underscore (--underscores-in-headers keeps such fields)")
                continue
            spans[nh].value_start = <uint32_t>start
            spans[nh].value_len = <uint32_t>(last - start)
            rc = self._field(p, &spans[nh], &f)
            if rc == PARSE_ERROR:
                return rc
            nh += 1
        if i + 2 != self.head_len:
            return self.fail(400, "bare CR in request head")
        self.nheaders = nh

        # the rules of the whole head
        if f.version == 11 and f.host_count == 0:
            return self.fail(400, "missing Host header")
        if f.has_te:
            if not f.te_chunked_final:
                return self.fail(400, "chunked is not the final transfer coding")
            if f.te_other:
                return self.fail(501, "unsupported transfer coding")
            self.body_kind = BODY_CHUNKED
        elif f.has_cl and f.content_length > 0:
            if f.content_length > self.limits.max_body_bytes:
                return self.fail(413, "request body too large")
            self.body_kind = BODY_LENGTH
            self.remaining = f.content_length
        self.content_length = f.content_length
        if f.absolute_form and f.host != NULL:
            # the target's authority is the host (RFC 9112 3.2.2), whatever
            # the Host field says: the application sees it there
            f.host.value_start = <uint32_t>f.authority_start
            f.host.value_len = <uint32_t>f.authority_len
        if self.version == 11:
            self.keep_alive = not f.conn_close
        else:
            self.keep_alive = f.conn_keep_alive and not f.conn_close
        self.expect_continue = f.expect_continue
        # Upgrade in an HTTP/1.0 request MUST be ignored (RFC 9110 7.8)
        self.upgrade = self.version == 11 and f.conn_upgrade and f.has_upgrade
        return PARSE_DONE

    cdef int _absolute_form(self, const char* p, HeadFields* f) except -2:
        """absolute-form = "http" / "https" "://" authority path-abempty [ "?" query ]:
        the authority must name a host (RFC 9110 4.2.1, 4.2.4: no userinfo)."""
        cdef Py_ssize_t t = self.target_start, end = self.target_start + self.target_len, a, k
        if self.target_len >= 7 and _ieq(p + t, b"http://", 7):
            a = t + 7
        elif self.target_len >= 8 and _ieq(p + t, b"https://", 8):
            a = t + 8
        else:
            return self.fail(400, "invalid request-target")
        k = a
        while k < end and HOST_OK[<unsigned char>p[k]]:
            k += 1
        if k == a:
            return self.fail(400, "empty host in request-target")
        if k < end and p[k] != 47 and p[k] != 63:
            return self.fail(400, "invalid host in request-target")
        f.absolute_form = True
        f.authority_start = a
        f.authority_len = k - a
        return PARSE_DONE

    cdef int check_head(self, const char* p, Py_ssize_t n) except -2:
        """Judge the bytes of a head in ``p[:n]`` that no call has judged
        yet: PARSE_ERROR at the first byte after which no valid request can
        follow, PARSE_NEED_MORE otherwise (and at the head's end).

        Each byte is judged once, so a client dripping its head costs in
        proportion to its bytes.  A CR is judged with the byte after it (a
        CRLF ends a line).  The limits come before the grammar at each byte,
        as in ``scan_head``; a field line's meaning (``_field``) is judged
        when the line is complete.  The rules of the whole head are left to
        ``parse_head``.
        """
        cdef HeadCheck* ck = &self.check
        cdef Limits lim = self.limits
        cdef Py_ssize_t i
        cdef unsigned char c
        if ck.pos == 0:
            memset(ck, 0, sizeof(HeadCheck))
        i = ck.pos
        while i < n:
            c = p[i]
            if c == 13:
                if i + 1 == n:
                    break               # its LF may follow
                if p[i + 1] == 10:
                    if i + 1 >= lim.max_header_bytes:
                        return self.fail(431, "header section too large")
                    if self._check_line_end(p, i) == PARSE_ERROR:
                        return PARSE_ERROR
                    i += 2
                    if ck.state == HS_DONE:
                        break
                    continue
                # a CR not followed by LF is a byte of its line
            elif c == 10:
                if i >= lim.max_header_bytes:
                    return self.fail(431, "header section too large")
                return self.fail(400, "bare LF in request head")
            if ck.state <= HS_VERSION_END and i >= lim.max_request_line:
                if ck.state == HS_METHOD:
                    # RFC 9112 3.1: a method longer than any implemented is 501
                    return self.fail(501, "method too long")
                return self.fail(414, "request line too long")
            if i >= lim.max_header_bytes:
                return self.fail(431, "header section too large")
            if self._check_byte(p, i) == PARSE_ERROR:
                return PARSE_ERROR
            i += 1
        ck.pos = i
        return PARSE_NEED_MORE

    cdef int _check_byte(self, const char* p, Py_ssize_t i) except -2:
        """Judge ``p[i]``, a byte of the request line or of a field line
        (a CR here is one not followed by LF)."""
        cdef HeadCheck* ck = &self.check
        cdef unsigned char c = p[i]
        cdef int st = ck.state
        cdef Py_ssize_t k
        if st == HS_METHOD:
            if TOKEN[c]:
                return PARSE_NEED_MORE
            if c != 32 or i == 0:
                return self.fail(400, "invalid method")
            if i == 7 and memcmp(p, b"CONNECT", 7) == 0:
                return self.fail(501, "CONNECT is not supported")
            ck.target_start = i + 1
            ck.state = HS_TARGET_START
        elif st == HS_TARGET_START:
            if c == 47:
                ck.state = HS_TARGET
            elif c == 42:
                if not (i == 8 and memcmp(p, b"OPTIONS", 7) == 0):
                    return self.fail(400, "asterisk-form is only allowed for OPTIONS")
                ck.state = HS_ASTERISK
            elif c == 104 or c == 72:
                ck.state = HS_SCHEME
            else:
                return _bad_target(self, c)
        elif st == HS_ASTERISK:
            if c != 32:
                return _bad_target(self, c)
            ck.version_start = i + 1
            ck.state = HS_VERSION
        elif st == HS_SCHEME:
            # "http://" or "https://" in any case
            k = i - ck.target_start
            if 65 <= c <= 90:
                c += 32
            if k == 4 and c == 115:
                return PARSE_NEED_MORE
            if k > 4 and (p[ck.target_start + 4] | 32) == 115:
                k -= 1
            if c != HTTP_SCHEME[k]:
                return _bad_target(self, <unsigned char>p[i])
            if k == 6:
                ck.fields.absolute_form = True
                ck.state = HS_AUTHORITY_START
        elif st == HS_AUTHORITY_START or st == HS_AUTHORITY:
            if HOST_OK[c]:
                ck.state = HS_AUTHORITY
                return PARSE_NEED_MORE
            if not TARGET_OK[c] and c != 32:
                return _bad_target(self, c)
            if c != 47 and c != 63 and c != 32:
                return self.fail(400, "invalid host in request-target")
            if st == HS_AUTHORITY_START:
                return self.fail(400, "empty host in request-target")
            if c == 32:
                ck.version_start = i + 1
                ck.state = HS_VERSION
            else:
                ck.state = HS_TARGET
        elif st == HS_TARGET:
            if TARGET_OK[c]:
                return PARSE_NEED_MORE
            if c != 32:
                return _bad_target(self, c)
            ck.version_start = i + 1
            ck.state = HS_VERSION
        elif st == HS_VERSION:
            # "HTTP/" DIGIT "." DIGIT
            k = i - ck.version_start
            if k < 5:
                if c != HTTP_NAME[k]:
                    return self.fail(400, "invalid HTTP version")
            elif k == 6:
                if c != 46:
                    return self.fail(400, "invalid HTTP version")
            elif not 48 <= c <= 57:
                return self.fail(400, "invalid HTTP version")
            elif k == 7:
                ck.state = HS_VERSION_END
        elif st == HS_VERSION_END:
            if c == 13:
                return self.fail(400, "bare CR in request line")
            return self.fail(400, "invalid HTTP version")
        elif st == HS_FIELD_START:
            if TOKEN[c]:
                ck.name_start = i
                ck.state = HS_NAME
            elif c == 32 or c == 9:
                return self.fail(400, "obsolete line folding")
            elif c == 13:
                return self.fail(400, "bare CR in request head")
            else:
                return self.fail(400, "invalid header field name")
        elif st == HS_NAME:
            if TOKEN[c]:
                return PARSE_NEED_MORE
            if c == 58:
                ck.name_end = i
                ck.state = HS_VALUE_OWS
            elif c == 32 or c == 9:
                return self.fail(400, "whitespace between field name and colon")
            else:
                return self.fail(400, "invalid character in header field name")
        else:   # HS_VALUE_OWS, HS_VALUE
            if c == 32 or c == 9:
                return PARSE_NEED_MORE
            if not VALUE_OK[c]:
                if c == 13:
                    return self.fail(400, "bare CR in header field value")
                if c == 0:
                    return self.fail(400, "NUL in header field value")
                return self.fail(400, "control character in header field value")
            if st == HS_VALUE_OWS:
                ck.value_start = i
                ck.state = HS_VALUE
            ck.value_end = i + 1
        return PARSE_NEED_MORE

    cdef int _check_line_end(self, const char* p, Py_ssize_t i) except -2:
        """Judge the CRLF at ``p[i]``: the end of the request line, of a
        field line, or of the head."""
        cdef HeadCheck* ck = &self.check
        cdef int st = ck.state
        cdef HeaderSpan span
        if st == HS_METHOD:
            return self.fail(400, "empty request line" if i == 0 else "invalid method")
        if st < HS_VERSION:
            return self.fail(400, "invalid request-target")
        if st == HS_VERSION:
            return self.fail(400, "invalid HTTP version")
        if st == HS_VERSION_END:
            if p[ck.version_start + 5] != 49 or not (p[ck.version_start + 7] == 48 or
                                                     p[ck.version_start + 7] == 49):
                return self.fail(505, "HTTP version not supported")
            ck.fields.version = 11 if p[ck.version_start + 7] == 49 else 10
            ck.state = HS_FIELD_START
        elif st == HS_FIELD_START:
            ck.state = HS_DONE
            return PARSE_DONE
        else:
            ck.field_lines += 1
            if ck.field_lines > self.limits.max_header_count:
                return self.fail(431, "too many header fields")
            if st == HS_NAME:
                return self.fail(400, "field line without a colon")
            if st == HS_VALUE_OWS:
                ck.value_start = ck.value_end = i
            span.name_start = <uint32_t>ck.name_start
            span.name_len = <uint32_t>(ck.name_end - ck.name_start)
            span.value_start = <uint32_t>ck.value_start
            span.value_len = <uint32_t>(ck.value_end - ck.value_start)
            if self._field(p, &span, &ck.fields) == PARSE_ERROR:
                return PARSE_ERROR
            ck.state = HS_FIELD_START
        return PARSE_NEED_MORE

    cdef inline int _field(self, const char* p, HeaderSpan* s, HeadFields* f) except -2:
        """Apply one field line's meaning to ``f``; refuse what no later
        field can make valid."""
        cdef const char* name = p + s.name_start
        cdef Py_ssize_t nlen = s.name_len
        cdef const char* v = p + s.value_start
        cdef Py_ssize_t vlen = s.value_len
        cdef Py_ssize_t i, k, tstart = 0, tend = 0
        cdef int64_t value
        if nlen == 4 and _ieq(name, b"host", 4):
            for i in range(vlen):
                if not HOST_OK[<unsigned char>v[i]]:
                    return self.fail(400, "invalid Host header")
            f.host_count += 1
            if f.host_count > 1:
                return self.fail(400, "multiple Host headers")
            # an origin-form target's URI is http://<Host>/...: an http URI
            # with an empty host is invalid (RFC 9110 4.2.1, RFC 9112 3.3)
            if vlen == 0 and not f.absolute_form:
                return self.fail(400, "empty Host header")
            f.host = s
        elif nlen == 14 and _ieq(name, b"content-length", 14):
            # Content-Length = 1*DIGIT (RFC 9110 8.6): one number.  A list,
            # even of identical values, is refused: an intermediary may read
            # it otherwise; identical repeated lines are one value.
            i = 0
            value = 0
            while i < vlen and 48 <= v[i] <= 57:
                if value > CL_MAX_BEFORE_DIGIT and (value > CL_MAX_BEFORE_DIGIT + 1 or v[i] > 55):
                    return self.fail(400, "Content-Length does not fit in 64 bits")
                value = value * 10 + (v[i] - 48)
                i += 1
            k = i
            if k == 0:
                return self.fail(400, "invalid Content-Length")
            if i < vlen:
                while v[i] == 32 or v[i] == 9:
                    i += 1
                if v[i] == 44:
                    return self.fail(400, "Content-Length given as a list")
                return self.fail(400, "invalid Content-Length")
            # only identical values are one value: "01" and "1" conflict
            if f.has_cl and (value != f.content_length or k != f.cl_digits):
                return self.fail(400, "conflicting Content-Length values")
            f.has_cl = True
            f.content_length = value
            f.cl_digits = k
            if f.has_te:
                return self.fail(400, "both Content-Length and Transfer-Encoding")
        elif nlen == 17 and _ieq(name, b"transfer-encoding", 17):
            f.has_te = True
            i = 0
            while _next_element(v, vlen, &i, &tstart, &tend):
                if tend - tstart == 7 and _ieq(v + tstart, b"chunked", 7):
                    if f.te_chunked_seen:
                        return self.fail(400, "chunked applied more than once")
                    f.te_chunked_seen = True
                    f.te_chunked_final = True
                else:
                    for k in range(tstart, tend):
                        if not TOKEN[<unsigned char>v[k]] and v[k] != 59 and v[k] != 61 \
                                and v[k] != 32 and v[k] != 9 and v[k] != 34:
                            return self.fail(400, "invalid Transfer-Encoding")
                    f.te_other = True
                    f.te_chunked_final = False
            if f.version == 10:
                return self.fail(400, "Transfer-Encoding in an HTTP/1.0 request")
            if f.has_cl:
                return self.fail(400, "both Content-Length and Transfer-Encoding")
        elif nlen == 10 and _ieq(name, b"connection", 10):
            i = 0
            while _next_element(v, vlen, &i, &tstart, &tend):
                if tend - tstart == 5 and _ieq(v + tstart, b"close", 5):
                    f.conn_close = True
                elif tend - tstart == 10 and _ieq(v + tstart, b"keep-alive", 10):
                    f.conn_keep_alive = True
                elif tend - tstart == 7 and _ieq(v + tstart, b"upgrade", 7):
                    f.conn_upgrade = True
        elif nlen == 6 and _ieq(name, b"expect", 6):
            # Expect = #expectation; empty list elements are ignored (RFC 9110 5.6.1.2)
            i = 0
            while _next_element(v, vlen, &i, &tstart, &tend):
                if not (tend - tstart == 12 and _ieq(v + tstart, b"100-continue", 12)):
                    return self.fail(417, "unsupported expectation")
                # an HTTP/1.0 client cannot be sent a 1xx (RFC 9110 10.1.1)
                f.expect_continue = f.version == 11
        elif nlen == 7 and _ieq(name, b"upgrade", 7):
            f.has_upgrade = True
        return PARSE_DONE

    # ---- the body ----

    cdef int parse_body(self, const char* p, Py_ssize_t n, Py_ssize_t* consumed,
                        Py_ssize_t* data_start, Py_ssize_t* data_len) except -2:
        """Advance the body framing over ``p[:n]``.

        Sets ``consumed`` and, when body bytes were found, the span
        ``data_start``/``data_len`` (relative to ``p``). Returns PARSE_DONE
        once the message body is complete, PARSE_NEED_MORE otherwise (call
        again with the bytes after ``consumed``), PARSE_ERROR on bad framing.
        """
        cdef Py_ssize_t i = 0, take, j
        cdef unsigned char c
        cdef int v
        cdef const char* nl
        data_len[0] = 0
        data_start[0] = 0
        if self.body_kind == BODY_LENGTH:
            take = n if n < self.remaining else <Py_ssize_t>self.remaining
            data_len[0] = take
            consumed[0] = take
            self.remaining -= take
            return PARSE_DONE if self.remaining == 0 else PARSE_NEED_MORE
        if self.body_kind == BODY_NONE:
            consumed[0] = 0
            return PARSE_DONE
        while i < n:
            c = p[i]
            if self.chunk_state == CH_DATA:
                take = n - i if n - i < self.chunk_size else <Py_ssize_t>self.chunk_size
                data_start[0] = i
                data_len[0] = take
                self.chunk_size -= take
                i += take
                if self.chunk_size == 0:
                    self.chunk_state = CH_DATA_CR
                consumed[0] = i
                return PARSE_NEED_MORE
            elif self.chunk_state == CH_SIZE:
                v = HEXVAL[c]
                if v >= 0:
                    if self.chunk_size > CHUNK_MAX_BEFORE_DIGIT:
                        return self.fail(400, "chunk size does not fit in 64 bits")
                    self.chunk_size = self.chunk_size * 16 + v
                    self.chunk_digits += 1
                elif self.chunk_digits == 0:
                    return self.fail(400, "invalid chunk size")
                elif c == 59:
                    self.chunk_state = CH_EXT
                elif c == 32 or c == 9:
                    self.chunk_state = CH_SIZE_BWS
                elif c == 13:
                    self.chunk_state = CH_SIZE_LF
                else:
                    return self.fail(400, "invalid chunk size")
                i += 1
            elif self.chunk_state == CH_SIZE_BWS:
                if c == 59:
                    self.chunk_state = CH_EXT
                elif c != 32 and c != 9:
                    return self.fail(400, "invalid chunk size")
                i += 1
            elif CH_EXT <= self.chunk_state <= CH_EXT_VALUE_BWS:
                if self._chunk_ext(c) == PARSE_ERROR:
                    return PARSE_ERROR
                self.chunk_line += 1
                if self.chunk_line > MAX_CHUNK_LINE:
                    return self.fail(400, "chunk extension too long")
                i += 1
            elif self.chunk_state == CH_SIZE_LF:
                if c != 10:
                    return self.fail(400, "bare CR in chunk header")
                i += 1
                self.chunk_line = 0
                self.chunk_digits = 0
                if self.chunk_size == 0:
                    self.chunk_state = CH_TRAILER
                    self.trailer_buf = bytearray()
                else:
                    self.body_seen += self.chunk_size
                    if self.body_seen > self.limits.max_body_bytes:
                        return self.fail(413, "request body too large")
                    self.chunk_state = CH_DATA
            elif self.chunk_state == CH_DATA_CR:
                if c != 13:
                    return self.fail(400, "chunk data longer than its size")
                self.chunk_state = CH_DATA_LF
                i += 1
            elif self.chunk_state == CH_DATA_LF:
                if c != 10:
                    return self.fail(400, "bare CR after chunk data")
                self.chunk_state = CH_SIZE
                i += 1
            elif self.chunk_state == CH_TRAILER:
                nl = <const char*>memchr(p + i, 10, n - i)
                j = (nl - p + 1) if nl != NULL else n
                self.trailer_buf += p[i:j]
                i = j
                if len(self.trailer_buf) > self.limits.max_header_bytes:
                    return self.fail(431, "trailer section too large")
                if nl == NULL:
                    break
                if self._trailer_line_done():
                    self.chunk_state = CH_DONE
                    consumed[0] = i
                    return self.check_trailers()
            else:
                break
        consumed[0] = i
        return PARSE_NEED_MORE

    cdef int _chunk_ext(self, unsigned char c) except -2:
        """One byte of a chunk's extensions, by the grammar of RFC 9112 7.1.1:
        ``*( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )``, where ext-name
        is a token and ext-val a token or a quoted-string, then CRLF."""
        cdef int st = self.chunk_state
        cdef bint ws = c == 32 or c == 9
        if st == CH_EXT:
            if TOKEN[c]:
                st = CH_EXT_NAME
            elif not ws:
                return self.fail(400, "chunk extension without a name")
        elif st == CH_EXT_NAME or st == CH_EXT_TOKEN:
            if TOKEN[c]:
                pass
            elif c == 59:
                st = CH_EXT
            elif c == 13:
                st = CH_SIZE_LF
            elif c == 61 and st == CH_EXT_NAME:
                st = CH_EXT_VALUE
            elif ws:
                st = CH_EXT_NAME_BWS if st == CH_EXT_NAME else CH_EXT_VALUE_BWS
            else:
                return self.fail(400, "invalid character in chunk extension")
        elif st == CH_EXT_VALUE:
            if TOKEN[c]:
                st = CH_EXT_TOKEN
            elif c == 34:
                st = CH_EXT_QUOTED
            elif not ws:
                return self.fail(400, "chunk extension without a value")
        elif st == CH_EXT_QUOTED:
            # qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
            if c == 34:
                st = CH_EXT_VALUE_END
            elif c == 92:
                st = CH_EXT_QUOTED_PAIR
            elif not (c == 9 or 32 <= c <= 126 or c >= 128):
                return self.fail(400, "invalid character in chunk extension")
        elif st == CH_EXT_QUOTED_PAIR:
            if not (c == 9 or 32 <= c <= 126 or c >= 128):
                return self.fail(400, "invalid character in chunk extension")
            st = CH_EXT_QUOTED
        elif st == CH_EXT_VALUE_END:
            if c == 59:
                st = CH_EXT
            elif c == 13:
                st = CH_SIZE_LF
            elif ws:
                st = CH_EXT_VALUE_BWS
            else:
                return self.fail(400, "invalid character in chunk extension")
        else:   # CH_EXT_NAME_BWS, CH_EXT_VALUE_BWS: BWS belongs before ";" or "="
            if c == 59:
                st = CH_EXT
            elif c == 61 and st == CH_EXT_NAME_BWS:
                st = CH_EXT_VALUE
            elif c == 13:
                return self.fail(400, "whitespace at the end of a chunk extension")
            elif not ws:
                return self.fail(400, "invalid character in chunk extension")
        self.chunk_state = st
        return 0

    cdef inline bint _trailer_line_done(self) except -1:
        """True when the trailer section just ended with an empty line."""
        cdef bytearray t = self.trailer_buf
        cdef Py_ssize_t m = len(t)
        if m < 2 or t[m - 2] != 13:
            self.error_status = 400
            self.error_reason = "bare LF in trailer section"
            return True
        return m == 2 or (m >= 4 and t[m - 4] == 13 and t[m - 3] == 10)

    cdef int check_trailers(self) except -2:
        """Validate the trailer section and keep its fields, less those that
        must not be trailers (``TRAILER_FORBIDDEN``) and, unless kept, those
        with an underscore in the name."""
        if self.error_status:
            return PARSE_ERROR
        cdef bytes raw = bytes(self.trailer_buf)
        cdef const char* p = PyBytes_AS_STRING(raw)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(raw), i = 0, start, last, count = 0
        cdef unsigned char c, name_chars
        cdef bytes name
        cdef list out = []
        while i < n and p[i] != 13:
            if p[i] == 32 or p[i] == 9:
                return self.fail(400, "obsolete line folding in trailer")
            start = i
            name_chars = 0
            while TOKEN[<unsigned char>p[i]]:
                name_chars |= TOKEN[<unsigned char>p[i]]
                i += 1
            if i == start or p[i] != 58:
                return self.fail(400, "invalid trailer field")
            name = p[start:i].lower()
            i += 1
            while p[i] == 32 or p[i] == 9:
                i += 1
            start = i
            last = i
            while p[i] != 13:
                c = p[i]
                if not VALUE_OK[c]:
                    return self.fail(400, "invalid character in trailer field value")
                i += 1
                if c != 32 and c != 9:
                    last = i
            if p[i + 1] != 10:
                return self.fail(400, "bare CR in trailer section")
            count += 1
            if count > self.limits.max_header_count:
                return self.fail(431, "too many trailer fields")
            i += 2
            if name in TRAILER_FORBIDDEN:
                self._dropped(name, "it must not be sent as a trailer (RFC 9110 6.5.1)")
            elif name_chars & 2 and not self.underscores_in_headers:
                self._dropped(name, "its name has an underscore (--underscores-in-headers keeps such fields)")
            else:
                out.append((name, p[start:last]))
        if i + 2 != n:
            return self.fail(400, "bare CR in trailer section")
        self.trailers = out
        return PARSE_DONE

    # ---- the Python-level entry (tests, tools) ----

    def feed(self, data):
        """Feed bytes; return the list of requests completed by them.

        Each request is a dict with ``method``, ``target``, ``version``
        (``"1.0"``/``"1.1"``), ``headers`` (list of ``(name, value)`` bytes,
        as the application sees them), ``body``, ``trailers``,
        ``keep_alive``, ``expect_continue`` and ``upgrade``. Raises
        :class:`ParseError`, whose ``requests`` are those completed by this
        call before the error.
        """
        cdef bytearray buf = self._pending
        cdef Py_ssize_t pos = 0, consumed = 0, ds = 0, dl = 0, n
        cdef int rc
        cdef const char* p
        cdef bytes snapshot
        buf += data
        snapshot = bytes(buf)
        p = PyBytes_AS_STRING(snapshot)
        n = PyBytes_GET_SIZE(snapshot)
        out = []
        while True:
            if self._head is None:
                if self.line_count == 0 and self.scan_pos == 0:
                    pos += self.skip_empty_lines(p + pos, n - pos)
                rc = self.read_head(p + pos, n - pos)
                if rc == PARSE_NEED_MORE:
                    break
                if rc == PARSE_ERROR:
                    raise ParseError(self.error_status, self.error_reason, out)
                self._head = {
                    "method": p[pos:pos + self.method_len],
                    "target": p[pos + self.target_start:pos + self.target_start + self.target_len],
                    "version": "1.1" if self.version == 11 else "1.0",
                    "headers": build_header_list(p + pos, _scratch, self.nheaders, False),
                    "keep_alive": self.keep_alive,
                    "expect_continue": self.expect_continue,
                    "upgrade": self.upgrade,
                    "body": bytearray(),
                    "trailers": [],
                }
                pos += self.head_len
            head = self._head
            rc = PARSE_NEED_MORE
            while True:
                rc = self.parse_body(p + pos, n - pos, &consumed, &ds, &dl)
                if rc == PARSE_ERROR:
                    raise ParseError(self.error_status, self.error_reason, out)
                if dl:
                    head["body"] += p[pos + ds:pos + ds + dl]
                pos += consumed
                if rc == PARSE_DONE or pos >= n:
                    break
            if rc != PARSE_DONE:
                break
            head["body"] = bytes(head["body"])
            if self.body_kind == BODY_CHUNKED:
                head["trailers"] = self.trailers
            out.append(head)
            self._head = None
            self.reset()
        # an incomplete head keeps its scan and check state: its offsets
        # count from its first byte, which is where the buffer now starts
        del buf[:pos]
        return out
