"""What the fuzz targets share: which parser module they load, where the
test helpers live, and how an input is laid out.

``fuzz/run.py`` builds an instrumented copy of ``fastsrv._parser`` out of the
tree and names it in ``FASTSRV_FUZZ_PARSER``; loading it as
``fastsrv._parser`` before anything imports fastsrv makes every user of the
parser (the test harness, the connection core) use the instrumented one.
Without that variable the targets run on the ordinary build, and libFuzzer
sees only the Python-level coverage atheris adds.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import List, NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
PARSER_ENV = "FASTSRV_FUZZ_PARSER"


def load_parser() -> bool:
    """Put the instrumented parser (if one is named) in place of
    ``fastsrv._parser``, and the test helpers on ``sys.path``.  True when the
    parser is the instrumented one."""
    for path in (ROOT, TESTS):
        if path not in sys.path:
            sys.path.insert(0, path)
    so = os.environ.get(PARSER_ENV)
    if not so:
        return False
    spec = importlib.util.spec_from_file_location("fastsrv._parser", so)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fastsrv._parser"] = module
    spec.loader.exec_module(module)
    return True


# An input is a 3-byte prelude and the request bytes.  The prelude picks how
# they are fed (its first byte: bit 0 small limits, bit 1 also in small
# pieces; the next two: where to split them in two), so that libFuzzer can
# mutate the feeding as well as the bytes.
PRELUDE = 3
SMALL_PIECES = 2
SMALL_LIMITS = 1


class FuzzInput(NamedTuple):
    flags: int
    split: int
    data: bytes


def decode(raw: bytes) -> FuzzInput:
    head = raw[:PRELUDE].ljust(PRELUDE, b"\0")
    data = raw[PRELUDE:]
    split = int.from_bytes(head[1:3], "big") % (len(data) + 1)
    return FuzzInput(head[0], split, data)


def encode(data: bytes, flags: int = 0, split: int = 0) -> bytes:
    return bytes([flags]) + (split % 65536).to_bytes(2, "big") + data


def pieces_of(data: bytes, size: int) -> List[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]
