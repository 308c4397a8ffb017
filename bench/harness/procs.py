"""Process accounting from /proc: process trees, CPU time, RSS, fd limits, ports."""
from __future__ import annotations

import os
import resource
import socket
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat the harness needs."""

    pid: int
    comm: str
    ppid: int
    pgrp: int
    cpu_ticks: int  # utime + stime, in clock ticks, all threads


def read_stat(pid: int) -> ProcStat | None:
    """Parse /proc/<pid>/stat; None if the process is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); field n of proc(5) is fields[n - 3].
    return ProcStat(
        pid=pid,
        comm=raw[raw.index("(") + 1 : raw.rindex(")")],
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
    )


def all_stats() -> dict[int, ProcStat]:
    """Stat every process currently visible in /proc."""
    stats: dict[int, ProcStat] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                stats[stat.pid] = stat
    return stats


def process_tree(root: int) -> list[ProcStat]:
    """The root process and all its descendants (e.g. nginx master + workers)."""
    stats = all_stats()
    if root not in stats:
        return []
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(stats[pid])
        todo.extend(children.get(pid, ()))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds consumed so far by the live process tree of ``root``."""
    return sum(stat.cpu_ticks for stat in process_tree(root)) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (VmRSS), 0 if it is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def tree_rss_bytes(root: int) -> int:
    """Sum of VmRSS over the process tree of ``root``."""
    return sum(rss_bytes(stat.pid) for stat in process_tree(root))


@dataclass(frozen=True)
class CoreTimes:
    """Cumulative time one CPU spent per category (/proc/stat ``cpuN`` line), in seconds."""

    tasks: float  # user + nice + system: time spent running processes
    softirq: float  # irq + softirq: e.g. loopback packet delivery, not charged to any process
    steal: float  # taken by the hypervisor

    @property
    def busy(self) -> float:
        return self.tasks + self.softirq + self.steal

    def __sub__(self, other: CoreTimes) -> CoreTimes:
        return CoreTimes(self.tasks - other.tasks, self.softirq - other.softirq, self.steal - other.steal)


def read_core_times(cpu: int) -> CoreTimes:
    """Snapshot of /proc/stat for one CPU."""
    prefix = f"cpu{cpu} "
    for line in (PROC / "stat").read_text().splitlines():
        if line.startswith(prefix):
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in line.split()[1:9])
            return CoreTimes(
                tasks=(user + nice + system) / CLOCK_TICKS,
                softirq=(irq + softirq) / CLOCK_TICKS,
                steal=steal / CLOCK_TICKS,
            )
    raise ValueError(f"no {prefix.strip()} line in /proc/stat")


@dataclass(frozen=True)
class Activity:
    """What the machine did during a short sample."""

    busy: float  # share of all CPUs' time spent non-idle
    top: list[tuple[int, str, float]]  # busiest processes: (pid, command, share of one CPU)

    def describe(self) -> str:
        return ", ".join(f"{comm}[{pid}] {share:.0%}" for pid, comm, share in self.top) or "no process stands out"


def _cpu_line() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs so far."""
    fields = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def sample_activity(sample: float = 0.5, top: int = 3) -> Activity:
    """Measure how busy the machine is over ``sample`` seconds, and who keeps it busy."""
    busy0, total0 = _cpu_line()
    before = all_stats()
    started = time.monotonic()
    time.sleep(sample)
    busy1, total1 = _cpu_line()
    after = all_stats()
    elapsed = time.monotonic() - started
    usage = [
        (pid, stat.comm, (stat.cpu_ticks - before[pid].cpu_ticks) / CLOCK_TICKS / elapsed)
        for pid, stat in after.items()
        if pid in before and stat.cpu_ticks > before[pid].cpu_ticks
    ]
    usage.sort(key=lambda item: item[2], reverse=True)
    return Activity(busy=(busy1 - busy0) / max(1, total1 - total0), top=usage[:top])


def irq_time_accounting() -> bool | None:
    """Whether the kernel has CONFIG_IRQ_TIME_ACCOUNTING (None if its config is not readable).

    Without it (tick accounting), softirq work -- e.g. delivering loopback packets --
    done in a process's context is charged to that process's stime.
    """
    import gzip
    import platform

    candidates = [PROC / "config.gz", Path("/boot") / f"config-{platform.release()}"]
    for path in candidates:
        try:
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt") as config:  # type: ignore[operator]
                return any(line.strip() == "CONFIG_IRQ_TIME_ACCOUNTING=y" for line in config)
        except OSError:
            continue
    return None


def raise_nofile_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (capped by the hard limit).

    Returns the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
