"""Request bytes and what fastsrv must make of them, as plain data.

``MALFORMED`` lists requests an HTTP/1.1 server must (or, for the limits,
does) refuse, most of them shapes known from request smuggling: each entry is
``(id, bytes, status)``.  ``VALID`` lists requests it must accept: each entry
is ``(id, bytes, expected_fields)`` where ``expected_fields`` is a subset of
the dict ``fastsrv._parser.RequestParser.feed`` returns for the one request
the bytes hold.

Every entry is one complete message, so a server answers it without waiting;
the limits are the defaults of ``fastsrv._parser.Limits`` (request line 8192
bytes, header section 65536 bytes, 100 fields, body 10 MiB).  The parser
tests feed these tables to the parser; the socket tests send them to a server.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

MAX_REQUEST_LINE = 8192
MAX_HEADER_BYTES = 65536
MAX_HEADER_COUNT = 100
MAX_BODY_BYTES = 10 * 1024 * 1024


def _msg(*lines: str, body: bytes = b"") -> bytes:
    return "".join(line + "\r\n" for line in lines).encode("latin-1") + b"\r\n" + body


def _post(*fields: str, body: bytes = b"") -> bytes:
    """A POST to / with Host, then ``fields``, then ``body``."""
    return _msg("POST / HTTP/1.1", "Host: example.com", *fields, body=body)


def _chunked(body: bytes) -> bytes:
    """A chunked POST whose body bytes (chunk lines, trailers) are ``body``."""
    return _post("Transfer-Encoding: chunked", body=body)


def _get(*fields: str, line: str = "GET / HTTP/1.1") -> bytes:
    return _msg(line, *fields)


_LONG_TARGET = "/" + "a" * (MAX_REQUEST_LINE - len("GET / HTTP/1.1") + 1)
_FILLER = "X-Filler: " + "v" * 1000


MALFORMED: List[Tuple[str, bytes, int]] = [
    # --- Content-Length and Transfer-Encoding together, or disagreeing ---
    ("CL.TE", _post("Content-Length: 6", "Transfer-Encoding: chunked", body=b"0\r\n\r\nG"), 400),
    ("TE.CL", _post("Transfer-Encoding: chunked", "Content-Length: 4",
                    body=b"5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n"), 400),
    ("CL-duplicate-differing", _post("Content-Length: 5", "Content-Length: 6", body=b"hello!"), 400),
    ("CL-list-differing", _post("Content-Length: 5, 6", body=b"hello!"), 400),
    ("CL-list-identical", _post("Content-Length: 5, 5", body=b"hello"), 400),
    ("CL-plus-sign", _post("Content-Length: +5", body=b"hello"), 400),
    ("CL-two-numbers", _post("Content-Length: 5 5", body=b"hello"), 400),
    ("CL-hex", _post("Content-Length: 0x5", body=b"hello"), 400),
    ("CL-negative", _post("Content-Length: -1"), 400),
    ("CL-empty", _post("Content-Length: ", body=b"hello"), 400),
    ("CL-trailing-comma", _post("Content-Length: 5,", body=b"hello"), 400),
    ("CL-decimal-point", _post("Content-Length: 5.0", body=b"hello"), 400),
    ("CL-space-before-colon", _post("Content-Length : 5", body=b"hello"), 400),
    ("CL-overflow", _post("Content-Length: 99999999999999999999", body=b"hello"), 400),
    ("CL-over-body-limit", _post(f"Content-Length: {MAX_BODY_BYTES + 1}"), 413),
    # --- Transfer-Encoding ---
    ("TE-xchunked", _post("Transfer-Encoding: xchunked", body=b"0\r\n\r\n"), 400),
    ("TE-chunked-then-identity", _post("Transfer-Encoding: chunked, identity", body=b"0\r\n\r\n"), 400),
    ("TE-chunked-twice", _post("Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n"), 400),
    ("TE-chunked-twice-two-lines", _post("Transfer-Encoding: chunked", "Transfer-Encoding: chunked",
                                         body=b"0\r\n\r\n"), 400),
    ("TE-identity", _post("Transfer-Encoding: identity", body=b"0\r\n\r\n"), 400),
    ("TE-empty", _post("Transfer-Encoding: ", body=b"0\r\n\r\n"), 400),
    ("TE-chunked-with-parameter", _post("Transfer-Encoding: chunked;q=1", body=b"0\r\n\r\n"), 400),
    ("TE-space-before-colon", _post("Transfer-Encoding : chunked", body=b"0\r\n\r\n"), 400),
    ("TE-vertical-tab", _post("Transfer-Encoding: \x0bchunked", body=b"0\r\n\r\n"), 400),
    ("TE-gzip-then-chunked", _post("Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"), 501),
    ("TE-in-HTTP/1.0", _msg("POST / HTTP/1.0", "Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400),
    # --- chunk lines ---
    ("chunk-size-0x-prefix", _chunked(b"0x10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n"), 400),
    ("chunk-size-plus-sign", _chunked(b"+10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n"), 400),
    ("chunk-size-underscore", _chunked(b"1_0\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n"), 400),
    ("chunk-size-leading-space", _chunked(b" 10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n"), 400),
    ("chunk-size-trailing-space", _chunked(b"10 \r\n" + b"a" * 16 + b"\r\n0\r\n\r\n"), 400),
    ("chunk-size-negative", _chunked(b"-1\r\na\r\n0\r\n\r\n"), 400),
    ("chunk-size-empty", _chunked(b"\r\na\r\n0\r\n\r\n"), 400),
    ("chunk-size-overflow", _chunked(b"10000000000000000\r\na\r\n0\r\n\r\n"), 400),
    ("chunk-size-over-body-limit", _chunked(b"%x\r\n" % (MAX_BODY_BYTES + 1)), 413),
    ("chunk-line-bare-CR", _chunked(b"3\rabc\r\n0\r\n\r\n"), 400),
    ("chunk-line-bare-LF", _chunked(b"3\nabc\r\n0\r\n\r\n"), 400),
    ("chunk-extension-bare-CR", _chunked(b"3;a\rb\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk-extension-bare-LF", _chunked(b"3;a\nabc\r\n0\r\n\r\n"), 400),
    ("chunk-extension-without-name", _chunked(b"2;\r\nab\r\n0\r\n\r\n"), 400),
    ("chunk-extension-name-not-token", _chunked(b"2;a(b\r\nab\r\n0\r\n\r\n"), 400),
    ("chunk-extension-without-value", _chunked(b"2;a=\r\nab\r\n0\r\n\r\n"), 400),
    ("chunk-extension-value-with-space", _chunked(b"2;a=b c\r\nab\r\n0\r\n\r\n"), 400),
    ("chunk-extension-unterminated-quote", _chunked(b'2;a="b\r\nab\r\n0\r\n\r\n'), 400),
    ("chunk-extension-whitespace-before-CRLF", _chunked(b"2;a=b \r\nab\r\n0\r\n\r\n"), 400),
    ("chunk-extension-empty-between-semicolons", _chunked(b"2;a;;b\r\nab\r\n0\r\n\r\n"), 400),
    ("chunk-data-longer-than-size", _chunked(b"3\r\nabcd\r\n0\r\n\r\n"), 400),
    ("chunk-data-bare-LF", _chunked(b"3\r\nabc\n0\r\n\r\n"), 400),
    ("last-chunk-bare-LF", _chunked(b"0\n\r\n"), 400),
    ("trailer-bare-CR", _chunked(b"0\r\nX: a\rb\r\n\r\n"), 400),
    ("trailer-bare-LF", _chunked(b"0\r\nX: a\n\r\n"), 400),
    ("trailer-end-bare-CR", _chunked(b"0\r\n\r\r\n\r\n"), 400),
    ("trailer-obs-fold", _chunked(b"0\r\nX: a\r\n b\r\n\r\n"), 400),
    ("trailer-space-before-colon", _chunked(b"0\r\nX : a\r\n\r\n"), 400),
    # --- field lines ---
    ("value-bare-CR", _get("Host: example.com", "X: a\rb"), 400),
    ("value-bare-LF", _get("Host: example.com", "X: a\nb"), 400),
    ("value-NUL", _get("Host: example.com", "X: a\x00b"), 400),
    ("value-control-char", _get("Host: example.com", "X: a\x01b"), 400),
    ("value-DEL", _get("Host: example.com", "X: a\x7fb"), 400),
    ("obs-fold", _get("Host: example.com", "X: a", " b"), 400),
    ("obs-fold-tab", _get("Host: example.com", "X: a", "\tb"), 400),
    ("whitespace-before-first-field", _get(" Host: example.com"), 400),
    ("space-before-colon", _get("Host : example.com"), 400),
    ("tab-before-colon", _get("Host\t: example.com"), 400),
    ("field-name-empty", _get("Host: example.com", ": b"), 400),
    ("field-name-non-token", _get("Host: example.com", "X(a): b"), 400),
    ("field-name-NUL", _get("Host: example.com", "X\x00: b"), 400),
    ("field-line-without-colon", _get("Host: example.com", "X-No-Colon"), 400),
    ("head-bare-LF", b"GET / HTTP/1.1\nHost: example.com\n\n", 400),
    ("head-bare-LF-in-field", b"GET / HTTP/1.1\r\nHost: example.com\nX: y\r\n\r\n", 400),
    ("head-end-bare-CR", b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\r\n\r\n", 400),
    ("head-line-starting-bare-CR", b"GET / HTTP/1.0\r\n\rContent-Length: 5\r\n\r\nhello", 400),
    ("request-line-bare-CR", b"GET / HTTP/1.0\rX\r\nContent-Length: 5\r\n\r\nhello", 400),
    # --- Host ---
    ("Host-missing", _get(), 400),
    ("Host-twice", _get("Host: a.example", "Host: b.example"), 400),
    ("Host-twice-HTTP/1.0", _get("Host: a.example", "Host: b.example", line="GET / HTTP/1.0"), 400),
    ("Host-with-space", _get("Host: exa mple.com"), 400),
    ("Host-with-path", _get("Host: example.com/evil"), 400),
    ("Host-with-at-sign", _get("Host: user@example.com"), 400),
    ("Host-empty-origin-form", _get("Host:"), 400),
    ("Host-empty-asterisk-form", _get("Host:", line="OPTIONS * HTTP/1.1"), 400),
    # --- request line ---
    ("method-empty", _get("Host: example.com", line=" / HTTP/1.1"), 400),
    ("method-non-token", _get("Host: example.com", line="G(T / HTTP/1.1"), 400),
    ("method-NUL", _get("Host: example.com", line="G\x00T / HTTP/1.1"), 400),
    ("two-spaces-after-method", _get("Host: example.com", line="GET  / HTTP/1.1"), 400),
    ("tab-separators", _get("Host: example.com", line="GET\t/\tHTTP/1.1"), 400),
    ("space-in-target", _get("Host: example.com", line="GET /a b HTTP/1.1"), 400),
    ("target-NUL", _get("Host: example.com", line="GET /a\x00b HTTP/1.1"), 400),
    ("target-non-ASCII", _get("Host: example.com", line="GET /\xe9 HTTP/1.1"), 400),
    ("target-relative", _get("Host: example.com", line="GET a/b HTTP/1.1"), 400),
    ("target-fragment", _get("Host: example.com", line="GET /a#b HTTP/1.1"), 400),
    ("target-absolute-fragment", _get("Host: example.com", line="GET http://example.com/#b HTTP/1.1"), 400),
    ("target-absolute-empty-host", _get("Host: example.com", line="GET http:///a HTTP/1.1"), 400),
    ("target-absolute-userinfo", _get("Host: example.com", line="GET http://u@example.com/ HTTP/1.1"), 400),
    ("target-asterisk-with-GET", _get("Host: example.com", line="GET * HTTP/1.1"), 400),
    ("target-absolute-non-http-scheme",
     _get("Host: example.com", line="GET ftp://example.com/ HTTP/1.1"), 400),
    ("method-CONNECT", _get("Host: example.com:443", line="CONNECT example.com:443 HTTP/1.1"), 501),
    ("method-longer-than-the-request-line", _get("Host: example.com", line="X" * (MAX_REQUEST_LINE + 1) + " / HTTP/1.1"),
     501),
    ("version-lowercase", _get("Host: example.com", line="GET / http/1.1"), 400),
    ("version-HTTP/2.0", _get("Host: example.com", line="GET / HTTP/2.0"), 505),
    ("version-HTTP/0.9", _get("Host: example.com", line="GET / HTTP/0.9"), 505),
    ("HTTP/0.9-simple-request", b"GET /\r\n\r\n", 400),
    ("version-missing", _get("Host: example.com", line="GET / "), 400),
    ("version-two-digit-minor", _get("Host: example.com", line="GET / HTTP/1.10"), 400),
    ("version-no-minor", _get("Host: example.com", line="GET / HTTP/1"), 400),
    ("version-trailing-space", _get("Host: example.com", line="GET / HTTP/1.1 "), 400),
    ("request-line-empty", b"\r\n" * 9 + _get("Host: example.com"), 400),
    # --- limits ---
    ("request-line-too-long", _get("Host: example.com", line=f"GET {_LONG_TARGET} HTTP/1.1"), 414),
    ("header-section-too-large", _get("Host: example.com", *[_FILLER] * (MAX_HEADER_BYTES // 1000)), 431),
    ("too-many-header-fields",
     _get("Host: example.com", *[f"X-{i}: v" for i in range(MAX_HEADER_COUNT)]), 431),
    ("Expect-unknown", _get("Host: example.com", "Expect: 200-ok"), 417),
]


VALID: List[Tuple[str, bytes, Dict[str, Any]]] = [
    ("GET-origin-form", _get("Host: example.com", line="GET /a/b?c=d&e HTTP/1.1"),
     dict(method=b"GET", target=b"/a/b?c=d&e", version="1.1", headers=[(b"Host", b"example.com")],
          body=b"", keep_alive=True)),
    ("POST-content-length", _post("Content-Length: 5", body=b"hello"),
     dict(method=b"POST", body=b"hello")),
    ("CL-zero", _post("Content-Length: 0"), dict(body=b"")),
    ("CL-repeated-identical", _post("Content-Length: 5", "Content-Length: 5", body=b"hello"),
     dict(body=b"hello")),
    ("CL-leading-zeros", _post("Content-Length: 000000000000000000005", body=b"hello"),
     dict(body=b"hello")),
    ("chunked", _chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
     dict(body=b"hello world", trailers=[])),
    ("chunked-uppercase-hex", _chunked(b"A\r\n0123456789\r\n0\r\n\r\n"), dict(body=b"0123456789")),
    ("chunk-size-leading-zeros", _chunked(b"00000000000000000005\r\nhello\r\n0000\r\n\r\n"),
     dict(body=b"hello")),
    ("chunk-extensions", _chunked(b'5;name=value;q="a \\"b\\""\r\nhello\r\n0 ;last\r\n\r\n'),
     dict(body=b"hello")),
    ("chunk-extensions-with-BWS", _chunked(b'5 ; a = b ;\tc\t=\t"d" ; e\r\nhello\r\n0\r\n\r\n'),
     dict(body=b"hello")),
    ("chunked-trailers", _chunked(b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Empty:\r\n\r\n"),
     dict(body=b"hello", trailers=[(b"x-checksum", b"abc"), (b"x-empty", b"")])),
    ("trailers-that-must-not-be-trailers-are-dropped",
     _chunked(b"5\r\nhello\r\n0\r\nContent-Length: 5\r\nX-Sum: 1\r\nHost: evil\r\n"
              b"Transfer-Encoding: chunked\r\nContent-Type: text/evil\r\nX_Sum: 2\r\n\r\n"),
     dict(body=b"hello", trailers=[(b"x-sum", b"1")])),
    ("TE-case-insensitive", _post("Transfer-Encoding: Chunked", body=b"0\r\n\r\n"), dict(body=b"")),
    ("TE-empty-list-elements", _post("Transfer-Encoding: , chunked ,", body=b"1\r\nx\r\n0\r\n\r\n"),
     dict(body=b"x")),
    ("HTTP/1.0-no-Host", _msg("GET / HTTP/1.0"), dict(version="1.0", keep_alive=False)),
    ("HTTP/1.0-keep-alive", _msg("GET / HTTP/1.0", "Connection: Keep-Alive"),
     dict(version="1.0", keep_alive=True)),
    ("HTTP/1.1-connection-close", _get("Host: example.com", "Connection: foo, close"),
     dict(keep_alive=False)),
    ("expect-100-continue", _post("Expect: 100-Continue", "Content-Length: 2", body=b"hi"),
     dict(expect_continue=True, body=b"hi")),
    ("expect-empty", _get("Host: example.com", "Expect: "), dict(expect_continue=False)),
    ("HTTP/1.0-expect-ignored", _msg("POST / HTTP/1.0", "Expect: 100-continue", "Content-Length: 2",
                                     body=b"hi"), dict(expect_continue=False, body=b"hi")),
    ("upgrade-websocket", _get("Host: example.com", "Connection: keep-alive, Upgrade",
                               "Upgrade: websocket"), dict(upgrade=True)),
    ("upgrade-header-without-connection-token", _get("Host: example.com", "Upgrade: websocket"),
     dict(upgrade=False)),
    ("HTTP/1.0-upgrade-ignored", _msg("GET / HTTP/1.0", "Connection: upgrade", "Upgrade: websocket"),
     dict(upgrade=False)),
    ("absolute-form", _get("Host: example.com", line="GET http://example.com/x?y HTTP/1.1"),
     dict(target=b"http://example.com/x?y")),
    ("absolute-form-authority-is-the-host", _get("Host: other.example", line="GET http://a.example:8080?q HTTP/1.1"),
     dict(target=b"http://a.example:8080?q", headers=[(b"Host", b"a.example:8080")])),
    ("absolute-form-empty-Host", _get("Host:", line="GET https://a.example/ HTTP/1.1"),
     dict(headers=[(b"Host", b"a.example")])),
    ("absolute-form-https", _get("Host: example.com", line="GET HTTPS://example.com HTTP/1.1"),
     dict(target=b"HTTPS://example.com")),
    ("asterisk-form-OPTIONS", _get("Host: example.com", line="OPTIONS * HTTP/1.1"),
     dict(method=b"OPTIONS", target=b"*")),
    ("leading-empty-lines", b"\r\n\r\n" + _get("Host: example.com"), dict(method=b"GET")),
    ("method-any-token", _get("Host: example.com", line="M-SEARCH! / HTTP/1.1"),
     dict(method=b"M-SEARCH!")),
    ("field-name-token-chars", _get("Host: example.com", "!#$%&'*+-.^`|~09aZ: v"),
     dict(headers=[(b"Host", b"example.com"), (b"!#$%&'*+-.^`|~09aZ", b"v")])),
    ("field-names-with-underscore-are-dropped",
     _post("Content_Length: 5", "Transfer_Encoding: chunked", "X_Y: z", "Content-Length: 2", body=b"hi"),
     dict(headers=[(b"Host", b"example.com"), (b"Content-Length", b"2")], body=b"hi")),
    ("field-value-OWS-trimmed", _get("Host: example.com", "X: \t a \t b \t "),
     dict(headers=[(b"Host", b"example.com"), (b"X", b"a \t b")])),
    ("field-value-empty", _get("Host: example.com", "X:"),
     dict(headers=[(b"Host", b"example.com"), (b"X", b"")])),
    ("field-value-obs-text", _get("Host: example.com", "X: caf\xe9"),
     dict(headers=[(b"Host", b"example.com"), (b"X", b"caf\xe9")])),
    ("Host-IPv6-with-port", _get("Host: [::1]:8080"), dict(headers=[(b"Host", b"[::1]:8080")])),
    ("request-line-at-limit", _get("Host: example.com", line=f"GET {_LONG_TARGET[:-1]} HTTP/1.1"),
     dict(target=_LONG_TARGET[:-1].encode())),
    ("header-fields-at-count-limit",
     _get("Host: example.com", *[f"X-{i}: v" for i in range(MAX_HEADER_COUNT - 1)]), dict(method=b"GET")),
]


# Requests refused at their first invalid byte: each entry is ``(id, prefix,
# status)`` where ``prefix`` ends with the byte that makes a valid request
# impossible (for a field line's meaning, or the version, the LF ending its
# line).  The prefix without that byte can still begin a valid request, so a
# server waits for more; with it, it answers at once, without waiting for the
# end of the head (or the header timeout).
_LINE = "GET / HTTP/1.1\r\n"
_CHUNKED_HEAD = "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


def _early(request: str) -> bytes:
    return request.encode("latin-1")


_OVERSIZE_HEAD = _LINE + "Host: a\r\nX: "

EARLY: List[Tuple[str, bytes, int]] = [
    # --- the request line (RFC 9112 3) ---
    ("method-non-token", _early("G("), 400),
    ("method-NUL", _early("G\x00"), 400),
    ("method-longer-than-the-request-line", _early("X" * (MAX_REQUEST_LINE + 1)), 501),
    ("method-CONNECT", _early("CONNECT "), 501),
    ("request-line-starting-with-bare-CR", _early("\rG"), 400),
    ("bare-LF-before-the-request-line", _early("\n"), 400),
    ("ninth-empty-line", _early("\r\n" * 9), 400),
    ("target-empty", _early("GET  "), 400),
    ("target-NUL", _early("GET /a\x00"), 400),
    ("target-non-ASCII", _early("GET /\xe9"), 400),
    ("target-fragment", _early("GET /a#"), 400),
    ("target-relative", _early("GET a"), 400),
    ("target-asterisk-with-GET", _early("GET *"), 400),
    ("target-asterisk-then-more", _early("OPTIONS *x"), 400),
    ("target-absolute-non-http-scheme", _early("GET f"), 400),
    ("target-absolute-empty-host", _early("GET http:///"), 400),
    ("target-absolute-userinfo", _early("GET http://u@"), 400),
    ("request-line-too-long", _early("GET /" + "a" * (MAX_REQUEST_LINE - 4)), 414),
    ("HTTP/0.9-simple-request", _early("GET /\r\n"), 400),
    ("version-lowercase", _early("GET / h"), 400),
    ("version-two-digit-minor", _early("GET / HTTP/1.10"), 400),
    ("version-trailing-space", _early("GET / HTTP/1.1 "), 400),
    ("version-HTTP/5.6", _early("GET / HTTP/5.6\r\n"), 505),
    ("version-HTTP/2.0", _early("GET / HTTP/2.0\r\n"), 505),
    ("request-line-bare-CR", _early("GET / HTTP/1.1\rX"), 400),
    ("request-line-bare-LF", _early("GET / HTTP/1.1\n"), 400),
    # --- field lines (RFC 9112 5, RFC 9110 5) ---
    ("obs-fold-first-field", _early(_LINE + " "), 400),
    ("obs-fold-continuation", _early(_LINE + "Host: a\r\nX: b\r\n\t"), 400),
    ("field-name-non-token", _early(_LINE + "X("), 400),
    ("field-name-empty", _early(_LINE + ":"), 400),
    ("field-line-without-colon", _early(_LINE + "X-No-Colon\r\n"), 400),
    ("space-before-colon", _early(_LINE + "Host "), 400),
    ("value-NUL", _early(_LINE + "X: a\x00"), 400),
    ("value-control-char", _early(_LINE + "X: a\x01"), 400),
    ("value-bare-CR", _early(_LINE + "X: a\rb"), 400),
    ("value-bare-LF", _early(_LINE + "X: a\n"), 400),
    ("head-end-bare-CR", _early(_LINE + "Host: a\r\n\rX"), 400),
    ("header-section-too-large", _early(_OVERSIZE_HEAD + "v" * (MAX_HEADER_BYTES + 1 - len(_OVERSIZE_HEAD))), 431),
    ("too-many-header-fields", _early(_LINE + "Host: a\r\n" + "X: v\r\n" * MAX_HEADER_COUNT), 431),
    # --- a complete field line that is already invalid ---
    ("CL-second-differing", _early(_LINE + "Content-Length: 5\r\nContent-Length: 6\r\n"), 400),
    ("CL-overflow", _early(_LINE + "Content-Length: 99999999999999999999\r\n"), 400),
    ("CL-list-identical", _early(_LINE + "Content-Length: 5, 5\r\n"), 400),
    ("CL-not-a-number", _early(_LINE + "Content-Length: 5x\r\n"), 400),
    ("CL-then-TE", _early(_LINE + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 400),
    ("TE-then-CL", _early(_LINE + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), 400),
    ("TE-in-HTTP/1.0", _early("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n"), 400),
    ("TE-chunked-twice", _early(_LINE + "Transfer-Encoding: chunked, chunked\r\n"), 400),
    ("TE-not-a-coding", _early(_LINE + "Transfer-Encoding: a@b\r\n"), 400),
    ("Host-twice", _early(_LINE + "Host: a\r\nHost: a\r\n"), 400),
    ("Host-empty-origin-form", _early(_LINE + "Host:\r\n"), 400),
    ("Host-invalid", _early(_LINE + "Host: a b\r\n"), 400),
    ("Expect-unknown", _early(_LINE + "Host: a\r\nExpect: 200-ok\r\n"), 417),
    # --- chunked framing (RFC 9112 7.1) ---
    ("chunk-size-not-hex", _early(_CHUNKED_HEAD + "g"), 400),
    ("chunk-size-overflow", _early(_CHUNKED_HEAD + "1" * 17), 400),
    ("chunk-extension-without-name", _early(_CHUNKED_HEAD + "2;\r"), 400),
    ("chunk-extension-name-not-token", _early(_CHUNKED_HEAD + "2;a("), 400),
    ("chunk-extension-without-value", _early(_CHUNKED_HEAD + "2;a=\r"), 400),
    ("chunk-extension-value-with-space", _early(_CHUNKED_HEAD + "2;a=b c"), 400),
    ("chunk-extension-whitespace-before-CRLF", _early(_CHUNKED_HEAD + "2;a=b \r"), 400),
    ("chunk-line-bare-CR", _early(_CHUNKED_HEAD + "1\rx"), 400),
    ("chunk-data-longer-than-size", _early(_CHUNKED_HEAD + "1\r\nab"), 400),
]
