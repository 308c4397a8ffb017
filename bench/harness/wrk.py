"""Run wrk and parse its report."""
from __future__ import annotations

import re
import resource
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .targets import HELLO, Exchange

PIPELINE_SCRIPT = Path(__file__).resolve().parent.parent / "pipeline.lua"

_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


class WrkError(RuntimeError):
    """wrk failed or printed something we cannot parse."""


@dataclass
class WrkReport:
    """The figures of one wrk run."""

    requests: int  # completed requests (responses), all statuses
    duration_s: float  # wrk's own measured duration
    requests_per_s: float
    latency_avg_us: float
    socket_errors: dict[str, int] = field(default_factory=dict)  # connect/read/write/timeout
    non_2xx_3xx: int = 0

    @property
    def errors(self) -> int:
        """Socket errors of every kind plus non-2xx/3xx responses."""
        return sum(self.socket_errors.values()) + self.non_2xx_3xx


@dataclass
class WrkRun:
    """A wrk invocation: its report plus the CPU wrk itself used (to spot client saturation)."""

    report: WrkReport
    wall_s: float
    client_cpu_s: float
    output: str


def wrk_command(
    url: str, connections: int, duration_s: float, pipeline: int, timeout_s: float, cpu: int | None,
    request: Exchange = HELLO,
) -> list[str]:
    """wrk argv; ``pipeline`` > 1, or a request other than ``GET /``, uses
    bench/pipeline.lua with that depth and request."""
    argv = ["taskset", "-c", str(cpu)] if cpu is not None else []
    argv += ["wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--timeout", f"{timeout_s:g}s"]
    if pipeline > 1 or not request.is_hello:
        argv += ["-s", str(PIPELINE_SCRIPT), url, "--", str(pipeline)]
        if not request.is_hello:
            argv += [request.method, request.path, request.body.decode("latin-1"), request.content_type]
    else:
        argv.append(url)
    return argv


def run_wrk(argv: list[str], duration_s: float) -> WrkRun:
    """Run wrk to completion (bounded in time) and parse its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 30)
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {duration_s + 30:.0f}s") from exc
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise WrkError(f"wrk exited with status {done.returncode}:\n{output}")
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return WrkRun(report=parse_wrk(output), wall_s=wall, client_cpu_s=client_cpu, output=output)


def _duration_us(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise WrkError(f"unparsable wrk duration {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> WrkReport:
    """Parse wrk's text report (requests, duration, req/s, latency, errors)."""
    total = re.search(r"^\s*(\d+) requests in ([\d.]+\w+), ", output, re.M)
    rate = re.search(r"^Requests/sec:\s*([\d.]+)", output, re.M)
    latency = re.search(r"^\s*Latency\s+(\S+)", output, re.M)
    if not (total and rate):
        raise WrkError(f"cannot parse wrk output:\n{output}")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True)) if errors else {}
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    latency_us = _duration_us(latency[1]) if latency and latency[1] != "-nan" else float("nan")
    return WrkReport(
        requests=int(total[1]),
        duration_s=_duration_us(total[2]) / 1e6,
        requests_per_s=float(rate[1]),
        latency_avg_us=latency_us,
        socket_errors={kind: n for kind, n in socket_errors.items() if n},
        non_2xx_3xx=int(non_2xx[1]) if non_2xx else 0,
    )
