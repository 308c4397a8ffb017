"""Worker recycling: --limit-max-requests N (and -jitter).  A worker that
has served N requests is replaced: the supervisor starts its successor
first and the old one drains once the successor serves, so under wrk load
no request fails and no connection is reset; a single process drains and
exits 0."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest

from bench.harness.debian import ToolMissing, ensure_tools
from bench.harness.wrk import run_wrk, wrk_command
from conftest import ProcessServer, RawClient


@pytest.fixture(scope="module")
def wrk() -> None:
    try:
        ensure_tools(["wrk"])
    except ToolMissing as exc:
        pytest.skip(str(exc))


class Recycling(ProcessServer):
    READY = b"worker(s) serving on"

    def __init__(self, *args: str) -> None:
        super().__init__(["tests.apps.production:app", *args], preexec_fn=os.setpgrp)

    def started_pids(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"worker \d+ \(pid (\d+)\) started", self.log())]


def _pid(port: int) -> int:
    client = RawClient(port)
    client.send(b"GET /pid HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    resp = client.read_response()
    client.close()
    assert resp.status == 200
    return int(resp.body)


def test_single_process_drains_and_exits_0_after_its_request_limit(process_server):
    p = process_server(["tests.apps.production:app", "--limit-max-requests", "5"]).wait_ready()
    client = RawClient(p.port)
    for i in range(5):
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        resp = client.read_response()
        assert resp.status == 200
    assert resp.header("connection") is None          # the fifth is still an ordinary response
    assert p.wait(10) == 0
    assert "served 5 requests (--limit-max-requests): shutting down" in p.log()
    assert "graceful shutdown started by request limit" in p.log()


def test_workers_are_replaced_under_wrk_load_with_no_failed_request(wrk):
    server = Recycling("--workers", "2", "--limit-max-requests", "4000", "--limit-max-requests-jitter", "1000")
    try:
        server.wait_ready()
        seen: set[int] = set()
        stop = threading.Event()

        def watch_pids() -> None:
            while not stop.is_set():
                seen.add(_pid(server.port))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch_pids, daemon=True)
        watcher.start()
        run = run_wrk(wrk_command(f"http://127.0.0.1:{server.port}/", 32, 5, 1, 5, None), 5)
        stop.set()
        watcher.join(5)
        report = run.report
        log = server.log()
        assert report.requests > 8_000, run.output
        assert report.socket_errors == {} or sum(report.socket_errors.values()) == 0, run.output + log
        assert report.non_2xx_3xx == 0, run.output
        replaced = len(re.findall(r"replacing worker \d+ \(pid \d+\)", log))
        assert replaced >= 2, log
        # each replacement was serving before the worker it replaced drained
        assert len(re.findall(r"serving: worker \d+ \(pid \d+\) drains", log)) >= 2, log
        assert len(seen) >= 3, f"pids seen: {seen}"
        assert set(server.started_pids()) >= seen
        assert "exited unexpectedly" not in log
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0, log
    finally:
        if server.proc.poll() is None:
            os.killpg(server.proc.pid, signal.SIGKILL)
        server.kill()
