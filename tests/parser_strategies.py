"""Hypothesis strategies for HTTP/1.1 requests: valid ones from the RFC 9112
grammar, mutations of them, and the framing-field spellings of request
smuggling.  Shared by the parser's property and differential tests."""

from __future__ import annotations

import re
import string

from hypothesis import strategies as st

# --- valid requests from the grammar ---

TCHAR = "!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters
# Fields the parsers give meaning to are generated on purpose, not by chance.
FRAMING_FIELDS = {b"host", b"content-length", b"transfer-encoding", b"connection", b"proxy-connection",
                  b"expect", b"upgrade", b"keep-alive", b"te", b"trailer"}
# llhttp knows a fixed list of methods (RFC 9110 9.1 lets a method be any token).
METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"TRACE", b"PATCH", b"PROPFIND",
           b"MKCOL", b"LOCK", b"PURGE", b"REPORT", b"SEARCH"]
PCHAR = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@"
HOST_CHARS = string.ascii_lowercase + string.digits + "-."

tokens = st.text(TCHAR, min_size=1, max_size=10).map(str.encode)
field_names = tokens.filter(lambda name: name.lower() not in FRAMING_FIELDS)
visible = st.binary(min_size=1, max_size=8).map(
    lambda b: bytes(c for c in b if 0x21 <= c <= 0x7E or c >= 0x80) or b"v")
ows = st.sampled_from([b"", b" ", b"\t", b"  ", b" \t"])


@st.composite
def field_values(draw) -> bytes:
    words = draw(st.lists(visible, max_size=4))
    value = b""
    for word in words:
        value += (draw(st.sampled_from([b" ", b"\t", b" \t "])) if value else b"") + word
    return value


@st.composite
def field_lines(draw) -> bytes:
    return draw(field_names) + b":" + draw(ows) + draw(field_values()) + draw(ows)


@st.composite
def targets(draw) -> bytes:
    segments = draw(st.lists(st.text(PCHAR + "%20", max_size=6), min_size=1, max_size=4))
    path = "/" + "/".join(segments)
    if draw(st.booleans()):
        path += "?" + draw(st.text(PCHAR + "/?", max_size=10))
    if draw(st.integers(0, 9)) == 0:
        path = "http://" + draw(st.text(HOST_CHARS, min_size=1, max_size=8)) + path
    return path.encode()


@st.composite
def chunked_bodies(draw) -> bytes:
    """Chunks (sizes in either case, with leading zeros and extensions), the
    last chunk, trailer fields."""
    wire = b""
    for data in draw(st.lists(st.binary(min_size=1, max_size=20), max_size=3)):
        size = "0" * draw(st.integers(0, 2)) + format(len(data), draw(st.sampled_from(["x", "X"])))
        wire += size.encode() + draw(chunk_extensions()) + b"\r\n" + data + b"\r\n"
    trailers = draw(st.lists(field_lines(), max_size=2))
    last_chunk = b"0" + draw(chunk_extensions()) + b"\r\n"
    return wire + last_chunk + b"".join(t + b"\r\n" for t in trailers) + b"\r\n"


@st.composite
def chunk_extensions(draw) -> bytes:
    """;name, ;name=token or ;name="quoted string", without whitespace."""
    out = b""
    for name in draw(st.lists(tokens, max_size=2)):
        out += b";" + name
        value = draw(st.one_of(st.none(), tokens, st.text(PCHAR + " ", max_size=6).map(str.encode)))
        if value is not None:
            is_token = value and all(chr(c) in TCHAR for c in value)
            out += b"=" + (value if is_token else b'"' + value + b'"')
    return out


@st.composite
def requests(draw, last: bool = True) -> bytes:
    """One valid request; unless ``last``, one that keeps the connection open."""
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    target = draw(targets())
    lines = [draw(st.sampled_from(METHODS)) + b" " + target + b" HTTP/" + version]
    fields = draw(st.lists(field_lines(), max_size=4))
    if version == b"1.1" or draw(st.booleans()):
        # empty only where an absolute-form target names the host (RFC 9112 3.2.2)
        host = draw(st.text(HOST_CHARS, min_size=0 if target.startswith(b"http:") else 1, max_size=10))
        fields.append(b"Host: " + host.encode() + draw(st.sampled_from([b"", b":8080"])))
    if version == b"1.0" and not last:
        fields.append(b"Connection: keep-alive")
    elif last and draw(st.booleans()):
        fields.append(b"Connection: " + draw(st.sampled_from([b"close", b"keep-alive", b"Close"])))
    framing = draw(st.sampled_from(["none", "length"] + (["chunked"] if version == b"1.1" else [])))
    body = b""
    if framing == "length":
        body = draw(st.binary(max_size=30))
        fields.append(b"Content-Length: " + b"0" * draw(st.integers(0, 2)) + str(len(body)).encode())
    elif framing == "chunked":
        fields.append(b"Transfer-Encoding: " + draw(st.sampled_from([b"chunked", b"Chunked"])))
        body = draw(chunked_bodies())
    lines += draw(st.permutations(fields))
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


@st.composite
def request_streams(draw) -> bytes:
    """One to three pipelined requests."""
    count = draw(st.integers(1, 3))
    return b"".join(draw(requests(last=i == count - 1)) for i in range(count))


# --- mutations ---

INJECT = [b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b":", b",", b";", b"=", b'"', b"0", b"a", b"F",
          b"\x7f", b"\x80", b"\x0b", b"\x0c", b"-", b"+", b"\r\n\r\n", b"\r\n ", b"chunked", b", chunked",
          b"0\r\n\r\n", b"Content-Length: 1\r\n", b"Transfer-Encoding: chunked\r\n", b"Host: x\r\n"]
# Where framing goes wrong: line boundaries and the values of framing fields.
HOT_SPOTS = re.compile(rb"(?i)(content-length|transfer-encoding|host|connection):[ \t]*|\r\n")


@st.composite
def mutated_streams(draw) -> bytes:
    data = draw(request_streams())
    # positions from a Random seeded by hypothesis: drawn as hypothesis
    # integers they cluster at the edges, and most mutations hit the first byte
    rnd = draw(st.randoms(use_true_random=True))
    for _ in range(draw(st.integers(1, 3))):
        spots = [m.end() for m in HOT_SPOTS.finditer(data)]
        if spots and rnd.random() < 0.5:
            pos = min(max(rnd.choice(spots) + rnd.randint(-3, 3), 0), len(data))
        else:
            pos = rnd.randint(0, len(data))
        kind = draw(st.sampled_from(["inject", "inject", "flip", "delete", "duplicate"]))
        if kind == "inject":
            data = data[:pos] + draw(st.sampled_from(INJECT) | st.binary(min_size=1, max_size=1)) + data[pos:]
        elif kind == "flip" and pos < len(data):
            data = data[:pos] + bytes([data[pos] ^ (1 << draw(st.integers(0, 7)))]) + data[pos + 1:]
        elif kind == "delete":
            data = data[:pos] + data[pos + draw(st.integers(1, 3)):]
        elif kind == "duplicate":
            end = data.find(b"\r\n", pos)
            if end != -1:
                start = data.rfind(b"\r\n", 0, pos) + 2
                data = data[:end + 2] + data[start:end + 2] + data[end + 2:]
    return data


# --- framing fields as request smuggling spells them ---

# Framing fields as request smuggling spells them: a chunked body of length
# 15, then a request that only a parser reading the body some other way sees.
FRAMING_NAMES = [b"Content-Length", b"content-length", b"Transfer-Encoding", b"transfer-encoding",
                 b"TRANSFER-ENCODING", b"Transfer-Encoding ", b"Transfer_Encoding", b" Transfer-Encoding"]
FRAMING_VALUES = [b"15", b"015", b"15, 15", b"15,15", b" 15 ", b"+15", b"15 15", b"0xf", b"5", b"-1", b"",
                  b"15,", b"18446744073709551631", b"00000000000000000000015", b"chunked", b"Chunked",
                  b" chunked", b"chunked ", b"chunked, chunked", b"gzip, chunked", b"chunked, gzip",
                  b"identity", b"identity, chunked", b"xchunked", b"chunked;a=b", b'"chunked"',
                  b", chunked", b"chunked,", b"\tchunked", b"chunk", b"chunked\x0b", b"ch unked",
                  b"chunked\x00", b"chunked\rX: y"]
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


@st.composite
def framing_variants(draw) -> bytes:
    fields = draw(st.lists(st.tuples(st.sampled_from(FRAMING_NAMES), st.sampled_from(FRAMING_VALUES)),
                           min_size=1, max_size=3))
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    head = [b"POST / HTTP/" + version, b"Host: a"] + [name + b":" + b" " * (value[:1] != b" ") + value
                                                     for name, value in fields]
    return b"".join(line + b"\r\n" for line in head) + b"\r\n" + b"5\r\nhello\r\n0\r\n\r\n" + SMUGGLED
