"""Proxy headers: what a trusted proxy says about the client.

A request that comes from a trusted peer (``--forwarded-allow-ips``) may
carry ``Forwarded`` (RFC 7239) or ``X-Forwarded-For`` / ``-Proto`` /
``-Host``; the client address, scheme and host the app sees are taken from
them.  From any other peer they are left as they are: a header the client
wrote itself changes nothing.

The trust of a connection's peer is decided once, when it connects; the
headers of a trusted connection's requests are looked for in the parsed
head's spans in C, and only a request that has them reaches Python, where
the answer for the same header values is remembered.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize

from fastsrv._parser cimport HeaderSpan, _ieq
from fastsrv._request cimport Request

import ipaddress

cdef Py_ssize_t CACHE_SIZE = 4096
cdef frozenset SCHEMES = frozenset({"http", "https", "ws", "wss"})


def parse_trusted(spec):
    """``(trust_all, trust_unix, networks)`` for a ``--forwarded-allow-ips``
    value: comma-separated addresses and CIDR networks, ``*`` (everyone) or
    ``unix:`` (peers on a Unix socket).  ``ValueError`` names a bad entry."""
    cdef bint trust_all = False, trust_unix = False
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    networks = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        if item == "*":
            trust_all = True
        elif item == "unix:":
            trust_unix = True
        else:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"forwarded_allow_ips: {item!r} is not an IP address, a CIDR network, "
                                 "'*' or 'unix:'") from None
    return trust_all, trust_unix, tuple(networks)


cdef object _split_host_port(str text):
    """``(host, port)`` of an address as proxies write it: ``1.2.3.4``,
    ``1.2.3.4:5678``, ``[2001:db8::1]:4711``, ``2001:db8::1``, or a name."""
    cdef str host = text.strip().strip('"')
    cdef int port = 0
    if host.startswith("["):
        end = host.find("]")
        if end > 0:
            rest = host[end + 1:]
            host = host[1:end]
            if rest.startswith(":") and rest[1:].isdigit():
                port = int(rest[1:])
        return host, port
    if host.count(":") == 1:
        name, _, tail = host.partition(":")
        if tail.isdigit():
            return name, int(tail)
    return host, port


cdef list _forwarded_elements(str value):
    """RFC 7239 ``Forwarded`` as a list of ``{param: value}`` dicts, commas
    and semicolons inside quoted strings kept."""
    cdef list elements = []
    cdef dict current = {}
    cdef list token = []
    cdef bint quoted = False
    cdef str ch
    for ch in value + ",":
        if quoted:
            if ch == '"':
                quoted = False
            token.append(ch)
        elif ch == '"':
            quoted = True
            token.append(ch)
        elif ch == ";" or ch == ",":
            pair = "".join(token).strip()
            token = []
            if "=" in pair:
                key, _, val = pair.partition("=")
                val = val.strip()
                if len(val) >= 2 and val.startswith('"') and val.endswith('"'):
                    val = val[1:len(val) - 1].replace('\\"', '"')
                current[key.strip().lower()] = val
            if ch == ",":
                elements.append(current)
                current = {}
        else:
            token.append(ch)
    return elements


cdef str _last(str value):
    """The last of a comma-separated list (the nearest proxy's)."""
    return value.rpartition(",")[2].strip()


cdef inline bint _host_ok(str host):
    if not host or len(host) > 255:
        return False
    for ch in host:
        if not (ch.isalnum() or ch in ".-_:[]"):
            return False
    return True


@cython.final
cdef class ProxyHeaders:
    """Which peers are trusted, and what their proxy headers mean.

    ``ProxyHeaders("127.0.0.1, 10.0.0.0/8")``; ``"*"`` trusts every peer,
    ``"unix:"`` peers on a Unix socket.  With several trusted proxies in a
    row, the client is the first address from the right of the chain that
    is not trusted (the leftmost when all are)."""

    def __init__(self, forwarded_allow_ips="127.0.0.1"):
        self.trust_all, self.trust_unix, self.networks = parse_trusted(forwarded_allow_ips)
        self._peers = {}
        self._resolved = {}

    def trusts(self, host):
        """Whether an address (a str, or None for a Unix-socket peer) is trusted."""
        cdef object known
        if self.trust_all:
            return True
        if host is None or host == "":
            return self.trust_unix
        known = self._peers.get(host)
        if known is None:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                known = False
            else:
                if ip.version == 6 and ip.ipv4_mapped is not None:
                    ip = ip.ipv4_mapped
                known = any([ip in net for net in self.networks])
            if len(self._peers) >= CACHE_SIZE:
                self._peers.clear()
            self._peers[host] = known
        return known

    def trusts_peer(self, peer):
        """Whether a connection's peer (its ``(host, port)``, or None on a
        Unix socket) may set the proxy headers."""
        return self.trusts(peer[0] if peer else None)

    def resolve(self, forwarded, x_for, x_proto, x_host):
        """``(client, scheme, host)`` from the header values (``str`` or
        None); each part is None when the headers do not set it.
        ``Forwarded`` is used when present, else the ``X-Forwarded-*``."""
        client = scheme = host = None
        if forwarded is not None:
            elements = _forwarded_elements(forwarded)
            chosen = None
            for element in reversed(elements):
                if "for" in element:
                    chosen = element
                    if not self.trusts(_split_host_port(element["for"])[0]):
                        break
            if chosen is None and elements:
                chosen = elements[len(elements) - 1]
            if chosen is not None:
                if "for" in chosen:
                    client = _split_host_port(chosen["for"])
                scheme = chosen.get("proto")
                host = chosen.get("host")
        else:
            if x_for is not None:
                hops = [h.strip() for h in x_for.split(",") if h.strip()]
                for hop in reversed(hops):
                    client = _split_host_port(hop)
                    if not self.trusts(client[0]):
                        break
            if x_proto is not None:
                scheme = _last(x_proto)
            if x_host is not None:
                host = _last(x_host)
        if scheme is not None:
            scheme = scheme.lower()
            if scheme not in SCHEMES:
                scheme = None
        if host is not None and not _host_ok(host):
            host = None
        return client, scheme, host

    cdef int apply(self, Request req) except -1:
        """Set the request's client, scheme and host from its proxy headers
        (the connection's peer is trusted)."""
        cdef const char* base = PyBytes_AS_STRING(req._raw) + req._base
        cdef HeaderSpan* s
        cdef Py_ssize_t k
        cdef object fwd = None, xfor = None, xproto = None, xhost = None
        cdef bytes value
        for k in range(req._nspans):
            s = &req._spans[k]
            if s.name_len == 9:
                if _ieq(base + s.name_start, b"forwarded", 9):
                    value = PyBytes_FromStringAndSize(base + s.value_start, s.value_len)
                    fwd = value if fwd is None else fwd + b"," + value
            elif s.name_len >= 15 and s.name_len <= 17 and _ieq(base + s.name_start, b"x-forwarded-", 12):
                value = PyBytes_FromStringAndSize(base + s.value_start, s.value_len)
                if s.name_len == 15 and _ieq(base + s.name_start + 12, b"for", 3):
                    xfor = value if xfor is None else xfor + b"," + value
                elif s.name_len == 17 and _ieq(base + s.name_start + 12, b"proto", 5):
                    xproto = value
                elif s.name_len == 16 and _ieq(base + s.name_start + 12, b"host", 4):
                    xhost = value
        if fwd is None and xfor is None and xproto is None and xhost is None:
            return 0
        key = (fwd, xfor, xproto, xhost)
        result = self._resolved.get(key)
        if result is None:
            result = self.resolve(*[None if v is None else (<bytes>v).decode("latin-1") for v in key])
            if len(self._resolved) >= CACHE_SIZE:
                self._resolved.clear()
            self._resolved[key] = result
        req._client, req._scheme, req._host = result
        return 0
