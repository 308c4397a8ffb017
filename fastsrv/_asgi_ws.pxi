# ASGI WebSocket (spec 2.4) on the connection core (included into _core.pyx).
#
# One ASGIWebSocket per WebSocket request: the app's ``receive`` gives
# ``websocket.connect``, then the messages of the WebSocketConnection once
# the app has accepted, then ``websocket.disconnect`` with the close code
# and reason; ``send`` takes ``websocket.accept`` (answered 101 by the
# handshake), ``websocket.send``, ``websocket.close`` (before the accept:
# 403) and the denial extension's ``websocket.http.response.*``.


cdef str T_WEBSOCKET = "websocket"
cdef str WS_CONNECT = "websocket.connect"
cdef str WS_ACCEPT = "websocket.accept"
cdef str WS_RECEIVE = "websocket.receive"
cdef str WS_SEND = "websocket.send"
cdef str WS_CLOSE = "websocket.close"
cdef str WS_DISCONNECT = "websocket.disconnect"
cdef str WS_DENIAL_START = "websocket.http.response.start"
cdef str WS_DENIAL_BODY = "websocket.http.response.body"
cdef str SCHEME_WS = "ws"
cdef str SCHEME_WSS = "wss"


cdef dict ws_scope(ASGIApp app, HttpProtocol conn, Request req, list headers, list subprotocols):
    """The websocket scope of an upgrade request (built like the HTTP one)."""
    cdef dict scope = app.scope(req, conn)
    scope["type"] = T_WEBSOCKET
    scope["scheme"] = SCHEME_WSS if scope["scheme"] in (SCHEME_HTTPS, SCHEME_WSS) else SCHEME_WS
    del scope["method"]
    scope["headers"] = headers if req._host is None else _with_host(headers, req._host)
    scope["subprotocols"] = subprotocols
    scope["extensions"]["websocket.http.response"] = {}
    return scope


@cython.final
cdef class ASGIWebSocket:
    """One WebSocket exchange between the connection and an ASGI app."""
    cdef HttpProtocol http
    cdef WebSocketUpgrade upgrade
    cdef WebSocketConnection conn
    cdef object task
    cdef bint connected          # websocket.connect was given
    cdef bint denial_started
    cdef int denial_status
    cdef object denial_headers
    cdef list denial_body
    cdef object disconnect       # the websocket.disconnect of a handshake that ended without a 101

    @staticmethod
    cdef ASGIWebSocket new(HttpProtocol http, WebSocketUpgrade upgrade):
        cdef ASGIWebSocket ws = ASGIWebSocket.__new__(ASGIWebSocket)
        ws.http = http
        ws.upgrade = upgrade
        return ws

    # ---- receive ----

    async def receive(self):
        """``websocket.connect``, then each message, then
        ``websocket.disconnect`` (at every call once the connection is closing)."""
        cdef object item
        if not self.connected:
            self.connected = True
            return {"type": WS_CONNECT}
        if self.conn is None:
            if self.disconnect is None and not self.upgrade.answered and not self.http.disconnected:
                # the handshake is not answered yet: wait for the client to go
                w = self.http.disconnect_waiter
                if w is None or w.done():
                    w = self.http.disconnect_waiter = self.http.loop.create_future()
                await asyncio.shield(w)
            if self.disconnect is None:
                self.disconnect = {"type": WS_DISCONNECT, "code": 1006, "reason": ""}
            return self.disconnect
        item = self.conn.take()
        if item is None:
            item = await self.conn.wait()
        if type(item) is str:
            return {"type": WS_RECEIVE, "text": item}
        if type(item) is bytes:
            return {"type": WS_RECEIVE, "bytes": item}
        return {"type": WS_DISCONNECT, "code": (<Closed>item).code, "reason": (<Closed>item).reason}

    # ---- send ----

    def send(self, message):
        """Take one ``websocket.*`` message; the awaitable returned waits
        while the client is not reading.  After the close, raises
        :class:`ConnectionClosed` (an ``OSError``)."""
        cdef object mtype = _field(message, "type", None)
        cdef object text, data
        if type(mtype) is not str:
            raise TypeError(f"ASGI: a message must be a dict with a str 'type', got {message!r}")
        if <str>mtype == WS_SEND:
            if self.conn is None:
                raise RuntimeError("ASGI: 'websocket.send' before 'websocket.accept'")
            text = _field(message, "text", None)
            data = _field(message, "bytes", None)
            if (text is None) == (data is None):
                raise ValueError("ASGI: 'websocket.send' needs exactly one of 'text' and 'bytes'")
            if text is not None:
                if type(text) is not str:
                    raise TypeError(f"ASGI: 'text' must be str, got {type(text).__name__}")
                return self.conn.send_data(text)
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"ASGI: 'bytes' must be bytes, got {type(data).__name__}")
            return self.conn.send_data(data)
        if <str>mtype == WS_ACCEPT:
            if self.conn is not None or self.upgrade.answered:
                raise RuntimeError("ASGI: 'websocket.accept' after the handshake was answered")
            subprotocol = _field(message, "subprotocol", None)
            self.conn = self.upgrade.accept(subprotocol, _field(message, "headers", None))
            return self.http.registry.done_future()
        if <str>mtype == WS_CLOSE:
            code = _field(message, "code", 1000)
            reason = _field(message, "reason", None) or ""
            if self.conn is None:
                if not self.upgrade.answered:
                    # a close before the accept refuses the handshake (spec 2.4)
                    self.upgrade.deny(403)
                    self.disconnect = {"type": WS_DISCONNECT, "code": code, "reason": reason}
                    return self.http.registry.done_future()
                raise ConnectionClosed("ASGI: 'websocket.close' after the handshake was refused")
            if not self.conn.closing:
                self.conn.close(code, reason)
            return self.http.registry.done_future()
        if <str>mtype == WS_DENIAL_START:
            if self.conn is not None or self.upgrade.answered or self.denial_started:
                raise RuntimeError("ASGI: 'websocket.http.response.start' after the handshake was answered")
            status = _field(message, "status", None)
            if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
                raise ValueError(f"ASGI: response status must be an int in 200-599, got {status!r}")
            self.denial_started = True
            self.denial_status = status
            self.denial_headers = _field(message, "headers", None)
            self.denial_body = []
            return self.http.registry.done_future()
        if <str>mtype == WS_DENIAL_BODY:
            if not self.denial_started or self.upgrade.answered:
                raise RuntimeError("ASGI: 'websocket.http.response.body' without a response start")
            body = _field(message, "body", b"")
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise TypeError(f"ASGI: the body must be bytes, got {type(body).__name__}")
            self.denial_body.append(bytes(body))
            if not _field(message, "more_body", False):
                self.upgrade.deny(self.denial_status, _asgi_pairs(self.denial_headers), b"".join(self.denial_body))
                self.disconnect = {"type": WS_DISCONNECT, "code": 1000, "reason": ""}
            return self.http.registry.done_future()
        raise RuntimeError(f"ASGI: unexpected message type {mtype!r} for a WebSocket")

    # ---- the app's end ----

    def _done(self, task):
        self.http.registry.untrack(task)
        self.task = None
        try:
            self.ended(task)
        except BaseException as exc:
            logger.error("internal error ending a WebSocket", exc_info=exc)

    cdef int ended(self, object task) except -1:
        exc = None if task.cancelled() else task.exception()
        if self.conn is None:
            if not self.upgrade.answered and not self.http.closing:
                if exc is not None:
                    logger.error("Exception in ASGI app for WebSocket %s", self.http.cur.path if self.http.cur
                                 else "?", exc_info=exc)
                    self.upgrade.deny(500, None, b"Internal Server Error\n")
                else:
                    # returned without accepting: refused, as a close would be
                    self.upgrade.deny(403)
            elif exc is not None and not isinstance(exc, (ConnectionClosed, asyncio.CancelledError)):
                logger.error("Exception in ASGI app for a WebSocket handshake", exc_info=exc)
            return 0
        if exc is not None and not isinstance(exc, ConnectionClosed):
            logger.error("Exception in ASGI app for an open WebSocket", exc_info=exc)
            if not self.conn.closing:
                self.conn.close(1011, "")
        elif not self.conn.closing:
            self.conn.close(1000, "")
        return 0


cdef object _asgi_pairs(object headers):
    return list(headers) if headers else None
