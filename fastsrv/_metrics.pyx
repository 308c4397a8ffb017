"""Request metrics, counted by the connection core.

Every figure lives in a *slot*: a row of doubles in a block of memory.  A
process counts into its own slot with plain stores (no lock, no atomic: one
writer per slot), and whoever is scraped sums every slot.  With
``--workers`` the block is a file the supervisor makes and every worker
maps (``MAP_SHARED``), so one scrape of any worker shows the whole server;
the supervisor hands each new worker process a free slot, and when a worker
has exited it adds that slot's counters into slot 0 (what exited workers
counted) and frees the slot, so counters never go down across restarts.
A single process has a private block of two slots.

Counters: requests by method and status class, a duration histogram and
its sum, requests cut at the exit wait deadline, connections and
WebSockets accepted.  Gauges: requests in flight, open connections, open
WebSockets, draining (1 while the process drains).
"""

cimport cython
from libc.string cimport memset

from fastsrv._metrics cimport (M_METHODS, M_CLASSES, M_BUCKETS, F_REQUESTS, F_BUCKETS, F_DURATION_SUM,
                               F_CUT, F_CONNECTIONS_TOTAL, F_WEBSOCKETS_TOTAL, G_FIRST, G_IN_FLIGHT,
                               G_OPEN, G_WEBSOCKETS, G_DRAINING, F_STATE, SLOT_FIELDS)

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# seconds; fastsrv answers in microseconds, so the first buckets are fine
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SLOT_BYTES = SLOT_FIELDS * 8

cdef double _bounds[14]
for _i, _b in enumerate(BUCKETS):
    _bounds[_i] = _b

COUNTERS = {"cut": F_CUT, "connections_total": F_CONNECTIONS_TOTAL, "websockets_total": F_WEBSOCKETS_TOTAL}
GAUGES = {"in_flight": G_IN_FLIGHT, "open": G_OPEN, "websockets": G_WEBSOCKETS, "draining": G_DRAINING}


def block_size(Py_ssize_t slots):
    """Bytes of a metrics block of ``slots`` slots."""
    return slots * SLOT_BYTES


cdef inline int _method_index(str method) noexcept:
    # the parser hands over interned method strings: mostly identity checks
    if method == "GET":
        return 0
    if method == "HEAD":
        return 1
    if method == "POST":
        return 2
    if method == "PUT":
        return 3
    if method == "DELETE":
        return 4
    if method == "PATCH":
        return 5
    if method == "OPTIONS":
        return 6
    return 7


@cython.final
cdef class Metrics:
    """The counters of one process, in slot ``index`` of ``memory`` (a
    writable buffer of ``slots`` slots: a ``bytearray`` or an ``mmap``).
    ``Metrics()`` makes a private block for a single process; index 0 is
    the supervisor's view, which counts nothing itself."""

    def __init__(self, memory=None, Py_ssize_t index=1):
        if memory is None:
            memory = bytearray(block_size(2))
        self.memory = memory
        self.view = memoryview(memory).cast("B").cast("d")
        self.slots = self.view.shape[0] // SLOT_FIELDS
        if not 0 <= index < self.slots:
            raise ValueError(f"metrics slot {index} is outside the block (0-{self.slots - 1})")
        self.index = index
        self.slot = &self.view[index * SLOT_FIELDS]
        if index:       # 0: the supervisor, which only reads and retires
            self.slot[F_STATE] = 1.0

    cdef void request_done(self, str method, int status, double seconds) noexcept:
        cdef double* s = self.slot
        cdef int cls = status // 100 - 1
        cdef int b = 0
        if cls < 0:
            cls = 0
        elif cls > 4:
            cls = 4
        s[F_REQUESTS + _method_index(method) * M_CLASSES + cls] += 1.0
        while b < M_BUCKETS - 1 and seconds > _bounds[b]:
            b += 1
        s[F_BUCKETS + b] += 1.0
        s[F_DURATION_SUM] += seconds

    def count_request(self, str method, int status, double seconds):
        """Count one answered request (for tests and the control plane)."""
        self.request_done(method, status, seconds)

    def add_counter(self, str name, double value):
        """Add ``value`` to a counter of this process (``"cut"``, ...)."""
        self.slot[COUNTERS[name]] += value

    def set_gauge(self, str name, double value):
        """Set a gauge of this process (``"draining"``, ...)."""
        self.slot[GAUGES[name]] = value

    def snapshot(self):
        """The whole block summed: ``requests`` ({(method, class): n}),
        ``buckets`` (cumulative, with +Inf), ``duration_sum``, the counters,
        the gauges (of live slots only) and ``processes``."""
        cdef double totals[64]
        cdef Py_ssize_t i, f
        cdef double* row
        cdef int live = 0
        memset(totals, 0, sizeof(totals))
        for i in range(self.slots):
            row = &self.view[i * SLOT_FIELDS]
            if i and row[F_STATE] != 1.0:
                continue
            if i:
                live += 1
            for f in range(SLOT_FIELDS):
                if f < G_FIRST or i:
                    totals[f] += row[f]
        requests = {}
        for m in range(M_METHODS):
            for c in range(M_CLASSES):
                n = totals[F_REQUESTS + m * M_CLASSES + c]
                if n:
                    requests[(METHODS[m], STATUS_CLASSES[c])] = n
        buckets = []
        running = 0.0
        for b in range(M_BUCKETS):
            running += totals[F_BUCKETS + b]
            buckets.append(running)
        out = {"requests": requests, "buckets": buckets, "duration_sum": totals[F_DURATION_SUM],
               "processes": live}
        for name, field in COUNTERS.items():
            out[name] = totals[field]
        for name, field in GAUGES.items():
            out[name] = totals[field]
        return out

    def claim(self, Py_ssize_t index):
        """(Supervisor) zero slot ``index`` and mark it live, for a new process."""
        cdef double* row = &self.view[index * SLOT_FIELDS]
        memset(row, 0, SLOT_BYTES)
        row[F_STATE] = 1.0

    def retire(self, Py_ssize_t index):
        """(Supervisor) a process has exited: add its counters into slot 0,
        drop its gauges, free its slot."""
        cdef double* row = &self.view[index * SLOT_FIELDS]
        cdef double* retired = &self.view[0]
        cdef Py_ssize_t f
        # field by field, the slot still live: only a scrape landing between
        # the two stores of one field (nanoseconds) sees it counted twice
        for f in range(G_FIRST):
            retired[f] += row[f]
            row[f] = 0.0
        row[F_STATE] = 0.0
        for f in range(G_FIRST, SLOT_FIELDS):
            row[f] = 0.0

    def free_slot(self):
        """(Supervisor) the index of a slot no live process holds, or -1."""
        cdef Py_ssize_t i
        for i in range(1, self.slots):
            if self.view[i * SLOT_FIELDS + F_STATE] != 1.0:
                return i
        return -1
