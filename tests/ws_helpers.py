"""A raw WebSocket client for exact bytes: handshakes, frames (masked as a
client's must be, or not, fragmented, split anywhere), and the server's
frames read back one by one."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Optional

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONT = 1, 2, 8, 9, 10, 0


def handshake_request(path: str = "/", key: Optional[bytes] = None, version: str = "13",
                      extra: tuple = (), host: str = "t") -> bytes:
    key = key if key is not None else base64.b64encode(os.urandom(16))
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key.decode()}", f"Sec-WebSocket-Version: {version}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def expected_accept(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv1: bool = False, mask: bool = True,
          rsv2: bool = False, key: Optional[bytes] = None) -> bytes:
    """One client frame (masked unless ``mask`` is False)."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return head + payload
    key = key if key is not None else os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if n < 4096 else _mask_fast(payload, key)
    return head + key + masked


def _mask_fast(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    k = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ k).to_bytes(n, "big")


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def deflate(data: bytes) -> bytes:
    """``data`` compressed as one permessage-deflate message (tail stripped)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes
    rsv1: bool = False

    @property
    def close_code(self) -> Optional[int]:
        if self.opcode != CLOSE:
            return None
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else 1005

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")


class WSClient:
    """A blocking raw client: ``WSClient(port, path)`` does the handshake."""

    def __init__(self, port: int, path: str = "/", extra: tuple = (), timeout: float = 5.0,
                 connect: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.head = b""
        if connect:
            self.key = base64.b64encode(os.urandom(16))
            self.sock.sendall(handshake_request(path, self.key, extra=extra))
            self.head = self.read_head()
            if not self.head.startswith(b"HTTP/1.1 101 "):
                raise ConnectionError(f"handshake refused: {self.head!r}")

    def read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before a response head: {self.buf!r}")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head + b"\r\n\r\n"

    def header(self, name: str) -> Optional[str]:
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == name.lower():
                return v.strip()
        return None

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_text(self, text: str) -> None:
        self.send(frame(TEXT, text.encode()))

    def send_bytes(self, data: bytes) -> None:
        self.send(frame(BINARY, data))

    def close(self, code: int = 1000, reason: bytes = b"") -> None:
        self.send(frame(CLOSE, close_payload(code, reason)))

    def _need(self, n: int) -> None:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed with {len(self.buf)} of {n} bytes")
            self.buf += chunk

    def read_frame(self) -> Frame:
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "a server frame must not be masked"
        n, at = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, at = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, at = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(at + n)
        payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
        return Frame(bool(b0 & 0x80), b0 & 0x0F, payload, bool(b0 & 0x40))

    def read_message(self) -> Frame:
        """The next data message (reassembled) or control frame."""
        first = self.read_frame()
        if first.opcode >= 8 or first.fin:
            return first
        parts = [first.payload]
        while True:
            f = self.read_frame()
            if f.opcode >= 8:
                continue
            parts.append(f.payload)
            if f.fin:
                return Frame(True, first.opcode, b"".join(parts), first.rsv1)

    def expect_close(self, timeout: float = 3.0) -> Frame:
        """Read until the server's Close frame (skipping data and pings)."""
        self.sock.settimeout(timeout)
        while True:
            f = self.read_frame()
            if f.opcode == CLOSE:
                return f

    def closed_by_server(self, timeout: float = 3.0) -> bool:
        """True when the server closes the TCP connection within ``timeout``."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        return False

    def shutdown(self) -> None:
        self.sock.close()
