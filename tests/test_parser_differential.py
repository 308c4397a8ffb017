"""fastsrv's request parser against independent parsers.

The oracles are h11 (pure Python), httptools (llhttp, what uvicorn uses) and
pycohttpparser (picohttpparser; it parses a request head, nothing else).

* Valid requests generated from the RFC 9112 grammar (single or pipelined,
  bodies framed by Content-Length or chunked, with extensions and trailers)
  must be accepted by fastsrv in every split, with the same fields as every
  oracle reports.
* Mutations of those requests (bytes flipped, inserted, deleted; CR, LF, NUL,
  space, colon... injected, half of them at line boundaries and framing
  values): every request fastsrv accepts must be accepted with the same
  fields by h11 or httptools, unless it relies on one of ``LENIENCIES`` (what
  the RFCs require a recipient to accept); fastsrv must not wait for more
  bytes where an oracle has complete requests; and every refusal of fastsrv
  where an oracle goes on must be one of ``DIVERGENCES`` (where RFC 9112 or
  RFC 9110 makes or lets a server refuse).  Each entry of both tables is
  shown by a named test.
* Partial input: fastsrv refuses a request at its first invalid byte, where
  h11 waits for the whole head (and llhttp and picohttpparser sometimes go
  on too).  Every refusal of a prefix on which an oracle waits must name the
  clause that makes the bytes so far invalid whatever follows (``EARLIER``,
  or the clause of the refusal in ``DIVERGENCES``); the ``EARLY`` table of
  ``parser_cases`` shows each, and the mutated streams are cut at random.

fastsrv hands the application less than it received in two places, and the
oracles' requests are compared as fastsrv serves them (``_as_served``):
fields named with an underscore are dropped, as are trailers that must not be
trailers (RFC 9110 6.5.1), and an absolute-form target's authority is the
Host (RFC 9112 3.2.2).
"""

from __future__ import annotations

import re
from typing import Callable, Dict, List, NamedTuple, Optional

import h11
import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycohttpparser import api as pico

from fastsrv._parser import TRAILER_FORBIDDEN
from parser_cases import EARLY, VALID
from parser_harness import Outcome, feed_pieces, outcome
from parser_strategies import framing_variants, mutated_streams, request_streams

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------
# The oracles: bytes -> the requests they complete, then their error (if any).
# Requests are compared on FIELDS; header values with trailing OWS removed
# (httptools and picohttpparser keep it, RFC 9112 5.1 excludes it), trailer
# names lower-cased.
# ---------------------------------------------------------------------------

FIELDS = ("method", "target", "version", "headers", "body", "trailers")


class Parsed(NamedTuple):
    requests: List[dict]
    error: Optional[str] = None


def _trim(fields):
    return [(bytes(name), bytes(value).rstrip(b" \t")) for name, value in fields]


_AUTHORITY = re.compile(rb"(?i)https?://([^/?]*)")


def _as_served(target: bytes, fields: list, trailers: bool = False) -> list:
    """``fields`` as fastsrv hands them to the application: without names
    holding "_" (the default), without trailers that must not be trailers,
    and with the authority of an absolute-form target as the Host."""
    authority = _AUTHORITY.match(target)
    served = []
    for name, value in fields:
        if b"_" in name or (trailers and name.lower() in TRAILER_FORBIDDEN):
            continue
        if authority and not trailers and name.lower() == b"host":
            value = authority.group(1)
        served.append((name, value))
    return served


def _view(request: dict) -> dict:
    view = {key: request[key] for key in FIELDS}
    view["headers"] = _as_served(request["target"], _trim(request["headers"]))
    view["trailers"] = _as_served(request["target"], [(name.lower(), value) for name, value in
                                                      _trim(request["trailers"])], trailers=True)
    return view


def _h11_fields(fields: list) -> list:
    headers, seen_length = [], False
    for name, value in fields:
        lower = name.lower()
        if lower == b"content-length":
            if seen_length:
                continue
            seen_length, value = True, value.split(b",")[0].strip()
        elif lower == b"transfer-encoding":
            value = value.lower()
        headers.append((name, value))
    return headers


def _h11_view(request: dict) -> dict:
    """A request as h11 reports it: one Content-Length field holding the
    single value of a list, and the Transfer-Encoding value lower-cased, in
    the trailers as in the header section."""
    view = _view(request)
    return dict(view, headers=_h11_fields(view["headers"]), trailers=_h11_fields(view["trailers"]))


def h11_parse(data: bytes) -> Parsed:
    """h11 serves one request per connection cycle; the bytes after each
    request start a fresh connection.  h11 refuses empty lines before a
    request line, which RFC 9112 2.2 says a server SHOULD ignore; this
    adapter skips up to eight, as fastsrv does."""
    done: List[dict] = []
    while True:
        empty_lines = 0
        while empty_lines < 8 and data.startswith(b"\r\n", 2 * empty_lines):
            empty_lines += 1
        data = data[2 * empty_lines:]
        if not data:
            return Parsed(done)
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(data)
        request = None
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as e:
                return Parsed(done, f"h11: {e}")
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return Parsed(done)
            if isinstance(event, h11.Request):
                request = dict(method=event.method, target=event.target,
                               version=event.http_version.decode(),
                               headers=list(event.headers.raw_items()), body=b"")
            elif isinstance(event, h11.Data):
                request["body"] += event.data
            elif isinstance(event, h11.EndOfMessage):
                request["trailers"] = list(event.headers)
                done.append(_view(request))
                data = conn.trailing_data[0]
                break


class _HttptoolsRecorder:
    """httptools callbacks; header fields after the head are trailers."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.done: List[dict] = []
        self.request: dict = {}
        self.fields: list = []

    def on_message_begin(self):
        self.request = dict(target=b"", headers=[], body=b"", trailers=[])
        self.fields = self.request["headers"]

    def on_url(self, url):
        self.request["target"] += url

    def on_header(self, name, value):
        self.fields.append((name, value))

    def on_headers_complete(self):
        self.request.update(method=self.parser.get_method(), version=self.parser.get_http_version(),
                            keep_alive=self.parser.should_keep_alive())
        self.fields = self.request["trailers"]

    def on_body(self, body):
        self.request["body"] += body

    def on_message_complete(self):
        self.done.append(dict(_view(self.request), keep_alive=self.request["keep_alive"]))


def httptools_parse(data: bytes) -> Parsed:
    """Requests carry ``keep_alive`` too: llhttp's should_keep_alive()."""
    recorder = _HttptoolsRecorder()
    try:
        recorder.parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError as e:
        return Parsed(recorder.done, f"httptools: {e}")
    return Parsed(recorder.done)


def pico_parse_head(data: bytes) -> Optional[dict]:
    """The first request head as picohttpparser reads it (with ``consumed``,
    the head's length); None while incomplete; raises pico.ParseError."""
    head = pico.Parser().parse_request(memoryview(bytearray(data)))
    if head is None:
        return None
    return dict(method=bytes(head.method), target=bytes(head.path), version=f"1.{head.minor_version}",
                headers=_as_served(bytes(head.path), _trim(head.headers)), consumed=head.consumed)


def agreed_prefix(mine: List[dict], theirs: List[dict], view: Callable[[dict], dict]) -> int:
    """How many leading requests fastsrv (``mine``, seen through ``view``)
    and an oracle agree on."""
    n = 0
    for a, b in zip(mine, theirs):
        if view(a) != {key: b[key] for key in FIELDS}:
            break
        n += 1
    return n


# ---------------------------------------------------------------------------
# Where fastsrv may refuse what an oracle takes: each reason it gives, the
# clause that lets it, and a request that shows it (tested below).
# ---------------------------------------------------------------------------

class Divergence(NamedTuple):
    reason: str                 # fastsrv's ParseError.reason
    clause: str                 # why RFC 9112 / RFC 9110 lets or makes a server refuse it
    request: bytes
    status: int
    lenient: tuple              # oracles that accept the request


def _with_head(*lines: bytes, body: bytes = b"") -> bytes:
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


_CHUNKED = (b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked")

DIVERGENCES: Dict[str, Divergence] = {d.reason: d for d in [
    Divergence("both Content-Length and Transfer-Encoding",
               "RFC 9112 6.1: a server MAY reject a request that contains both",
               _with_head(*_CHUNKED, b"Content-Length: 5", body=b"0\r\n\r\n"), 400, ("h11", "pico")),
    Divergence("Transfer-Encoding in an HTTP/1.0 request",
               "RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding MUST be treated as "
               "having faulty framing",
               _with_head(b"POST / HTTP/1.0", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400,
               ("h11", "httptools", "pico")),
    Divergence("unsupported transfer coding",
               "RFC 9112 6.1: a server that receives a transfer coding it does not understand "
               "SHOULD respond with 501",
               _with_head(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: gzip, chunked",
                          body=b"0\r\n\r\n"), 501, ("httptools", "pico")),
    Divergence("chunked is not the final transfer coding",
               "RFC 9112 6.3: chunked not final in a request -> the server MUST respond 400",
               _with_head(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: identity"), 400, ("pico",)),
    Divergence("Content-Length given as a list",
               "RFC 9110 8.6: a recipient MAY reject a list of identical values as invalid (nginx "
               "does: an intermediary may take its first element, or see no valid length)",
               _with_head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 1, 1", body=b"x"), 400,
               ("h11", "pico")),
    Divergence("conflicting Content-Length values",
               "RFC 9112 6.3: a Content-Length that is not one valid number is unrecoverable "
               "framing; a server MUST respond 400",
               _with_head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 1", b"Content-Length: 2",
                          body=b"xy"), 400, ("pico",)),
    Divergence("invalid Content-Length",
               "RFC 9112 6.3 (Content-Length = 1*DIGIT, RFC 9110 8.6): invalid -> MUST respond 400",
               _with_head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 1x", body=b"x"), 400, ("pico",)),
    Divergence("empty Host header",
               "RFC 9112 3.3: an origin-form target's URI takes the Host as its authority; when that "
               "is empty for http(s), the server can reject the request (RFC 9110 4.2.1: an http URI "
               "with an empty host is invalid)",
               _with_head(b"GET / HTTP/1.1", b"Host:"), 400, ("h11", "httptools", "pico")),
    Divergence("missing Host header",
               "RFC 9112 3.2: a server MUST respond 400 to an HTTP/1.1 request without Host",
               _with_head(b"GET / HTTP/1.1"), 400, ("httptools", "pico")),
    Divergence("multiple Host headers",
               "RFC 9112 3.2: a server MUST respond 400 to more than one Host field line",
               _with_head(b"GET / HTTP/1.1", b"Host: a", b"Host: a"), 400, ("httptools", "pico")),
    Divergence("invalid Host header",
               "RFC 9112 3.2: a server MUST respond 400 to a Host field with an invalid value "
               "(uri-host [':' port], RFC 3986 3.2.2)",
               _with_head(b"GET / HTTP/1.1", b"Host: a b"), 400, ("h11", "httptools", "pico")),
    Divergence("bare LF in request head",
               "RFC 9112 2.2: a recipient MAY (not must) recognize a bare LF as a line terminator",
               b"GET / HTTP/1.1\nHost: a\n\n", 400, ("h11", "pico")),
    Divergence("obsolete line folding",
               "RFC 9112 5.2: a server MUST either reject obs-fold with 400 or replace it with SP",
               _with_head(b"GET / HTTP/1.1", b"Host: a", b"X: a", b" b"), 400, ("h11", "pico")),
    Divergence("invalid chunk size",
               "RFC 9112 7.1: chunk = chunk-size [ chunk-ext ] CRLF; whitespace may only precede "
               "';' (RFC 9110 15.5.1: 400 for malformed framing)",
               _with_head(*_CHUNKED, body=b"1 \r\nx\r\n0\r\n\r\n"), 400, ("h11", "pico")),
    Divergence("invalid character in chunk extension",
               "RFC 9112 7.1.1: chunk-ext holds tokens and quoted-strings, no control characters "
               "(RFC 9110 15.5.1: 400 for malformed framing)",
               _with_head(*_CHUNKED, body=b"1;a\x01\r\nx\r\n0\r\n\r\n"), 400, ("h11", "pico")),
    Divergence("chunk extension without a name",
               "RFC 9112 7.1.1: chunk-ext = *( BWS \";\" BWS ext-name ... ), ext-name = token: a "
               "semicolon starts a name (RFC 9110 15.5.1: 400 for malformed framing)",
               _with_head(*_CHUNKED, body=b"1;\r\nx\r\n0\r\n\r\n"), 400, ("h11", "pico")),
    Divergence("chunk extension without a value",
               "RFC 9112 7.1.1: [ BWS \"=\" BWS ext-val ], ext-val = token / quoted-string: an \"=\" "
               "is followed by a value",
               _with_head(*_CHUNKED, body=b"1;a=\r\nx\r\n0\r\n\r\n"), 400, ("h11", "httptools", "pico")),
    Divergence("whitespace at the end of a chunk extension",
               "RFC 9112 7.1.1: BWS only before \";\" and around \"=\"; chunk-ext is followed by CRLF "
               "directly",
               _with_head(*_CHUNKED, body=b"1;a \r\nx\r\n0\r\n\r\n"), 400, ("h11", "pico")),
    Divergence("chunked applied more than once",
               "RFC 9112 6.1: a sender MUST NOT apply chunked more than once; the body length "
               "cannot be determined (RFC 9112 6.3: MUST respond 400)",
               _with_head(*_CHUNKED, b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400, ("pico",)),
    Divergence("invalid Transfer-Encoding",
               "RFC 9112 6.1: Transfer-Encoding = #transfer-coding (tokens); unparseable -> "
               "length unknown (RFC 9112 6.3: MUST respond 400)",
               _with_head(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: a@b, chunked",
                          body=b"0\r\n\r\n"), 400, ("httptools", "pico")),
    Divergence("whitespace between field name and colon",
               "RFC 9112 5.1: a server MUST reject whitespace between field name and colon with 400",
               _with_head(b"GET / HTTP/1.1", b"Host: a", b"X : b"), 400, ("pico",)),
    Divergence("invalid character in header field name",
               "RFC 9110 5.1: field-name = token (RFC 9110 15.5.1: 400 for malformed syntax)",
               _with_head(b"GET / HTTP/1.1", b"Host: a", b"X=Y: b"), 400, ("pico",)),
    Divergence("control character in header field value",
               "RFC 9110 5.5: CTLs other than HTAB make a field value invalid; a recipient MAY "
               "(not must) retain them",
               _with_head(b"GET / HTTP/1.1", b"Host: a", b"X: a\x01b"), 400, ("h11",)),
    Divergence("invalid character in trailer field value",
               "RFC 9110 5.5 (trailer fields have field syntax, RFC 9112 7.1.2): CTLs other than "
               "HTAB make a value invalid",
               _with_head(*_CHUNKED, body=b"0\r\nX: a\x01b\r\n\r\n"), 400, ("h11", "pico")),
    Divergence("bare CR in chunk header",
               "RFC 9112 2.2: a recipient MUST treat an element holding a bare CR as invalid "
               "(or replace the CR with SP)",
               _with_head(*_CHUNKED, body=b"1;a\rb\r\nx\r\n0\r\n\r\n"), 400, ("h11", "pico")),
    Divergence("invalid method",
               "RFC 9112 3: method = token; 2.2 lets a server skip empty lines (CRLF), not a bare "
               "CR (RFC 9112 3: an invalid request-line SHOULD be answered 400)",
               _with_head(b"\rGET / HTTP/1.1", b"Host: a"), 400, ("httptools",)),
    Divergence("invalid HTTP version",
               "RFC 9112 3: one SP between the request-line elements; a recipient MAY (not must) "
               "split on any whitespace, which invites request smuggling",
               _with_head(b"GET /  HTTP/1.1", b"Host: a"), 400, ("httptools",)),
    Divergence("bare LF in trailer section",
               "RFC 9112 2.2: a recipient MAY (not must) recognize a bare LF as a line terminator",
               _with_head(*_CHUNKED, body=b"0\r\nX: a\n\r\n"), 400, ("h11", "pico")),
    Divergence("obsolete line folding in trailer",
               "RFC 9112 5.2 (trailers are field lines, 7.1.2): a server MUST reject obs-fold with "
               "400 or replace it with SP",
               _with_head(*_CHUNKED, body=b"0\r\nX: a\r\n b\r\n\r\n"), 400, ("h11", "pico")),
    Divergence("invalid header field name",
               "RFC 9110 5.1: field-name = token (RFC 9110 15.5.1: 400 for malformed syntax)",
               _with_head(b"GET / HTTP/1.1", b"Host: a", b'"X": b'), 400, ("pico",)),
    Divergence("Content-Length does not fit in 64 bits",
               "RFC 9110 8.6: a recipient MUST anticipate large numerals and prevent integer overflow; "
               "a length it cannot hold is not a valid Content-Length (RFC 9112 6.3: MUST respond 400)",
               _with_head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 99999999999999999999"),
               400, ("pico",)),
    Divergence("request body too large",
               "RFC 9110 15.5.14: 413 for content larger than the server is willing to process",
               _with_head(*_CHUNKED, body=b"FFFFFFFF\r\n"), 413, ("pico",)),
    Divergence("chunk size does not fit in 64 bits",
               "RFC 9112 7.1: a recipient MUST anticipate large hexadecimal numerals and prevent "
               "integer overflow; a size it cannot hold is malformed framing (RFC 9110 15.5.1: 400)",
               _with_head(*_CHUNKED, body=b"FFFFFFFFFFFFFFFFF\r\n"), 400, ("pico",)),
    Divergence("request line too long",
               "RFC 9112 3: a server that receives a request-target longer than it wishes to parse "
               "MUST respond with 414",
               _with_head(b"GET /" + b"a" * 9000 + b" HTTP/1.1", b"Host: a"), 414,
               ("h11", "httptools", "pico")),
    Divergence("header section too large",
               "RFC 6585 5: 431 when the header fields are too large (RFC 9110 15.5: the server's limits)",
               _with_head(b"GET / HTTP/1.1", b"Host: a", *[b"X: " + b"v" * 4000] * 17), 431,
               ("h11", "httptools", "pico")),
    Divergence("too many header fields",
               "RFC 6585 5: 431 when the header fields are too large, in count as in bytes",
               _with_head(b"GET / HTTP/1.1", b"Host: a", *[b"X: v"] * 100), 431,
               ("h11", "httptools", "pico")),
    Divergence("HTTP version not supported",
               "RFC 9110 15.6.6 / 2.5: only HTTP/1.0 and 1.1 are implemented; 1.2+ SHOULD (not must) "
               "be read as 1.1, and llhttp refuses it too",
               _with_head(b"GET / HTTP/1.2", b"Host: a"), 505, ("h11", "pico")),
    Divergence("fragment in request-target",
               "RFC 9112 3.2: no request-target form has a fragment (origin-form = absolute-path "
               "[ \"?\" query ]); RFC 9112 3: an invalid request-line SHOULD be answered 400",
               _with_head(b"GET /a#b HTTP/1.1", b"Host: a"), 400, ("h11", "httptools", "pico")),
    Divergence("empty host in request-target",
               "RFC 9110 4.2.1: a recipient that processes an http URI with an empty host MUST reject "
               "it as invalid",
               _with_head(b"GET http:///a HTTP/1.1", b"Host: a"), 400, ("h11", "httptools", "pico")),
    Divergence("invalid host in request-target",
               "RFC 9110 4.2.4: userinfo in an http(s) URI SHOULD be treated as an error; RFC 3986 "
               "3.2.2: a host is reg-name, IPv4 or an IP literal",
               _with_head(b"GET http://u@a/ HTTP/1.1", b"Host: a"), 400, ("h11", "httptools", "pico")),
    Divergence("method too long",
               "RFC 9112 3.1: a server that receives a method longer than any it implements SHOULD "
               "respond 501 (here: longer than the request-line limit)",
               _with_head(b"M" * 8193 + b" / HTTP/1.1", b"Host: a"), 501, ("h11", "pico")),
    Divergence("asterisk-form is only allowed for OPTIONS",
               "RFC 9112 3.2.4: the asterisk-form is only used for a server-wide OPTIONS request",
               _with_head(b"GET * HTTP/1.1", b"Host: a"), 400, ("h11", "httptools", "pico")),
    Divergence("invalid request-target",
               "RFC 9112 3.2: the target is origin-, absolute-, authority- (CONNECT) or "
               "asterisk-form; fastsrv serves http(s) origins only (RFC 9110 7.4)",
               _with_head(b"GET ftp://a/ HTTP/1.1", b"Host: a"), 400, ("h11", "httptools", "pico")),
    Divergence("empty request line",
               "RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request "
               "line; fastsrv ignores eight",
               b"\r\n" * 9 + _with_head(b"GET / HTTP/1.1", b"Host: a"), 400, ("httptools",)),
    Divergence("unsupported expectation",
               "RFC 9110 10.1.1: a server MAY respond 417 to an expectation other than 100-continue",
               _with_head(b"GET / HTTP/1.1", b"Host: a", b"Expect: x"), 417, ("h11", "httptools", "pico")),
    Divergence("CONNECT is not supported",
               "RFC 9110 9.3.6 / 15.6.2: CONNECT is for proxies; an origin server answers 501",
               _with_head(b"CONNECT a:443 HTTP/1.1", b"Host: a:443"), 501, ("h11", "httptools", "pico")),
]}


def _accepts(oracle: str, data: bytes) -> bool:
    if oracle == "pico":
        try:
            return pico_parse_head(data) is not None
        except pico.ParseError:
            return False
    parsed = h11_parse(data) if oracle == "h11" else httptools_parse(data)
    return parsed.error is None and len(parsed.requests) == 1


@pytest.mark.parametrize("divergence", [pytest.param(d, id=f"{d.clause.split(':')[0]}: {d.reason}")
                                        for d in DIVERGENCES.values()])
def test_known_divergence_is_sanctioned_by_the_rfc(divergence):
    """fastsrv refuses these though some oracle takes them; the id names the
    clause, ``clause`` says why."""
    result = outcome(divergence.request)
    assert (result.status, result.reason) == (divergence.status, divergence.reason)
    for oracle in ("h11", "httptools", "pico"):
        assert _accepts(oracle, divergence.request) == (oracle in divergence.lenient), oracle


# ---------------------------------------------------------------------------
# Where fastsrv takes what h11 and httptools both refuse: leniencies the RFC
# requires of a recipient, or names as its choice.  ``applies`` tells one from
# the accepted request (as fastsrv returned it) and the bytes.
# ---------------------------------------------------------------------------

class Leniency(NamedTuple):
    name: str
    clause: str
    request: bytes
    applies: Callable[[dict, bytes], bool]


def _content_lengths(request: dict) -> List[bytes]:
    return [v.strip(b" \t") for name, value in request["headers"] if name.lower() == b"content-length"
            for v in value.split(b",")]


def _h11_takes_it_but_for_its_digit_cap(request: dict, data: bytes) -> bool:
    """The request has a Content-Length of more than 20 digits, and h11
    accepts it with the same fields once that value is written short."""
    lengths = _content_lengths(request)
    if not lengths or max(map(len, lengths)) <= 20:
        return False
    headers = [(name, str(int(lengths[0])).encode() if name.lower() == b"content-length" else value)
               for name, value in request["headers"]]
    short = dict(request, headers=headers)
    raw = (request["method"] + b" " + request["target"] + b" HTTP/" + request["version"].encode() + b"\r\n"
           + b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n" + request["body"])
    parsed = h11_parse(raw)
    return not parsed.error and parsed.requests == [_h11_view(short)]


def _te_has_empty_elements(request: dict, data: bytes) -> bool:
    return any(name.lower() == b"transfer-encoding" and not all(v.strip(b" \t") for v in value.split(b","))
               for name, value in request["headers"])


_BWS_BEFORE_CHUNK_EXT = re.compile(rb"\n[0-9A-Fa-f]+[ \t]+;")
_TRAILER_SECTION = re.compile(rb"\r\n0+(?:[ \t;][^\r\n]*)?\r\n((?:[^\r\n]+\r\n)+)\r\n")


def _discards_a_trailer_that_must_not_be_one(request: dict, data: bytes) -> bool:
    return any(line.split(b":", 1)[0].lower() in TRAILER_FORBIDDEN
               for section in _TRAILER_SECTION.finditer(data) for line in section.group(1).split(b"\r\n"))


LENIENCIES = [
    Leniency("BWS before a chunk extension",
             "RFC 9112 7.1.1: chunk-ext = *( BWS \";\" BWS ext-name [ BWS \"=\" BWS ext-val ] ); "
             "RFC 9110 5.6.3: a recipient MUST parse for BWS and remove it",
             _with_head(*_CHUNKED, body=b"1 \t;ext\r\nx\r\n0\r\n\r\n"),
             lambda request, data: bool(_BWS_BEFORE_CHUNK_EXT.search(data))),
    Leniency("empty elements in the Transfer-Encoding list",
             "RFC 9110 5.6.1.2: a recipient MUST parse and ignore a reasonable number of empty "
             "list elements",
             _with_head(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked ,",
                        body=b"1\r\nx\r\n0\r\n\r\n"),
             _te_has_empty_elements),
    Leniency("Content-Length of more than 20 digits",
             "RFC 9110 8.6: Content-Length = 1*DIGIT, with no cap on the digits, and a recipient MAY "
             "take repeated identical field lines as one; h11 caps the digits at 20, httptools refuses "
             "any repetition (or a method it does not know): the request is checked against h11 with "
             "the value written short",
             _with_head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 000000000000000000001",
                        b"Content-Length: 000000000000000000001", body=b"x"),
             _h11_takes_it_but_for_its_digit_cap),
    Leniency("a trailer that must not be one is discarded",
             "RFC 9112 7.1.2: a recipient MAY selectively retain or discard the received trailer "
             "fields; fastsrv discards those RFC 9110 6.5.1 keeps out of trailers, where h11 and llhttp "
             "count framing fields in the trailers as if in the header section",
             _with_head(*_CHUNKED, body=b"1\r\nx\r\n0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
                                             b"Transfer-Encoding: chunked\r\n\r\n"),
             _discards_a_trailer_that_must_not_be_one),
]


@pytest.mark.parametrize("leniency", [pytest.param(x, id=x.name) for x in LENIENCIES])
def test_known_leniency_is_required_or_granted_by_the_rfc(leniency):
    """fastsrv accepts these though h11 and httptools refuse them; ``clause``
    says why it must, or may."""
    request, = outcome(leniency.request).requests
    assert leniency.applies(request, leniency.request)
    assert h11_parse(leniency.request).error and httptools_parse(leniency.request).error


# ---------------------------------------------------------------------------
# Partial input: fastsrv refuses at the first invalid byte, where an oracle may
# still wait (h11 reads nothing before the whole head is in).  Each reason it
# refuses a prefix with names the clause that makes the bytes so far invalid
# whatever follows: here, or its clause in DIVERGENCES.
# ---------------------------------------------------------------------------

EARLIER: Dict[str, str] = {
    "invalid method": "RFC 9112 3.1: method = token, then SP",
    "invalid HTTP version": "RFC 9112 2.3: HTTP-version = HTTP-name \"/\" DIGIT \".\" DIGIT, with HTTP-name "
                            "the case-sensitive \"HTTP\", then CRLF (RFC 9112 3)",
    "bare CR in request line": "RFC 9112 2.2: a recipient MUST consider an element holding a bare CR "
                               "invalid (or replace the CR with SP)",
    "bare CR in request head": "RFC 9112 2.2: a recipient MUST consider an element holding a bare CR "
                               "invalid (or replace the CR with SP)",
    "bare CR in header field value": "RFC 9110 5.5: a recipient of CR, LF or NUL in a field value MUST "
                                     "reject the message or replace them with SP",
    "NUL in header field value": "RFC 9110 5.5: a recipient of CR, LF or NUL in a field value MUST "
                                 "reject the message or replace them with SP",
    "field line without a colon": "RFC 9112 5: field-line = field-name \":\" OWS field-value OWS; a line "
                                  "of the header section without one is malformed (RFC 9110 15.5.1: 400)",
    "chunk data longer than its size": "RFC 9112 7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data "
                                       "CRLF: chunk-data is chunk-size octets, then CRLF",
}


def clause_for_refusing(reason: str) -> Optional[str]:
    """Why RFC 9112 / RFC 9110 lets fastsrv refuse with ``reason`` before a
    request is complete; None when nothing does."""
    if reason in EARLIER:
        return EARLIER[reason]
    return DIVERGENCES[reason].clause if reason in DIVERGENCES else None


def oracles_waiting(data: bytes, completed: int) -> List[str]:
    """The oracles that, given ``data``, have completed at most ``completed``
    requests and neither refused it nor anything before: they wait for more."""
    waiting = [name for name, parsed in (("h11", h11_parse(data)), ("httptools", httptools_parse(data)))
               if parsed.error is None and len(parsed.requests) <= completed]
    if completed == 0:
        try:
            if pico_parse_head(data) is None:
                waiting.append("pico")
        except pico.ParseError:
            pass
    return waiting


def _early_id(case: str, data: bytes) -> str:
    reason = outcome(data).reason
    return f"{(clause_for_refusing(reason) or 'NO CLAUSE').split(':')[0]}: {case}"


@pytest.mark.parametrize("data, status", [pytest.param(data, status, id=_early_id(case, data))
                                          for case, data, status in EARLY])
def test_refusing_a_prefix_an_oracle_waits_on_is_sanctioned_by_the_rfc(data, status):
    """fastsrv refuses these prefixes at their last byte; the id names the
    clause, and which oracles still wait is checked against the clause's
    existence, not assumed."""
    result = outcome(data)
    assert result.status == status
    if oracles_waiting(data, 0):
        assert clause_for_refusing(result.reason), f"{result.reason!r} refused early without a clause"


def test_h11_waits_for_the_whole_head_where_fastsrv_refuses_the_first_bad_byte():
    data = b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n"
    assert outcome(data).reason == "conflicting Content-Length values"
    assert oracles_waiting(data, 0) == ["h11", "pico"]       # llhttp refuses the second one too


@SETTINGS
@given(mutated_streams(), st.floats(0, 1))
def test_mutated_prefixes_are_refused_before_an_oracle_only_with_a_clause(data, where):
    prefix = data[:int(len(data) * where)]
    mine = feed_pieces([prefix])
    if mine.status is not None and oracles_waiting(prefix, len(mine.requests)):
        assert clause_for_refusing(mine.reason), f"{mine.reason!r} refused early without a clause"


# ---------------------------------------------------------------------------
# The properties
# ---------------------------------------------------------------------------

def disagreements(data: bytes) -> List[str]:
    """What is wrong with fastsrv's outcome for ``data``, given the oracles."""
    problems = []
    mine = outcome(data)                                # the same in every split
    closing = [i for i, r in enumerate(mine.requests) if not r["keep_alive"]]
    if closing:
        # the connection closes after that request: a server reads nothing more
        mine = Outcome(mine.requests[:closing[0] + 1])
    fast = [_view(r) for r in mine.requests]
    oracles = {"h11": (h11_parse(data), _h11_view), "httptools": (httptools_parse(data), _view)}

    # every request fastsrv accepts, some strict oracle accepts with the same
    # fields; where the oracle that agreed so far stops (it refused an earlier
    # request another oracle took), the oracles start again at that request
    agreed = max(agreed_prefix(mine.requests, parsed.requests, view) for parsed, view in oracles.values())
    while agreed < len(fast) and not any(x.applies(mine.requests[agreed], data) for x in LENIENCIES):
        rest = data[request_start(data, agreed):]
        again = max(agreed_prefix(mine.requests[agreed:], parsed.requests, view)
                    for parsed, view in ((h11_parse(rest), _h11_view), (httptools_parse(rest), _view)))
        if again == 0:
            problems.append(f"fastsrv accepted request #{agreed} {fast[agreed]} which no oracle agrees "
                            f"with: " + "; ".join(f"{name}: {parsed}" for name, (parsed, _) in oracles.items()))
            break
        agreed += again

    # fastsrv waits for more bytes only where no oracle sees a complete request
    if mine.status is None and not closing:
        ahead = [name for name, (parsed, _) in oracles.items() if len(parsed.requests) > len(fast)]
        if ahead:
            problems.append(f"fastsrv waits for more after {len(fast)} requests; {ahead} complete more")

    # every refusal where an oracle goes on is a known, RFC-sanctioned one
    if mine.status is not None and mine.reason not in DIVERGENCES:
        lenient = [name for name, (parsed, _) in oracles.items() if len(parsed.requests) > len(fast)]
        if not fast and _pico_takes_a_head_fastsrv_refuses(data):
            lenient.append("pico")
        if lenient:
            problems.append(f"fastsrv refused ({mine.status} {mine.reason}) what {lenient} accept")
    return problems


def request_start(data: bytes, index: int) -> int:
    """Where fastsrv's request number ``index`` in ``data`` begins: the
    shortest prefix of ``data`` in which fastsrv completes ``index`` requests."""
    low, high = 0, len(data)
    while low < high:
        mid = (low + high) // 2
        if len(feed_pieces([data[:mid]]).requests) >= index:
            high = mid
        else:
            low = mid + 1
    return low


def _pico_takes_a_head_fastsrv_refuses(data: bytes) -> bool:
    try:
        head = pico_parse_head(data)
    except pico.ParseError:
        return False
    return head is not None and feed_pieces([data[:head["consumed"]]]).status is not None


@SETTINGS
@given(request_streams())
def test_valid_requests_agree_with_every_oracle(data):
    mine = outcome(data)
    assert mine.status is None, mine
    assert mine.requests
    theirs = httptools_parse(data)
    assert [_view(r) for r in mine.requests] == [_view(r) for r in theirs.requests] and not theirs.error
    assert [r["keep_alive"] for r in mine.requests] == [r["keep_alive"] for r in theirs.requests]
    h11_requests = h11_parse(data)
    assert [_h11_view(r) for r in mine.requests] == h11_requests.requests and not h11_requests.error
    head = pico_parse_head(data)
    assert {k: head[k] for k in ("method", "target", "version", "headers")} == \
        {k: _view(mine.requests[0])[k] for k in ("method", "target", "version", "headers")}


@SETTINGS
@given(mutated_streams())
def test_mutated_requests_are_accepted_only_as_an_oracle_does(data):
    assert disagreements(data) == []


@SETTINGS
@given(framing_variants())
def test_framing_variants_are_accepted_only_as_an_oracle_does(data):
    assert disagreements(data) == []


def test_each_pipelined_request_is_judged_from_its_own_start():
    """Found by fuzz/fuzz_differential.py: httptools refuses a repeated
    Content-Length, h11 one of 21 digits; fastsrv takes both (RFC 9110 8.6),
    and each request alone is taken by one of them, so pipelined they agree
    with an oracle request by request, not with one oracle throughout."""
    first = _with_head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 5", b"Content-Length: 5",
                       body=b"hello")
    second = _with_head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 000000000000000000005",
                        body=b"hello")
    assert request_start(first + second, 1) == len(first)
    assert h11_parse(first + second).error and httptools_parse(first + second).error
    assert disagreements(first + second) == []


def test_long_content_length_with_a_method_llhttp_does_not_know_is_checked_against_h11():
    """Found by fuzz/fuzz_differential.py: a token method llhttp does not
    know (RFC 9110 9.1: any token) and a 21-digit Content-Length (h11's cap):
    each oracle refuses one of the two; h11 agrees once the value is short."""
    data = _with_head(b"helloPOST / HTTP/1.1", b"Host: a", b"Content-Length: 000000000000000000005",
                      body=b"hello")
    request, = outcome(data).requests
    assert (request["method"], request["body"]) == (b"helloPOST", b"hello")
    assert h11_parse(data).error and httptools_parse(data).error
    assert disagreements(data) == []


def test_trailers_that_both_oracles_refuse_for_framing_are_discarded():
    """Found by fuzz/fuzz_differential.py: Content-Length and two
    Transfer-Encodings in the trailer section make llhttp see CL with TE, and
    h11 two Transfer-Encodings; fastsrv frames the message by its header
    section and discards those trailers (RFC 9112 7.1.2), the leniency named."""
    data = _with_head(*_CHUNKED, body=b"5\r\nhello\r\n0\r\nContent-Length: 5\r\nX-Sum: 1\r\n"
                      b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n")
    request, = outcome(data).requests
    assert (request["body"], request["trailers"]) == (b"hello", [(b"x-sum", b"1")])
    assert h11_parse(data).error and httptools_parse(data).error
    assert disagreements(data) == []


def test_framing_field_in_the_trailers_is_dropped_and_compared_as_served():
    """Found by fuzz/fuzz_differential.py when fastsrv handed trailers over
    as sent: h11 lower-cases a Transfer-Encoding value in the trailer section
    too.  Such a field never reaches the application now (RFC 9110 6.5.1),
    and every oracle's trailers are compared without it."""
    data = _with_head(*_CHUNKED, body=b"5\r\nhello\r\n0\r\nTransfer-Encoding: Chunked\r\nX: y\r\n\r\n")
    request, = outcome(data).requests
    assert request["trailers"] == [(b"x", b"y")]
    assert h11_parse(data).requests[0]["trailers"] == [(b"x", b"y")]
    assert disagreements(data) == []


@pytest.mark.parametrize("data", [pytest.param(d, id=i) for i, d, fields in VALID
                                  if not fields.get("upgrade")])
def test_valid_table_agrees_with_the_oracles(data):
    """The hand-written valid cases pass the same differential check."""
    assert disagreements(data) == []
