"""The seed corpora.  For the HTTP targets: every request of
``tests/parser_cases.py`` (valid and malformed), each fed whole, split in
its middle, and in small pieces under the small limits, plus a few
pipelined pairs.  For the WebSocket target: client frames (text, binary,
fragmented with control frames between, compressed, closes, and broken
ones), under each setting."""

from __future__ import annotations

import hashlib
import os
from typing import Iterator

import common


def seeds() -> Iterator[bytes]:
    common.load_parser()
    from parser_cases import MALFORMED, VALID

    requests = [data for _, data, _ in VALID] + [data for _, data, _ in MALFORMED]
    for data in requests:
        yield common.encode(data)
        yield common.encode(data, common.SMALL_PIECES | (3 << 2), len(data) // 2)
        if len(data) < 400:
            yield common.encode(data, common.SMALL_LIMITS | common.SMALL_PIECES, len(data) // 3)
    valid = [data for _, data, fields in VALID if len(data) < 400]
    for first, second in zip(valid, valid[1:] + valid[:1]):
        yield common.encode(first + second, 0, len(first))


def websocket_seeds() -> Iterator[bytes]:
    common.load_parser()
    from ws_helpers import BINARY, CLOSE, CONT, PING, PONG, TEXT, close_payload, deflate, frame

    key = b"\x01\x02\x03\x04"
    streams = [
        frame(TEXT, "héllo".encode(), key=key),
        frame(BINARY, bytes(range(200)), key=key),
        frame(TEXT, b"frag", fin=False, key=key) + frame(PING, b"p", key=key) + frame(CONT, b"ment", key=key),
        frame(BINARY, b"x" * 300, key=key) + frame(CLOSE, close_payload(1000, b"bye"), key=key),
        frame(TEXT, deflate(b"compressed " * 20), rsv1=True, key=key),
        frame(TEXT, deflate(b"two"), rsv1=True, fin=False, key=key) + frame(CONT, b"", key=key),
        frame(TEXT, b"\xed\xa0\x80", key=key),
        frame(TEXT, b"ok", mask=False),
        frame(PONG, b"", key=key) + frame(CLOSE, b"\x03\xe8", key=key),
        frame(CLOSE, close_payload(1005), key=key),
    ]
    for data in streams:
        for setting in (0, 1 << 2, 2 << 2, 3 << 2, 1 << 2 | common.SMALL_LIMITS):
            yield common.encode(data, setting, len(data) // 2)
            yield common.encode(data, setting | common.SMALL_PIECES, len(data) // 3)


def write(directory: str, target: str = "parser") -> int:
    """Write ``target``'s seeds into ``directory`` (named by content); their count."""
    os.makedirs(directory, exist_ok=True)
    count = 0
    for seed in (websocket_seeds() if target == "websocket" else seeds()):
        name = hashlib.sha1(seed).hexdigest()
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(seed)
        count += 1
    return count
