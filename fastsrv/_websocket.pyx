"""The WebSocket connection: RFC 6455 framing and RFC 7692 permessage-deflate.

After the HTTP core has answered ``101 Switching Protocols`` it hands its
transport to a :class:`WebSocketConnection`, which parses frames in place
as bytes arrive (the payload is unmasked straight into the message being
assembled, eight bytes at a time), validates text incrementally across
fragments, answers pings, enforces the size limit on the inflated size,
and runs the close handshake.  Complete messages go to an inbox the app
reads with :meth:`WebSocketConnection.receive`; reading stops while the app
does not keep up, and sending waits while the client does not read.

The handshake helpers (:func:`check_handshake`, :func:`accept_key`,
:func:`negotiate_deflate`) are used by the HTTP core before the 101.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.unicode cimport PyUnicode_AsUTF8String, PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy

from fastsrv._request cimport Request

import asyncio
import base64
import binascii
import collections
import hashlib
import json
import logging
import zlib

logger = logging.getLogger("fastsrv.error")

cdef bytes GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
cdef bytes DEFLATE_TAIL = b"\x00\x00\xff\xff"
cdef object _deque = collections.deque
cdef object _json_loads = json.loads
cdef object _json_dumps = json.dumps
cdef object _decompressobj = zlib.decompressobj
cdef object _compressobj = zlib.compressobj
cdef int Z_SYNC_FLUSH = zlib.Z_SYNC_FLUSH
# compressed bytes buffered before they are inflated
DEF INFLATE_CHUNK = 65536
# what a waiting message counts for beyond its bytes, so that many empty
# messages also stop reading
DEF MESSAGE_OVERHEAD = 64

# close codes an endpoint may send (RFC 6455 7.4, and the IANA registry)
cdef inline bint valid_close_code(int code) noexcept:
    return (1000 <= code <= 1003 or 1007 <= code <= 1014) or 3000 <= code <= 4999

# ---------------------------------------------------------------- UTF-8

# The incremental validator's state: the continuation bytes still expected
# (bits 16+), and the range the next one must fall in (lo << 8 | hi).
DEF UTF8_BAD = 0xFFFFFFFF


cdef inline uint32_t utf8_step(uint32_t state, const uint8_t* s, Py_ssize_t n) noexcept nogil:
    """Advance over ``s[:n]``; UTF8_BAD as soon as the bytes cannot be UTF-8."""
    cdef Py_ssize_t i = 0
    cdef uint32_t need = state >> 16
    cdef uint8_t lo = (state >> 8) & 0xFF, hi = state & 0xFF, b
    cdef uint64_t word = 0
    while i < n:
        if need == 0:
            # ASCII runs eight bytes at a time
            while i + 8 <= n:
                memcpy(&word, s + i, 8)
                if word & 0x8080808080808080ULL:
                    break
                i += 8
            if i == n:
                break
            b = s[i]
            i += 1
            if b < 0x80:
                continue
            lo, hi = 0x80, 0xBF
            if 0xC2 <= b <= 0xDF:
                need = 1
            elif b == 0xE0:
                need, lo = 2, 0xA0
            elif 0xE1 <= b <= 0xEC or b == 0xEE or b == 0xEF:
                need = 2
            elif b == 0xED:
                need, hi = 2, 0x9F          # no UTF-16 surrogates
            elif b == 0xF0:
                need, lo = 3, 0x90          # no overlong 4-byte forms
            elif 0xF1 <= b <= 0xF3:
                need = 3
            elif b == 0xF4:
                need, hi = 3, 0x8F          # nothing above U+10FFFF
            else:
                return UTF8_BAD
        else:
            b = s[i]
            i += 1
            if b < lo or b > hi:
                return UTF8_BAD
            need -= 1
            lo, hi = 0x80, 0xBF
    return (need << 16) | (<uint32_t>lo << 8) | hi


def utf8_valid(data):
    """Whether ``data`` (bytes-like) is complete, valid UTF-8 (for tests)."""
    cdef const uint8_t[:] view = data
    cdef uint32_t state = utf8_step(0, &view[0] if len(view) else NULL, len(view))
    return state != UTF8_BAD and (state >> 16) == 0


# ---------------------------------------------------------------- masking

cdef inline void unmask(uint8_t* out, const uint8_t* src, Py_ssize_t n, const uint8_t* key,
                        int pos) noexcept nogil:
    """``out[i] = src[i] ^ key[(pos + i) % 4]``, eight bytes at a time."""
    cdef uint8_t k[8]
    cdef uint64_t m = 0, w = 0
    cdef Py_ssize_t i
    for i in range(8):
        k[i] = key[(pos + i) & 3]
    memcpy(&m, k, 8)
    i = 0
    while i + 8 <= n:
        memcpy(&w, src + i, 8)
        w ^= m
        memcpy(out + i, &w, 8)
        i += 8
    while i < n:
        out[i] = src[i] ^ k[i & 7]
        i += 1


# ---------------------------------------------------------------- handshake

class HandshakeError(Exception):
    """A WebSocket upgrade request that cannot be accepted: ``status`` is the
    HTTP answer (400, or 426 for an unsupported version)."""

    def __init__(self, int status, str reason):
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


cdef inline list _tokens(bytes value):
    return [t.strip().lower() for t in value.split(b",") if t.strip()]


def check_handshake(str method, int version, list headers):
    """Validate an upgrade request (RFC 6455 4.2.1) from its lower-cased
    header pairs; return ``(key, subprotocols, extension offers)`` or raise
    :class:`HandshakeError`."""
    cdef bytes key = None, ws_version = None
    cdef list subprotocols = [], offers = []
    cdef bint upgrade = False, connection = False
    if method != "GET":
        raise HandshakeError(400, "a WebSocket handshake must be a GET request")
    if version != 11:
        raise HandshakeError(400, "a WebSocket handshake needs HTTP/1.1")
    for name, value in headers:
        if name == b"upgrade":
            upgrade = upgrade or b"websocket" in _tokens(value)
        elif name == b"connection":
            connection = connection or b"upgrade" in _tokens(value)
        elif name == b"sec-websocket-key":
            if key is not None:
                raise HandshakeError(400, "more than one Sec-WebSocket-Key")
            key = value.strip()
        elif name == b"sec-websocket-version":
            if ws_version is not None:
                raise HandshakeError(400, "more than one Sec-WebSocket-Version")
            ws_version = value.strip()
        elif name == b"sec-websocket-protocol":
            for token in value.split(b","):
                token = token.strip()
                if token:
                    subprotocols.append(token.decode("latin-1"))
        elif name == b"sec-websocket-extensions":
            offers.append(value)
    if not upgrade:
        raise HandshakeError(400, "Upgrade does not name websocket")
    if not connection:
        raise HandshakeError(400, "Connection does not include upgrade")
    if key is None:
        raise HandshakeError(400, "missing Sec-WebSocket-Key")
    try:
        decoded = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != 16:
        raise HandshakeError(400, "Sec-WebSocket-Key is not the base64 of 16 bytes")
    if ws_version is None:
        raise HandshakeError(400, "missing Sec-WebSocket-Version")
    if ws_version != b"13":
        raise HandshakeError(426, "unsupported Sec-WebSocket-Version (this server speaks 13)")
    return key, subprotocols, offers


def accept_key(bytes key):
    """The Sec-WebSocket-Accept value for ``key`` (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def negotiate_deflate(list offers):
    """The first acceptable permessage-deflate offer among the client's
    Sec-WebSocket-Extensions values: ``(Deflate, response value)``, or
    ``(None, None)`` when there is none (RFC 7692 5, 7.1).  An offer with an
    unknown, repeated or invalid parameter is declined; so is one asking
    for a server window of 8 bits, which zlib cannot produce."""
    for value in offers:
        for offer in value.split(b","):
            params = [p.strip() for p in offer.split(b";")]
            if params[0].lower() != b"permessage-deflate":
                continue
            agreed = _deflate_offer(params[1:])
            if agreed is not None:
                return agreed
    return None, None


cdef object _deflate_offer(list params):
    cdef Deflate d = Deflate.__new__(Deflate)
    cdef set seen = set()
    cdef list response = [b"permessage-deflate"]
    cdef int bits
    d.server_max_window_bits = 15
    d.client_max_window_bits = 15
    for param in params:
        name, eq, raw = param.partition(b"=")
        name = name.strip().lower()
        raw = raw.strip()
        if len(raw) >= 2 and raw.startswith(b'"') and raw.endswith(b'"'):
            raw = raw[1:len(raw) - 1]
        if name in seen:
            return None
        seen.add(name)
        if name == b"server_no_context_takeover":
            if eq:
                return None
            d.server_no_context_takeover = True
            response.append(b"server_no_context_takeover")
        elif name == b"client_no_context_takeover":
            if eq:
                return None
            d.client_no_context_takeover = True
            response.append(b"client_no_context_takeover")
        elif name == b"server_max_window_bits":
            if not raw.isdigit() or len(raw) > 2 or not 8 <= int(raw) <= 15:
                return None
            bits = int(raw)
            if bits == 8:
                return None
            d.server_max_window_bits = bits
            response.append(b"server_max_window_bits=%d" % bits)
        elif name == b"client_max_window_bits":
            if eq:
                if not raw.isdigit() or len(raw) > 2 or not 8 <= int(raw) <= 15:
                    return None
                d.client_max_window_bits = int(raw)
        else:
            return None
    return d, b"; ".join(response)


# ---------------------------------------------------------------- configuration

cdef class WsConfig:
    """WebSocket settings: ``max_size`` bytes per message (inflated), ping
    interval and timeout (0 disables), how long to wait for the client's
    Close, whether to offer permessage-deflate, and how many bytes of
    received messages may wait for the app before reading stops."""

    def __init__(self, int64_t max_size=16 * 1024 * 1024, double ping_interval=20.0,
                 double ping_timeout=20.0, double close_timeout=5.0, bint per_message_deflate=True,
                 Py_ssize_t read_high_water=1024 * 1024):
        if max_size < 1:
            raise ValueError("ws max_size must be at least 1 byte")
        if ping_interval < 0 or ping_timeout < 0 or close_timeout < 0:
            raise ValueError("ws intervals and timeouts must be >= 0 seconds")
        self.max_size = max_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.per_message_deflate = per_message_deflate
        self.read_high_water = read_high_water


cdef class Deflate:
    def __repr__(self):
        return (f"Deflate(server_no_context_takeover={self.server_no_context_takeover}, "
                f"client_no_context_takeover={self.client_no_context_takeover}, "
                f"server_max_window_bits={self.server_max_window_bits}, "
                f"client_max_window_bits={self.client_max_window_bits})")

    cdef object inflate(self, bytes data, int64_t limit, bint last):
        """``data`` inflated (with the tail the sender stripped when
        ``last``); None when the result would exceed ``limit`` bytes;
        raises ``zlib.error`` when ``data`` is not deflate data."""
        cdef bytes out
        if self.inflater is None:
            self.inflater = _decompressobj(-15)
        if last:
            data = data + DEFLATE_TAIL
        out = self.inflater.decompress(data, limit + 1)
        if PyBytes_GET_SIZE(out) > limit or self.inflater.unconsumed_tail:
            return None
        if last and self.client_no_context_takeover:
            self.inflater = None        # its window is of no further use
        return out

    cdef bytes compress(self, bytes data):
        cdef bytes out
        if self.deflater is None:
            self.deflater = _compressobj(6, zlib.DEFLATED, -self.server_max_window_bits)
        out = self.deflater.compress(data) + self.deflater.flush(Z_SYNC_FLUSH)
        if out.endswith(DEFLATE_TAIL):
            out = out[:len(out) - 4]
        if self.server_no_context_takeover:
            self.deflater = None
        return out


cdef class Closed:
    """A closed connection, as the app's next receive sees it."""

    def __cinit__(self, int code, str reason):
        self.code = code
        self.reason = reason

    def __repr__(self):
        return f"Closed({self.code}, {self.reason!r})"


class ConnectionClosed(ConnectionError):
    """A message was sent on a WebSocket that is closed or closing (an
    ``OSError``, as ASGI spec 2.4 asks of a send after the close)."""


# ---------------------------------------------------------------- the connection

cdef WebSocketConnection new_connection(object loop, object transport, WsConfig config, Deflate deflate,
                                        object shutdown_signal, object on_closed):
    """The connection for ``transport``, once the 101 is written; the
    caller then makes it the transport's protocol."""
    cdef WebSocketConnection c = WebSocketConnection.__new__(WebSocketConnection)
    c.loop = loop
    c.transport = transport
    c.config = config
    c.deflate = deflate
    c.state = WS_OPEN
    c.on_closed = on_closed
    c.shutdown_signal = shutdown_signal
    c.rbuf = bytearray()
    c.ctrl = bytearray()
    c.msg = bytearray()
    c.inbox = _deque()
    c.close_code = 1006
    c.close_reason = ""
    if config.ping_interval > 0:
        c.ping_timer = loop.call_later(config.ping_interval, c._ping)
    return c


def open_connection(loop, transport, WsConfig config, Deflate deflate=None):
    """A connection on ``transport`` whose handshake is done (and with
    ``deflate`` agreed), for tests and tools that speak frames; the caller
    feeds it with ``data_received``."""
    return new_connection(loop, transport, config, deflate, None, None)


@cython.final
cdef class WebSocketConnection:
    """One WebSocket connection, from the 101 on: the transport's protocol.

    The app's side: :meth:`receive` (the next message as ``str`` or
    ``bytes``, or a :class:`Closed`), :meth:`send` (``str`` as a text
    message, bytes-like as a binary one) and :meth:`close`.
    """

    def __init__(self):
        raise TypeError("WebSocketConnection objects are made by the server")

    # ---- asyncio.Protocol ----

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, bytes data):
        if self.state == WS_CLOSED or self.halted:
            return
        self.parsing = True
        try:
            self.feed(<const uint8_t*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        except Exception as exc:
            logger.error("internal error on a WebSocket connection; closing it", exc_info=exc)
            self.abort()
        finally:
            self.parsing = False

    def eof_received(self):
        # the client sends nothing more: without its Close, this is the end
        return False

    def pause_writing(self):
        self.paused_writing = True

    def resume_writing(self):
        self.paused_writing = False
        w = self.drain_waiter
        if w is not None:
            self.drain_waiter = None
            if not w.done():
                w.set_result(None)

    def connection_lost(self, exc):
        self.finish()

    # ---- reading frames ----

    cdef int feed(self, const uint8_t* p, Py_ssize_t n) except -1:
        """Consume the bytes of one read."""
        cdef bytearray joined
        if PyByteArray_GET_SIZE(self.rbuf):
            # the start of a frame header came with the last read
            joined = self.rbuf
            joined.extend((<const char*>p)[:n])
            self.rbuf = bytearray()
            return self.parse(<const uint8_t*>PyByteArray_AS_STRING(joined), PyByteArray_GET_SIZE(joined))
        return self.parse(p, n)

    cdef int parse(self, const uint8_t* p, Py_ssize_t n) except -1:
        """Frames in place: the payload is unmasked where it is going as it
        arrives; only an incomplete frame header is kept for the next read."""
        cdef Py_ssize_t pos = 0, used
        while pos < n and self.state != WS_CLOSED and not self.halted:
            if not self.in_frame:
                used = self.read_header(p + pos, n - pos)
                if used == 0:
                    self.rbuf.extend((<const char*>p)[pos:n])
                    return 0
                if used < 0:
                    return 0
                pos += used
                if self.frame_left == 0:
                    self.frame_done()
                    continue
            used = <Py_ssize_t>self.frame_left if self.frame_left < <uint64_t>(n - pos) else n - pos
            self.payload(p + pos, used)
            if self.halted:
                return 0
            pos += used
            self.frame_left -= used
            if self.frame_left == 0:
                self.frame_done()
        return 0

    cdef Py_ssize_t refuse(self, int code, str reason) except -2:
        self.fail(code, reason)
        return -1

    cdef Py_ssize_t read_header(self, const uint8_t* p, Py_ssize_t n) except -2:
        """Parse the frame header at ``p``: its length, 0 while incomplete,
        -1 when the frame is refused (the connection is then failed)."""
        cdef uint8_t b0, b1
        cdef int op, need, i
        cdef uint64_t length
        cdef bint rsv1
        if n < 2:
            return 0
        b0 = p[0]
        b1 = p[1]
        # what two bytes already condemn is refused before the rest arrives
        if b0 & 0x30:
            return self.refuse(1002, "reserved bits set")
        if not (b1 & 0x80):
            return self.refuse(1002, "a client frame must be masked")
        length = b1 & 0x7F
        need = 6 + (2 if length == 126 else 8 if length == 127 else 0)
        if n < need:
            return 0
        op = b0 & 0x0F
        rsv1 = (b0 & 0x40) != 0
        if length == 126:
            length = (<uint64_t>p[2] << 8) | p[3]
        elif length == 127:
            length = 0
            for i in range(2, 10):
                length = (length << 8) | p[i]
            if length >> 63:
                return self.refuse(1002, "frame length with its top bit set")
        memcpy(self.mask, p + need - 4, 4)
        self.mask_pos = 0
        self.frame_fin = (b0 & 0x80) != 0
        self.frame_op = op
        self.frame_left = length
        if op < 8 and (self.skipping or self.close_sent):
            # the connection is closing: data frames are framed and skipped
            self.in_frame = True
            return need
        if op >= 8:
            if op > OP_PONG:
                return self.refuse(1002, f"reserved opcode {op}")
            if not self.frame_fin:
                return self.refuse(1002, "a fragmented control frame")
            if length > 125:
                return self.refuse(1002, "a control frame payload over 125 bytes")
            if rsv1:
                return self.refuse(1002, "the compression bit on a control frame")
            PyByteArray_Resize(self.ctrl, 0)
        elif op == OP_CONT:
            if self.msg_op == 0:
                return self.refuse(1002, "a continuation frame with no message to continue")
            if rsv1:
                return self.refuse(1002, "the compression bit on a continuation frame")
        elif op == OP_TEXT or op == OP_BINARY:
            if self.msg_op != 0:
                return self.refuse(1002, "a new message before the last one was finished")
            if rsv1 and self.deflate is None:
                return self.refuse(1002, "the compression bit without permessage-deflate")
            self.msg_op = op
            self.msg_deflated = rsv1
            self.msg_size = 0
            self.utf8 = 0
            PyByteArray_Resize(self.msg, 0)
        else:
            return self.refuse(1002, f"reserved opcode {op}")
        if op < 8 and not self.msg_deflated:
            # the limit is enforced before the payload is buffered (the frame
            # is then skipped)
            if length > <uint64_t>(self.config.max_size - self.msg_size):
                self.fail(1009, f"a message over {self.config.max_size} bytes")
            else:
                self.msg_size += <int64_t>length
        self.in_frame = True
        return need

    cdef int payload(self, const uint8_t* p, Py_ssize_t n) except -1:
        """Unmask ``n`` payload bytes of the current frame into place."""
        cdef bytearray target = self.ctrl if self.frame_op >= 8 else self.msg
        cdef Py_ssize_t start = PyByteArray_GET_SIZE(target)
        cdef uint8_t* out
        if n == 0:
            return 0
        if self.frame_op < 8 and (self.skipping or self.close_sent):
            return 0
        PyByteArray_Resize(target, start + n)
        out = <uint8_t*>PyByteArray_AS_STRING(target) + start
        unmask(out, p, n, self.mask, self.mask_pos)
        self.mask_pos = (self.mask_pos + n) & 3
        if self.frame_op >= 8:
            return 0
        if self.msg_deflated:
            # compressed bytes are inflated as they pile up: what is buffered
            # is bounded by the inflated size, whatever the frame's length
            if PyByteArray_GET_SIZE(target) >= INFLATE_CHUNK:
                self.inflate_buffered(False)
        elif self.msg_op == OP_TEXT:
            # fail fast: invalid UTF-8 ends the connection as soon as it is seen
            self.utf8 = utf8_step(self.utf8, out, n)
            if self.utf8 == UTF8_BAD:
                self.fail(1007, "invalid UTF-8 in a text message")
        return 0

    cdef int frame_done(self) except -1:
        cdef bytes out
        self.in_frame = False
        if self.state == WS_CLOSED:
            return 0
        if self.frame_op >= 8:
            return self.control_done()
        if self.skipping or self.close_sent:
            # once the connection is closing, data frames are read and dropped
            return 0
        if self.msg_deflated:
            if self.inflate_buffered(self.frame_fin) < 0 or not self.frame_fin:
                return 0
            out = b"".join(self.parts) if len(self.parts) != 1 else self.parts[0]
            self.parts = None
            return self.complete(<const uint8_t*>PyBytes_AS_STRING(out), PyBytes_GET_SIZE(out), out)
        if self.frame_fin:
            return self.complete(<const uint8_t*>PyByteArray_AS_STRING(self.msg), PyByteArray_GET_SIZE(self.msg),
                                 None)
        return 0

    cdef int inflate_buffered(self, bint last) except -2:
        """Inflate the compressed bytes buffered so far (and, at the end of
        the message, the tail the sender stripped), bounded by what is left
        of the size limit; -1 when the connection failed."""
        cdef bytes out
        try:
            out = self.deflate.inflate(bytes(self.msg), self.config.max_size - self.msg_size, last)
        except zlib.error:
            self.fail(1007, "a compressed message that is not deflate data")
            return -1
        PyByteArray_Resize(self.msg, 0)
        if out is None:
            self.fail(1009, f"a message over {self.config.max_size} bytes once inflated")
            return -1
        self.msg_size += PyBytes_GET_SIZE(out)
        if self.msg_op == OP_TEXT:
            self.utf8 = utf8_step(self.utf8, <const uint8_t*>PyBytes_AS_STRING(out), PyBytes_GET_SIZE(out))
            if self.utf8 == UTF8_BAD:
                self.fail(1007, "invalid UTF-8 in a text message")
                return -1
        if self.parts is None:
            self.parts = []
        if PyBytes_GET_SIZE(out) or last:
            self.parts.append(out)
        return 0

    cdef int complete(self, const uint8_t* p, Py_ssize_t n, bytes whole) except -1:
        """A whole message: ``p[:n]`` (``whole`` when it is already a bytes object)."""
        cdef object item
        cdef int op = self.msg_op
        self.msg_op = 0
        if op == OP_TEXT:
            if (self.utf8 >> 16) != 0:
                return self.fail(1007, "a text message ending inside a UTF-8 sequence")
            item = PyUnicode_DecodeUTF8(<const char*>p, n, "strict")
        elif whole is not None:
            item = whole
        else:
            item = PyBytes_FromStringAndSize(<const char*>p, n)
        if PyByteArray_GET_SIZE(self.msg) > 65536:
            self.msg = bytearray()          # give a large buffer back
        self.messages_in += 1
        return self.deliver(item, len(item))

    cdef int control_done(self) except -1:
        cdef bytes payload = bytes(self.ctrl)
        cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(payload)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
        cdef int code
        cdef str reason
        if self.frame_op == OP_PING:
            if not self.close_sent and not self.failing:
                self.write_frame(OP_PONG, payload, False)
            return 0
        if self.frame_op == OP_PONG:
            if self.ping_payload is not None and payload == self.ping_payload:
                self.ping_payload = None
                if self.ping_timer is not None:
                    self.ping_timer.cancel()
                self.ping_timer = self.loop.call_later(self.config.ping_interval, self._ping)
            return 0
        # Close (RFC 6455 5.5.1, 7.1.5, 7.4): even a bad one ends the client's side
        self.close_received = True
        if n == 0:
            code, reason = 1005, ""
        elif n == 1:
            return self.fail(1002, "a Close frame with a one-byte payload")
        else:
            code = (p[0] << 8) | p[1]
            if not valid_close_code(code):
                return self.fail(1002, f"invalid close code {code}")
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                return self.fail(1007, "a Close reason that is not UTF-8")
        if self.failing and not self.close_sent:
            return 0        # the failure's Close goes out next, then TCP closes
        if not self.close_sent:
            # echo the code; the server then closes the TCP connection first
            self.send_close(1000 if code == 1005 else code, "")
            self.close_code, self.close_reason = code, reason
        self.deliver_close(code, reason)
        self.transport.close()
        return self.finish()

    # ---- the inbox ----

    cdef int deliver(self, object item, Py_ssize_t size) except -1:
        cdef object w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(item)
                return 0
        self.inbox.append(item)
        self.inbox_bytes += size + MESSAGE_OVERHEAD
        if self.inbox_bytes > self.config.read_high_water and not self.paused_reading \
                and self.state != WS_CLOSED:
            # the app is not keeping up: stop reading until it does
            self.paused_reading = True
            self.transport.pause_reading()
        return 0

    cdef int deliver_close(self, int code, str reason) except -1:
        if self.delivered_close:
            return 0
        self.delivered_close = True
        self.close_code = code
        self.close_reason = reason
        return self.deliver(Closed(code, reason), 0)

    cdef int update_reading(self) except -1:
        if self.paused_reading and self.inbox_bytes <= self.config.read_high_water // 2 \
                and self.state != WS_CLOSED:
            self.paused_reading = False
            self.transport.resume_reading()
        return 0

    cdef object take(self):
        """The next message if one is waiting (the close stays for later
        calls), else None."""
        cdef object item
        if not self.inbox:
            return None
        item = self.inbox[0]
        if type(item) is not Closed:
            self.inbox.popleft()
            self.inbox_bytes -= len(item) + MESSAGE_OVERHEAD
            if self.paused_reading:
                self.update_reading()
        return item

    cdef object wait(self):
        """A future of the next message (none is waiting)."""
        if self.waiter is not None and not self.waiter.done():
            raise RuntimeError("another task is already waiting for this WebSocket's next message")
        self.waiter = self.loop.create_future()
        return self.waiter

    def receive(self):
        """An awaitable of the next message: ``str`` (text), ``bytes``
        (binary), or a :class:`Closed` once the connection is closing (and
        at every call after that)."""
        cdef object item = self.take()
        if item is not None:
            return _ready(self.loop, item)
        return self.wait()

    # ---- sending ----

    def send(self, data):
        """Send ``data``: ``str`` as a text message, bytes-like as binary.
        Returns an awaitable that waits while the client is not reading.
        Raises :class:`ConnectionClosed` once the connection is closing."""
        return self.send_data(data)

    cdef object send_data(self, object data):
        cdef bytes payload
        cdef int op
        if self.close_sent or self.state != WS_OPEN:
            raise ConnectionClosed(f"the WebSocket is closed (code {self.close_code})")
        if type(data) is str:
            payload = PyUnicode_AsUTF8String(data)
            op = OP_TEXT
        elif type(data) is bytes:
            payload = data
            op = OP_BINARY
        elif isinstance(data, (bytearray, memoryview)):
            payload = bytes(data)
            op = OP_BINARY
        else:
            raise TypeError(f"a WebSocket message is str or bytes, not {type(data).__name__}")
        if self.deflate is not None and PyBytes_GET_SIZE(payload):
            self.write_frame(op, self.deflate.compress(payload), True)
        else:
            self.write_frame(op, payload, False)
        self.messages_out += 1
        if self.paused_writing:
            if self.drain_waiter is None or self.drain_waiter.done():
                self.drain_waiter = self.loop.create_future()
            return self.drain_waiter
        if self.sent is None:
            self.sent = _ready(self.loop, None)
        return self.sent

    cdef int write_frame(self, int opcode, bytes payload, bint rsv1) except -1:
        """One unmasked, unfragmented frame (a server's frames are never masked)."""
        cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
        cdef Py_ssize_t h = 2 if n < 126 else 4 if n < 65536 else 10
        cdef bytes frame = PyBytes_FromStringAndSize(NULL, h if n >= 65536 else h + n)
        cdef uint8_t* f = <uint8_t*>PyBytes_AS_STRING(frame)
        cdef int i
        f[0] = 0x80 | (0x40 if rsv1 else 0) | opcode
        if n < 126:
            f[1] = <uint8_t>n
        elif n < 65536:
            f[1] = 126
            f[2] = <uint8_t>(n >> 8)
            f[3] = <uint8_t>n
        else:
            f[1] = 127
            for i in range(8):
                f[2 + i] = <uint8_t>((<uint64_t>n) >> (56 - 8 * i))
        if n >= 65536:
            # a large payload goes out as it is, after its header
            self.transport.writelines((frame, payload))
            return 0
        if n:
            memcpy(f + h, PyBytes_AS_STRING(payload), n)
        self.transport.write(frame)
        return 0

    # ---- closing ----

    cdef int send_close(self, int code, str reason) except -1:
        cdef bytes payload = b""
        if code != 1005:
            payload = bytes(((code >> 8) & 0xFF, code & 0xFF)) + _truncate_utf8(reason, 123)
        self.close_sent = True
        if self.state == WS_OPEN:
            self.state = WS_CLOSING
        return self.write_frame(OP_CLOSE, payload, False)

    cdef int start_close(self, int code, str reason, double timeout) except -1:
        """Send our Close and wait, at most ``timeout`` seconds, for the client's."""
        if self.close_sent or self.state == WS_CLOSED:
            return 0
        self.send_close(code, reason)
        if timeout > 0:
            self.close_timer = self.loop.call_later(timeout, self._close_timeout)
        else:
            self.transport.close()
            self.finish()
        return 0

    def close(self, int code=1000, str reason=""):
        """Start the close handshake with ``code`` and ``reason`` (at most 123
        bytes of UTF-8); the app's next receive sees the close."""
        if not valid_close_code(code):
            raise ValueError(f"{code} is not a close code an endpoint may send "
                             "(1000-1003, 1007-1014, 3000-4999)")
        if len(reason.encode("utf-8")) > 123:
            raise ValueError("a close reason is at most 123 bytes of UTF-8")
        self.start_close(code, reason, self.config.close_timeout)
        self.deliver_close(code, reason)

    def close_for_shutdown(self, int code, double timeout):
        """The server's close at its drain: Close with ``code``, the app
        told so at once, the client's Close waited for at most ``timeout``
        seconds, then the TCP connection closed."""
        if self.state == WS_OPEN and not self.close_sent:
            self.start_close(code, "", min(timeout, self.config.close_timeout))
            self.deliver_close(code, "")

    cdef int fail(self, int code, str reason) except -1:
        """Fail the connection (RFC 6455 7.1.7): send Close with ``code``,
        tell the app, and close the TCP connection.

        Found while parsing a read, the failure waits one loop iteration:
        the messages that read completed before the bad bytes reach the app
        first, and what it answers goes out before the Close.  A failure of
        a message's content (1007, 1009) leaves the framing intact: the
        rest is read and skipped, and TCP is closed once the client has
        answered the Close (or after at most 2 s), so that the client
        receives the Close instead of a reset for the bytes it still sent.
        After a framing error nothing more is read."""
        if self.state == WS_CLOSED or self.failing:
            return 0
        self.failing = True
        self.fail_code = code
        self.fail_reason = reason
        self.msg_op = 0
        self.parts = None
        PyByteArray_Resize(self.msg, 0)
        if code == 1007 or code == 1009:
            self.skipping = True
        else:
            self.halted = True
        if self.parsing:
            self.loop.call_soon(self._fail_now)
            return 0
        return self.fail_now()

    def _fail_now(self):
        self.fail_now()

    cdef int fail_now(self) except -1:
        cdef double wait
        if self.state == WS_CLOSED:
            return 0
        if not self.close_sent:
            self.send_close(self.fail_code, self.fail_reason)
            self.close_code, self.close_reason = self.fail_code, self.fail_reason
        self.deliver_close(self.fail_code, self.fail_reason)
        wait = min(self.config.close_timeout, 2.0)
        if self.skipping and not self.close_received and wait > 0:
            self.close_timer = self.loop.call_later(wait, self._close_timeout)
            return 0
        self.in_frame = False
        self.transport.close()
        return self.finish()

    def _close_timeout(self):
        self.close_timer = None
        if self.state != WS_CLOSED:
            self.abort()

    def _ping(self):
        self.ping_timer = None
        if self.state != WS_OPEN:
            return
        if self.ping_payload is not None and self.paused_reading:
            # the pong may be waiting unread behind messages the app has not
            # taken: the client is not the one who is slow
            self.ping_timer = self.loop.call_later(self.config.ping_timeout or self.config.ping_interval, self._ping)
            return
        if self.ping_payload is not None:
            logger.info("WebSocket keepalive ping unanswered for %.1f s: closing the connection",
                        self.config.ping_timeout)
            self.fail(1011, "keepalive ping timeout")
            return
        self.ping_payload = b"%x" % (<long long>(self.loop.time() * 1000) & 0xFFFFFFFF)
        self.write_frame(OP_PING, self.ping_payload, False)
        if self.config.ping_timeout > 0:
            self.ping_timer = self.loop.call_later(self.config.ping_timeout, self._ping)
        else:
            self.ping_payload = None
            self.ping_timer = self.loop.call_later(self.config.ping_interval, self._ping)

    def abort(self):
        """Drop the connection now, with no close handshake."""
        if self.transport is not None:
            self.transport.abort()
        self.finish()

    cdef int finish(self) except -1:
        """The connection is over: tell the app, stop the timers, leave the
        registry.  Safe to call more than once."""
        if self.state == WS_CLOSED:
            return 0
        self.state = WS_CLOSED
        if self.close_sent or self.close_received:
            self.deliver_close(self.close_code, self.close_reason)
        else:
            self.deliver_close(1006, "")
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        w = self.drain_waiter
        if w is not None:
            self.drain_waiter = None
            if not w.done():
                w.set_result(None)
        if self.on_closed is not None:
            callback = self.on_closed
            self.on_closed = None
            callback(self)
        return 0

    @property
    def closed(self):
        """True once the connection is over."""
        return self.state == WS_CLOSED

    @property
    def closing(self):
        """True once a Close was sent or received."""
        return self.close_sent or self.close_received or self.state == WS_CLOSED

    def __repr__(self):
        return f"<WebSocketConnection state={self.state} close_code={self.close_code}>"


cdef inline bytes _truncate_utf8(str text, Py_ssize_t limit):
    cdef bytes raw = PyUnicode_AsUTF8String(text)
    if PyBytes_GET_SIZE(raw) <= limit:
        return raw
    return raw[:limit].decode("utf-8", "ignore").encode("utf-8")


cdef object _ready(object loop, object value):
    fut = loop.create_future()
    fut.set_result(value)
    return fut


# ---------------------------------------------------------------- the native API

class WebSocketDisconnect(Exception):
    """The WebSocket is closed: raised by a receive once the client (or the
    server, at its shutdown) has closed it.  ``code`` and ``reason`` are
    the Close frame's (1006 when the connection ended without one)."""

    def __init__(self, int code=1000, str reason=""):
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


@cython.final
cdef class WebSocket:
    """A WebSocket as a native handler sees it (``@app.websocket(path)``).

    ``await ws.accept()`` answers the handshake; then ``receive_text()``,
    ``receive_bytes()``, ``receive_json()`` (or ``async for message in
    ws``), ``send_text()``, ``send_bytes()``, ``send_json()`` and
    ``close(code, reason)``.  A receive after the close raises
    :class:`WebSocketDisconnect`.  ``shutting_down`` / ``await
    wait_shutdown()`` tell the handler the server is stopping, so it can say
    goodbye and close before the server does (with 1012).
    """

    def __init__(self):
        raise TypeError("WebSocket objects are made by the server")

    @staticmethod
    cdef WebSocket new(object upgrade, Request request, list subprotocols, object shutdown_signal):
        cdef WebSocket ws = WebSocket.__new__(WebSocket)
        ws.upgrade = upgrade
        ws.request = request
        ws.subprotocols = subprotocols
        ws.shutdown_signal = shutdown_signal
        return ws

    # ---- the request ----

    @property
    def path(self):
        return self.request.path

    @property
    def params(self):
        return self.request.params

    @property
    def query(self):
        return self.request.query

    @property
    def headers(self):
        return self.request.headers

    @property
    def client(self):
        return self.request.client

    @property
    def accepted(self):
        """True once the handshake has been answered with 101."""
        return self.conn is not None

    # ---- the handshake ----

    async def accept(self, subprotocol=None, headers=None):
        """Answer the handshake with ``101``, choosing ``subprotocol`` (one
        the client offered) and adding ``headers`` (``(name, value)`` pairs)."""
        if self.conn is not None:
            raise RuntimeError("the WebSocket is already accepted")
        if self.upgrade is None:
            raise RuntimeError("the WebSocket handshake was already refused")
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client "
                             f"(offered: {self.subprotocols})")
        self.conn = self.upgrade.accept(subprotocol, headers)
        self.upgrade = None

    cdef WebSocketConnection _open(self):
        if self.conn is None:
            raise RuntimeError("accept() the WebSocket first")
        return self.conn

    # ---- receiving ----

    async def receive(self):
        """The next message: ``str`` (text) or ``bytes`` (binary)."""
        cdef WebSocketConnection conn = self._open()
        item = conn.take()
        if item is None:
            item = await conn.wait()
        if type(item) is Closed:
            raise WebSocketDisconnect((<Closed>item).code, (<Closed>item).reason)
        return item

    async def receive_text(self):
        """The next message, which must be text."""
        item = await self.receive()
        if type(item) is not str:
            raise TypeError("expected a text message, got a binary one")
        return item

    async def receive_bytes(self):
        """The next message, which must be binary."""
        item = await self.receive()
        if type(item) is not bytes:
            raise TypeError("expected a binary message, got a text one")
        return item

    async def receive_json(self):
        """The next message (text or binary) decoded as JSON."""
        return _json_loads(await self.receive())

    def __aiter__(self):
        return self

    async def __anext__(self):
        cdef WebSocketConnection conn = self._open()
        item = conn.take()
        if item is None:
            item = await conn.wait()
        if type(item) is Closed:
            raise StopAsyncIteration
        return item

    # ---- sending ----

    def send_text(self, str text):
        """Send a text message (await it to wait while the client is not reading)."""
        return self._open().send_data(text)

    def send_bytes(self, data):
        """Send a binary message (await it to wait while the client is not reading)."""
        if type(data) is str:
            raise TypeError("send_bytes() takes bytes; use send_text() for str")
        return self._open().send_data(data)

    def send_json(self, data):
        """Send ``data`` encoded as JSON, as a text message."""
        return self._open().send_data(_json_dumps(data, separators=(",", ":"), ensure_ascii=False))

    async def close(self, int code=1000, str reason=""):
        """Close with ``code`` and ``reason``; before ``accept()``, refuse
        the handshake with ``403``."""
        if self.conn is None:
            if self.upgrade is not None:
                self.upgrade.deny(403, None, b"")
                self.upgrade = None
            return
        self.conn.close(code, reason)

    cdef int finish_handler(self, bint failed) except -1:
        """The handler has returned (or raised): close what it left open."""
        if self.conn is not None and not self.conn.closing:
            self.conn.close(1011 if failed else 1000, "")
        return 0

    # ---- the server's shutdown ----

    @property
    def shutting_down(self):
        """True once the server has begun its graceful shutdown."""
        return self.shutdown_signal is not None and self.shutdown_signal.is_set

    async def wait_shutdown(self):
        """Return once the server begins its graceful shutdown."""
        await self.shutdown_signal.wait()

    @property
    def close_code(self):
        """The close code, once closing (None before)."""
        if self.conn is None or not self.conn.closing:
            return None
        return self.conn.close_code

    def __repr__(self):
        return f"<WebSocket {self.request.path} {'open' if self.conn is not None else 'handshake'}>"
