"""``fastsrv run --workers N``: one port, N worker processes, one lifecycle."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, ProcessServer, RawClient, _free_port
from fastsrv.supervisor import combine_statuses


class Workers(ProcessServer):
    """``fastsrv run APP --workers N`` in its own process group, ready once every worker serves."""

    READY = b"worker(s) serving on"

    def __init__(self, app: str, workers: int = 2, extra: tuple[str, ...] = ()) -> None:
        super().__init__([f"tests.apps.workers:{app}", "--workers", str(workers), *extra],
                         preexec_fn=os.setpgrp)

    def worker_pids(self) -> dict[int, int]:
        """slot -> pid of the workers the supervisor started, latest first."""
        found: dict[int, int] = {}
        for slot, pid in re.findall(r"worker (\d+) \(pid (\d+)\) started", self.log()):
            found[int(slot)] = int(pid)
        return found

    def wait_for(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the log:\n{self.log()}")
            time.sleep(0.02)


@pytest.fixture
def workers():
    started: list[Workers] = []

    def start(app: str = "app", count: int = 2, *extra: str) -> Workers:
        w = Workers(app, count, extra)
        started.append(w)
        return w

    yield start
    for w in started:
        if w.proc.poll() is None:
            os.killpg(w.proc.pid, signal.SIGKILL)
        for pid in w.worker_pids().values():
            _kill_quietly(pid)
        w.kill()


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _get(client: RawClient, path: str) -> str:
    client.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    resp = client.read_response()
    assert resp.status == 200, resp.raw
    return resp.body.decode()


def one_connection_per_worker(port: int, count: int, tries: int = 400) -> dict[int, RawClient]:
    """Open keep-alive connections until each of ``count`` workers holds one; pid -> client."""
    held: dict[int, RawClient] = {}
    spare: list[RawClient] = []
    for _ in range(tries):
        c = RawClient(port)
        pid = int(_get(c, "/pid"))
        if pid in held:
            spare.append(c)
        else:
            held[pid] = c
        if len(held) == count:
            break
    for c in spare:
        c.close()
    assert len(held) == count, f"only {len(held)} of {count} workers accepted in {tries} connections"
    return held


def slow_request_on_each(w: Workers, ms: int, count: int = 2) -> dict[int, RawClient]:
    """One connection per worker, each with a ``GET /slow?ms=...`` in flight; pid -> client."""
    held = one_connection_per_worker(w.port, count)
    for c in held.values():
        c.send(f"GET /slow?ms={ms} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    time.sleep(0.2)
    return held


def test_workers_share_one_port_and_all_serve(workers):
    w = workers("app", 3).wait_ready()
    held = one_connection_per_worker(w.port, 3)
    pids = set(held)
    assert pids == set(w.worker_pids().values())
    for pid in pids:
        assert _parent(pid) == w.proc.pid, "every worker is a child of the supervisor"
    # one listening socket (SO_REUSEPORT would show one per worker), held by every worker
    listeners = _listening_inodes(w.port)
    assert len(listeners) == 1, listeners
    for pid in pids:
        assert listeners <= _socket_inodes(pid), f"worker {pid} does not hold the listening socket"
    for c in held.values():
        c.close()
    w.signal(signal.SIGTERM)
    assert w.wait() == 0


def _listening_inodes(port: int) -> set[str]:
    """The inodes of the sockets listening on ``port`` (IPv4)."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return {row[9] for row in rows if row[3] == "0A" and int(row[1].split(":")[1], 16) == port}


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def test_startup_hooks_and_shutdown_hooks_run_in_every_worker(workers):
    w = workers("app", 2).wait_ready()
    w.signal(signal.SIGTERM)
    assert w.wait() == 0
    pids = set(w.worker_pids().values())
    assert set(map(int, re.findall(r"EVENT startup pid=(\d+)", w.log()))) == pids
    assert set(map(int, re.findall(r"EVENT shutdown pid=(\d+)", w.log()))) == pids


def test_asgi_lifespan_runs_in_every_worker(workers):
    w = workers("lifespan_app", 2).wait_ready()
    held = one_connection_per_worker(w.port, 2)
    for c in held.values():
        c.close()
    w.signal(signal.SIGTERM)
    assert w.wait() == 0
    assert set(map(int, re.findall(r"EVENT lifespan-startup pid=(\d+)", w.log()))) == set(held)
    assert set(map(int, re.findall(r"EVENT lifespan-shutdown pid=(\d+)", w.log()))) == set(held)


def test_sigterm_drains_every_worker_and_exits_0(workers):
    w = workers("app", 2).wait_ready()
    held = slow_request_on_each(w, 800)
    w.signal(signal.SIGTERM)
    time.sleep(0.2)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", w.port), timeout=1).close()
    for pid, c in held.items():
        resp = c.read_response()
        assert (resp.status, resp.body) == (200, f"slow 800 from {pid}".encode())
        assert resp.header("connection") == "close"
    assert w.wait() == 0
    assert w.log().count("stopped: exit status 0") == 2


def test_requests_cut_at_the_exit_wait_time_give_status_3(workers):
    w = workers("app", 2, "--exit-wait-time", "0.3").wait_ready()
    held = slow_request_on_each(w, 10000)
    w.signal(signal.SIGTERM)
    assert w.wait() == 3
    assert w.log().count("stopped: exit status 3") == 2
    for c in held.values():
        with pytest.raises(ConnectionError):
            c.read_response()


def test_every_worker_answers_readiness_503_during_the_shutdown_delay(workers):
    w = workers("app", 2, "--readiness-path", "/readyz", "--shutdown-delay", "1.5").wait_ready()
    w.signal(signal.SIGTERM)
    time.sleep(0.3)
    answered_by = set()
    for _ in range(200):            # new connections are still accepted during the delay
        c = RawClient(w.port)
        c.send(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().status == 503
        c.send(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
        answered_by.add(int(c.read_response().body))
        c.close()
        if len(answered_by) == 2:
            break
    assert answered_by == set(w.worker_pids().values())
    assert w.wait() == 0


def test_second_signal_stops_every_worker_immediately(workers):
    w = workers("app", 2).wait_ready()
    held = slow_request_on_each(w, 10000)
    w.signal(signal.SIGTERM)
    time.sleep(0.3)
    t0 = time.monotonic()
    w.signal(signal.SIGINT)
    assert w.wait() == 5
    assert time.monotonic() - t0 < 3
    for c in held.values():
        with pytest.raises(ConnectionError):
            c.read_response()
    assert "second SIGINT during the shutdown" in w.log()


def test_ctrl_c_in_a_terminal_drains_once(workers):
    # a terminal sends SIGINT to the whole foreground group; the workers are
    # in their own sessions, so they get it once, from the supervisor
    w = workers("app", 2).wait_ready()
    os.killpg(w.proc.pid, signal.SIGINT)
    assert w.wait() == 0
    assert "stopping immediately" not in w.log()


def test_a_killed_worker_is_replaced_and_nothing_is_refused(workers):
    w = workers("app", 2).wait_ready()
    victim = w.worker_pids()[1]
    os.kill(victim, signal.SIGKILL)
    # while it is gone, the shared socket still accepts: the other worker serves
    for _ in range(20):
        c = RawClient(w.port)
        assert int(_get(c, "/pid")) != victim
        c.close()
    w.wait_for(") serving again")
    assert "worker 1 exited unexpectedly" in w.log() and "killed by SIGKILL" in w.log()
    replacement = w.worker_pids()[1]
    assert replacement != victim and _alive(replacement)
    held = one_connection_per_worker(w.port, 2)
    assert replacement in held
    for c in held.values():
        c.close()
    w.signal(signal.SIGTERM)
    assert w.wait() == 0


def test_a_crash_loop_ends_the_supervisor_with_status_6(workers):
    w = workers("crashing", 2).wait_ready()
    assert w.wait(timeout=30) == 6
    log = w.log()
    assert "crash loop" in log and "exit status 70" in log
    assert "restarting it in 0.1 s" in log and "restarting it in 0.2 s" in log, "the back-off doubles"
    for pid in w.worker_pids().values():
        assert not _alive(pid)


def test_a_worker_failing_to_start_stops_the_start_with_status_1(workers):
    w = workers("bad_startup", 2)
    assert w.wait() == 1
    log = w.log()
    assert "the database is not there" in log
    assert "exited before it served" in log
    assert "restarting" not in log


def test_workers_that_outlive_the_wait_are_killed_with_status_5(workers):
    w = workers("stubborn", 2, "--exit-wait-time", "0.2", "--hook-budget", "0.2").wait_ready()
    t0 = time.monotonic()
    w.signal(signal.SIGTERM)
    assert w.wait(timeout=15) == 5
    elapsed = time.monotonic() - t0
    assert 5.2 < elapsed < 8, elapsed      # 0.2 + 0.2 + the 5 s margin
    assert "still running 5.4 s after the stop began: killing" in w.log()
    for pid in w.worker_pids().values():
        assert not _alive(pid)


def test_workers_drain_when_the_supervisor_is_killed(workers):
    w = workers("app", 2).wait_ready()
    pids = list(w.worker_pids().values())
    os.kill(w.proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids), "a worker outlived its supervisor"
    assert w.log().count("the supervisor is gone: draining") == 2


def test_programs_a_worker_starts_do_not_keep_the_port(workers):
    w = workers("spawner", 1).wait_ready()
    helpers = [int(pid) for pid in re.findall(r"EVENT helper pid=(\d+)", w.log())]
    try:
        w.signal(signal.SIGTERM)
        assert w.wait() == 0
        assert helpers and all(_alive(pid) for pid in helpers)
        assert not _listening_inodes(w.port), "a program the worker started holds the listening socket"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", w.port), timeout=1).close()
    finally:
        for pid in helpers:
            _kill_quietly(pid)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP, signal.SIGTERM])
def test_one_signal_right_after_the_start_is_still_a_clean_stop(workers, sig):
    # the workers are still starting Python: they must not die of the
    # forwarded signal (it waits, blocked, until their handlers are installed)
    w = workers("app", 2)
    w.wait_for("worker 2 (pid")
    w.signal(sig)
    assert w.wait() == 0, w.log()


def test_workers_import_the_supervisors_fastsrv_not_a_folder_in_the_working_directory(tmp_path):
    shadow = tmp_path / "fastsrv"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the wrong fastsrv')\n")
    port = _free_port()
    launcher = f"import sys; sys.path[0] = {ROOT!r}; from fastsrv.cli import console_main; console_main()"
    proc = subprocess.Popen([sys.executable, "-c", launcher, "run", "fastsrv.demo:app", "--workers", "1",
                             "--port", str(port)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    serves_hello_then_drains(proc, port)


def serves_hello_then_drains(proc: subprocess.Popen, port: int) -> None:
    """``proc`` (a server on ``port``) answers the demo's ``GET /`` within 10 s, then exits 0 on SIGTERM."""
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                c = RawClient(port)
                break
            except ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
                time.sleep(0.05)
        assert _get(c, "/") == "Hello, World!"
        c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "--workers must be at least 1"),
    (["--fd", "0"], "--fd 0 is not"),
])
def test_bad_worker_settings_exit_2(args, message):
    out = subprocess.run([sys.executable, "-m", "fastsrv", "run", "fastsrv.demo:app", *args],
                         capture_output=True, text=True, timeout=30, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr


def test_a_taken_port_fails_once_in_the_supervisor(workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "fastsrv", "run", "fastsrv.demo:app", "--workers", "2",
                              "--port", str(port)], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "started" not in out.stderr, "no worker starts when the port cannot be bound"


def test_fd_serves_an_inherited_socket_without_a_supervisor():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-m", "fastsrv", "run", "fastsrv.demo:app",
                                 "--fd", str(sock.fileno())], pass_fds=(sock.fileno(),), cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    serves_hello_then_drains(proc, port)


@pytest.mark.parametrize("statuses, expected", [
    ([0, 0], 0), ([0, 3], 3), ([4, 3], 3), ([4, 0], 4), ([5, 3, 4], 5), ([0, -9], 5), ([], 0), ([0, 1], 1),
])
def test_the_exit_status_is_the_most_serious_workers(statuses, expected):
    assert combine_statuses(statuses) == expected


def test_workers_serve_ipv6_and_log_the_address_in_brackets(workers):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    w = workers("app", 1, "--host", "::1").wait_ready()
    assert f"worker(s) serving on http://[::1]:{w.port}" in w.log()
    with socket.create_connection(("::1", w.port), timeout=5) as c:
        c.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.recv(4096).startswith(b"HTTP/1.1 200")
    w.signal(signal.SIGTERM)
    assert w.wait() == 0
