"""The graceful shutdown of WebSockets, driven by real signals to a server
subprocess: the app is told first and gets a grace window to say goodbye,
then every client gets a Close with 1012 (Service Restart), never an
abnormal end; what is still running at the exit wait is cut and counted."""

from __future__ import annotations

import os
import re
import signal
import socket
import time

import pytest

from conftest import ProcessServer
from ws_helpers import CLOSE, TEXT, WSClient

APPS = {"native": "tests.apps.websockets:native", "asgi": "tests.apps.websockets:asgi"}


@pytest.fixture(params=sorted(APPS))
def app(request):
    return APPS[request.param]


def wait_for_log(proc, pattern: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, proc.log())
        if m:
            return m.group(0)
        time.sleep(0.01)
    raise AssertionError(f"{pattern!r} not in log:\n{proc.log()}")


def answer_close(client: WSClient) -> int:
    """Read to the server's Close, answer it, and return its code."""
    close = client.expect_close(timeout=10)
    client.send(b"\x88\x82abcd" + bytes(b ^ k for b, k in zip(close.payload[:2], b"abcd")))
    return close.close_code


def test_at_sigterm_every_client_gets_a_1012_close_and_the_exit_is_0(process_server, app):
    p = process_server([app, "--lifespan", "off"]).wait_ready()
    clients = [WSClient(p.port, "/echo") for _ in range(5)]
    for c in clients:
        c.send_text("ping")
        assert c.read_message().text == "ping"
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    assert [answer_close(c) for c in clients] == [1012] * 5
    assert all(c.closed_by_server(3) for c in clients)
    assert p.wait() == 0
    assert time.monotonic() - t0 < 4
    log = p.log()
    assert "5 WebSocket(s) open" in log and "sent close 1012 to 5" in log, log


def test_an_app_watching_the_shutdown_says_goodbye_and_closes_itself(process_server, app):
    p = process_server([app, "--lifespan", "off", "--ws-shutdown-grace", "2"]).wait_ready()
    c = WSClient(p.port, "/goodbye")
    time.sleep(0.2)
    p.signal(signal.SIGTERM)
    c.sock.settimeout(5)
    first = c.read_frame()
    assert (first.opcode, first.payload) == (TEXT, b"goodbye")
    assert answer_close(c) == 1001
    assert p.wait() == 0
    assert re.search(r"1 closed by their app within the [0-9.]+ s grace; sent close 1012 to 0", p.log()), p.log()


def test_a_client_that_never_answers_the_close_is_closed_not_left_open(process_server, app):
    p = process_server([app, "--lifespan", "off", "--exit-wait-time", "2"]).wait_ready()
    c = WSClient(p.port, "/echo")
    p.signal(signal.SIGTERM)
    assert c.expect_close(timeout=5).close_code == 1012
    assert c.closed_by_server(5)          # without the client's answer, within the exit wait
    assert p.wait() == 0


def test_a_handler_that_never_ends_is_cut_at_the_exit_wait_and_counted(process_server, app):
    p = process_server([app, "--lifespan", "off", "--exit-wait-time", "1.5"]).wait_ready()
    c = WSClient(p.port, "/forever")
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    assert answer_close(c) == 1012         # the client still gets a proper Close
    assert p.wait() == 3
    assert 1.4 < time.monotonic() - t0 < 5
    assert re.search(r"cancelling 1 WebSocket handler", p.log()), p.log()


def test_new_connections_are_refused_once_the_listener_is_closed(process_server, app):
    p = process_server([app, "--lifespan", "off", "--ws-shutdown-grace", "2"]).wait_ready()
    c = WSClient(p.port, "/goodbye")
    time.sleep(0.2)
    p.signal(signal.SIGTERM)
    wait_for_log(p, r"listeners closed")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", p.port), timeout=2)
    c.sock.settimeout(5)
    assert c.read_frame().payload == b"goodbye"
    assert answer_close(c) == 1001
    assert p.wait() == 0


def test_every_worker_closes_its_websockets_with_1012(app):
    p = ProcessServer([app, "--lifespan", "off", "--workers", "2"], preexec_fn=os.setpgrp)
    p.READY = b"worker(s) serving on"
    try:
        p.wait_ready(20)
        clients = [WSClient(p.port, "/echo") for _ in range(8)]
        for c in clients:
            c.send_text("x")
            assert c.read_message().text == "x"
        p.signal(signal.SIGTERM)
        assert [answer_close(c) for c in clients] == [1012] * 8
        assert p.wait(20) == 0
        assert len(set(re.findall(r"\[worker (\d+)\].*WebSocket", p.log()))) >= 1
    finally:
        if p.proc.poll() is None:
            os.killpg(p.proc.pid, signal.SIGKILL)
