# Requests as the application sees them, backed by the connection's bytes.

from fastsrv._parser cimport HeaderSpan, RequestParser


cdef class ShutdownSignal:
    cdef public bint is_set
    cdef object _event

    cdef void set(self)


cdef class ConnectionBase:
    cdef object loop
    cdef object transport
    cdef object peer
    cdef str scheme                 # "http" or "https"
    cdef public bint disconnected
    cdef object disconnect_waiter
    cdef ShutdownSignal shutdown_signal

    cdef int on_body_consumed(self) except -1
    cdef int send_continue(self) except -1


cdef class BodyStream:
    cdef ConnectionBase conn
    cdef list chunks
    cdef public Py_ssize_t buffered
    cdef public bint complete
    cdef public bint discard
    cdef public bint continue_pending
    cdef object error
    cdef object waiter
    cdef public list trailers

    cdef int feed(self, bytes data) except -1
    cdef int finish(self, list trailers) except -1
    cdef int fail(self, object exc) except -1
    cdef bytes take(self)
    cdef void _wake(self)


cdef class Request:
    cdef readonly str method
    cdef readonly str path
    cdef bytes _raw
    cdef Py_ssize_t _base
    cdef Py_ssize_t _target_start
    cdef Py_ssize_t _target_len
    cdef Py_ssize_t _query_start
    cdef Py_ssize_t _path_start
    cdef HeaderSpan* _spans
    cdef HeaderSpan _inline_spans[8]
    cdef Py_ssize_t _nspans
    cdef object _headers
    cdef object _query
    cdef dict _params
    cdef readonly int version
    cdef public bint keep_alive
    cdef readonly bint expect_continue
    cdef readonly bint upgrade
    cdef readonly bint is_head
    cdef object _body
    cdef BodyStream _stream
    cdef ConnectionBase _conn
    cdef object _state
    # set from a trusted proxy's headers (fastsrv._proxy); None: the connection's own
    cdef object _client
    cdef str _scheme
    cdef str _host

    @staticmethod
    cdef Request new(bytes raw, Py_ssize_t base, RequestParser parser, ConnectionBase conn)
    cdef int set_body(self, bytes body) except -1
    cdef BodyStream open_stream(self)
