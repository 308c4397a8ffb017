# Response objects and their serialization.

cdef class WriteBuffer:
    cdef char* data
    cdef Py_ssize_t length
    cdef Py_ssize_t capacity

    cdef int reserve(self, Py_ssize_t extra) except -1
    cdef int append(self, const char* p, Py_ssize_t n) except -1
    cdef int append_bytes(self, bytes b) except -1
    cdef int append_int(self, long long v) except -1
    cdef int append_int_hex(self, long long v) except -1
    cdef int append_digits(self, long long v, int base) except -1
    cdef bytes take(self)


cdef class Response:
    cdef public int status
    cdef public bytes body
    cdef public list headers
    cdef public str content_type


cdef class StreamingResponse:
    cdef public int status
    cdef public object content
    cdef public list headers
    cdef public str content_type


cdef class HeadLines:
    cdef readonly bint date
    cdef bytes server
    cdef readonly bytes extra


cdef HeadLines default_head()
cdef WriteBuffer shared_buffer()
cdef bytes date_line()
cdef bytes status_line(int status)
cdef bytes content_type_line(str content_type)

cdef int write_head(WriteBuffer out, int status, bytes ctype_line, list headers,
                    long long content_length, bint keep_alive, bint http10,
                    bint* close_requested, HeadLines head) except -1
cdef int end_head(WriteBuffer out, long long content_length, bint keep_alive, bint http10,
                  HeadLines head, bint own_server) except -1
cdef int write_asgi_head(WriteBuffer out, int status, object headers,
                         long long* declared_length, bint* close_requested,
                         bint* own_server) except -1
cdef int write_simple(WriteBuffer out, int status, str text, bint keep_alive,
                      HeadLines head) except -1
cdef bint body_allowed(int status)
