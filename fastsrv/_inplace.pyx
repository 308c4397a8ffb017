"""Running a request's coroutine: in place until it first suspends, or in a
Task from its first line.

*In place* (:func:`run_in_place`): the coroutine is stepped right inside the
read callback, under a :class:`StandInTask` that ``asyncio.current_task()``
returns, so ``asyncio.timeout()``, ``TaskGroup`` and ``wait_for`` work from
a handler's first line on every Python.  A coroutine that never suspends
finishes with no Task and no loop round trip; one that does is carried on by
a real Task, which the stand-in then forwards every call to.

*In a Task* (:func:`start_task`): for code that needs a real Task's identity
from its first line (anyio, hence Starlette and FastAPI).  On Python 3.12+
the Task starts eagerly (``eager_start=True``): its first step runs at once,
and a request that never suspends is answered without a loop round trip.

The caller of :func:`run_in_place` has entered the request's context; the
caller of :func:`start_task` has not (an eager Task enters it itself).
"""

cimport cython
from cpython.dict cimport PyDict_DelItem, PyDict_SetDefault
from cpython.ref cimport PyObject, Py_XDECREF

import asyncio
import sys

cdef extern from "Python.h":
    ctypedef enum PySendResult:
        PYGEN_RETURN
        PYGEN_ERROR
        PYGEN_NEXT
    PySendResult PyIter_Send(object iter, object arg, PyObject** presult) except PYGEN_ERROR


# Python 3.10's Task takes no context: it copies the current one
cdef bint _TASK_CONTEXT = sys.version_info >= (3, 11)
cdef bint _EAGER_START = sys.version_info >= (3, 12)
cdef object _Task = asyncio.Task


@cython.final
@cython.freelist(32)
cdef class StandInTask:
    """What ``asyncio.current_task()`` returns while a request runs in place.

    Code that asks for its Task from its first line (``asyncio.timeout()``,
    ``TaskGroup``, ``wait_for`` on Python 3.12+) gets this stand-in; when the
    request first suspends, the real Task that carries it on takes over and
    every call is forwarded to it (a cancellation asked for before that is
    applied to it).  Only identity differs: ``current_task()`` returns the
    stand-in before the first suspension and the Task after it.
    """

    def cancel(self, msg=None):
        if self.task is not None:
            return self.task.cancel(msg)
        self.cancels += 1
        self.cancel_msg = msg
        return True

    def uncancel(self):
        if self.task is not None:
            return self.task.uncancel()
        if self.cancels > 0:
            self.cancels -= 1
        return self.cancels

    def cancelling(self):
        return self.task.cancelling() if self.task is not None else self.cancels

    def done(self):
        return self.ended or (self.task is not None and self.task.done())

    def cancelled(self):
        return self.task is not None and self.task.cancelled()

    def get_loop(self):
        return self.loop

    def get_name(self):
        return self.task.get_name() if self.task is not None else "fastsrv-request"

    def add_done_callback(self, fn, *, context=None):
        if self.task is not None:
            self.task.add_done_callback(fn, context=context)
        else:
            if self.callbacks is None:
                self.callbacks = []
            self.callbacks.append((fn, context))

    def remove_done_callback(self, fn):
        if self.task is not None:
            return self.task.remove_done_callback(fn)
        cdef int n = 0
        if self.callbacks:
            n = len(self.callbacks)
            self.callbacks = [c for c in self.callbacks if c[0] != fn]
            n -= len(self.callbacks)
        return n

    def __repr__(self):
        return f"<fastsrv request running in place, then {self.task!r}>"

    cdef int bind(self, object task) except -1:
        self.task = task
        if self.callbacks:
            for fn, context in self.callbacks:
                task.add_done_callback(fn, context=context)
            self.callbacks = None
        if self.cancels:
            task.cancel(self.cancel_msg)
        return 0

    cdef int finished(self) except -1:
        """The request completed in place: done callbacks see the stand-in."""
        self.ended = True
        if self.callbacks:
            for fn, context in self.callbacks:
                self.loop.call_soon(fn, self, context=context)
            self.callbacks = None
        return 0


cdef object _enter_task = asyncio.tasks._enter_task
cdef object _leave_task = asyncio.tasks._leave_task
# the running Task of each loop, as current_task() reads it (a dict on
# Python 3.10-3.13): set and cleared directly, two dict operations
cdef object _current_tasks = getattr(asyncio.tasks, "_current_tasks", None)
cdef bint _direct = type(_current_tasks) is dict


cdef inline StandInTask _enter_stand_in(object loop):
    """Make a stand-in the loop's current task; None if one is already
    current (the request then runs under it, as a test driving the protocol
    from a Task does)."""
    cdef StandInTask stand_in = StandInTask.__new__(StandInTask)
    stand_in.loop = loop
    if _direct:
        if PyDict_SetDefault(_current_tasks, loop, stand_in) != <PyObject*>stand_in:
            return None
        return stand_in
    try:
        _enter_task(loop, stand_in)
    except RuntimeError:
        return None
    return stand_in


cdef inline int _leave_stand_in(object loop, StandInTask stand_in) except -1:
    if _direct:
        PyDict_DelItem(_current_tasks, loop)
    else:
        _leave_task(loop, stand_in)
    return 0


cdef object run_in_place(object loop, object coro, object ctx, bint* finished):
    """Step ``coro`` (a coroutine, in the entered context ``ctx``) until it
    returns or first suspends.  Returns its value with ``finished[0]`` set,
    or the Task that carries it on from its suspension.  An exception it
    raises before suspending propagates."""
    cdef PyObject* presult = NULL
    cdef PySendResult sr
    cdef object value, task
    cdef StandInTask stand_in = _enter_stand_in(loop)
    try:
        sr = PyIter_Send(coro, None, &presult)
    except BaseException:
        if stand_in is not None:
            _leave_stand_in(loop, stand_in)
            stand_in.finished()
        raise
    if stand_in is not None:
        _leave_stand_in(loop, stand_in)
    value = <object>presult
    Py_XDECREF(presult)
    if sr == PYGEN_RETURN:
        finished[0] = True
        if stand_in is not None:
            stand_in.finished()
        return value
    finished[0] = False
    if _TASK_CONTEXT:
        task = loop.create_task(_resume(coro, value), context=ctx)
    else:
        task = loop.create_task(_resume(coro, value))   # copies ctx, the current one
    if stand_in is not None:
        stand_in.bind(task)
    return task


cdef object start_task(object loop, object coro, object ctx, bint eager):
    """A Task running ``coro`` in ``ctx`` (not entered by the caller) from
    its first line.  ``eager`` on Python 3.12+ with the loop's default task
    factory: the Task's first step runs now, and it may be done on return."""
    if _EAGER_START and eager and loop.get_task_factory() is None:
        return _Task(coro, loop=loop, context=ctx, eager_start=True)
    if _TASK_CONTEXT:
        return loop.create_task(coro, context=ctx)
    return ctx.run(loop.create_task, coro)


cdef object as_coroutine(object awaitable):
    """A coroutine awaiting ``awaitable`` (one that is not a plain coroutine:
    a compiled ``async def``, a Future-like object), for a Task to run."""
    return _await(awaitable)


cdef class _Continue:
    """Carries on a coroutine that already yielded ``first`` outside a Task."""
    cdef object coro
    cdef object first

    def __cinit__(self, coro, first):
        self.coro = coro
        self.first = first

    def __await__(self):
        coro = self.coro
        to_yield = self.first
        self.first = None
        while True:
            try:
                sent = yield to_yield
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    to_yield = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    to_yield = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _resume(coro, first):
    return await _Continue(coro, first)


async def _await(awaitable):
    return await awaitable
