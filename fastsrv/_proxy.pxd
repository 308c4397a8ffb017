# Proxy headers: the client, scheme and host a trusted proxy forwards.

from fastsrv._request cimport Request


cdef class ProxyHeaders:
    cdef readonly bint trust_all
    cdef readonly bint trust_unix
    cdef readonly tuple networks
    cdef dict _peers
    cdef dict _resolved

    cdef int apply(self, Request req) except -1
