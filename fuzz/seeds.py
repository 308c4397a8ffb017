"""The seed corpus: every request of ``tests/parser_cases.py`` (valid and
malformed), each fed whole, split in its middle, and in small pieces under
the small limits, plus a few pipelined pairs."""

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


def write(directory: str) -> int:
    """Write the seeds into ``directory`` (named by content); their count."""
    os.makedirs(directory, exist_ok=True)
    count = 0
    for seed in seeds():
        name = hashlib.sha1(seed).hexdigest()
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(seed)
        count += 1
    return count
