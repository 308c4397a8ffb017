"""Prometheus metrics: ``--metrics-path /metrics``.

The core counts (``fastsrv._metrics``: a few stores into this process's
slot per request); this module turns a snapshot of every slot into the
Prometheus text format with ``prometheus_client`` (``pip install
'fastsrv[metrics]'``), at scrape time only.

With ``--workers N`` the slots live in a file the supervisor creates and
every worker maps, so a scrape answered by any worker shows the whole
server (see ``fastsrv._metrics``); the supervisor adds an exited worker's
counters to those of the workers before it, so counters never go down
across restarts and recycling.

=====================================  =========  ==========================================
metric                                 type       labels / meaning
=====================================  =========  ==========================================
fastsrv_requests_total                 counter    ``method`` (GET ... OPTIONS, other),
                                                  ``status`` (1xx ... 5xx); a request that
                                                  could not be parsed counts as ``other``
fastsrv_request_duration_seconds       histogram  the read that completed the head -> response written
fastsrv_requests_in_flight             gauge      requests being read or answered
fastsrv_connections_open               gauge      open HTTP connections
fastsrv_connections_idle               gauge      open, with no request in progress
fastsrv_connections_total              counter    connections accepted
fastsrv_websockets_open                gauge      WebSockets open
fastsrv_websockets_total               counter    WebSockets accepted
fastsrv_draining                       gauge      processes draining (graceful shutdown)
fastsrv_requests_cut_total             counter    requests cancelled at the exit wait deadline
fastsrv_processes                      gauge      server processes (workers) counting
=====================================  =========  ==========================================
"""

from __future__ import annotations

import mmap
import os
import tempfile
from typing import Any, Callable, Iterator

from fastsrv._metrics import BUCKETS, Metrics, block_size
from fastsrv._response import Response
from fastsrv.extras import require

METRICS_FD_ENV = "FASTSRV_METRICS_FD"
METRICS_SLOT_ENV = "FASTSRV_METRICS_SLOT"

__all__ = ["Metrics", "MetricsEndpoint", "shared_block", "attach_from_env"]


class MetricsEndpoint:
    """The handler of the metrics path: a snapshot of ``source()`` (the
    server's :class:`Metrics`), rendered by prometheus_client."""

    def __init__(self, source: Callable[[], Metrics]) -> None:
        client = require("metrics", "prometheus_client", "--metrics-path")
        from prometheus_client.core import CollectorRegistry
        self._generate = client.generate_latest
        # the text format generate_latest writes
        self.content_type = getattr(client.exposition, "CONTENT_TYPE_PLAIN_0_0_4",
                                    "text/plain; version=0.0.4; charset=utf-8")
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(source))

    def __call__(self, request: Any) -> Response:
        return Response(self._generate(self.registry), 200, None, self.content_type)


class _Collector:
    def __init__(self, source: Callable[[], Metrics]) -> None:
        self.source = source

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
        snap = self.source().snapshot()
        requests = CounterMetricFamily("fastsrv_requests", "HTTP requests answered, by method and status class",
                                       labels=("method", "status"))
        for (method, status), count in sorted(snap["requests"].items()):
            requests.add_metric((method, status), count)
        yield requests
        buckets = [(_le(bound), count) for bound, count in zip((*BUCKETS, float("inf")), snap["buckets"])]
        yield HistogramMetricFamily("fastsrv_request_duration_seconds",
                                    "From the read that completed the request head to the response written",
                                    buckets=buckets, sum_value=snap["duration_sum"])
        yield GaugeMetricFamily("fastsrv_requests_in_flight", "Requests being read or answered",
                                value=snap["in_flight"])
        yield GaugeMetricFamily("fastsrv_connections_open", "Open HTTP connections", value=snap["open"])
        yield GaugeMetricFamily("fastsrv_connections_idle", "Open HTTP connections with no request in progress",
                                value=max(snap["open"] - snap["in_flight"], 0))
        yield CounterMetricFamily("fastsrv_connections", "Connections accepted", value=snap["connections_total"])
        yield GaugeMetricFamily("fastsrv_websockets_open", "WebSockets open", value=snap["websockets"])
        yield CounterMetricFamily("fastsrv_websockets", "WebSockets accepted", value=snap["websockets_total"])
        yield GaugeMetricFamily("fastsrv_draining", "Server processes draining (graceful shutdown)",
                                value=snap["draining"])
        yield CounterMetricFamily("fastsrv_requests_cut", "Requests cancelled at the exit wait deadline",
                                  value=snap["cut"])
        yield GaugeMetricFamily("fastsrv_processes", "Server processes counting into these metrics",
                                value=snap["processes"])


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def shared_block(slots: int) -> tuple[int, mmap.mmap]:
    """(Supervisor) a metrics block the workers can map: an unlinked file's
    descriptor (inherited by the workers) and the supervisor's own map."""
    fd, path = tempfile.mkstemp(prefix="fastsrv-metrics-")
    os.unlink(path)
    os.ftruncate(fd, block_size(slots))
    return fd, mmap.mmap(fd, block_size(slots))


def attach_from_env() -> Metrics | None:
    """(Worker) this worker's slot of the supervisor's block, when it has one."""
    fd = os.environ.pop(METRICS_FD_ENV, None)
    slot = os.environ.pop(METRICS_SLOT_ENV, None)
    if fd is None or slot is None:
        return None
    memory = mmap.mmap(int(fd), os.fstat(int(fd)).st_size)
    os.close(int(fd))
    return Metrics(memory, int(slot))
