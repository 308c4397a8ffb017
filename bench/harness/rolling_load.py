"""The load of the rolling-restart check (``bench/rolling_restart.py``): wrk with a Lua
script that sends half ``GET /`` and half ``GET /sleep?ms=20..50`` on keep-alive
connections and counts the responses in 100 ms bins; and what its output says."""
from __future__ import annotations

import math
import subprocess
from pathlib import Path

from bench.harness.rolling import RunResult
from bench.harness.wrk import parse_wrk

BIN_S = 0.1  # the Lua script counts responses in bins of this many seconds

# LuaJIT's FFI reads CLOCK_MONOTONIC (Python's time.monotonic()) to bin each
# response; done() prints one "rr ..." line per figure for the driver.
WRK_SCRIPT = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } rr_timespec;
int clock_gettime(int clk, rr_timespec *tp);
]]
local ts = ffi.new("rr_timespec")
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  sent = 0
  ok_bins = {}
  fail_bins = {}
  statuses = {}
  math.randomseed(4242 + id)
  fast = wrk.format("GET", "/")
end

local function bin()
  ffi.C.clock_gettime(1, ts)
  return math.floor(tonumber(ts.tv_sec) * 10 + tonumber(ts.tv_nsec) / 1e8)
end

function request()
  sent = sent + 1
  if sent % 2 == 1 then
    return fast
  end
  return wrk.format("GET", "/sleep?ms=" .. math.random(20, 50))
end

function response(status, headers, body)
  local b = bin()
  if status >= 400 then
    fail_bins[b] = (fail_bins[b] or 0) + 1
    statuses[status] = (statuses[status] or 0) + 1
  else
    ok_bins[b] = (ok_bins[b] or 0) + 1
  end
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    print("rr sent " .. t:get("sent"))
    for k, v in pairs(t:get("ok_bins")) do print("rr ok " .. k .. " " .. v) end
    for k, v in pairs(t:get("fail_bins")) do print("rr fail " .. k .. " " .. v) end
    for k, v in pairs(t:get("statuses")) do print("rr status " .. k .. " " .. v) end
  end
  print("rr latency_max_us " .. latency.max)
  print("rr latency_p99_us " .. latency:percentile(99))
end
"""


def start_load(url: str, connections: int, budget_s: float, workdir: Path) -> subprocess.Popen[str]:
    """Start wrk on ``url`` for at most ``budget_s`` (the run stops it with SIGINT sooner)."""
    script = workdir / "load.lua"
    script.write_text(WRK_SCRIPT)
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{math.ceil(budget_s)}s", "--timeout", "10s",
            "-s", str(script), url]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def read_load(output: str, t0: float, result: RunResult) -> None:
    """Fill ``result``'s counts from wrk's output; ``t0`` is the monotonic time the load began."""
    report = parse_wrk(output)
    result.completed = report.requests
    result.duration_s = report.duration_s
    result.requests_per_s = report.requests_per_s
    result.socket_errors = dict(report.socket_errors)
    sent = 0
    for line in output.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0] != "rr":
            continue
        kind = parts[1]
        if kind == "sent":
            sent += int(parts[2])
        elif kind in ("ok", "fail"):
            start = round(int(parts[2]) * BIN_S - t0, 1)
            bins = result.ok_bins if kind == "ok" else result.fail_bins
            bins[start] = bins.get(start, 0) + int(parts[3])
        elif kind == "status":
            result.statuses[int(parts[2])] = result.statuses.get(int(parts[2]), 0) + int(parts[3])
        elif kind == "latency_max_us":
            result.latency_max_ms = float(parts[2]) / 1000
        elif kind == "latency_p99_us":
            result.latency_p99_ms = float(parts[2]) / 1000
    result.sent = sent
    result.failed = sum(result.socket_errors.values()) + report.non_2xx_3xx
    # every request sent got a response, a read or write error, or was still out when wrk stopped
    lost_io = result.socket_errors.get("read", 0) + result.socket_errors.get("write", 0)
    result.in_flight_at_stop = max(0, sent - result.completed - lost_io)


def attribute_failures(result: RunResult) -> None:
    """Count the failed responses between each SIGTERM and the next (and before the first)."""
    result.failed_before_first_restart = 0
    for restart in result.restarts:
        restart.failed_responses = 0
    starts = [r.sigterm for r in result.restarts]
    for start, n in result.fail_bins.items():
        mid = start + BIN_S / 2
        index = max((i for i, s in enumerate(starts) if s <= mid), default=None)
        if index is None:
            result.failed_before_first_restart += n
        else:
            result.restarts[index].failed_responses += n
