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
import types
from typing import List, NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
PARSER_ENV = "FASTSRV_FUZZ_PARSER"


# the compiled modules, each after those it cimports
CORE_MODULES = ("_parser", "_response", "_request", "_inplace", "_websocket", "_core")


def load_parser(modules: tuple = ("_parser",)) -> bool:
    """Put the instrumented ``modules`` (if a build is named) in place of
    ``fastsrv.<module>``, and the test helpers on ``sys.path``.  True when
    they are the instrumented ones."""
    for path in (ROOT, TESTS):
        if path not in sys.path:
            sys.path.insert(0, path)
    so = os.environ.get(PARSER_ENV)
    if not so:
        return False
    package = os.path.join(ROOT, "fastsrv")
    if len(modules) > 1:
        # the compiled modules import fastsrv's Python modules: give them the
        # package without running its __init__, which imports the uninstrumented
        # _core; run it once they are all loaded
        stub = types.ModuleType("fastsrv")
        stub.__path__ = [package]
        stub.__file__ = os.path.join(package, "__init__.py")
        sys.modules["fastsrv"] = stub
    for name in modules:
        path = so.replace("_parser", name) if name != "_parser" else so
        spec = importlib.util.spec_from_file_location(f"fastsrv.{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"fastsrv.{name}"] = module
        spec.loader.exec_module(module)
    if len(modules) > 1:
        with open(stub.__file__) as f:
            exec(compile(f.read(), stub.__file__, "exec"), stub.__dict__)
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
