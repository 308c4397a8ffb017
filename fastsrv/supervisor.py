"""Worker processes: ``fastsrv run APP --workers N``.

The supervisor is a small pure-Python process off the request path.  It
binds the listening socket once, then starts N workers, each an ordinary
``fastsrv run APP --fd FD`` on its own uvloop, serving the inherited socket.
It never touches a request; it only waits for signals and for its workers.

Why one socket bound before the workers start, rather than SO_REUSEPORT:

* the port stays bound for the supervisor's whole life, so a worker that
  dies and is being replaced loses nothing: connections queue in the shared
  backlog and the other workers (or the replacement) accept them.  With
  SO_REUSEPORT every worker has its own accept queue, and the connections
  waiting in a dead or closing worker's queue are reset;
* a bind error is reported once, before any worker starts;
* no other process can join the port by setting SO_REUSEPORT itself.

The cost is that the kernel wakes every worker for a new connection and the
first to call ``accept`` wins, so connections are spread less evenly than
SO_REUSEPORT's hash; under load every worker is busy and takes its share.

The lifecycle it forwards:

* SIGTERM, SIGINT or SIGHUP: the same signal goes to every worker, which
  drains as a single server does (shutdown delay, refuse new connections,
  finish in-flight requests, hooks).  The supervisor closes its own copy of
  the socket at once, so the listener closes when the last worker closes
  its copy.
* A second SIGTERM or SIGINT is forwarded too: the workers stop immediately.
* A worker starts with these signals blocked and unblocks them once its
  handlers are installed, so a signal that comes while it is still starting
  Python or importing the app is a graceful stop, not a death.
* The supervisor waits ``shutdown_delay + exit_wait_time + hook_budget`` plus
  a margin (``STOP_MARGIN``), then kills the workers still running, says so,
  and exits with status 5.
* A worker that exits while the server runs is restarted after a back-off
  that doubles while it keeps dying young; more than ``max_restarts``
  unexpected exits within ``restart_window`` seconds is a crash loop, and the
  supervisor stops the other workers and exits with status 6.
* A worker that fails before it ever served (a startup hook or the app's
  lifespan failed, the app cannot be imported) stops the start: the other
  workers are stopped and the supervisor exits with that worker's status.
* Each worker holds one end of a socket pair whose other end the supervisor
  keeps: it writes ``ready`` there once it serves, and starts a graceful
  drain if the supervisor disappears (EOF), so no worker outlives it.
* Replacing a worker (``--limit-max-requests``, which the worker asks for by
  writing ``recycle``; every worker at a ``--reload``): the replacement is
  started first, and only once it writes ``ready`` is the old worker told
  (``drain``) to drain.  It drains as at SIGTERM, except that its idle
  keep-alive connections close after their next response (or a second
  idle) rather than at once: the port stays served, so nothing is cut, and
  a client never writes a request onto a connection being closed.  A
  replacement that fails to start leaves the old worker serving.

Exit status: 0 when every worker drained cleanly; otherwise the most serious
worker status, in the order 5 (forced), 3 (requests cut at the deadline), 4
(a shutdown hook failed), then any other; 1 or 2 when the workers could not
start; 6 for a crash loop.
"""

from __future__ import annotations

import collections
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from fastsrv.server import (EXIT_DEADLINE, EXIT_FORCED, EXIT_HOOK_FAILED, EXIT_OK, EXIT_STARTUP_FAILED,
                            http_url)

log = logging.getLogger("fastsrv.supervisor")

EXIT_CRASH_LOOP = 6
STOP_MARGIN = 5.0           # on top of delay + exit wait + hook budget: a worker's own fixed
                            # waits after those (cancelled handlers, listener close, loop
                            # clean-up) add up to 4 s
SUPERVISOR_FD_ENV = "FASTSRV_SUPERVISOR_FD"
WORKER_ID_ENV = "FASTSRV_WORKER_ID"
_READY = b"ready\n"
_RECYCLE = b"recycle\n"
_DRAIN = b"drain\n"
_SEVERITY = (EXIT_FORCED, EXIT_DEADLINE, EXIT_HOOK_FAILED)
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass
class SupervisorConfig:
    """How many workers, how long a stop may take, when to give up restarting."""
    workers: int
    stop_timeout: float                 # the workers' worst-case graceful stop, before STOP_MARGIN
    max_restarts: int = 5               # unexpected exits allowed within restart_window
    restart_window: float = 60.0
    backoff_first: float = 0.1          # seconds before the first restart, doubled per quick death
    backoff_max: float = 10.0
    stable_after: float = 10.0          # a worker up this long resets its back-off


@dataclass
class Worker:
    """One worker slot's current process."""
    slot: int
    proc: subprocess.Popen[bytes]
    channel: socket.socket
    started: float
    ready: bool = False
    metrics_slot: int = -1
    recycle_asked: bool = False
    replacement: bool = False           # started to take over from a worker being replaced

    def describe(self) -> str:
        return f"worker {self.slot} (pid {self.proc.pid})"


def _status_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def combine_statuses(statuses: Sequence[int]) -> int:
    """The supervisor's exit status for the workers' graceful-stop statuses
    (a negative status, a worker killed by a signal, counts as forced)."""
    codes = [EXIT_FORCED if code < 0 else code for code in statuses]
    for code in _SEVERITY:
        if code in codes:
            return code
    return max(codes, default=EXIT_OK)


class Supervisor:
    """Starts, watches, restarts and stops the worker processes.

    ``command(fd)`` returns the argv of one worker serving the inherited
    listening socket ``fd``.  Signal handlers only queue the signal; one
    loop does the work (``_on_signal``, ``_on_exit``, ``_on_ready``).
    """

    def __init__(self, sock: socket.socket, command: Callable[[int], list[str]],
                 config: SupervisorConfig, env_drop: Sequence[str] = (), metrics: Optional[int] = None,
                 uds: Optional[str] = None, tls: bool = False) -> None:
        self.sock = sock
        self.command = command
        self.config = config
        self.env_drop = frozenset(env_drop)
        self.uds = uds
        self.tls = tls
        self._uds_identity = None
        if uds is not None:
            from fastsrv.listen import socket_identity
            self._uds_identity = socket_identity(uds)
        # with --metrics-path: a block of slots every worker maps (fastsrv.metrics)
        self.metrics: Any = None
        self._metrics_fd = -1
        if metrics:
            from fastsrv._metrics import Metrics
            from fastsrv.metrics import shared_block
            self._metrics_fd, memory = shared_block(metrics)
            self.metrics = Metrics(memory, 0)
        self.workers: dict[int, Worker] = {}
        self.retiring: dict[int, list[Worker]] = collections.defaultdict(list)   # slot -> being replaced
        self.reload_pending = False     # set (from the file watcher's thread) when files changed
        self.restart_at: dict[int, float] = {}          # slot -> monotonic time
        self.quick_deaths: dict[int, int] = collections.defaultdict(int)
        self.deaths: collections.deque[float] = collections.deque()
        self.statuses: list[int] = []                   # exit statuses of workers stopped by us
        self.stopping: Optional[str] = None             # why the stop began (a signal's name, ...)
        self.forced = False
        self.deadline = 0.0
        self.exit_status: Optional[int] = None
        self.serving = False
        self._selector = selectors.DefaultSelector()
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._signals: collections.deque[int] = collections.deque()
        self._prev_handlers: dict[int, Any] = {}
        self._prev_wakeup = -1

    # ---- the loop ----

    def run(self) -> int:
        """Supervise until every worker has stopped; return the exit status."""
        self._install_signals()
        try:
            for slot in range(1, self.config.workers + 1):
                self._dispatch_signals()
                if self.stopping is None:
                    self._spawn(slot)
            while self._processes() or (self.stopping is None and self.exit_status is None):
                self._wait(self._next_timeout())
                self._dispatch_signals()
                self._reap()
                self._restart_due()
                self._replace_all_if_asked()
                self._enforce_deadline()
            return self._final_status()
        finally:
            self._kill_all()
            self._restore_signals()
            self._close_socket()
            self._remove_uds()

    def _processes(self) -> list[Worker]:
        """Every worker process alive: current ones and those being replaced."""
        return [*self.workers.values(), *(w for ws in self.retiring.values() for w in ws)]

    def wake(self) -> None:
        """Wake the loop (from another thread: the file watcher)."""
        try:
            self._wakeup_w.send(b"\0")
        except OSError:
            pass

    def _next_timeout(self) -> float:
        """Seconds until the next restart or the stop deadline, at most 1."""
        moments = list(self.restart_at.values())
        if self.stopping is not None:
            moments.append(self.deadline)
        # SIGCHLD wakes the loop when a worker exits; the 1 s cap is a cheap backstop
        return max(0.0, min([time.monotonic() + 1.0, *moments]) - time.monotonic())

    def _wait(self, timeout: float) -> None:
        for key, _ in self._selector.select(timeout):
            if key.fileobj is self._wakeup_r:
                try:
                    self._wakeup_r.recv(4096)
                except BlockingIOError:
                    pass
            else:
                self._on_channel(key.data)

    def _on_channel(self, worker: Worker) -> None:
        was_ready, was_asked = worker.ready, worker.recycle_asked
        if not self._read_ready(worker):
            self._selector.unregister(worker.channel)   # it is exiting; _reap will see it
            return
        if worker.ready and not was_ready:
            self._on_ready(worker)
        if worker.recycle_asked and not was_asked:
            self._replace(worker, "it served its --limit-max-requests")

    @staticmethod
    def _read_ready(worker: Worker) -> bool:
        """Read the worker's channel, noting ``ready`` and ``recycle``; False at its end."""
        try:
            data = worker.channel.recv(256)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        for line in data.splitlines(keepends=True):
            if line == _READY:
                worker.ready = True
            elif line == _RECYCLE:
                worker.recycle_asked = True
        return bool(data)

    def _on_ready(self, worker: Worker) -> None:
        if self.stopping is not None:
            return
        for old in self.retiring.get(worker.slot, ()):
            # its replacement serves: now the old worker drains
            log.info("%s serving: %s drains", worker.describe(), old.describe())
            self._tell(old, _DRAIN)
        if self.serving:
            if not worker.replacement:
                log.info("%s serving again", worker.describe())
            return
        if all(w.ready for w in self.workers.values()) and len(self.workers) == self.config.workers:
            self.serving = True
            log.info("%d worker(s) serving on %s (supervisor pid %d)",
                     self.config.workers, http_url(self.sock, self.tls), os.getpid())

    # ---- replacing workers: --limit-max-requests, --reload ----

    def _replace(self, old: Worker, why: str) -> None:
        """Start a new worker for ``old``'s slot; ``old`` drains once the new one serves."""
        if self.stopping is not None or self.workers.get(old.slot) is not old:
            return
        log.info("replacing %s (%s): starting its successor first", old.describe(), why)
        del self.workers[old.slot]
        self.retiring[old.slot].append(old)
        self._spawn(old.slot, replacement=True)

    def request_reload(self) -> None:
        """Replace every worker (from the file watcher, on any thread)."""
        self.reload_pending = True
        self.wake()

    def _replace_all_if_asked(self) -> None:
        if not self.reload_pending or self.stopping is not None:
            return
        self.reload_pending = False
        for worker in list(self.workers.values()):
            if worker.ready:        # one still starting imports the files as they are now
                self._replace(worker, "files changed")

    @staticmethod
    def _tell(worker: Worker, message: bytes) -> None:
        try:
            worker.channel.send(message)
        except OSError:
            pass

    # ---- workers ----

    def _spawn(self, slot: int, replacement: bool = False) -> None:
        ours, theirs = socket.socketpair()
        env = {k: v for k, v in os.environ.items() if k not in self.env_drop}
        env.update({SUPERVISOR_FD_ENV: str(theirs.fileno()), WORKER_ID_ENV: str(slot)})
        fd = self.sock.fileno()
        pass_fds = [fd, theirs.fileno()]
        metrics_slot = -1
        if self.metrics is not None:
            from fastsrv.metrics import METRICS_FD_ENV, METRICS_SLOT_ENV
            metrics_slot = self.metrics.free_slot()
            if metrics_slot > 0:
                self.metrics.claim(metrics_slot)
                env.update({METRICS_FD_ENV: str(self._metrics_fd), METRICS_SLOT_ENV: str(metrics_slot)})
                pass_fds.append(self._metrics_fd)
            else:
                log.error("no free metrics slot for worker %d: its requests are not counted", slot)
        # the worker starts with the stop signals blocked (a child inherits
        # the mask) and unblocks them once its handlers are installed: a
        # signal forwarded while it starts up is a graceful stop, not a death
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            proc = subprocess.Popen(self.command(fd), env=env, pass_fds=pass_fds,
                                    start_new_session=True)
        except OSError as exc:
            ours.close()
            theirs.close()
            if metrics_slot > 0:
                self.metrics.retire(metrics_slot)
            log.error("cannot start worker %d: %s", slot, exc)
            self._note_death(slot, 0.0, EXIT_STARTUP_FAILED, ever_ready=self.serving)
            return
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        theirs.close()
        ours.setblocking(False)
        worker = Worker(slot, proc, ours, time.monotonic(), metrics_slot=metrics_slot, replacement=replacement)
        self.workers[slot] = worker
        self._selector.register(ours, selectors.EVENT_READ, worker)
        log.info("%s started", worker.describe())

    def _reap(self) -> None:
        for slot, worker in list(self.workers.items()):
            code = worker.proc.poll()
            if code is None:
                continue
            del self.workers[slot]
            if not worker.ready:
                self._read_ready(worker)    # it may have said ready just before it exited
            self._forget(worker)
            if worker.replacement and not worker.ready and self.retiring.get(slot) and self.stopping is None:
                log.error("%s, the replacement, exited before it served (%s): %s keeps serving "
                          "(see its log above)", worker.describe(), _status_text(code),
                          ", ".join(w.describe() for w in self.retiring[slot]))
                self._reinstate(slot)
                continue
            self._on_exit(worker, code)
        for slot, old in list(self.retiring.items()):
            for worker in list(old):
                code = worker.proc.poll()
                if code is None:
                    continue
                old.remove(worker)
                self._forget(worker)
                if self.stopping is not None:
                    self.statuses.append(code)
                level = logging.INFO if code == EXIT_OK else logging.WARNING
                log.log(level, "%s, replaced, exited: %s", worker.describe(), _status_text(code))
            if not old:
                del self.retiring[slot]

    def _reinstate(self, slot: int) -> None:
        """The replacement for ``slot`` failed to start: its old worker
        serves on.  After a --reload that waits for the next change; a
        recycle is not tried again, and counts toward the crash-loop limit."""
        old = self.retiring[slot].pop()
        if not self.retiring[slot]:
            del self.retiring[slot]
        self.workers[slot] = old
        if old.recycle_asked:
            old.recycle_asked = False
            self.deaths.append(time.monotonic())     # counts toward the crash-loop limit
            if len(self.deaths) > self.config.max_restarts:
                log.error("crash loop: the replacement workers keep failing to start")
                self.exit_status = EXIT_CRASH_LOOP
                self._begin_stop(signal.SIGTERM, "crash loop")

    def _forget(self, worker: Worker) -> None:
        try:
            self._selector.unregister(worker.channel)
        except (KeyError, ValueError):
            pass
        worker.channel.close()
        if self.metrics is not None and worker.metrics_slot > 0:
            self.metrics.retire(worker.metrics_slot)

    def _on_exit(self, worker: Worker, code: int) -> None:
        lived = time.monotonic() - worker.started
        if self.stopping is not None:
            self.statuses.append(code)
            level = logging.INFO if code == EXIT_OK else logging.WARNING
            log.log(level, "%s stopped: %s", worker.describe(), _status_text(code))
            return
        self._note_death(worker.slot, lived, code, worker.ready or self.serving)

    def _note_death(self, slot: int, lived: float, code: int, ever_ready: bool) -> None:
        """A worker exited without being asked: restart it, or give up."""
        if not ever_ready:
            status = code if code in (EXIT_STARTUP_FAILED, 2) else EXIT_STARTUP_FAILED
            log.error("worker %d exited before it served (%s): stopping the start; "
                      "its own log above says why", slot, _status_text(code))
            self.exit_status = status
            self._begin_stop(signal.SIGTERM, "a worker failed to start")
            return
        now = time.monotonic()
        self.deaths.append(now)
        while self.deaths and self.deaths[0] < now - self.config.restart_window:
            self.deaths.popleft()
        if len(self.deaths) > self.config.max_restarts:
            log.error("crash loop: %d unexpected worker exits within %.0f s (the last: worker %d, %s); "
                      "stopping the other workers. Fix the cause (see the worker log above) and start again",
                      len(self.deaths), self.config.restart_window, slot, _status_text(code))
            self.exit_status = EXIT_CRASH_LOOP
            self._begin_stop(signal.SIGTERM, "crash loop")
            return
        self.quick_deaths[slot] = self.quick_deaths[slot] + 1 if lived < self.config.stable_after else 1
        delay = min(self.config.backoff_first * 2 ** (self.quick_deaths[slot] - 1), self.config.backoff_max)
        self.restart_at[slot] = now + delay
        log.warning("worker %d exited unexpectedly after %.1f s (%s): restarting it in %.1f s "
                    "(%d of %d unexpected exits allowed within %.0f s)", slot, lived, _status_text(code),
                    delay, len(self.deaths), self.config.max_restarts, self.config.restart_window)

    def _restart_due(self) -> None:
        if self.stopping is not None:
            self.restart_at.clear()
            return
        now = time.monotonic()
        for slot, when in list(self.restart_at.items()):
            if when <= now:
                del self.restart_at[slot]
                self._spawn(slot)

    # ---- stopping ----

    def _dispatch_signals(self) -> None:
        while self._signals:
            self._on_signal(self._signals.popleft())

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self.stopping is None:
            self._begin_stop(sig, name)
        elif sig in (signal.SIGTERM, signal.SIGINT) and not self.forced:
            self.forced = True
            log.warning("second %s during the shutdown: the workers stop immediately", name)
            self._signal_workers(sig)
        else:
            log.info("%s during the shutdown: ignored", name)

    def _begin_stop(self, sig: int, why: str) -> None:
        self.stopping = why
        self.restart_at.clear()
        self.deadline = time.monotonic() + self.config.stop_timeout + STOP_MARGIN
        # the workers hold their own copies: the listener closes with the last of them
        self._close_socket()
        self._remove_uds()
        live = len(self._processes())
        log.info("%s: stopping %d worker(s) with %s, waiting up to %.1f s", why, live,
                 signal.Signals(sig).name, self.deadline - time.monotonic())
        self._signal_workers(sig)

    def _signal_workers(self, sig: int) -> None:
        for worker in self._processes():
            try:
                worker.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def _enforce_deadline(self) -> None:
        if self.stopping is None or not self._processes() or time.monotonic() < self.deadline:
            return
        late = ", ".join(w.describe() for w in self._processes())
        log.error("%d worker(s) still running %.1f s after the stop began: killing %s",
                  len(self._processes()), self.config.stop_timeout + STOP_MARGIN, late)
        self._kill_all()
        self._reap()

    def _kill_all(self) -> None:
        for worker in self._processes():
            if worker.proc.poll() is None:
                try:
                    os.killpg(worker.proc.pid, signal.SIGKILL)  # its children too: it leads its session
                except ProcessLookupError:
                    pass
                worker.proc.wait()

    def _final_status(self) -> int:
        if self.exit_status is not None:
            status = self.exit_status
        else:
            status = combine_statuses(self.statuses)
        log.info("supervisor stopped, exit status %d", status)
        return status

    def _close_socket(self) -> None:
        if self.sock.fileno() != -1:
            self.sock.close()

    def _remove_uds(self) -> None:
        if self.uds is not None:
            from fastsrv.listen import remove_unix
            if remove_unix(self.uds, self._uds_identity):
                log.info("removed the socket file %s", self.uds)
            self.uds = None

    # ---- signals: the handlers only queue ----

    def _install_signals(self) -> None:
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        self._selector.register(self._wakeup_r, selectors.EVENT_READ)
        self._prev_wakeup = signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            prev = signal.getsignal(sig)
            if sig == signal.SIGHUP and prev == signal.SIG_IGN:
                log.info("SIGHUP is ignored (nohup): leaving it alone, the workers inherit that")
                continue
            self._prev_handlers[sig] = prev
            signal.signal(sig, self._queue_signal)

    def _queue_signal(self, sig: int, frame: Any) -> None:
        if sig != signal.SIGCHLD:
            self._signals.append(sig)

    def _restore_signals(self) -> None:
        for sig, prev in self._prev_handlers.items():
            signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(self._prev_wakeup)
        self._selector.close()
        self._wakeup_r.close()
        self._wakeup_w.close()


def bind_socket(host: str, port: int, backlog: int, uds: Optional[str] = None) -> socket.socket:
    """The listening socket every worker inherits, TCP or at the Unix
    socket path ``uds`` (``OSError`` if it cannot be bound)."""
    from fastsrv import listen
    sock = listen.bind_unix(uds) if uds else listen.bind_tcp(host, port)
    try:
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def attach_worker(server: Any, fd: int) -> None:
    """In a worker: tell the supervisor once ``server`` serves, drain if the
    supervisor goes away (its end of the channel closes) or says ``drain``
    (a replacement serves), ask to be replaced at ``--limit-max-requests``,
    and count into the supervisor's metrics block."""
    channel = socket.socket(fileno=fd)
    channel.set_inheritable(False)      # pass_fds made it inheritable: programs the app starts must not hold it
    channel.setblocking(False)
    from fastsrv.metrics import attach_from_env
    shared = attach_from_env()
    if shared is not None and server.metrics is not None:
        server.metrics = shared

    def ask_replacement() -> None:
        try:
            channel.send(_RECYCLE)
        except OSError:
            pass

    server.on_request_limit = ask_replacement

    def on_ready() -> None:
        import asyncio
        loop = asyncio.get_running_loop()
        try:
            channel.send(_READY)
        except OSError:
            pass
        loop.add_reader(channel.fileno(), on_readable, loop)

    def on_readable(loop: Any) -> None:
        try:
            data = channel.recv(64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(channel.fileno())
            if server.state.value == "running":
                log.warning("the supervisor is gone: draining")
                server.request_stop("graceful", "supervisor exit")
        elif _DRAIN in data and server.state.value == "running":
            server.request_stop("graceful", "replacement serving", replaced=True)

    server.add_ready_callback(on_ready)


def worker_label() -> str:
    """``[worker N] `` in a worker's log lines, empty elsewhere (read once:
    programs the app starts do not inherit it)."""
    slot = os.environ.pop(WORKER_ID_ENV, None)
    return f"[worker {slot}] " if slot else ""


def in_worker() -> Optional[int]:
    """The supervisor channel's fd when this process is a worker, else None."""
    raw = os.environ.pop(SUPERVISOR_FD_ENV, None)
    return int(raw) if raw else None


def python_command() -> list[str]:
    """How a worker runs the CLI: this interpreter, importing the fastsrv
    package the supervisor runs (``-m fastsrv`` would take a ``fastsrv/``
    folder in the working directory first)."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (f"import sys; sys.path[0] = {package_parent!r}; "
            "from fastsrv.cli import console_main; console_main()")
    return [sys.executable, "-c", code]
