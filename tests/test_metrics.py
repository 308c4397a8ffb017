"""Prometheus metrics at --metrics-path: counted in the core, scraped and
parsed with prometheus_client's parser, and checked against the requests
sent; with --workers 2 one scrape shows the whole server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, ProcessServer, RawClient
from tests.apps.production import app as native_app, asgi_app


def scrape(port: int) -> dict[str, float]:
    """``{'name{label="v",...}': value}`` of one scrape, parsed by prometheus_client."""
    client = RawClient(port)
    client.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    resp = client.read_response()
    client.close()
    assert resp.status == 200
    assert resp.header("content-type").startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(resp.body.decode()):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def _send(port: int, requests: list[bytes]) -> None:
    client = RawClient(port)
    for raw in requests:
        client.send(raw)
        client.read_response()
    client.close()


GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
MISSING = b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
POST = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"


@pytest.mark.parametrize("app", [native_app, asgi_app], ids=["native", "asgi"])
def test_scrape_counts_the_requests_sent(serve, app):
    srv = serve(app, metrics_path="/metrics")
    _send(srv.port, [GET] * 7 + [MISSING] * 3 + [POST] * 2)
    m = scrape(srv.port)
    if app is native_app:
        assert m['fastsrv_requests_total{method="GET",status="2xx"}'] == 7
        assert m['fastsrv_requests_total{method="GET",status="4xx"}'] == 3
        assert m['fastsrv_requests_total{method="POST",status="2xx"}'] == 2
    else:   # the ASGI app answers every path 200
        assert m['fastsrv_requests_total{method="GET",status="2xx"}'] == 10
        assert m['fastsrv_requests_total{method="POST",status="2xx"}'] == 2
    assert m["fastsrv_request_duration_seconds_count"] == 12
    assert m['fastsrv_request_duration_seconds_bucket{le="+Inf"}'] == 12
    assert 0 < m["fastsrv_request_duration_seconds_sum"] < 12 * 0.5
    assert m["fastsrv_requests_in_flight"] == 1             # the scrape itself
    assert m["fastsrv_connections_open"] == 1 and m["fastsrv_connections_idle"] == 0
    assert m["fastsrv_connections_total"] == 2
    assert m["fastsrv_draining"] == 0 and m["fastsrv_processes"] == 1
    # the scrape is counted too, once it is answered
    assert scrape(srv.port)['fastsrv_requests_total{method="GET",status="2xx"}'] == (8 if app is native_app else 11)


def test_requests_in_flight_and_idle_connections_are_gauges(serve):
    srv = serve(native_app, metrics_path="/metrics")
    idle = RawClient(srv.port)
    _send_on(idle, GET)
    slow = RawClient(srv.port)
    slow.send(b"GET /sleep?ms=400 HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.1)
    m = scrape(srv.port)
    assert m["fastsrv_requests_in_flight"] == 2
    assert m["fastsrv_connections_open"] == 3 and m["fastsrv_connections_idle"] == 1
    assert slow.read_response().status == 200
    idle.close()
    slow.close()


def _send_on(client: RawClient, raw: bytes) -> None:
    client.send(raw)
    client.read_response()


def test_requests_cut_at_the_deadline_and_the_drain_are_counted(serve):
    srv = serve(native_app, metrics_path="/metrics", exit_wait_time=0.3)
    slow = RawClient(srv.port)
    slow.send(b"GET /sleep?ms=5000 HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.1)
    assert srv.stop() == 3
    snapshot = srv.server.metrics.snapshot()
    assert snapshot["cut"] == 1 and snapshot["draining"] == 1
    slow.close()


def test_metrics_are_off_by_default(serve):
    srv = serve(native_app)
    assert srv.server.metrics is None
    client = RawClient(srv.port)
    client.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
    assert client.read_response().status == 404
    client.close()


class Workers(ProcessServer):
    READY = b"worker(s) serving on"

    def __init__(self, *args: str) -> None:
        super().__init__(["tests.apps.production:app", "--workers", "2", "--metrics-path", "/metrics", *args],
                         preexec_fn=os.setpgrp)


def _pid(port: int) -> int:
    client = RawClient(port)
    client.send(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
    pid = int(client.read_response().body)
    client.close()
    return pid


def test_with_two_workers_one_scrape_shows_the_whole_server_and_survives_a_worker_death():
    server = Workers()
    try:
        server.wait_ready()
        pids: list[int] = []
        while len(set(pids)) < 2 or len(pids) < 60:        # one connection each, until both workers served
            pids.append(_pid(server.port))
            assert len(pids) < 1000, "one worker took every connection"
        sent = len(pids)
        m1, m2 = scrape(server.port), scrape(server.port)
        for m, scrapes_before in ((m1, 0), (m2, 1)):
            assert m['fastsrv_requests_total{method="GET",status="2xx"}'] == sent + scrapes_before
            assert m["fastsrv_processes"] == 2
            assert m["fastsrv_connections_total"] == sent + scrapes_before + 1
        # a worker killed: its replacement starts from zero, its counts stay in the total
        os.kill(pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while "serving again" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        m3 = scrape(server.port)
        assert m3['fastsrv_requests_total{method="GET",status="2xx"}'] == sent + 2
        assert m3["fastsrv_processes"] == 2
        server.signal(signal.SIGTERM)
        assert server.wait(20) == 0
    finally:
        if server.proc.poll() is None:
            os.killpg(server.proc.pid, signal.SIGKILL)
        server.kill()


def test_metrics_path_without_prometheus_client_exits_2(tmp_path):
    blocker = tmp_path / "prometheus_client.py"
    blocker.write_text("raise ImportError('not installed here')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    for extra in ([], ["--workers", "2"]):
        out = subprocess.run([sys.executable, "-m", "fastsrv", "run", "fastsrv.demo:app", "--port", "0",
                              "--metrics-path", "/metrics", *extra], capture_output=True, text=True,
                             timeout=30, cwd=ROOT, env=env)
        assert out.returncode == 2, out.stderr
        assert "pip install 'fastsrv[metrics]'" in out.stderr
