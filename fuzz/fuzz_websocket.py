"""Fuzz target for the WebSocket connection: client bytes, in pieces,
through a ``WebSocketConnection`` on a fake transport.

The first prelude byte picks the setting: permessage-deflate negotiated or
not (and with which context takeover; bits 2-3), a small or a large size
limit (bit 0); the
bytes (mutated from seeds of valid and broken frames, masked and not) are
fed whole, split where the prelude says, or in small pieces.  The
invariants:

* nothing escapes: no exception, no internal error logged;
* the app gets only whole messages: ``str`` that is valid text, ``bytes``,
  none over the size limit, then (once) the close;
* the server's output is a stream of well-formed frames: FIN set, never
  masked, known opcodes, control payloads of at most 125 bytes, a Close
  (at most one) last of all, with a code an endpoint may send;
* once the connection failed or closed, the transport is closed;
* every message the same bytes make when fed whole, they make in pieces
  (the outcome does not depend on how reads split them), up to the point
  where the connection failed.

Run it through ``fuzz/run.py --target websocket``.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import sys
from typing import List

import atheris

import common

INSTRUMENTED = common.load_parser(common.CORE_MODULES)

from fastsrv._websocket import Closed, WsConfig, negotiate_deflate, open_connection  # noqa: E402

LOOP = asyncio.new_event_loop()

DEFLATE_OFFERS = [None, [b"permessage-deflate"], [b"permessage-deflate; client_no_context_takeover"],
                  [b"permessage-deflate; server_no_context_takeover; server_max_window_bits=10"]]


class Transport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data) -> None:
        assert not self.closed, "a write after close"
        self.out += data

    def writelines(self, parts) -> None:
        for part in parts:
            self.write(part)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info:
            message += f" ({record.exc_info[1]!r})"
        self.messages.append(message)


ERRORS = Errors()
logging.getLogger("fastsrv.error").addHandler(ERRORS)
VALID_CODES = set(range(1000, 1004)) | set(range(1007, 1015)) | set(range(3000, 5000))


def server_frames(out: bytes) -> List[tuple]:
    """(opcode, payload) of each frame the server wrote; asserts they are well formed."""
    frames, pos = [], 0
    while pos < len(out):
        assert pos + 2 <= len(out), "a frame header cut short"
        b0, b1 = out[pos], out[pos + 1]
        assert b0 & 0x80 and not b0 & 0x30, f"bad first byte {b0:#x}"
        assert not b1 & 0x80, "a server frame is masked"
        n, pos = b1 & 0x7F, pos + 2
        if n == 126:
            n, pos = struct.unpack("!H", out[pos:pos + 2])[0], pos + 2
        elif n == 127:
            n, pos = struct.unpack("!Q", out[pos:pos + 8])[0], pos + 8
        opcode = b0 & 0x0F
        assert opcode in (1, 2, 8, 9, 10), opcode
        assert opcode < 8 or n <= 125, "a control frame over 125 bytes"
        assert pos + n <= len(out), "a frame payload cut short"
        frames.append((opcode, bytes(out[pos:pos + n])))
        pos += n
    closes = [i for i, (op, _) in enumerate(frames) if op == 8]
    assert len(closes) <= 1 and (not closes or closes[0] == len(frames) - 1), "a Close that is not last"
    if closes and len(frames[-1][1]) >= 2:
        code = struct.unpack("!H", frames[-1][1][:2])[0]
        assert code in VALID_CODES, f"close code {code}"
    return frames


def run(data: bytes, pieces: List[bytes], setting: int) -> tuple:
    """Feed ``pieces``; (messages the app got, the close it got, the frames written)."""
    offers = DEFLATE_OFFERS[(setting >> 2) % 4]
    deflate = negotiate_deflate(offers)[0] if offers else None
    max_size = 64 if setting & common.SMALL_LIMITS else 1 << 16
    transport = Transport()
    conn = open_connection(LOOP, transport, WsConfig(max_size, 0, 0, 0, True, 4096), deflate)
    messages: list = []
    closed = None
    for piece in pieces:
        if transport.closed:
            break
        conn.data_received(piece)
        LOOP.run_until_complete(asyncio.sleep(0))      # a failure found mid-read waits one turn
        closed = drain(conn, messages)
    if closed is None:
        closed = drain(conn, messages)
    for m in messages:
        assert isinstance(m, (str, bytes)), type(m)
        assert len(m.encode("utf-8") if isinstance(m, str) else m) <= max_size, "a message over the limit"
    frames = server_frames(bytes(transport.out))
    if type(closed) is Closed or any(op == 8 for op, _ in frames):
        assert transport.closed or any(op == 8 for op, _ in frames), "failed but not closing"
    return messages, closed, frames


def drain(conn, messages: list):
    """Take every message waiting into ``messages``; the Closed, if there is one."""
    while True:
        fut = conn.receive()
        if not fut.done():
            fut.cancel()
            return None
        item = fut.result()
        if type(item) is Closed:
            return item
        messages.append(item)


def TestOneInput(raw: bytes) -> None:
    inp = common.decode(raw)
    data = inp.data
    ERRORS.messages.clear()
    whole = run(data, [data], inp.flags)
    split = run(data, [data[:inp.split], data[inp.split:]], inp.flags)
    assert split[0] == whole[0], f"split at {inp.split}: {split[0]!r} != {whole[0]!r}"
    if inp.flags & common.SMALL_PIECES:
        small = run(data, [data[i:i + 3] for i in range(0, len(data), 3)], inp.flags)
        assert small[0] == whole[0], f"in 3-byte pieces: {small[0]!r} != {whole[0]!r}"
    assert not ERRORS.messages, ERRORS.messages


def main() -> None:
    atheris.instrument_all() if not INSTRUMENTED else None
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
