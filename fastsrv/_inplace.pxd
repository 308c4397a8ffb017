# Running a request's coroutine: in place until it first suspends, or in a
# Task from its first line.

cdef class StandInTask:
    cdef object loop
    cdef object task
    cdef int cancels
    cdef object cancel_msg
    cdef list callbacks
    cdef bint ended

    cdef int bind(self, object task) except -1
    cdef int finished(self) except -1


cdef object run_in_place(object loop, object coro, object ctx, bint* finished)
cdef object start_task(object loop, object coro, object ctx, bint eager)
cdef object as_coroutine(object awaitable)
