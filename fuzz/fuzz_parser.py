"""Coverage-guided fuzz target for fastsrv's request parser (atheris).

Each input (see ``common.decode``) is fed to ``RequestParser.feed`` whole,
split in two at an offset the fuzzer chooses, and (when its flags say so)
in 1-7 byte pieces; the invariants:

* the outcome (completed requests, then the error status and reason) is the
  same however the bytes are split;
* the early verdict: the bytes up to the split offset alone (a client that
  has sent only those) get the whole's verdict or none: the requests they
  complete are the whole's first ones, and if they are refused, it is with
  the whole's status and reason after the same requests.  A prefix is never
  refused where the whole is accepted, nor refused differently;
* nothing but ``ParseError`` escapes, and its status is one the server
  answers with;
* every accepted request is well formed: a token method, a version of 1.0 or
  1.1, field names that are tokens, values without CR, LF or NUL, a body no
  larger than the limit.

Run it through ``fuzz/run.py``; by hand: ``python fuzz/fuzz_parser.py
CORPUS_DIR [libFuzzer flags]`` (with ``FASTSRV_FUZZ_PARSER`` and the ASan
preload that ``run.py`` sets for the instrumented build).
"""

from __future__ import annotations

import sys

import atheris

import common

INSTRUMENTED = common.load_parser()

if INSTRUMENTED:
    from parser_harness import feed_pieces
else:
    # no native coverage: give libFuzzer at least the harness's Python edges
    # (it then learns almost nothing about the parser's own branches)
    with atheris.instrument_imports(include=["parser_harness"]):
        from parser_harness import feed_pieces

from fastsrv._parser import Limits  # noqa: E402  (after load_parser)

STATUSES = {400, 413, 414, 417, 431, 501, 505}
TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
DEFAULT_LIMITS = Limits()
# small enough that the fuzzer reaches every limit with short inputs
SMALL_LIMITS = Limits(max_request_line=32, max_header_bytes=160, max_header_count=4, max_body_bytes=40)


def check_request(request: dict, limits: Limits) -> None:
    method = request["method"]
    assert method and set(method) <= TOKEN, f"method {method!r}"
    assert request["target"] and not set(request["target"]) & set(b" \r\n\0"), request["target"]
    assert request["version"] in ("1.0", "1.1"), request["version"]
    for name, value in request["headers"] + request["trailers"]:
        assert name and set(name) <= TOKEN, f"field name {name!r}"
        assert not set(value) & set(b"\r\n\0"), f"field value {value!r}"
    assert len(request["body"]) <= limits.max_body_bytes, len(request["body"])


def test_one_input(raw: bytes) -> None:
    flags, split, data = common.decode(raw)
    limits = SMALL_LIMITS if flags & common.SMALL_LIMITS else DEFAULT_LIMITS
    whole = feed_pieces([data], limits)
    if whole.status is not None:
        assert whole.status in STATUSES, f"unexpected status {whole.status} ({whole.reason})"
        assert whole.reason, "an error without a reason"
    for request in whole.requests:
        check_request(request, limits)
    halves = feed_pieces([data[:split], data[split:]], limits)
    assert halves == whole, f"split at {split}: {halves} != whole: {whole}"
    prefix = feed_pieces([data[:split]], limits)
    if prefix.status is None:
        assert prefix.requests == whole.requests[:len(prefix.requests)], \
            f"the first {split} bytes complete {prefix.requests}, the whole {whole.requests}"
    else:
        assert prefix == whole, f"the first {split} bytes get {prefix}, the whole {whole}"
    if flags & common.SMALL_PIECES:
        size = 1 + (flags >> 2) % 7
        pieces = feed_pieces(common.pieces_of(data, size), limits)
        assert pieces == whole, f"in {size}-byte pieces: {pieces} != whole: {whole}"


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
