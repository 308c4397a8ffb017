"""Feeding fastsrv's request parser the same bytes in every split.

The parser is incremental: a connection hands it whatever each read returned.
So every outcome the tests assert is asserted for the bytes fed whole, split
in two at every offset, and one byte at a time, and the outcome must be the
same each way: the same completed requests, then the same error (if any).
"""

from __future__ import annotations

from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple

from fastsrv._parser import Limits, ParseError, RequestParser

# Inputs above this size are split at sampled offsets (see split_points) and
# fed in small pieces rather than byte by byte: the test entry ``feed`` copies
# its pending buffer on each call, which is quadratic over large inputs.
EXHAUSTIVE_UP_TO = 2048
PIECE_FOR_LARGE = 61


class Outcome(NamedTuple):
    """What the parser made of a byte stream."""

    requests: List[dict]
    status: Optional[int] = None      # None: no error (maybe waiting for more)
    reason: Optional[str] = None


def feed_pieces(pieces: Sequence[bytes], limits: Optional[Limits] = None) -> Outcome:
    """Feed ``pieces`` in order to a fresh parser; stop at the first error."""
    parser = RequestParser(limits)
    done: List[dict] = []
    for piece in pieces:
        try:
            done += parser.feed(piece)
        except ParseError as e:
            return Outcome(done + e.requests, e.status, e.reason)
    return Outcome(done)


def split_points(n: int) -> List[int]:
    """Offsets to split an ``n``-byte input at: all of them for small inputs;
    for large ones both ends, a stride through the middle, and the limits."""
    if n <= EXHAUSTIVE_UP_TO:
        return list(range(1, n))
    points = set(range(1, 128)) | set(range(n - 128, n)) | set(range(1, n, n // 64))
    for limit in (8192, 65536):            # the default Limits
        points |= set(range(limit - 3, limit + 4))
    return sorted(p for p in points if 0 < p < n)


def splits(data: bytes) -> Iterator[Tuple[str, List[bytes]]]:
    """(label, pieces) for every way the tests feed ``data``."""
    yield "whole", [data]
    for k in split_points(len(data)):
        yield f"split at {k}", [data[:k], data[k:]]
    step = 1 if len(data) <= EXHAUSTIVE_UP_TO else PIECE_FOR_LARGE
    yield f"in {step}-byte pieces", [data[i:i + step] for i in range(0, len(data), step)]


def outcome(data: bytes, limits: Optional[Limits] = None) -> Outcome:
    """The outcome of ``data``, asserted identical however it is split."""
    whole = feed_pieces([data], limits)
    for label, pieces in splits(data):
        got = feed_pieces(pieces, limits)
        assert got == whole, f"fed {label}: {got} != whole: {whole}"
    return whole


def parse(data: bytes, limits: Optional[Limits] = None) -> List[dict]:
    """The requests in ``data``, which must parse without error in every split."""
    result = outcome(data, limits)
    assert result.status is None, f"rejected with {result.status}: {result.reason}"
    return result.requests


def parse_one(data: bytes, limits: Optional[Limits] = None) -> dict:
    """The single complete request that ``data`` holds."""
    requests = parse(data, limits)
    assert len(requests) == 1, f"expected one request, got {len(requests)}"
    return requests[0]


def rejection(data: bytes, limits: Optional[Limits] = None) -> int:
    """The status ``data`` is rejected with, the same in every split."""
    result = outcome(data, limits)
    assert result.status is not None, f"accepted: {result.requests}"
    return result.status


def http(*lines: bytes, body: bytes = b"") -> bytes:
    """A message from its head lines (CRLF-terminated here) and body bytes."""
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body
