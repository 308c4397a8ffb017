"""The report of the rolling-restart check (``bench/rolling_restart.py``): the
``rolling-restart`` section of bench/RESULTS.md, the chart, and the table on stdout."""
from __future__ import annotations

import math
import signal
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from bench.harness.haproxy import RETRY_SPAN_S, haproxy_config
from bench.harness.report import write_section as write_results_section
from bench.harness.rolling import NEW_ADDRESS, SAME_PORT, SCENARIOS, Restart, RunResult, Settings

SECTION = "rolling-restart"

TITLES = {SAME_PORT: "Same port", NEW_ADDRESS: "New address"}


def _t(value: Optional[float]) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def describe_restart(r: Restart) -> str:
    """One line: the restart's timeline."""
    switched = f", slot pointed at :{r.new_port} {_t(r.switched)}" if r.switched is not None else ""
    return (f"SIGTERM {_t(r.sigterm)} s, check failed {_t(r.check_failed)}, DOWN {_t(r.down)}, "
            f"listener closed {_t(r.listener_closed)}, exited {_t(r.exited)} (status {r.exit_status}), "
            f"replacement started {_t(r.started)}, ready {_t(r.ready)}{switched}, UP {_t(r.up)}")


def failure_breakdown(result: RunResult) -> str:
    """E.g. "502 × 12, read errors 3"."""
    parts = [f"{status} × {n:,}" for status, n in sorted(result.statuses.items())]
    parts += [f"{kind} errors {n:,}" for kind, n in result.socket_errors.items()]
    return ", ".join(parts) or "none"


def exit_statuses(result: RunResult) -> str:
    """E.g. "0, 0" or "-15 (SIGTERM), -15 (SIGTERM)"."""
    return ", ".join("–" if st is None else f"{st} ({signal.Signals(-st).name})" if st < 0 else str(st)
                     for st in result.exit_statuses)


def haproxy_logged(result: RunResult) -> str:
    """The failures HAProxy logged, e.g. "503 SC on a × 120, 503 SC on b × 118"."""
    return ", ".join(f"{k} × {n:,}" for k, n in sorted(result.haproxy_failures.items())) or "none"


def summary_table(results: Sequence[RunResult]) -> list[str]:
    """The comparison of one scenario, as markdown table lines."""
    lines = ["| server | sent | completed | failed | failed: what | HAProxy logged | old instances' exit statuses "
             "| DOWN before listener closed | answered only after HAProxy retried (slowest) "
             "| slowest response | in flight when the load stopped |",
             "|---|---:|---:|---:|---|---|---|---|---:|---:|---:|"]
    for r in results:
        if r.error:
            lines.append(f"| {r.server} | run failed: {r.error.splitlines()[0]} ||||||||||")
            continue
        before = sum(1 for x in r.restarts if x.down_before_close)
        retried = f"{r.retried_ok:,} ({r.retried_ok_max_ms:,} ms)" if r.retried_ok else "0"
        lines.append(
            f"| {r.server} | {r.sent:,} | {r.completed:,} | **{r.failed:,}** | {failure_breakdown(r)} | "
            f"{haproxy_logged(r)} | {exit_statuses(r)} | {before} of {len(r.restarts)} | {retried} | "
            f"{r.latency_max_ms:,.0f} ms | {r.in_flight_at_stop} |")
    return lines


def timeline_table(result: RunResult) -> list[str]:
    """A run's restarts, one row each (with the failed responses after each SIGTERM, if any failed)."""
    timed = bool(result.statuses)
    moved = result.scenario == NEW_ADDRESS
    lines = ["| # | instance | SIGTERM | first failed check | DOWN | listener closed | exited (status) "
             "| replacement started | ready |" + (" slot pointed at it |" if moved else "") + " UP |"
             + (" failed responses |" if timed else ""),
             "|---:|---|---:|---:|---:|---:|---|---:|---:|" + ("---:|" if moved else "") + "---:|"
             + ("---:|" if timed else "")]
    for r in result.restarts:
        lines.append(f"| {r.index} | {r.instance} | {_t(r.sigterm)} | {_t(r.check_failed)} | {_t(r.down)} | "
                     f"{_t(r.listener_closed)} | {_t(r.exited)} ({r.exit_status}) | {_t(r.started)} | "
                     f"{_t(r.ready)} |" + (f" {_t(r.switched)} |" if moved else "") + f" {_t(r.up)} |"
                     + (f" {r.failed_responses} |" if timed else ""))
    return lines


def report_config(settings: Settings) -> str:
    """HAProxy's configuration with placeholders for the ports picked per run."""
    return haproxy_config("RUN_DIR/admin.sock", "FRONTEND_PORT", {"a": "PORT_A", "b": "PORT_B"},
                          inter_ms=settings.inter_ms, fall=settings.fall, rise=settings.rise)


SCENARIO_TEXT = {
    SAME_PORT: "Each replacement listens on the port of the instance it replaced, so HAProxy's server slot never "
               "changes: a connection refused while no one listens there is retried one second later on the "
               "same address (HAProxy's default `retries 3`), where the replacement usually listens by then.",
    NEW_ADDRESS: "Each replacement listens on a new port, as a new pod comes up at a new IP. The old address stays "
                 "in HAProxy's server slot until the old process has exited; once the replacement's /readyz "
                 "answers 200 the slot is pointed at it on the admin socket (`set server be/a addr 127.0.0.1 port "
                 "NEW`) — the order a control plane gives: the new endpoint added when ready, the old one gone "
                 "after its process exits — and HAProxy's own checks mark it UP. A request whose connection the "
                 "old address refused is retried on the address it was first given, not on the slot's new one, "
                 f"so after three one-second retries (about {RETRY_SPAN_S:g} s) it ends as a 503 that HAProxy logs "
                 "`SC` — unless a retry finds an idle pooled connection to the slot, which now leads to the new "
                 "instance (a request that is not its client connection's first may reuse one). When an old "
                 "listener closed before HAProxy marked it DOWN, the next SIGTERM waits until those retries are "
                 f"over (the slot's move + {RETRY_SPAN_S:g} s) and the settle time more, so that every restart "
                 "meets the full load rather than clients still stuck on the last one.",
}


def _timeline_note(r: RunResult, settings: Settings) -> str:
    note = "Seconds since the load began."
    if any(x.down is None for x in r.restarts):
        note += (" DOWN –: HAProxy never marked the instance DOWN (its replacement was in the slot before HAProxy "
                 f"had counted {settings.fall} failed checks), so UP is the first poll after *ready*"
                 + (" (after the slot was pointed at it)" if r.scenario == NEW_ADDRESS else "")
                 + " that showed it UP.")
    if r.statuses:
        note += (" *Failed responses*: non-2xx/3xx responses from this SIGTERM until the next ("
                 f"{r.failed_before_first_restart} before the first SIGTERM).")
    return note


def _timelines_shown(results: Sequence[RunResult]) -> list[RunResult]:
    """fastsrv in every scenario, and per scenario the row that lost the most (if it lost any)."""
    shown = []
    for scenario in SCENARIOS:
        runs = [r for r in results if r.scenario == scenario and not r.error]
        shown += [r for r in runs if r.server == "fastsrv"]
        worst = max((r for r in runs if r.server != "fastsrv"), key=lambda r: r.failed, default=None)
        if worst is not None and worst.failed:
            shown.append(worst)
    return shown


def report_lines(results: Sequence[RunResult], settings: Settings, invocation: str, machine: str,
                 chart_name: str) -> list[str]:
    """The RESULTS.md section's body."""
    s = settings
    bound = s.check_bound_s
    out = [
        "## Rolling restart behind HAProxy",
        "",
        f"Generated by `{invocation}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine}. "
        "See [README.md](README.md#rolling-restart-behind-haproxy) for the method.",
        "",
        f"Two instances behind HAProxy with its default reuse and retry settings, wrk with {s.connections} "
        f"keep-alive connections through it (half `GET /`, half `GET /sleep?ms=20..50`), {s.restarts} restarts "
        f"one instance at a time (SIGTERM, wait for the exit, start a replacement, wait for HAProxy's UP, "
        f"{s.settle:g} s to settle). Health checks every {s.inter_ms} ms, fall {s.fall}, rise {s.rise}: HAProxy "
        f"stops routing to an instance at most {bound:g} s after its /readyz turns 503, so fastsrv runs with "
        f"`--shutdown-delay {s.shutdown_delay:g}` (> {bound:g} s + the longest request, 0.05 s, with a margin) "
        f"and `--exit-wait-time {s.exit_wait_time:g}`. Failed = wrk's socket errors + responses that are not "
        "2xx/3xx (HAProxy's 502/503 included); *HAProxy logged*: its status, termination state and server for "
        "each failed request it logged.",
        "",
    ]
    for scenario in SCENARIOS:
        runs = [r for r in results if r.scenario == scenario]
        if runs:
            out += [f"### {TITLES[scenario]}", "", SCENARIO_TEXT[scenario], "", *summary_table(runs), ""]
    out += [
        f"![rolling restart]({chart_name})",
        "",
        "*Read errors* are HAProxy's silent closes: a request it wrote onto a pooled keep-alive connection "
        "that the instance closed got no response, and since it was not the client connection's first request "
        "HAProxy neither retries it nor answers 502, it closes the client's connection (and logs nothing). "
        "*Answered only after HAProxy retried*: the old listener refused the connection and one of HAProxy's "
        "retries, a second or more later, got through — on the same port because the replacement listened there "
        "by then, on a new address because the retry found an idle pooled connection to the slot's new address: "
        "not lost, but slow.",
        "",
    ]
    if any(r.server == "uvicorn" and not r.error for r in results):
        out += ["uvicorn's exit status is −15 after a clean drain: it re-raises the signal it handled once its "
                "graceful shutdown is over (its log ends with \"Finished server process\").", ""]
    for r in _timelines_shown(results):
        out += [f"### Timeline: {r.server}, {r.scenario}", "", _timeline_note(r, settings), "",
                *timeline_table(r), ""]
    out += ["The other runs' timelines are in `rolling_restart.json` when it is written (`--json`).", "",
            "HAProxy configuration (ports are picked per run; in the new-address scenario the admin socket "
            "moves the servers' ports):", "", "```", report_config(settings).rstrip(), "```"]
    return out


def write_section(path: Path, lines: Sequence[str]) -> None:
    """Replace (or append) this script's section of RESULTS.md, keeping the rest."""
    write_results_section(path, SECTION, "python bench/rolling_restart.py", lines)


def _plot_run(ax: Any, r: RunResult, width: float, legend: bool) -> None:
    """One run's successful responses/s over time, its failed responses, SIGTERM/DOWN/UP marked."""
    ok: dict[float, int] = {}
    bad: dict[float, int] = {}
    for bins, into in ((r.ok_bins, ok), (r.fail_bins, bad)):
        for t, n in bins.items():
            key = max(0.0, math.floor(t / width) * width)
            into[key] = into.get(key, 0) + n
    # every bin from the first to the last, so that a stall shows as 0 rather than as the bin before it
    last = max([*ok, *bad], default=0.0)
    xs = [round(i * width, 3) for i in range(int(round(last / width)) + 1)]
    ax.step(xs, [ok.get(x, 0) / width for x in xs], where="post", color="#2a7ab9", lw=1.2, label="2xx/3xx per s")
    ax.set_ylabel("responses / s")
    ax.set_ylim(0, max((ok.get(x, 0) / width for x in xs), default=1) * 1.3)
    for k, restart in enumerate(r.restarts):
        ax.axvline(restart.sigterm, color="#c0392b", ls="--", lw=1, label="SIGTERM" if k == 0 else None)
        if restart.down is not None:
            ax.axvline(restart.down, color="#7f7f7f", ls=":", lw=1, label="DOWN" if k == 0 else None)
        if restart.up is not None:
            ax.axvline(restart.up, color="#27ae60", ls="-", lw=1, label="UP" if k == 0 else None)
    if bad:  # failed responses (502/503) have a time; socket errors do not
        fail_ax = ax.twinx()
        fail_ax.bar(list(bad), list(bad.values()), width=width, align="edge", color="#e74c3c", alpha=0.7,
                    label=f"failed responses per {width:g} s")
        fail_ax.set_ylim(0, max(bad.values()) * 1.3)
        fail_ax.set_ylabel(f"failed / {width:g} s", color="#c0392b")
        handles, labels = fail_ax.get_legend_handles_labels()
        fail_ax.legend(handles, labels, loc="lower right", fontsize=7)
    retried = f"; {r.retried_ok:,} retried" if r.retried_ok else ""
    ax.set_title(f"{r.server}, {r.scenario}: {r.failed:,} failed of {r.sent:,} ({failure_breakdown(r)}){retried}",
                 fontsize=9)
    if legend:
        ax.legend(loc="lower left", fontsize=7, ncol=4)


def write_chart(results: Sequence[RunResult], path: Path, settings: Settings) -> None:
    """One panel per server (rows) and scenario (columns); beside them, failed requests per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results if not r.error]
    if not runs:
        return
    servers = list(dict.fromkeys(r.server for r in runs))
    scenarios = [s for s in SCENARIOS if any(r.scenario == s for r in runs)]
    fig = plt.figure(figsize=(6.5 * len(scenarios) + 3.5, 2.6 * len(servers) + 0.9))
    grid = fig.add_gridspec(len(servers), len(scenarios) + 1, width_ratios=[4] * len(scenarios) + [1.6])
    width = 0.5  # seconds per plotted bin (five of the Lua script's)
    first = None
    for row, server in enumerate(servers):
        for col, scenario in enumerate(scenarios):
            run = next((r for r in runs if r.server == server and r.scenario == scenario), None)
            if run is None:
                continue
            ax = fig.add_subplot(grid[row, col], sharex=first)
            first = first or ax
            _plot_run(ax, run, width, legend=row == 0 and col == 0)
            if row == len(servers) - 1:
                ax.set_xlabel("seconds since the load began")
    bar_ax = fig.add_subplot(grid[:, -1])
    colors = {SAME_PORT: "#2a7ab9", NEW_ADDRESS: "#b9772a"}
    step = 0.8 / len(scenarios)
    most = max((r.failed for r in runs), default=0)
    for k, scenario in enumerate(scenarios):
        xs, values = [], []
        for i, server in enumerate(servers):
            run = next((r for r in runs if r.server == server and r.scenario == scenario), None)
            if run is not None:
                xs.append(i - 0.4 + step * (k + 0.5))
                values.append(run.failed)
        bars = bar_ax.bar(xs, values, width=step, color=colors[scenario], label=scenario)
        bar_ax.bar_label(bars, labels=[f"{v:,}" for v in values], fontsize=8)
    bar_ax.set_xticks(range(len(servers)), servers)
    bar_ax.set_ylim(0, max(most, 1) * 1.25)
    bar_ax.set_title("failed requests\n(lower is better)", fontsize=10)
    bar_ax.tick_params(axis="x", labelrotation=25)
    bar_ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Rolling restart behind HAProxy: {settings.restarts} restarts, {settings.connections} "
                 f"keep-alive connections, checks every {settings.inter_ms} ms (fall {settings.fall}, "
                 f"rise {settings.rise})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_table(results: Sequence[RunResult]) -> None:
    """The compact summary on stdout."""
    header = (f"{'scenario':<12} {'server':<16} {'sent':>9} {'completed':>10} {'failed':>7}  "
              f"{'exit statuses':<14} what failed")
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        if r.error:
            print(f"{r.scenario:<12} {r.server:<16} run failed: {r.error.splitlines()[0]}")
            continue
        statuses = ",".join(str(s) for s in r.exit_statuses)
        print(f"{r.scenario:<12} {r.server:<16} {r.sent:>9,} {r.completed:>10,} {r.failed:>7,}  {statuses:<14} "
              f"{failure_breakdown(r) if r.failed else '-'}")
