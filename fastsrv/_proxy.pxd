# Proxy headers: the client, scheme and host a trusted proxy forwards.

from cpython.bytes cimport PyBytes_AS_STRING
from fastsrv._parser cimport HeaderSpan
from fastsrv._request cimport Request


cdef class ProxyHeaders:
    cdef readonly bint trust_all
    cdef readonly bint trust_unix
    cdef readonly tuple networks
    cdef dict _peers
    cdef dict _resolved

    cdef int apply(self, Request req) except -1


cdef inline bint has_proxy_headers(Request req) noexcept:
    """Whether the head has a field named like Forwarded or X-Forwarded-*
    (by length and first letter: a cheap test before the exact one)."""
    cdef const char* base = PyBytes_AS_STRING(req._raw) + req._base
    cdef HeaderSpan* s
    cdef Py_ssize_t k
    cdef char c
    for k in range(req._nspans):
        s = &req._spans[k]
        if s.name_len == 9 or (15 <= s.name_len <= 17):
            c = base[s.name_start] | 0x20
            if c == 102 or c == 120:        # f, x
                return True
    return False
