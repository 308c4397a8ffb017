"""The framing rules of fastsrv's request parser, one rule per test.

Every assertion goes through ``parser_harness``: the bytes are fed whole,
split in two at every offset and one byte at a time, and must give the same
requests (or the same refusal) each way.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsrv._parser import Limits, RequestParser
from parser_harness import http, outcome, parse, parse_one, rejection
from parser_strategies import mutated_streams, request_streams

SMALL = Limits(max_request_line=32, max_header_bytes=128, max_header_count=4, max_body_bytes=16)

GET = b"GET / HTTP/1.1"
POST = b"POST / HTTP/1.1"
HOST = b"Host: a"


def post(*fields, body=b""):
    """An HTTP/1.1 POST to / with a Host field, then ``fields``."""
    return http(POST, HOST, *fields, body=body)


def chunked(body):
    """A chunked POST whose body bytes (chunk lines, trailers) are ``body``."""
    return post(b"Transfer-Encoding: chunked", body=body)


def get(*fields, version=b"1.1"):
    return http(b"GET / HTTP/" + version, *fields)


def cases(*pairs):
    """pytest params from (id, value...) tuples."""
    return [pytest.param(*rest, id=name) for name, *rest in pairs]


# --- Content-Length (RFC 9112 6.2, RFC 9110 8.6) ---

def test_content_length_frames_the_body():
    requests = parse(post(b"Content-Length: 5", body=b"helloGET / HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert [(r["method"], r["body"]) for r in requests] == [(b"POST", b"hello"), (b"GET", b"")]


def test_content_length_zero_and_absent_mean_no_body():
    assert parse_one(post(b"Content-Length: 0"))["body"] == b""
    assert parse_one(post())["body"] == b""


@pytest.mark.parametrize("value", [b"+5", b"-5", b"5 5", b"0x5", b"5.0", b"", b"5,", b",5", b"five"])
def test_content_length_is_digits_only(value):
    assert rejection(post(b"Content-Length: " + value, body=b"hello")) == 400


def test_content_length_leading_zeros_are_digits():
    """Regression: more than 18 digits was 413 even when the value was small."""
    assert parse_one(post(b"Content-Length: " + b"0" * 30 + b"5", body=b"hello"))["body"] == b"hello"


def test_content_length_too_large_for_int64_is_400():
    """Not a number the server can hold (RFC 9110 8.6: a recipient MUST
    prevent integer overflow), so not a valid Content-Length; 413 is for a
    well-formed length above the body limit."""
    assert rejection(post(b"Content-Length: 99999999999999999999")) == 400
    assert rejection(post(b"Content-Length: 9223372036854775808")) == 400
    assert rejection(post(b"Content-Length: 9223372036854775807")) == 413


def test_identical_content_length_lines_are_one_value():
    assert parse_one(post(b"Content-Length: 5", b"Content-Length: 5", body=b"hello"))["body"] == b"hello"


@pytest.mark.parametrize("fields", cases(
    ("identical", [b"Content-Length: 5, 5"]),
    ("identical-without-space", [b"Content-Length: 5,5 , 5"]),
    ("list-and-line", [b"Content-Length: 5, 5", b"Content-Length: 5"]),
    ("trailing-comma", [b"Content-Length: 5,"]),
))
def test_content_length_list_is_400_even_of_identical_values(fields):
    """RFC 9110 8.6 lets a recipient reject it; nginx does: an intermediary
    that reads the list otherwise (its first element, or as invalid and so
    no body) would frame the message differently."""
    assert rejection(post(*fields, body=b"hello")) == 400


@pytest.mark.parametrize("fields", cases(
    ("repeated-lines", [b"Content-Length: 5", b"Content-Length: 6"]),
    ("comma-list", [b"Content-Length: 5, 6"]),
    ("same-number-other-digits", [b"Content-Length: 5", b"Content-Length: 05"]),
    ("same-number-other-digits-list", [b"Content-Length: 05, 5"]),
))
def test_differing_content_lengths_are_400(fields):
    """Regression: "05" and "5" were merged as one value; RFC 9110 8.6 merges
    identical values only, as h11 does (httptools refuses any repetition)."""
    assert rejection(post(*fields, body=b"hello!")) == 400


# --- chunked (RFC 9112 7.1) ---

def test_chunked_body_is_decoded():
    request = parse_one(chunked(b"5\r\nhello\r\n1\r\n \r\na\r\n0123456789\r\n0\r\n\r\n"))
    assert request["body"] == b"hello 0123456789"


def test_chunk_size_is_hex_of_any_case_with_leading_zeros():
    assert parse_one(chunked(b"0000000000000000000a\r\n0123456789\r\n0\r\n\r\n"))["body"] == b"0123456789"
    assert parse_one(chunked(b"A\r\n0123456789\r\n0\r\n\r\n"))["body"] == b"0123456789"


def test_chunk_extensions_are_accepted_and_ignored():
    body = b'5;a=b ; c="d;e\\"" ;f\r\nhello\r\n0\t;g=h\r\n\r\n'
    assert parse_one(chunked(body))["body"] == b"hello"


@pytest.mark.parametrize("extension", [b";a", b";a=b", b"; a = b", b";\ta\t=\t\"b c\"", b';a="\\\""', b";a;b=c;d",
                                       b';a="" ;b', b";!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~", b';a="\xff\\\xff"'])
def test_chunk_extension_grammar_is_accepted(extension):
    """RFC 9112 7.1.1: *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ),
    ext-val = token / quoted-string."""
    assert parse_one(chunked(b"1" + extension + b"\r\nx\r\n0\r\n\r\n"))["body"] == b"x"


@pytest.mark.parametrize("extension", cases(
    ("no-name", b";"),
    ("no-name-before-value", b";=b"),
    ("empty-between-semicolons", b";a;;b"),
    ("name-not-a-token", b";a(b"),
    ("quoted-name", b';"a"'),
    ("no-value", b";a="),
    ("value-not-a-token", b";a=b@c"),
    ("value-two-tokens", b";a=b c"),
    ("unterminated-quote", b';a="b'),
    ("text-after-quote", b';a="b"c'),
    ("control-in-quote", b';a="b\x01"'),
    ("whitespace-after-name-at-end", b";a "),
    ("whitespace-after-value-at-end", b";a=b\t"),
    ("whitespace-after-quote-at-end", b';a="b" '),
    ("two-equals", b";a==b"),
))
def test_chunk_extension_outside_the_grammar_is_400(extension):
    """Regression: ``2;`` (no name after the semicolon) and any other byte
    that is not text were accepted as an extension."""
    assert rejection(chunked(b"1" + extension + b"\r\nx\r\n0\r\n\r\n")) == 400


def test_chunk_extension_length_is_bounded():
    assert rejection(chunked(b"1;" + b"x" * 5000 + b"\r\na\r\n0\r\n\r\n")) == 400


def test_trailers_are_returned_with_lowercase_names():
    request = parse_one(chunked(b"1\r\nx\r\n0\r\nX-Sum: ab c \r\nX-Empty:\r\n\r\n"))
    assert request["trailers"] == [(b"x-sum", b"ab c"), (b"x-empty", b"")]
    assert request["body"] == b"x"


@pytest.mark.parametrize("name", [b"Content-Length", b"Transfer-Encoding", b"Host", b"Authorization",
                                  b"Content-Type", b"Content-Encoding", b"Connection", b"Upgrade", b"Trailer",
                                  b"TE", b"Expect", b"Range", b"Cache-Control", b"Cookie", b"If-Match"])
def test_fields_that_must_not_be_trailers_are_dropped(name):
    """RFC 9110 6.5.1: framing, routing, request modifiers, authentication
    and content format cannot come after the content; such a trailer never
    reaches the application, and the rest of the request still does."""
    request = parse_one(chunked(b"1\r\nx\r\n0\r\nX-Before: 1\r\n" + name + b": 5\r\nX-After: 2\r\n\r\n"))
    assert request["trailers"] == [(b"x-before", b"1"), (b"x-after", b"2")]
    assert request["body"] == b"x"


@pytest.mark.parametrize("size_line", [b"0x5", b"+5", b"-5", b"5_0", b" 5", b"5 ", b"", b"g", b";a"])
def test_chunk_size_is_hex_digits_only(size_line):
    assert rejection(chunked(size_line + b"\r\nhello\r\n0\r\n\r\n")) == 400


def test_chunk_size_overflow_is_400():
    """A chunk size that does not fit in 64 bits is not a number the server
    can hold (RFC 9112 7.1: a recipient MUST prevent integer overflow)."""
    assert rejection(chunked(b"F" * 16 + b"\r\n")) == 400
    assert rejection(chunked(b"0" * 20 + b"7" + b"F" * 15 + b"\r\n")) == 413    # fits: over the body limit


@pytest.mark.parametrize("body", cases(
    ("data-longer-than-size", b"3\r\nabcd\r\n0\r\n\r\n"),
    ("data-without-CRLF", b"3\r\nabc0\r\n\r\n"),
    ("data-bare-LF", b"3\r\nabc\n0\r\n\r\n"),
    ("data-bare-CR", b"3\r\nabc\r0\r\n\r\n"),
))
def test_chunk_data_ends_with_crlf(body):
    assert rejection(chunked(body)) == 400


@pytest.mark.parametrize("trailers", cases(
    ("obs-fold", b"X: a\r\n b\r\n"),
    ("space-before-colon", b"X : a\r\n"),
    ("no-colon", b"X\r\n"),
    ("NUL", b"X: a\x00\r\n"),
))
def test_trailer_fields_follow_field_syntax(trailers):
    assert rejection(chunked(b"0\r\n" + trailers + b"\r\n")) == 400


# --- Transfer-Encoding (RFC 9112 6.1, 6.3) ---

@pytest.mark.parametrize("fields", cases(
    ("CL-then-TE", [b"Content-Length: 5", b"Transfer-Encoding: chunked"]),
    ("TE-then-CL", [b"Transfer-Encoding: chunked", b"Content-Length: 5"]),
    ("CL-zero", [b"Content-Length: 0", b"Transfer-Encoding: chunked"]),
))
def test_content_length_with_transfer_encoding_is_400(fields):
    assert rejection(post(*fields, body=b"0\r\n\r\n")) == 400


def test_transfer_encoding_chunked_is_case_insensitive_with_empty_list_elements():
    for value in (b"CHUNKED", b", chunked,", b"chunked , "):
        assert parse_one(post(b"Transfer-Encoding: " + value, body=b"1\r\nx\r\n0\r\n\r\n"))["body"] == b"x"


@pytest.mark.parametrize("fields", cases(
    ("xchunked", [b"Transfer-Encoding: xchunked"]),
    ("chunked-then-identity", [b"Transfer-Encoding: chunked, identity"]),
    ("chunked-then-gzip-lines", [b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip"]),
    ("identity", [b"Transfer-Encoding: identity"]),
    ("empty", [b"Transfer-Encoding:"]),
    ("chunked-twice", [b"Transfer-Encoding: chunked, chunked"]),
    ("chunked-with-parameter", [b"Transfer-Encoding: chunked;x=1"]),
))
def test_transfer_encoding_other_than_final_chunked_is_400(fields):
    assert rejection(post(*fields, body=b"0\r\n\r\n")) == 400


@pytest.mark.parametrize("value", [b"gzip, chunked", b"x-custom;a=1, chunked"])
def test_unknown_coding_before_chunked_is_501(value):
    assert rejection(post(b"Transfer-Encoding: " + value, body=b"0\r\n\r\n")) == 501


def test_transfer_encoding_in_http10_is_400():
    assert rejection(http(b"POST / HTTP/1.0", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n")) == 400


# --- persistence (RFC 9112 9.3) ---

@pytest.mark.parametrize("version, connection, keep_alive", cases(
    ("1.1-default", b"1.1", None, True),
    ("1.1-close", b"1.1", b"close", False),
    ("1.1-close-in-list", b"1.1", b"keep-alive, CLOSE", False),
    ("1.1-other-tokens", b"1.1", b"foo, bar", True),
    ("1.0-default", b"1.0", None, False),
    ("1.0-keep-alive", b"1.0", b"Keep-Alive", True),
    ("1.0-keep-alive-in-list", b"1.0", b"foo , keep-alive", True),
    ("1.0-keep-alive-and-close", b"1.0", b"keep-alive, close", False),
))
def test_keep_alive_follows_version_and_connection_tokens(version, connection, keep_alive):
    fields = [HOST] + ([b"Connection: " + connection] if connection else [])
    assert parse_one(get(*fields, version=version))["keep_alive"] is keep_alive


# --- Expect (RFC 9110 10.1.1) ---

def test_expect_100_continue_is_flagged():
    for value in (b"100-continue", b"100-Continue", b"100-continue, "):
        request = parse_one(post(b"Expect: " + value, b"Content-Length: 1", body=b"x"))
        assert request["expect_continue"] is True


def test_no_or_empty_expect_is_not_flagged():
    assert parse_one(post(b"Content-Length: 1", body=b"x"))["expect_continue"] is False
    assert parse_one(post(b"Expect:", b"Content-Length: 1", body=b"x"))["expect_continue"] is False


def test_expect_100_continue_is_ignored_in_http10():
    """RFC 9110 10.1.1: a server MUST ignore 100-continue in an HTTP/1.0 request."""
    request = parse_one(http(b"POST / HTTP/1.0", b"Expect: 100-continue", b"Content-Length: 1", body=b"x"))
    assert request["expect_continue"] is False


@pytest.mark.parametrize("value", [b"200-ok", b"100-continue, foo", b"100-continuex"])
def test_other_expectations_are_417(value):
    assert rejection(post(b"Expect: " + value, b"Content-Length: 1", body=b"x")) == 417


# --- Upgrade (RFC 9110 7.8) ---

@pytest.mark.parametrize("fields, upgrade", cases(
    ("connection-upgrade-and-upgrade", [b"Connection: Upgrade", b"Upgrade: websocket"], True),
    ("upgrade-in-connection-list", [b"Connection: keep-alive , upgrade", b"Upgrade: h2c"], True),
    ("upgrade-field-only", [b"Upgrade: websocket"], False),
    ("connection-token-only", [b"Connection: upgrade"], False),
))
def test_upgrade_needs_connection_token_and_upgrade_field(fields, upgrade):
    assert parse_one(get(HOST, *fields))["upgrade"] is upgrade


def test_upgrade_is_ignored_in_http10():
    """RFC 9110 7.8: a server MUST ignore Upgrade in an HTTP/1.0 request."""
    assert parse_one(get(b"Connection: upgrade", b"Upgrade: websocket", version=b"1.0"))["upgrade"] is False


# --- Host (RFC 9112 3.2) ---

@pytest.mark.parametrize("fields", cases(
    ("missing", []),
    ("twice", [b"Host: a", b"Host: a"]),
    ("twice-differing", [b"Host: a", b"Host: b"]),
))
def test_http11_needs_exactly_one_host(fields):
    assert rejection(get(*fields)) == 400


def test_http10_may_omit_host_but_not_repeat_it():
    assert parse_one(get(version=b"1.0"))["headers"] == []
    assert rejection(get(b"Host: a", b"Host: b", version=b"1.0")) == 400


@pytest.mark.parametrize("value", [b"example.com", b"example.com:8080", b"[::1]:80", b"10.0.0.1",
                                   b"xn--bcher-kva.example", b"a%20b", b"a!$&'()*+,;=b"])
def test_host_accepts_uri_host_and_port(value):
    assert parse_one(get(b"Host: " + value))["headers"] == [(b"Host", value)]


@pytest.mark.parametrize("line", [b"GET / HTTP/1.1", b"GET /a?b HTTP/1.0", b"OPTIONS * HTTP/1.1"])
def test_empty_host_without_an_absolute_form_target_is_400(line):
    """The target URI is then http://<Host>/...; an http URI with an empty
    host is invalid (RFC 9110 4.2.1), and RFC 9112 3.3 lets the server
    reject it."""
    assert rejection(http(line, b"Host:")) == 400
    assert rejection(http(line, b"Host: \t ")) == 400


@pytest.mark.parametrize("target, host", [(b"http://a.example/x", b"a.example"),
                                          (b"https://a.example:8443?q", b"a.example:8443"),
                                          (b"HTTP://[::1]:80/", b"[::1]:80")])
def test_absolute_form_authority_is_the_host_whatever_host_says(target, host):
    """RFC 9112 3.2.2: an origin server MUST ignore the Host field of an
    absolute-form request and use the target's authority; Host must still
    be there (HTTP/1.1) and valid, and may be empty."""
    for sent in (b"Host: other.example", b"Host:"):
        request = parse_one(http(b"GET " + target + b" HTTP/1.1", b"X: 1", sent, b"Y: 2"))
        assert request["headers"] == [(b"X", b"1"), (b"Host", host), (b"Y", b"2")]
        assert request["target"] == target
    assert rejection(http(b"GET " + target + b" HTTP/1.1")) == 400
    assert rejection(http(b"GET " + target + b" HTTP/1.1", b"Host: a b")) == 400


@pytest.mark.parametrize("value", [b"a b", b"a/b", b"user@a", b"a?b", b"a#b", b'a"b', b"a\\b", b"caf\xe9"])
def test_host_with_an_invalid_value_is_400(value):
    assert rejection(get(b"Host: " + value)) == 400


# --- tokens, field syntax, line endings (RFC 9112 2.2, 3, 5) ---

@pytest.mark.parametrize("method", [b"G(T", b"G T", b"G\x00T", b"GET\x7f", b"G\xe9T", b""])
def test_method_is_a_token(method):
    assert rejection(http(method + b" / HTTP/1.1", HOST)) == 400


def test_method_longer_than_the_request_line_limit_is_501_not_414():
    """RFC 9112 3.1: a method longer than any the server implements SHOULD
    be answered 501; 414 is about the target (RFC 9110 15.5.15)."""
    assert rejection(http(b"M" * 33 + b" / HTTP/1.1", HOST), SMALL) == 501
    assert rejection(b"M" * 33, SMALL) == 501                       # refused before its end arrives
    assert rejection(http(b"M" * 28 + b" /" + b"a" * 3 + b" HTTP/1.1", HOST), SMALL) == 414


def test_method_may_be_any_token():
    assert parse_one(http(b"!#$%&'*+-.^_`|~09azAZ / HTTP/1.1", HOST))["method"] == b"!#$%&'*+-.^_`|~09azAZ"


@pytest.mark.parametrize("name", [b"", b"X(a)", b"X/a", b"X\x00", b"X\xe9", b'"X"', b"X{a}", b"X@a"])
def test_field_name_is_a_token(name):
    assert rejection(get(HOST, name + b": v")) == 400


@pytest.mark.parametrize("name", [b"Content_Length", b"Transfer_Encoding", b"X_Forwarded_For", b"_", b"a_"])
def test_field_names_with_an_underscore_are_dropped(name):
    """CGI/WSGI-style code turns "_" and "-" into the same name, so a
    ``Content_Length`` could pass for the framing field; as nginx does by
    default, such fields never reach the application."""
    request = parse_one(post(name + b": 3", b"Content-Length: 2", body=b"hi"))
    assert request["headers"] == [(b"Host", b"a"), (b"Content-Length", b"2")]
    assert request["body"] == b"hi"
    assert parse_one(chunked(b"0\r\n" + name + b": 1\r\nX: 2\r\n\r\n"))["trailers"] == [(b"x", b"2")]


def test_field_names_with_an_underscore_are_kept_when_asked():
    fields = [(b"Host", b"a"), (b"X_Y", b"1"), (b"Content_Length", b"9"), (b"Content-Length", b"2")]
    parser = RequestParser(underscores_in_headers=True)
    request, = parser.feed(post(b"X_Y: 1", b"Content_Length: 9", b"Content-Length: 2", body=b"hi"))
    assert (request["headers"], request["body"]) == (fields, b"hi")
    request, = parser.feed(chunked(b"0\r\nX_Y: 1\r\n\r\n"))
    assert request["trailers"] == [(b"x_y", b"1")]


def test_a_dropped_field_is_logged_at_debug(caplog):
    with caplog.at_level("DEBUG", logger="fastsrv.error"):
        parse_one(get(HOST, b"X_Y: 1"))
        parse_one(chunked(b"0\r\nHost: evil\r\n\r\n"))
    messages = [r.getMessage() for r in caplog.records if r.levelname == "DEBUG"]
    assert any("X_Y" in m and "underscore" in m for m in messages), messages
    assert any("host" in m and "trailer" in m for m in messages), messages


@pytest.mark.parametrize("value", cases(
    ("NUL", b"a\x00b"), ("bare-CR", b"a\rb"), ("bare-LF", b"a\nb"), ("SOH", b"a\x01b"),
    ("VT", b"a\x0bb"), ("DEL", b"a\x7fb"), ("CR-at-end", b"a\r"),
))
def test_field_value_has_no_cr_lf_nul_or_controls(value):
    assert rejection(get(HOST, b"X: " + value)) == 400


def test_field_value_keeps_tabs_and_obs_text_and_drops_surrounding_ows():
    assert parse_one(get(HOST, b"X: \t a\tb \xff \t"))["headers"][1] == (b"X", b"a\tb \xff")


@pytest.mark.parametrize("data", cases(
    ("continuation-line", get(HOST, b"X: a", b" b")),
    ("continuation-line-tab", get(HOST, b"X: a", b"\tb")),
    ("whitespace-before-first-field", get(b" " + HOST)),
))
def test_obs_fold_is_400(data):
    assert rejection(data) == 400


@pytest.mark.parametrize("name", [b"Host ", b"Host\t", b"Content-Length "])
def test_whitespace_before_colon_is_400(name):
    assert rejection(get(name + b": a")) == 400


@pytest.mark.parametrize("data", cases(
    ("request-line", b"GET / HTTP/1.1\nHost: a\r\n\r\n"),
    ("field-line", b"GET / HTTP/1.1\r\nHost: a\n\r\n"),
    ("end-of-head", b"GET / HTTP/1.1\r\nHost: a\r\n\n"),
    ("all-lines", b"GET / HTTP/1.1\nHost: a\n\n"),
    ("before-request-line", b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("chunk-size-line", chunked(b"1\nx\r\n0\r\n\r\n")),
    ("last-chunk", chunked(b"0\n\r\n")),
    ("trailer-line", chunked(b"0\r\nX: a\n\r\n")),
    ("end-of-trailers", chunked(b"0\r\nX: a\r\n\n")),
))
def test_bare_lf_is_400(data):
    assert rejection(data) == 400


@pytest.mark.parametrize("data", cases(
    ("after-version", b"GET / HTTP/1.0\rX\r\nContent-Length: 5\r\n\r\nhello"),
    ("line-starting-with-CR", b"GET / HTTP/1.0\r\n\rContent-Length: 5\r\n\r\nhello"),
    ("before-end-of-head", b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n\r\n"),
    ("in-field-value", get(HOST, b"X: a\rb")),
    ("in-chunk-size-line", chunked(b"1\rx\r\n0\r\n\r\n")),
    ("in-chunk-extension", chunked(b"1;a\rb\r\nx\r\n0\r\n\r\n")),
    ("in-trailer-value", chunked(b"0\r\nX: a\rb\r\n\r\n")),
    ("before-end-of-trailers", chunked(b"0\r\n\r\r\n\r\n")),
))
def test_bare_cr_is_400(data):
    """Regressions: a CR not followed by LF after the version, or heading a
    line, made the parser end the head there and ignore the fields after it;
    one before the end of the trailers was accepted the same way."""
    assert rejection(data) == 400


def test_empty_lines_before_the_request_line_are_ignored():
    """RFC 9112 2.2; regression: a CRLF split between CR and LF was a 400."""
    for prefix in (b"\r\n", b"\r\n" * 8):
        assert parse_one(prefix + get(HOST))["target"] == b"/"


def test_empty_lines_between_pipelined_requests_are_ignored():
    assert len(parse(get(HOST) + b"\r\n\r\n" + get(HOST))) == 2


def test_more_than_eight_empty_lines_before_a_request_are_400():
    assert rejection(b"\r\n" * 9 + get(HOST)) == 400


# --- HTTP version (RFC 9112 2.3, RFC 9110 2.5) ---

@pytest.mark.parametrize("version", [b"1.0", b"1.1"])
def test_http_10_and_11_are_supported(version):
    assert parse_one(get(HOST, version=version))["version"] == version.decode()


@pytest.mark.parametrize("version", [b"2.0", b"0.9", b"3.0", b"1.2", b"1.9"])
def test_unsupported_versions_are_505(version):
    assert rejection(get(HOST, version=version)) == 505


@pytest.mark.parametrize("line", cases(
    ("lowercase-name", b"GET / http/1.1"),
    ("no-minor", b"GET / HTTP/1"),
    ("two-digit-minor", b"GET / HTTP/1.10"),
    ("two-digit-major", b"GET / HTTP/11.1"),
    ("no-version", b"GET /"),
    ("trailing-space", b"GET / HTTP/1.1 "),
    ("double-space-before-version", b"GET /  HTTP/1.1"),
    ("letter-version", b"GET / HTTP/x.y"),
))
def test_malformed_versions_are_400(line):
    assert rejection(http(line, HOST)) == 400


# --- request target (RFC 9112 3.2) ---

@pytest.mark.parametrize("target", [b"/", b"/a%20b/c?d=e&f=/g?", b"//a//b", b"/?", b"/%23"])
def test_origin_form_target_is_returned_as_sent(target):
    assert parse_one(http(b"GET " + target + b" HTTP/1.1", HOST))["target"] == target


@pytest.mark.parametrize("target", [b"/a#frag", b"/#", b"/?q#", b"http://a/#x", b"http://a#x", b"#"])
def test_fragment_in_the_target_is_400(target):
    """A fragment is not part of any request-target form (RFC 9112 3.2:
    origin-form = absolute-path [ "?" query ])."""
    assert rejection(http(b"GET " + target + b" HTTP/1.1", HOST)) == 400


@pytest.mark.parametrize("target", [b"http://a/b?c", b"https://a:443", b"HTTP://A"])
def test_absolute_form_target_is_accepted(target):
    assert parse_one(http(b"GET " + target + b" HTTP/1.1", HOST))["target"] == target


def test_asterisk_form_is_only_for_options():
    assert parse_one(http(b"OPTIONS * HTTP/1.1", HOST))["target"] == b"*"
    assert rejection(http(b"GET * HTTP/1.1", HOST)) == 400
    assert rejection(http(b"OPTIONS *x HTTP/1.1", HOST)) == 400


@pytest.mark.parametrize("target", [b"a/b", b"http://", b"ftp://a/", b"/a\x00", b"/\xe9", b"/a\x7f"])
def test_other_targets_are_400(target):
    assert rejection(http(b"GET " + target + b" HTTP/1.1", HOST)) == 400


@pytest.mark.parametrize("target", cases(
    ("empty-host", b"http:///a"),
    ("empty-host-with-query", b"https://?a"),
    ("userinfo", b"http://user@a/"),
    ("userinfo-with-password", b"http://user:pw@a/"),
    ("host-with-quote", b'http://a"b/'),
))
def test_absolute_form_target_names_a_host_without_userinfo(target):
    """RFC 9110 4.2.1: an http URI with an empty host MUST be rejected as
    invalid; 4.2.4: userinfo SHOULD be treated as an error."""
    assert rejection(http(b"GET " + target + b" HTTP/1.1", HOST)) == 400


def test_connect_is_501():
    assert rejection(http(b"CONNECT a:443 HTTP/1.1", b"Host: a:443")) == 501


# --- limits ---

def _request_line(length):
    return b"GET /" + b"a" * (length - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"


def test_request_line_up_to_the_limit_is_accepted():
    """Regression: split right after its CR, a request line of exactly the
    limit was counted with the CR and refused with 414."""
    assert parse_one(http(_request_line(32), HOST), SMALL)["target"].startswith(b"/a")


def test_request_line_over_the_limit_is_414():
    assert rejection(http(_request_line(33), HOST), SMALL) == 414
    assert rejection(_request_line(100), SMALL) == 414      # refused before its end arrives


def _head_of(size):
    """A GET head of exactly ``size`` bytes."""
    head = http(GET, HOST, b"X: ")
    return http(GET, HOST, b"X: " + b"v" * (size - len(head)))


def test_header_section_up_to_the_limit_is_accepted():
    assert len(_head_of(128)) == 128
    assert parse_one(_head_of(128), SMALL)["method"] == b"GET"


def test_header_section_over_the_limit_is_431():
    assert rejection(_head_of(129), SMALL) == 431
    assert rejection(_head_of(500)[:200], SMALL) == 431     # refused before its end arrives


def test_header_count_over_the_limit_is_431():
    assert parse_one(get(HOST, b"A: 1", b"B: 2", b"C: 3"), SMALL)["method"] == b"GET"
    assert rejection(get(HOST, b"A: 1", b"B: 2", b"C: 3", b"D: 4"), SMALL) == 431


def test_limits_are_judged_before_the_bytes_past_them():
    """Regression: a bare LF past a limit made the head a 400 when fed whole,
    but a 414/431 when the bytes before the LF came in a read of their own."""
    assert rejection(_request_line(40) + b"\nHost: a\r\n\r\n", SMALL) == 414
    assert rejection(_head_of(200)[:-5] + b"\n\r\n", SMALL) == 431


def test_equal_limits_split_after_the_request_line_cr():
    """Regression: with the two head limits equal, a read ending in the CR of
    a request line at the limit was refused 431, though fed whole the line
    goes on and is too long (414)."""
    equal = Limits(max_request_line=32, max_header_bytes=32)
    assert rejection(http(_request_line(32), HOST), equal) == 431
    assert rejection(_request_line(32) + b"\rX\r\nHost: a\r\n\r\n", equal) == 414


def test_content_length_over_the_body_limit_is_413():
    assert parse_one(post(b"Content-Length: 16", body=b"x" * 16), SMALL)["body"] == b"x" * 16
    assert rejection(post(b"Content-Length: 17"), SMALL) == 413


def test_chunked_total_over_the_body_limit_is_413():
    assert parse_one(chunked(b"8\r\n" + b"x" * 8 + b"\r\n8\r\n" + b"y" * 8 + b"\r\n0\r\n\r\n"),
                     SMALL)["body"] == b"x" * 8 + b"y" * 8
    assert rejection(chunked(b"8\r\n" + b"x" * 8 + b"\r\n9\r\n"), SMALL) == 413


def test_trailer_section_over_the_limits_is_431():
    assert rejection(chunked(b"0\r\nX: " + b"v" * 200 + b"\r\n\r\n"), SMALL) == 431
    assert rejection(chunked(b"0\r\n" + b"X: v\r\n" * 5 + b"\r\n"), SMALL) == 431


# --- pipelining and errors ---

def test_pipelined_requests_are_returned_in_order():
    data = get(HOST) + chunked(b"1\r\nx\r\n0\r\n\r\n") + post(b"Content-Length: 2", body=b"yz") + get(HOST)
    requests = parse(data)
    assert [(r["method"], r["body"]) for r in requests] == [
        (b"GET", b""), (b"POST", b"x"), (b"POST", b"yz"), (b"GET", b"")]


def test_fields_judged_before_the_head_is_complete_are_not_counted_twice():
    """A head that arrives in pieces has each field line judged as it
    completes (a second Host or Content-Length is refused there), then the
    whole head is parsed once more: each pass counts the fields itself."""
    head = http(POST, HOST, b"Content-Length: 2", b"Content-Length: 2", b"Expect: 100-continue", body=b"hi")
    for cut in range(1, len(head)):
        parser = RequestParser()
        assert parser.feed(head[:cut]) == []
        request, = parser.feed(head[cut:])
        assert (request["body"], request["expect_continue"]) == (b"hi", True)


def test_requests_before_a_malformed_one_are_kept():
    result = outcome(get(HOST) + get(HOST, b"X: a\x00"))
    assert (len(result.requests), result.status) == (1, 400)


def test_incomplete_request_is_not_returned():
    for data in (GET, get(HOST)[:-1], post(b"Content-Length: 5", body=b"hell"), chunked(b"0\r\n")):
        assert outcome(data) == ([], None, None)


# --- incremental parsing ---

@settings(max_examples=300, deadline=None)
@given(data=st.one_of(request_streams(), mutated_streams()), request_line=st.integers(16, 80),
       header_extra=st.integers(0, 200), header_count=st.integers(1, 6), body=st.integers(0, 40))
def test_every_split_gives_the_same_outcome_under_any_limits(data, request_line, header_extra,
                                                             header_count, body):
    limits = Limits(max_request_line=request_line, max_header_bytes=request_line + header_extra,
                    max_header_count=header_count, max_body_bytes=body)
    outcome(data, limits)       # asserts that every split agrees with the whole
