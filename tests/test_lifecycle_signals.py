"""The graceful shutdown, driven by real signals to a server subprocess.

Each test is one promise of DESIGN.md's shutdown sequence.  Timing bounds
here are generous (CI machines are noisy); the latency figures themselves
are measured by ``bench/shutdown_latency.py``.
"""

from __future__ import annotations

import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import RawClient

APP = "tests.apps.lifecycle:plain"


def get(port: int, path: str, timeout: float = 15):
    c = RawClient(port, timeout=timeout)
    try:
        c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        return c.read_response()
    finally:
        c.close()


def wait_for_log(proc, pattern: str, count: int = 1, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(re.findall(pattern, proc.log())) >= count:
            return
        time.sleep(0.005)
    raise AssertionError(f"{pattern!r} x{count} not in log:\n{proc.log()}")


def events(proc) -> dict[str, float]:
    return {m[0]: float(m[1]) for m in re.findall(r"EVENT (\S+) ([0-9.]+)", proc.log())}


def in_flight(pool, port: int, n: int, path: str):
    return [pool.submit(get, port, path) for _ in range(n)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
                         ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_every_signal_drains_in_flight_requests_with_connection_close(process_server, sig):
    p = process_server([APP]).wait_ready()
    with ThreadPoolExecutor(8) as pool:
        futures = in_flight(pool, p.port, 8, "/slow?ms=600")
        wait_for_log(p, "EVENT slow-start", 8)
        p.signal(sig)
        responses = [f.result() for f in futures]
    assert [r.status for r in responses] == [200] * 8
    assert all(r.header("connection") == "close" for r in responses)
    assert p.wait() == 0
    assert "graceful shutdown started by " + signal.Signals(sig).name in p.log()


def test_idle_keepalive_connections_are_closed_at_once(process_server):
    p = process_server([APP]).wait_ready()
    idle = []
    for _ in range(20):
        c = RawClient(p.port)
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().status == 200
        idle.append(c)
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(get, p.port, "/slow?ms=1500")
        wait_for_log(p, "EVENT slow-start")
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        assert all(c.is_closed(wait=1.0) for c in idle)
        closed_after = time.monotonic() - t0
        assert busy.result().status == 200
    assert closed_after < 0.3, f"idle connections took {closed_after * 1000:.0f} ms to close"
    assert re.search(r"closed 20 idle connection\(s\)", p.log())
    assert p.wait() == 0


def test_new_connections_are_refused_during_the_drain(process_server):
    p = process_server([APP]).wait_ready()
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(get, p.port, "/slow?ms=1000")
        wait_for_log(p, "EVENT slow-start")
        p.signal(signal.SIGTERM)
        wait_for_log(p, "listeners closed")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", p.port), timeout=2).close()
        assert busy.result().status == 200
    assert p.wait() == 0


def test_exit_follows_the_last_in_flight_response_at_once(process_server):
    p = process_server([APP]).wait_ready()
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(get, p.port, "/slow?ms=500")
        wait_for_log(p, "EVENT slow-start")
        p.signal(signal.SIGTERM)
        assert busy.result().status == 200
        answered = time.monotonic()
    assert p.wait() == 0
    exited_after = time.monotonic() - answered
    assert exited_after < 0.5, f"exit took {exited_after * 1000:.0f} ms after the last response"


def test_deadline_cancels_handlers_and_exits_on_time_with_status_3(process_server):
    p = process_server([APP, "--exit-wait-time", "1"]).wait_ready()
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(get, p.port, "/slow?ms=30000")
        wait_for_log(p, "EVENT slow-start")
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        assert p.wait() == 3
        took = time.monotonic() - t0
        with pytest.raises(ConnectionError):
            busy.result()
    assert 0.9 < took < 2.5, took
    assert "EVENT slow-cancelled" in p.log()
    assert "cancelled 1 request(s) still in flight" in p.log()


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_second_signal_stops_immediately_with_status_5(process_server, second):
    p = process_server([APP, "--exit-wait-time", "30"]).wait_ready()
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(get, p.port, "/slow?ms=30000")
        wait_for_log(p, "EVENT slow-start")
        p.signal(signal.SIGTERM)
        wait_for_log(p, "request\\(s\\) in flight")
        t0 = time.monotonic()
        p.signal(second)
        assert p.wait() == 5
        assert time.monotonic() - t0 < 1.0
        with pytest.raises(ConnectionError):
            busy.result()
    assert "stopping immediately" in p.log()


def test_legacy_policy_sigterm_stops_at_once(process_server):
    p = process_server([APP, "--signal-policy", "legacy"]).wait_ready()
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(get, p.port, "/slow?ms=30000")
        wait_for_log(p, "EVENT slow-start")
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        assert p.wait() == 5
        assert time.monotonic() - t0 < 1.0
        with pytest.raises(ConnectionError):
            busy.result()


def test_legacy_policy_sigint_is_still_graceful(process_server):
    p = process_server([APP, "--signal-policy", "legacy"]).wait_ready()
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(get, p.port, "/slow?ms=500")
        wait_for_log(p, "EVENT slow-start")
        p.signal(signal.SIGINT)
        assert busy.result().status == 200
    assert p.wait() == 0


def test_sighup_left_alone_when_started_under_nohup(process_server):
    def ignore_hup():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    p = process_server([APP], preexec_fn=ignore_hup).wait_ready()
    p.signal(signal.SIGHUP)
    time.sleep(0.3)
    assert get(p.port, "/").status == 200
    assert p.proc.poll() is None
    assert "SIGHUP is ignored (nohup)" in p.log()
    p.signal(signal.SIGTERM)
    assert p.wait() == 0


def test_readiness_answers_503_during_the_shutdown_delay_while_serving(process_server):
    p = process_server([APP, "--shutdown-delay", "1.5", "--readiness-path", "/readyz",
                        "--liveness-path", "/livez"]).wait_ready()
    assert get(p.port, "/readyz").status == 200
    assert get(p.port, "/livez").status == 200
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    wait_for_log(p, "shutdown delay")
    assert get(p.port, "/readyz").status == 503
    assert get(p.port, "/livez").status == 200
    assert get(p.port, "/").status == 200          # a new connection, still accepted
    assert time.monotonic() - t0 < 1.5
    wait_for_log(p, "listeners closed")
    assert time.monotonic() - t0 >= 1.4
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", p.port), timeout=2).close()
    assert p.wait() == 0


def test_streaming_handler_ends_early_through_the_shutdown_context(process_server):
    p = process_server(["tests.apps.lifecycle:demo_app", "--exit-wait-time", "10"]).wait_ready()
    c = RawClient(p.port, timeout=10)
    c.send(b"GET /stream?chunks=1000&ms=200 HTTP/1.1\r\nHost: t\r\n\r\n")
    while b"chunk 1\n" not in c.buf:
        assert c._fill()
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    r = c.read_response()
    assert r.status == 200
    assert r.body.endswith(b"server shutting down\n")
    assert p.wait() == 0
    assert time.monotonic() - t0 < 1.0


def test_shutdown_hooks_run_in_order_with_groups_timeouts_and_failures_isolated(process_server):
    p = process_server(["tests.apps.lifecycle:hooks"]).wait_ready()
    ev = events(p)
    assert ev["startup-1-end"] <= ev["startup-2-start"]
    p.signal(signal.SIGTERM)
    assert p.wait() == 4                            # a hook failed, one timed out
    ev = events(p)
    assert ev["first-end"] <= ev["group-a-start"]
    # the two members of group "pools" run concurrently
    assert ev["group-b-start"] < ev["group-a-end"] and ev["group-a-start"] < ev["group-b-end"]
    assert max(ev["group-a-end"], ev["group-b-end"]) <= ev["fails-start"]
    assert ev["fails-start"] <= ev["hangs-start"]
    assert "hangs-end" not in ev                    # cut by its 0.5 s timeout...
    assert ev["last-end"] - ev["hangs-start"] < 1.5  # ...and the next hook still ran
    log = p.log()
    assert "shutdown hook fails failed" in log
    assert "shutdown hook hangs timed out after 0.5 s" in log
    assert "shutdown hooks: 4 ran, 1 failed, 1 timed out, 0 skipped" in log


def test_clean_drain_with_hooks_exits_0(process_server):
    p = process_server(["tests.apps.lifecycle:clean_hooks"]).wait_ready()
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert "EVENT flush-end" in p.log()


def test_failing_startup_hook_aborts_the_start_with_status_1(process_server):
    p = process_server(["tests.apps.lifecycle:startup_fails"])
    assert p.wait() == 1
    log = p.log()
    assert "startup hook boom failed" in log
    assert "serving on" not in log
    assert "never-start" not in log
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", p.port), timeout=2).close()


def test_each_drain_step_logs_one_line_with_counts_and_ms(process_server):
    p = process_server([APP]).wait_ready()
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    log = p.log()
    for line in (r"graceful shutdown started by SIGTERM",
                 r"listeners closed in [0-9.]+ ms",
                 r"closed \d+ idle connection\(s\) in [0-9.]+ ms; \d+ request\(s\) in flight",
                 r"in-flight requests finished in [0-9.]+ ms",
                 r"shutdown hooks: \d+ ran, \d+ failed, \d+ timed out, \d+ skipped in [0-9.]+ ms",
                 r"stopped in [0-9.]+ ms, exit status 0"):
        assert re.search(line, log), line


def test_a_slow_reader_gets_its_whole_response_before_a_clean_exit(process_server):
    p = process_server(["tests.apps.lifecycle:big"]).wait_ready()
    c = RawClient(p.port, timeout=10)
    c.send(b"GET /big?mb=8 HTTP/1.1\r\nHost: t\r\n\r\n")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    assert c._fill()
    p.signal(signal.SIGTERM)
    wait_for_log(p, "request\\(s\\) in flight")
    received = len(c.buf)
    while True:
        time.sleep(0.002)
        chunk = c.sock.recv(65536)
        if not chunk:
            break
        received += len(chunk)
    assert received >= 8 << 20, received
    assert p.wait() == 0
    assert re.search(r"closed 0 idle connection\(s\) in [0-9.]+ ms; 1 request\(s\) in flight", p.log())


def test_second_signal_during_the_shutdown_hooks_stops_at_once(process_server):
    p = process_server(["tests.apps.lifecycle:slow_hook"]).wait_ready()
    p.signal(signal.SIGTERM)
    wait_for_log(p, "EVENT slow-hook-start")
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    assert p.wait() == 5
    assert time.monotonic() - t0 < 1.0
    assert "EVENT slow-hook-end" not in p.log()


def test_signal_during_startup_abandons_it_and_runs_the_cleanup_hooks(process_server):
    p = process_server(["tests.apps.lifecycle:slow_startup"])
    wait_for_log(p, "EVENT startup-slow-start")
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert time.monotonic() - t0 < 1.0
    log = p.log()
    assert "startup abandoned" in log and "serving on" not in log
    assert "EVENT cleanup-end" in log


def test_bind_failure_exits_1_with_the_reason(process_server):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = process_server([APP], port=port)
        assert p.wait() == 1
    assert "cannot listen on 127.0.0.1:%d" % port in p.log()


def test_an_app_that_cannot_be_loaded_exits_2(process_server):
    p = process_server(["tests.apps.no_such_module:app"])
    assert p.wait() == 2
    assert "cannot import module 'tests.apps.no_such_module'" in p.log()


def test_a_hook_that_ignores_cancellation_cannot_hold_the_exit(process_server):
    p = process_server(["tests.apps.lifecycle:stubborn_hook"]).wait_ready()
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    assert p.wait() == 4
    assert time.monotonic() - t0 < 3.0
    assert "shutdown hook stubborn timed out after 0.5 s" in p.log()
