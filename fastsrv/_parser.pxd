# The HTTP/1.1 request parser: declarations shared with the connection core.

cimport cython
from libc.stdint cimport uint32_t, int64_t

cdef enum ParseStatus:
    PARSE_NEED_MORE = 0
    PARSE_DONE = 1
    PARSE_ERROR = -1

cdef enum BodyKind:
    BODY_NONE = 0
    BODY_LENGTH = 1
    BODY_CHUNKED = 2

# Where the check of an incomplete head stands (RequestParser.check_head):
# the element of the request line or field line its next byte belongs to.
cdef enum HeadState:
    HS_METHOD = 0
    HS_TARGET_START = 1
    HS_ASTERISK = 2            # "*" (OPTIONS only)
    HS_SCHEME = 3              # "http://" or "https://", any case
    HS_AUTHORITY_START = 4
    HS_AUTHORITY = 5
    HS_TARGET = 6              # path and query
    HS_VERSION = 7             # "HTTP/" DIGIT "." DIGIT
    HS_VERSION_END = 8         # the CRLF after the version
    HS_FIELD_START = 9         # a field line, or the empty line ending the head
    HS_NAME = 10
    HS_VALUE_OWS = 11
    HS_VALUE = 12
    HS_DONE = 13

cdef enum ChunkState:
    CH_SIZE = 0
    CH_SIZE_BWS = 1            # whitespace after the size: only ";" may follow
    CH_EXT = 2                 # after ";": BWS, then a name
    CH_EXT_NAME = 3
    CH_EXT_NAME_BWS = 4        # after a name and whitespace: "=" or ";"
    CH_EXT_VALUE = 5           # after "=": BWS, then a token or a quoted-string
    CH_EXT_TOKEN = 6
    CH_EXT_QUOTED = 7
    CH_EXT_QUOTED_PAIR = 8     # after a backslash in a quoted-string
    CH_EXT_VALUE_END = 9       # after a closing quote
    CH_EXT_VALUE_BWS = 10      # whitespace after a value: only ";" may follow
    CH_SIZE_LF = 11
    CH_DATA = 12
    CH_DATA_CR = 13
    CH_DATA_LF = 14
    CH_TRAILER = 15
    CH_DONE = 16

ctypedef struct HeaderSpan:
    uint32_t name_start
    uint32_t name_len
    uint32_t value_start
    uint32_t value_len

# What the field lines of one head say about its framing and connection,
# accumulated field by field (RequestParser._field).  The whole-head parse
# and the check of an incomplete head each keep their own, so neither counts
# a field the other has seen.
ctypedef struct HeadFields:
    int version                  # 10 or 11, from the request line
    bint absolute_form
    Py_ssize_t authority_start   # absolute-form: the target's authority
    Py_ssize_t authority_len
    int host_count
    HeaderSpan* host             # the Host field's span (whole-head parse only)
    bint has_cl
    int64_t content_length
    Py_ssize_t cl_digits
    bint has_te
    bint te_chunked_final
    bint te_chunked_seen
    bint te_other
    bint conn_close
    bint conn_keep_alive
    bint conn_upgrade
    bint has_upgrade
    bint expect_continue

# The check of an incomplete head, resumed at ``pos`` as bytes arrive.
ctypedef struct HeadCheck:
    Py_ssize_t pos               # the next byte to judge (from the head start)
    int state                    # HeadState
    Py_ssize_t field_lines
    Py_ssize_t target_start
    Py_ssize_t version_start
    Py_ssize_t name_start
    Py_ssize_t name_end
    Py_ssize_t value_start
    Py_ssize_t value_end
    HeadFields fields


cdef class Limits:
    cdef readonly Py_ssize_t max_request_line
    cdef readonly Py_ssize_t max_header_bytes
    cdef readonly Py_ssize_t max_header_count
    cdef readonly int64_t max_body_bytes


@cython.final
cdef class RequestParser:
    cdef Limits limits
    cdef readonly bint underscores_in_headers
    # error reporting
    cdef public int error_status
    cdef public str error_reason
    # head scanning (resumable between reads)
    cdef Py_ssize_t scan_pos
    cdef Py_ssize_t line_start
    cdef Py_ssize_t line_count
    cdef Py_ssize_t skipped
    cdef HeadCheck check
    # the head parsed last (offsets relative to the head start)
    cdef Py_ssize_t head_len
    cdef Py_ssize_t method_len
    cdef Py_ssize_t target_start
    cdef Py_ssize_t target_len
    cdef int version
    cdef Py_ssize_t nheaders
    cdef public bint expect_continue
    cdef public bint upgrade
    cdef public bint keep_alive
    # body framing
    cdef public int body_kind
    cdef public int64_t content_length
    cdef int64_t remaining
    cdef int64_t body_seen
    cdef int chunk_state
    cdef int64_t chunk_size
    cdef Py_ssize_t chunk_digits
    cdef Py_ssize_t chunk_line
    cdef bytearray trailer_buf
    cdef public list trailers
    cdef bytearray _pending
    cdef list _done
    cdef object _head

    cdef void reset(self)
    cdef int fail(self, int status, str reason) except -2
    cdef Py_ssize_t skip_empty_lines(self, const char* p, Py_ssize_t n)
    cdef int read_head(self, const char* p, Py_ssize_t n) except -2
    cdef int scan_head(self, const char* p, Py_ssize_t n) except -2
    cdef int parse_head(self, const char* p, HeaderSpan* spans) except -2
    cdef int _absolute_form(self, const char* p, HeadFields* f) except -2
    cdef int check_head(self, const char* p, Py_ssize_t n) except -2
    cdef int _check_byte(self, const char* p, Py_ssize_t i) except -2
    cdef int _check_line_end(self, const char* p, Py_ssize_t i) except -2
    cdef int _field(self, const char* p, HeaderSpan* s, HeadFields* f) except -2
    cdef int _dropped(self, object name, str why) except -1
    cdef int parse_body(self, const char* p, Py_ssize_t n, Py_ssize_t* consumed,
                        Py_ssize_t* data_start, Py_ssize_t* data_len) except -2
    cdef int _chunk_ext(self, unsigned char c) except -2
    cdef int check_trailers(self) except -2
    cdef bint _trailer_line_done(self) except -1


cdef HeaderSpan* scratch_spans()
cdef list build_header_list(const char* base, const HeaderSpan* spans, Py_ssize_t n, bint lower)


cdef inline bint _ieq(const char* p, const char* lower, Py_ssize_t n) noexcept:
    """Case-insensitive compare of ``p`` with the lower-case ``lower``
    (``n`` bytes each): header names and tokens."""
    cdef Py_ssize_t i
    cdef char c
    for i in range(n):
        c = p[i]
        if 65 <= c <= 90:
            c += 32
        if c != lower[i]:
            return False
    return True
