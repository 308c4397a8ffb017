"""Result records.  Every derived figure is computed once and stored, so the
JSON dump (``dataclasses.asdict``) holds the same numbers as the report."""
from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field

from .memory import MemoryStep
from .procs import CoreTimes
from .wrk import WrkRun


@dataclass(frozen=True)
class Scenario:
    """A wrk load shape."""

    name: str
    pipeline: int  # requests per write; 1 = no pipelining
    title: str


@dataclass
class Run:
    """One measured wrk run against one server."""

    index: int
    requests: int
    requests_per_s: float
    wrk_duration_s: float
    latency_avg_us: float
    server_cpu_s: float  # utime + stime of the server tree during the run
    core_busy_s: float  # non-idle time of the server's CPU (all categories)
    core_softirq_s: float  # of which irq + softirq
    core_steal_s: float  # of which hypervisor steal
    core_foreign_s: float  # busy time not charged to the server: other processes, steal (interference)
    wall_s: float  # wall time of the wrk process
    client_cpu_s: float  # CPU used by wrk itself
    cpu_us_per_request: float
    server_cpu_util: float  # server_cpu_s / wall_s: 1.0 = one core busy all the time
    client_cpu_util: float
    socket_errors: dict[str, int]
    non_2xx_3xx: int
    errors: int

    @classmethod
    def from_wrk(
        cls, index: int, wrk: WrkRun, server_cpu_s: float, core: CoreTimes, irq_time_accounting: bool
    ) -> Run:
        """Combine a wrk report with the server tree's CPU time and its core's counter deltas.

        With CONFIG_IRQ_TIME_ACCOUNTING the softirq work a process triggers (loopback
        delivery) is not charged to it, so it is not counted as interference either.
        """
        report = wrk.report
        per_request = 1e6 / report.requests if report.requests else float("nan")
        not_foreign = server_cpu_s + (core.softirq if irq_time_accounting else 0.0)
        return cls(
            index=index,
            requests=report.requests,
            requests_per_s=report.requests_per_s,
            wrk_duration_s=report.duration_s,
            latency_avg_us=report.latency_avg_us,
            server_cpu_s=server_cpu_s,
            core_busy_s=core.busy,
            core_softirq_s=core.softirq,
            core_steal_s=core.steal,
            core_foreign_s=max(0.0, core.busy - not_foreign),
            wall_s=wrk.wall_s,
            client_cpu_s=wrk.client_cpu_s,
            cpu_us_per_request=server_cpu_s * per_request,
            server_cpu_util=server_cpu_s / wrk.wall_s,
            client_cpu_util=wrk.client_cpu_s / wrk.wall_s,
            socket_errors=report.socket_errors,
            non_2xx_3xx=report.non_2xx_3xx,
            errors=report.errors,
        )


@dataclass
class ScenarioResult:
    """All runs of one scenario against one server, with medians."""

    scenario: str
    wrk_command: str
    runs: list[Run] = field(default_factory=list)
    error: str | None = None
    discarded_noisy: int = 0  # runs repeated because other processes disturbed them

    def _median(self, attr: str) -> float:
        values = [getattr(run, attr) for run in self.runs]
        return statistics.median(values) if values else float("nan")

    @property
    def rps_median(self) -> float:
        return self._median("requests_per_s")

    @property
    def cpu_us_median(self) -> float:
        return self._median("cpu_us_per_request")

    @property
    def foreign_util_max(self) -> float:
        """Worst interference: share of a run other processes (or steal) held the server's CPU."""
        return max((run.core_foreign_s / run.wall_s for run in self.runs), default=0.0)

    @property
    def server_util_median(self) -> float:
        return self._median("server_cpu_util")

    @property
    def client_util_median(self) -> float:
        return self._median("client_cpu_util")

    @property
    def total_errors(self) -> int:
        return sum(run.errors for run in self.runs)

    def error_breakdown(self) -> dict[str, int]:
        """Errors over all runs, by kind."""
        totals: dict[str, int] = {}
        for run in self.runs:
            for kind, count in run.socket_errors.items():
                totals[kind] = totals.get(kind, 0) + count
            if run.non_2xx_3xx:
                totals["non-2xx/3xx"] = totals.get("non-2xx/3xx", 0) + run.non_2xx_3xx
        return totals

    def summary(self) -> dict[str, float]:
        return {
            "requests_per_s_median": self.rps_median,
            "cpu_us_per_request_median": self.cpu_us_median,
            "foreign_util_max": self.foreign_util_max,
            "server_cpu_util_median": self.server_util_median,
            "client_cpu_util_median": self.client_util_median,
            "errors_total": self.total_errors,
        }


@dataclass
class ServerResult:
    """Everything measured for one server."""

    name: str
    description: str
    command: str = ""  # the last server command line (its port varies per start)
    versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # set when the server could not be benchmarked at all
    scenarios: dict[str, ScenarioResult] = field(default_factory=dict)
    memory: list[MemoryStep] = field(default_factory=list)
    memory_error: str | None = None

    def memory_at(self, connections: int) -> MemoryStep | None:
        return next((step for step in self.memory if step.connections == connections), None)


def _fields_of(cls: type, data: dict) -> dict:
    """The entries of ``data`` that are fields of dataclass ``cls`` (drops derived figures)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def server_result_from_json(data: dict) -> ServerResult:
    """Rebuild a ServerResult from its entry in a --json dump."""
    result = ServerResult(**_fields_of(ServerResult, {**data, "scenarios": {}, "memory": []}))
    for name, scenario in data.get("scenarios", {}).items():
        runs = [Run(**_fields_of(Run, run)) for run in scenario.get("runs", [])]
        result.scenarios[name] = ScenarioResult(**_fields_of(ScenarioResult, {**scenario, "runs": runs}))
    result.memory = [MemoryStep(**_fields_of(MemoryStep, step)) for step in data.get("memory", [])]
    return result
