# The WebSocket connection (RFC 6455, RFC 7692): the protocol a connection
# speaks after the HTTP core has answered 101 and handed its transport over.

from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t

from fastsrv._request cimport Request


cdef enum WsState:
    WS_OPEN = 1
    WS_CLOSING = 2       # our Close frame is sent; waiting for the client's
    WS_CLOSED = 3

cdef enum WsOpcode:
    OP_CONT = 0
    OP_TEXT = 1
    OP_BINARY = 2
    OP_CLOSE = 8
    OP_PING = 9
    OP_PONG = 10


cdef class WsConfig:
    cdef readonly int64_t max_size
    cdef readonly double ping_interval
    cdef readonly double ping_timeout
    cdef readonly double close_timeout
    cdef readonly bint per_message_deflate
    cdef readonly Py_ssize_t read_high_water


cdef class Deflate:
    """The permessage-deflate parameters agreed in the handshake."""
    cdef readonly bint server_no_context_takeover
    cdef readonly bint client_no_context_takeover
    cdef readonly int server_max_window_bits
    cdef readonly int client_max_window_bits
    cdef object inflater
    cdef object deflater

    cdef object inflate(self, bytes data, int64_t limit, bint last)
    cdef bytes compress(self, bytes data)


cdef class Closed:
    cdef readonly int code
    cdef readonly str reason


cdef class WebSocketConnection:
    cdef object transport
    cdef object loop
    cdef WsConfig config
    cdef Deflate deflate
    cdef readonly int state
    cdef object on_closed            # called once with this connection when it is gone
    cdef public object shutdown_signal
    # reading: the frame being read
    cdef bytearray rbuf
    cdef bint in_frame               # header read, payload pending
    cdef int frame_op
    cdef bint frame_fin
    cdef uint64_t frame_left
    cdef uint8_t mask[4]
    cdef int mask_pos
    cdef bytearray ctrl              # a control frame's payload
    # reading: the data message being assembled
    cdef int msg_op                  # OP_TEXT / OP_BINARY, 0 between messages
    cdef bint msg_deflated
    cdef bytearray msg               # unmasked payload (still compressed if deflated)
    cdef list parts                  # inflated pieces of a fragmented compressed message
    cdef int64_t msg_size
    cdef uint32_t utf8
    # the app's side
    cdef object inbox                # deque of str | bytes | Closed
    cdef Py_ssize_t inbox_bytes
    cdef object waiter
    cdef bint paused_reading
    cdef bint paused_writing
    cdef object drain_waiter
    cdef object sent                 # the finished future a send returns while the client reads
    # closing
    cdef readonly bint close_sent
    cdef readonly bint close_received
    cdef readonly int close_code
    cdef readonly str close_reason
    cdef object close_timer
    cdef bint delivered_close
    cdef bint parsing                # inside data_received
    cdef bint failing                # a failure is under way (its Close sent, or about to be)
    cdef bint halted                 # the framing is lost: nothing more is read
    cdef bint skipping               # the content failed: data frames are read and skipped
    cdef int fail_code
    cdef str fail_reason
    # keepalive
    cdef object ping_timer
    cdef bytes ping_payload
    cdef readonly long long messages_in
    cdef readonly long long messages_out

    cdef int feed(self, const uint8_t* p, Py_ssize_t n) except -1
    cdef int parse(self, const uint8_t* p, Py_ssize_t n) except -1
    cdef Py_ssize_t read_header(self, const uint8_t* p, Py_ssize_t n) except -2
    cdef Py_ssize_t refuse(self, int code, str reason) except -2
    cdef int payload(self, const uint8_t* p, Py_ssize_t n) except -1
    cdef int frame_done(self) except -1
    cdef int inflate_buffered(self, bint last) except -2
    cdef int complete(self, const uint8_t* p, Py_ssize_t n, bytes whole) except -1
    cdef int control_done(self) except -1
    cdef int deliver(self, object item, Py_ssize_t size) except -1
    cdef int deliver_close(self, int code, str reason) except -1
    cdef int update_reading(self) except -1
    cdef object take(self)
    cdef object wait(self)
    cdef object send_data(self, object data)
    cdef int write_frame(self, int opcode, bytes payload, bint rsv1) except -1
    cdef int send_close(self, int code, str reason) except -1
    cdef int start_close(self, int code, str reason, double timeout) except -1
    cdef int fail(self, int code, str reason) except -1
    cdef int fail_now(self) except -1
    cdef int finish(self) except -1


cdef WebSocketConnection new_connection(object loop, object transport, WsConfig config, Deflate deflate,
                                        object shutdown_signal, object on_closed)


cdef class WebSocket:
    cdef object upgrade              # the core's handshake until accept() or close()
    cdef WebSocketConnection conn
    cdef Request request
    cdef readonly list subprotocols
    cdef object shutdown_signal

    @staticmethod
    cdef WebSocket new(object upgrade, Request request, list subprotocols, object shutdown_signal)
    cdef WebSocketConnection _open(self)
    cdef int finish_handler(self, bint failed) except -1
