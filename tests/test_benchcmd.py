"""``fastsrv bench``: real runs give sane figures, a missing tool is explained
(never installed), a server that does not start is shown, workers are counted."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import pytest

from fastsrv.benchcmd import Wrk, tree_cpu

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness.debian import ToolMissing, ensure_tools  # noqa: E402


def bench(*args: str, env: Optional[dict[str, str]] = None, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastsrv", "bench", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def bench_json(*args: str, env: Optional[dict[str, str]] = None) -> dict[str, Any]:
    out = bench("--json", *args, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def assert_sane(result: dict[str, Any], duration: float) -> None:
    assert result["requests"] > 0
    assert result["requests_per_s"] > 0
    assert result["requests_per_s"] == pytest.approx(result["requests"] / duration, rel=0.5)
    assert 0 <= result["p50_ms"] <= result["p90_ms"] <= result["p99_ms"]
    assert result["errors"] == 0, result["error_kinds"]
    assert 0 < result["server_cpu_us_per_request"] < 5000
    assert result["server_cpu_utilisation"] > 0
    assert result["server_exit_status"] == 0


@pytest.fixture
def without_wrk(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose PATH has no wrk, only installers that record being called."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "installer-calls"
    bin_dir.mkdir()
    for name in ("apt-get", "apt", "sudo", "brew"):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> "{calls}"\nexit 1\n')
        script.chmod(0o755)
    return {**os.environ, "PATH": str(bin_dir)}, calls


def test_locust_run_gives_sane_figures():
    result = bench_json("--tool", "locust", "--duration", "2", "--warmup", "0", "--users", "20")
    assert result["tool"] == "locust"
    assert_sane(result, 2)
    assert result["workers"] is None and result["supervisor_cpu_s"] is None


def test_wrk_run_gives_sane_figures():
    try:
        ensure_tools(["wrk"])
    except ToolMissing as exc:
        pytest.skip(str(exc))
    result = bench_json("--tool", "wrk", "--duration", "2", "--warmup", "1", "--connections", "20")
    assert result["tool"] == "wrk"
    assert result["load"] == {"connections": 20, "threads": 1, "pipeline": 1}
    assert_sane(result, 2)
    assert set(result["error_kinds"]) == {"connect", "read", "write", "timeout", "non_2xx_3xx"}
    assert result["commands"]["wrk"][0] == "wrk" and "--latency" in result["commands"]["wrk"]


def test_wrk_latency_distribution_is_read_in_milliseconds():
    report = """Running 2s test @ http://127.0.0.1:1/
  Latency Distribution
     50%  635.00us
     75%  712.34us
     90%    1.50ms
     99%    2.10s
  1000 requests in 2.00s, 120.00KB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 2
Requests/sec:    500.00
"""
    result = Wrk(argparse.Namespace(connections=1, threads=1, pipeline=1, path="/")).parse(report, Path("."))
    assert (result.p50_ms, result.p90_ms, result.p99_ms) == pytest.approx((0.635, 1.5, 2100.0))
    assert (result.requests, result.duration_s, result.requests_per_s) == (1000, 2.0, 500.0)
    assert result.errors == 6


def test_a_wrk_percentile_below_the_one_before_is_not_reported():
    # wrk prints a 99th percentile of 0 when pipelining
    report = "  Latency Distribution\n     50%    0.92ms\n     90%    2.08ms\n     99%    0.00us\n" \
             "  1000 requests in 1.00s, 1.00MB read\nRequests/sec:   1000.00\n"
    result = Wrk(argparse.Namespace(connections=1, threads=1, pipeline=16, path="/")).parse(report, Path("."))
    assert (result.p50_ms, result.p90_ms, result.p99_ms) == (0.92, 2.08, None)


def test_pipelined_wrk_run_counts_every_response():
    try:
        ensure_tools(["wrk"])
    except ToolMissing as exc:
        pytest.skip(str(exc))
    result = bench_json("--tool", "wrk", "--pipeline", "8", "--duration", "2", "--warmup", "0",
                        "--connections", "10", "--path", "/echo")
    assert result["load"]["pipeline"] == 8 and result["errors"] == 0
    assert "-s" in result["commands"]["wrk"] and result["commands"]["wrk"][-2:] == ["8", "/echo"]
    assert result["requests"] > 1000 and result["server_cpu_us_per_request"] > 0


def test_wrk_asked_for_but_missing_exits_2_saying_how_to_get_it(without_wrk):
    env, installer_calls = without_wrk
    out = bench("--tool", "wrk", "--duration", "1", env=env)
    assert out.returncode == 2
    assert "apt-get install wrk" in out.stderr and "brew install wrk" in out.stderr
    assert "--tool locust" in out.stderr
    assert out.stdout == ""
    assert not installer_calls.exists(), installer_calls.read_text()


def test_auto_without_wrk_falls_back_to_locust_and_says_so(without_wrk):
    env, installer_calls = without_wrk
    out = bench("--json", "--tool", "auto", "--duration", "1", "--warmup", "0", "--users", "10", env=env)
    assert out.returncode == 0, out.stderr
    assert "wrk is not on the PATH; using locust" in out.stderr
    assert json.loads(out.stdout)["tool"] == "locust"
    assert not installer_calls.exists()


def test_a_server_that_does_not_start_exits_1_showing_its_error():
    out = bench("fastsrv_no_such_module:app", "--duration", "1", timeout=60)
    assert out.returncode == 1
    assert "exited with status 2 before it served" in out.stderr
    assert "cannot import module 'fastsrv_no_such_module'" in out.stderr
    assert out.stdout == ""


def _run_has_workers() -> bool:
    help_text = subprocess.run([sys.executable, "-m", "fastsrv", "run", "--help"], capture_output=True,
                               text=True, timeout=30).stdout
    return "--workers" in help_text


def test_workers_are_counted_and_the_supervisor_costs_next_to_nothing():
    if not _run_has_workers():
        pytest.skip("fastsrv run has no --workers option")
    result = bench_json("--workers", "2", "--duration", "2", "--warmup", "0")
    assert result["workers"] == 2
    assert result["server_processes"] >= 3          # the supervisor and two workers
    assert_sane(result, 2)
    assert result["supervisor_cpu_s"] is not None
    assert result["supervisor_cpu_s"] <= max(0.1, 0.05 * result["server_cpu_s"])


def test_the_demo_locustfile_mix_runs_without_failures():
    result = bench_json("--tool", "locust", "--locustfile", "bench/locustfile.py", "--duration", "3",
                        "--warmup", "0", "--users", "20", "--spawn-rate", "20")
    assert result["requests"] > 0
    assert result["errors"] == 0, result["endpoints"]
    hit = [name for name, endpoint in result["endpoints"].items() if endpoint["requests"]]
    assert len(hit) > 1, hit
    assert all(endpoint["failures"] == 0 for endpoint in result["endpoints"].values())


def test_server_cpu_keeps_a_process_that_exited_during_the_run():
    # a worker that dies mid-run is reaped by the supervisor: its CPU moves
    # into the supervisor's children's time and must stay in the total
    burn = "x = 0\nfor i in range(4 * 10**7): x += i"
    parent = subprocess.Popen([sys.executable, "-c",
                               f"import subprocess, sys, time; subprocess.run([sys.executable, '-c', {burn!r}]); "
                               "time.sleep(30)"])
    try:
        before = tree_cpu(parent.pid)
        deadline = time.monotonic() + 30
        while len(tree_cpu(parent.pid).pids) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)        # the burner has started
        while len(tree_cpu(parent.pid).pids) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)        # ... and has exited
        spent = tree_cpu(parent.pid) - before
        assert spent.pids == frozenset({parent.pid})
        assert spent.total_s > 0.5, spent
        assert spent.root_s < 0.2, "the parent's own share excludes its children"
    finally:
        parent.kill()
        parent.wait()


@pytest.mark.parametrize("server_arg, message", [
    ("--server-arg=--port=9", "sets the address itself"),
    ("--server-arg=--workers=2", "options of fastsrv bench"),
    ("--server-arg=--log-level=warning", "waits for the server's info line"),
    ("--server-arg=--no-such-option", "does not parse as fastsrv run options"),
])
def test_server_args_that_do_not_fit_a_bench_run_exit_2(server_arg, message):
    out = bench(server_arg, "--duration", "1")
    assert out.returncode == 2 and message in out.stderr, out.stderr
