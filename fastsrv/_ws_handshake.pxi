# The WebSocket handshake in the HTTP core (included into _core.pyx).
#
# An upgrade request that passes check_handshake() waits, as an active
# request, for the app: WebSocketUpgrade.accept() answers 101 and hands the
# transport to a WebSocketConnection (fastsrv/_websocket.pyx), after which
# the HTTP protocol of that connection is done; deny() answers with an HTTP
# response instead and closes.  The HTTP state machine knows nothing of
# frames.


cdef bytes WS_101_HEADERS = b"upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: "


cdef list _header_pairs(object headers):
    """An app's extra handshake headers as ``(bytes, bytes)`` pairs."""
    cdef list out = []
    if not headers:
        return out
    for item in headers:
        name, value = item
        out.append((name.encode("latin-1") if isinstance(name, str) else name,
                    value.encode("latin-1") if isinstance(value, str) else value))
    return out


@cython.final
cdef class WebSocketUpgrade:
    """A validated WebSocket handshake waiting for the app's answer."""
    cdef HttpProtocol http
    cdef bytes key
    cdef Deflate deflate
    cdef bytes extensions
    cdef readonly bint answered

    @staticmethod
    cdef WebSocketUpgrade new(HttpProtocol http, bytes key, list offers):
        cdef WebSocketUpgrade u = WebSocketUpgrade.__new__(WebSocketUpgrade)
        u.http = http
        u.key = key
        if offers and http.config.ws.per_message_deflate:
            u.deflate, u.extensions = negotiate_deflate(offers)
        return u

    def accept(self, subprotocol=None, headers=None):
        """Answer ``101 Switching Protocols`` (with ``subprotocol`` and the
        app's ``headers``) and hand the transport over; return the
        :class:`WebSocketConnection`."""
        cdef HttpProtocol http = self.http
        cdef WriteBuffer out
        cdef long long declared = -1
        cdef bint close_requested = False
        cdef bint own_server = False
        cdef Py_ssize_t mark
        if self.answered:
            raise RuntimeError("the WebSocket handshake was already answered")
        if http.closing or http.transport is None:
            raise ConnectionClosed("the client went away during the WebSocket handshake")
        if subprotocol is not None and not isinstance(subprotocol, str):
            raise TypeError(f"a subprotocol is a str, got {type(subprotocol).__name__}")
        out = http.out()
        mark = out.length
        try:
            write_asgi_head(out, 101, _header_pairs(headers), &declared, &close_requested, &own_server)
        except Exception:
            out.length = mark
            raise
        self.answered = True
        out.append_bytes(WS_101_HEADERS)
        out.append_bytes(accept_key(self.key))
        out.append(b"\r\n", 2)
        if subprotocol is not None:
            out.append(b"sec-websocket-protocol: ", 24)
            out.append_bytes(subprotocol.encode("latin-1"))
            out.append(b"\r\n", 2)
        if self.extensions is not None:
            out.append(b"sec-websocket-extensions: ", 26)
            out.append_bytes(self.extensions)
            out.append(b"\r\n", 2)
        out.append(b"\r\n", 2)
        http.flush()
        return http.hand_over(self.deflate)

    def deny(self, int status, headers=None, body=b""):
        """Refuse the handshake with an HTTP response, then close."""
        cdef HttpProtocol http = self.http
        cdef bint close_requested = False
        if self.answered:
            raise RuntimeError("the WebSocket handshake was already answered")
        self.answered = True
        if http.closing:
            return
        write_head(http.out(), status, CT_TEXT if body else None, _header_pairs(headers) or None,
                   len(body), False, False, &close_requested, http.head)
        if body:
            http.out().append_bytes(bytes(body))
        http.keep_alive = False
        http.response_done(status, False)


cdef int answer_handshake_error(HttpProtocol http, object exc) except -1:
    """400 (or 426 with the version this server speaks) for a bad handshake."""
    http.keep_alive = False
    http.write_text(http.out(), exc.status, exc.reason + "\n", False,
                    [("sec-websocket-version", "13")] if exc.status == 426 else None)
    http.response_done(exc.status, False)
    return 0
