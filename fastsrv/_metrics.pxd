# Request metrics counted in the core, in memory the workers share.

cdef enum:
    M_METHODS = 8               # GET HEAD POST PUT DELETE PATCH OPTIONS other
    M_CLASSES = 5               # 1xx .. 5xx
    M_BUCKETS = 15              # duration histogram, the last is +Inf
    F_REQUESTS = 0              # [method][class]
    F_BUCKETS = 40              # [bucket], not cumulative
    F_DURATION_SUM = 55
    F_CUT = 56                  # requests cut at the exit wait deadline
    F_CONNECTIONS_TOTAL = 57
    F_WEBSOCKETS_TOTAL = 58
    G_FIRST = 59                # gauges from here: counted only for live slots
    G_IN_FLIGHT = 59
    G_OPEN = 60
    G_WEBSOCKETS = 61
    G_DRAINING = 62
    F_STATE = 63                # 0 free, 1 a live process
    SLOT_FIELDS = 64


cdef class Metrics:
    cdef object memory
    cdef double[::1] view
    cdef double* slot
    cdef readonly Py_ssize_t slots
    cdef readonly Py_ssize_t index

    cdef void request_done(self, str method, int status, double seconds) noexcept
    cdef inline void set(self, int field, double value) noexcept:
        self.slot[field] = value
    cdef inline void add(self, int field, double value) noexcept:
        self.slot[field] += value
