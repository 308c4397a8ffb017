"""Write the benchmark report: RESULTS.md, the chart PNG and the JSON dump."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .results import Scenario, ScenarioResult, ServerResult
from .suites import Goal, Suite

NOISY_SHARE = 0.03  # a kept run in which others held more of the server's CPU than this is flagged


def _fmt(value: float, digits: int = 2) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _ratio(value: float, reference: float | None) -> str:
    if reference is None or math.isnan(reference) or reference == 0 or math.isnan(value):
        return "–"
    return f"{value / reference:.2f}×"


def _spread(result: ScenarioResult) -> str:
    values = [run.cpu_us_per_request for run in result.runs]
    return f"{min(values):.2f}–{max(values):.2f}" if len(values) > 1 else "–"


def _cpu_median(results: Sequence[ServerResult], server: str, scenario: str) -> float | None:
    """``server``'s median CPU µs/req in ``scenario``, or None if it was not measured."""
    res = next((r for r in results if r.name == server and not r.error), None)
    sc = res.scenarios.get(scenario) if res else None
    return sc.cpu_us_median if sc and sc.runs else None


def _cpu_range(results: Sequence[ServerResult], server: str, scenario: str) -> tuple[float, float] | None:
    """(min, max) CPU µs/req of ``server``'s runs in ``scenario``, or None if it was not measured."""
    res = next((r for r in results if r.name == server and not r.error), None)
    sc = res.scenarios.get(scenario) if res else None
    if not sc or not sc.runs:
        return None
    values = [run.cpu_us_per_request for run in sc.runs]
    return min(values), max(values)


def _noisy(results: Sequence[ServerResult], server: str, scenario: str) -> bool:
    """Whether a kept run of ``server`` in ``scenario`` was disturbed by other processes (see observations)."""
    res = next((r for r in results if r.name == server and not r.error), None)
    sc = res.scenarios.get(scenario) if res else None
    return bool(sc and sc.foreign_util_max > NOISY_SHARE)


def _errors_cell(result: ScenarioResult) -> str:
    breakdown = result.error_breakdown()
    if not breakdown:
        return "0"
    return f"{result.total_errors:,} (" + ", ".join(f"{kind} {n:,}" for kind, n in breakdown.items()) + ")"


def scenario_table(scenario: Scenario, results: Sequence[ServerResult], suite: Suite) -> list[str]:
    """Markdown table for one throughput scenario."""
    reference_label = suite.reference_label or f"CPU vs {suite.reference}"
    lines = [
        f"| server | req/s (median) | server CPU µs/req (median) | {reference_label} | CPU µs/req (min–max) "
        "| server CPU use | wrk CPU use | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for res in results:
        if res.error:
            lines.append(f"| {res.name} | failed | | | | | | {res.error.splitlines()[0]} |")
            continue
        sc = res.scenarios.get(scenario.name)
        if sc is None:
            continue
        if not sc.runs:
            lines.append(f"| {res.name} | failed | | | | | | {(sc.error or 'no runs').splitlines()[0]} |")
            continue
        reference_cpu = _cpu_median(results, suite.reference_of(res.name), scenario.name)
        lines.append(
            f"| {res.name} | {_fmt(sc.rps_median, 0)} | {_fmt(sc.cpu_us_median)} | "
            f"{_ratio(sc.cpu_us_median, reference_cpu)} | {_spread(sc)} | {sc.server_util_median:.0%} | "
            f"{sc.client_util_median:.0%} | {_errors_cell(sc)} |"
        )
    return lines


def _goal_cell(goal: Goal, scenario: Scenario, results: Sequence[ServerResult]) -> str:
    """The ratio of medians with its verdict; with several runs, the extreme ratios the runs allow."""
    server = _cpu_median(results, goal.server, scenario.name)
    reference = _cpu_median(results, goal.reference, scenario.name)
    missing = [name for name, value in ((goal.server, server), (goal.reference, reference)) if value is None]
    if missing:
        return f"– ({' and '.join(missing)} not measured)"
    ratio = server / reference
    cell = f"{ratio:.2f}×"
    server_range = _cpu_range(results, goal.server, scenario.name)
    reference_range = _cpu_range(results, goal.reference, scenario.name)
    if server_range and reference_range and server_range[0] != server_range[1]:
        cell += f" ({server_range[0] / reference_range[1]:.2f}–{server_range[1] / reference_range[0]:.2f})"
    cell += " met" if ratio <= goal.max_ratio else " **not met**"
    noisy = [name for name in (goal.server, goal.reference) if _noisy(results, name, scenario.name)]
    return cell + (f" (noisy: {', '.join(noisy)}, see Observations)" if noisy else "")


def goals_table(scenarios: Sequence[Scenario], goals: Sequence[Goal], results: Sequence[ServerResult]) -> list[str]:
    """Markdown table: each goal's CPU-per-request ratio per scenario, marked met / not met."""
    lines = [
        "| server CPU µs/req ÷ reference's | target | set by | " + " | ".join(sc.name for sc in scenarios) + " |",
        "|---|---:|---|" + "---|" * len(scenarios),
    ]
    for goal in goals:
        cells = " | ".join(_goal_cell(goal, scenario, results) for scenario in scenarios)
        lines.append(f"| {goal.server} ÷ {goal.reference} | ≤ {goal.max_ratio:.2f}× | {goal.source} | {cells} |")
    return lines


def memory_table(steps: Sequence[int], results: Sequence[ServerResult]) -> list[str]:
    """Markdown table of RSS added per idle keep-alive connection."""
    header = "| server | " + " | ".join(f"RSS/conn at {n:,} (bytes)" for n in steps) + " | baseline RSS |"
    lines = [header, "|---|" + "---:|" * len(steps) + "---:|"]
    for res in results:
        if res.error or res.memory_error:
            lines.append(f"| {res.name} | failed: {(res.error or res.memory_error or '').splitlines()[0]} |")
            continue
        if not res.memory:
            continue
        cells = []
        for n in steps:
            step = res.memory_at(n)
            if step is None:
                cells.append("–")
            else:
                alive = "" if step.alive == n else f" ({step.alive:,} alive)"
                cells.append(f"{step.bytes_per_connection:,.0f}{alive}")
        baseline = f"{res.memory[0].rss_before / 2**20:.1f} MiB"
        lines.append(f"| {res.name} | " + " | ".join(cells) + f" | {baseline} |")
    return lines


def observations(scenarios: Sequence[Scenario], results: Sequence[ServerResult]) -> list[str]:
    """Automatic remarks: client saturation, errors, failures."""
    notes: list[str] = []
    client_bound: list[str] = []
    for res in results:
        if res.error:
            notes.append(f"**{res.name}** could not be benchmarked: {res.error.splitlines()[0]}")
            continue
        for scenario in scenarios:
            sc = res.scenarios.get(scenario.name)
            if sc is None:
                continue
            if sc.error:
                notes.append(f"**{res.name} / {scenario.name}** failed: {sc.error.splitlines()[0]}")
            if not sc.runs:
                continue
            if sc.client_util_median > 0.9:
                client_bound.append(f"{res.name} / {scenario.name} ({sc.client_util_median:.0%})")
            if sc.discarded_noisy:
                notes.append(
                    f"**{res.name} / {scenario.name}**: {sc.discarded_noisy} run(s) were disturbed by other "
                    "processes on the server's CPU and repeated (the disturbed runs are not in the figures)."
                )
            if sc.foreign_util_max > NOISY_SHARE:
                notes.append(
                    f"**{res.name} / {scenario.name}**: other processes or hypervisor steal took up to "
                    f"{sc.foreign_util_max:.0%} of the server's CPU during a kept run; its figures are noisy."
                )
            if sc.total_errors:
                notes.append(f"**{res.name} / {scenario.name}**: errors over all runs: {_errors_cell(sc)}.")
        if res.memory_error:
            notes.append(f"**{res.name} / memory** failed: {res.memory_error.splitlines()[0]}")
        for step in res.memory:
            if step.alive < step.connections:
                notes.append(
                    f"**{res.name} / memory**: the server closed {step.connections - step.alive:,} of "
                    f"{step.connections:,} idle connections before RSS was read."
                )
    if client_bound:
        notes.insert(0, (
            "wrk used over 90% of its CPU in " + ", ".join(client_bound) + ": there req/s is at or near the "
            "load generator's own limit and understates the server; compare CPU µs/req."
        ))
    return notes


def report_lines(
    *,
    suite: Suite,
    invocation: str,
    machine: dict[str, str],
    settings: dict[str, Any],
    tool_versions: dict[str, str],
    scenarios: Sequence[Scenario],
    wrk_commands: dict[str, str],
    memory_steps: Sequence[int],
    results: Sequence[ServerResult],
    chart: Path | None,
    report_dir: Path,
) -> list[str]:
    """The suite's report as markdown lines; a suite that does not own the file starts one level down."""
    top = "#" if suite.owns_file else "##"
    sub = top + "#"
    out: list[str] = [f"{top} {suite.title}", ""]
    if suite.summary:
        out += [suite.summary, ""]
    out += [
        f"Generated by `{invocation}` on {machine['date']}. "
        "See [README.md](README.md) for what the figures mean.",
        "",
        f"{sub} Machine and software",
        "",
        f"- CPU: {machine['cpu']}, {machine['logical_cpus']} logical CPUs; memory {machine['memory']}",
        f"- Kernel: {machine['kernel']}; CPU time accounting: {machine.get('cpu_accounting', 'unknown')}",
        f"- Pinning: servers on CPU {settings['server_cpu']}, wrk and the driver on CPU {settings['client_cpu']}",
        "- Tools: " + ", ".join(f"{name} {version}" for name, version in tool_versions.items()),
        f"- Settings: {settings['runs']} run(s) × {settings['duration']:g} s per scenario after a "
        f"{settings['warmup']:g} s warm-up, {settings['connections']} connections, "
        f"pipeline depth {settings['pipeline']}, server RLIMIT_NOFILE {settings['nofile']}",
        "",
        "| server | what | versions |",
        "|---|---|---|",
    ]
    for res in results:
        versions = ", ".join(f"{k} {v}" for k, v in res.versions.items())
        out.append(f"| {res.name} | {res.description} | {versions} |")
    out += ["", f"{sub} Commands", "", "Servers (each start picks a free port; shown with the last one used):", "",
            "```"]
    out += [f"# {res.name}\n{res.command}" for res in results if res.command]
    out += ["```", "", "Load (URL port as above):", "", "```"]
    out += [f"# {name}\n{cmd}" for name, cmd in wrk_commands.items()]
    out += ["```", ""]
    notes: dict[str, list[str]] = {}  # one line per note, naming every server it applies to
    for res in results:
        for note in res.notes:
            notes.setdefault(note, []).append(res.name)
    out += [f"- {', '.join(names)}: {note}" for note, names in notes.items()]
    if notes:
        out.append("")

    if suite.goals:
        out += [
            f"{sub} Targets",
            "",
            "Server CPU µs/req of a server divided by a reference server's, per scenario (ratio of the medians; "
            "in brackets, with several runs, the lowest and highest ratio the individual runs allow). "
            "A goal is met where the ratio of the medians is at or below its target.",
            "",
            *goals_table(scenarios, suite.goals, results),
            "",
        ]
    for scenario in scenarios:
        out += [f"{sub} {scenario.title}", "", *scenario_table(scenario, results, suite), ""]
    if any(res.memory or res.memory_error for res in results):
        out += [
            f"{sub} Memory per idle keep-alive connection",
            "",
            "(server tree RSS with N idle connections − RSS before any) / N; each connection has "
            "done one `GET /` and then stays open and idle.",
            "",
            *memory_table(memory_steps, results),
            "",
        ]
    if chart is not None:
        alt = "benchmark chart" if suite.owns_file else f"{suite.name} benchmark chart"
        out += [f"{sub} Chart", "", f"![{alt}]({os.path.relpath(chart, report_dir)})", ""]
    remarks = observations(scenarios, results)
    if remarks:
        out += [f"{sub} Observations", "", *[f"- {remark}" for remark in remarks], ""]
    return out


_SECTION = re.compile(r"<!-- suite (?P<name>[\w-]+): begin -->\n.*?<!-- suite (?P=name): end -->\n?", re.DOTALL)


def write_section(path: Path, name: str, command: str, lines: Sequence[str]) -> None:
    """Replace (or append) the section ``name`` of the results file ``path``,
    written by ``command``, keeping everything else in the file as it was."""
    section = (f"<!-- suite {name}: begin -->\n"
               f"<!-- written by `{command}`; rerun it rather than edit -->\n"
               + "\n".join(lines).rstrip("\n") + f"\n\n<!-- suite {name}: end -->\n")
    existing = path.read_text() if path.exists() else ""
    for match in _SECTION.finditer(existing):
        if match["name"] == name:
            path.write_text(existing[:match.start()] + section + existing[match.end():])
            return
    if not existing.strip():
        existing = "# fastsrv benchmark results\n"  # the owning suite writes the rest when it runs
    path.write_text(existing.rstrip("\n") + "\n\n" + section)


def write_markdown(path: Path, suite: Suite, lines: Sequence[str]) -> None:
    """Write the suite's report into ``path``, keeping the other suites' parts of the file.

    The suite that owns the file rewrites its body and keeps the delimited
    sections of other suites after it; any other suite replaces its own section
    (or appends it), leaving everything else as it was.
    """
    if suite.owns_file:
        existing = path.read_text() if path.exists() else ""
        kept = [match[0] for match in _SECTION.finditer(existing)]
        path.write_text("\n".join(lines).rstrip("\n") + "\n" + "".join("\n" + section for section in kept))
        return
    write_section(path, suite.name, f"python bench/run.py --suite {suite.name}", lines)


def write_json(path: Path, payload: dict[str, Any], results: Sequence[ServerResult]) -> None:
    """Raw numbers of every run, plus medians, as JSON."""
    servers = []
    for res in results:
        data = dataclasses.asdict(res)
        for name, sc in res.scenarios.items():
            data["scenarios"][name]["summary"] = sc.summary()
        for step_data, step in zip(data["memory"], res.memory, strict=True):
            step_data["bytes_per_connection"] = step.bytes_per_connection
        servers.append(data)
    path.write_text(json.dumps({**payload, "servers": servers}, indent=2, default=str) + "\n")


def write_chart(
    path: Path, suite: Suite, scenarios: Sequence[Scenario], memory_steps: Sequence[int],
    results: Sequence[ServerResult],
) -> bool:
    """Bar charts: CPU µs/request and req/s per scenario, RSS/connection per step.

    Each panel has its own scale (pipelined figures are an order of magnitude
    apart from plain ones); colours identify servers across panels.  CPU bars
    carry their ratio to the suite's reference for that server.
    Returns False when there is nothing to plot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [res for res in results if not res.error and res.scenarios]
    if not ok:
        return False
    names = [res.name for res in ok]
    colours = {name: plt.get_cmap("tab10")(i) for i, name in enumerate(names)}
    with_memory = [res for res in ok if res.memory]
    rows = [
        [("cpu", sc) for sc in scenarios],
        [("rps", sc) for sc in scenarios],
    ]
    if with_memory:
        rows.append([("mem", n) for n in memory_steps])
    ncols = max(len(row) for row in rows)
    width = max(6.0, 1.35 * len(ok))  # per panel: room for each bar's ratio label
    fig, axes = plt.subplots(len(rows), ncols, figsize=(width * ncols, 4.2 * len(rows)), squeeze=False)

    for r, row in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            if c >= len(row):
                ax.axis("off")
                continue
            kind, key = row[c]
            if kind == "mem":
                servers = [res for res in with_memory if res.memory_at(key)]
                values = [res.memory_at(key).bytes_per_connection / 1024 for res in servers]
                title, unit, refs = f"RSS per idle connection, {key:,} open", "KiB / connection", None
            else:
                servers = [res for res in ok if key.name in res.scenarios and res.scenarios[key.name].runs]
                if kind == "cpu":
                    values = [res.scenarios[key.name].cpu_us_median for res in servers]
                    title, unit = f"Server CPU per request — {key.name}", "CPU µs / request (lower is better)"
                    refs = [_reference(suite, res.name, key.name, ok) for res in servers]
                else:
                    values = [res.scenarios[key.name].rps_median / 1000 for res in servers]
                    title, unit, refs = f"Throughput — {key.name}", "thousand requests / s", None
            _bars(ax, [res.name for res in servers], values, [colours[res.name] for res in servers], refs)
            ax.set_title(title, fontsize=11)
            ax.set_ylabel(unit)
    fig.suptitle(f"{suite.title} (medians; servers pinned to one CPU, wrk to the other)", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _reference(
    suite: Suite, server: str, scenario: str, results: Sequence[ServerResult]
) -> tuple[str, float] | None:
    """(name, CPU µs/req) of the server ``server`` is compared with in ``scenario``, if it was measured."""
    name = suite.reference_of(server)
    value = _cpu_median(results, name, scenario)
    return (name, value) if value else None


def _bars(
    ax, labels: list[str], values: list[float], colours: list, refs: Sequence[tuple[str, float] | None] | None
) -> None:
    """One labelled bar per server; with ``refs``, also each bar's ratio to its reference."""
    bars = ax.bar(labels, values, color=colours, width=0.6)
    top = max(values, default=1) or 1
    ax.set_ylim(0, top * 1.25)
    if len(labels) > 4:
        ax.tick_params(axis="x", labelrotation=20)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    for i, (bar, value) in enumerate(zip(bars, values, strict=True)):
        text = f"{value:,.2f}" if value < 10 else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
        ref = refs[i] if refs else None
        if ref:
            text += f"\n{value / ref[1]:.2f}× {ref[0]}"
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                    fontsize=9 if len(labels) <= 4 else 7.5)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
