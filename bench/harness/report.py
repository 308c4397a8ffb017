"""Write the benchmark report: RESULTS.md, the chart PNG and the JSON dump."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .results import Scenario, ScenarioResult, ServerResult
from .targets import FLOOR


def _fmt(value: float, digits: int = 2) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _ratio(value: float, floor: float | None) -> str:
    if floor is None or math.isnan(floor) or floor == 0 or math.isnan(value):
        return "–"
    return f"{value / floor:.2f}×"


def _spread(result: ScenarioResult) -> str:
    values = [run.cpu_us_per_request for run in result.runs]
    return f"{min(values):.2f}–{max(values):.2f}" if len(values) > 1 else "–"


def _floor_result(results: Sequence[ServerResult]) -> ServerResult | None:
    return next((r for r in results if r.name == FLOOR and not r.error), None)


def _errors_cell(result: ScenarioResult) -> str:
    breakdown = result.error_breakdown()
    if not breakdown:
        return "0"
    return f"{result.total_errors:,} (" + ", ".join(f"{kind} {n:,}" for kind, n in breakdown.items()) + ")"


def scenario_table(scenario: Scenario, results: Sequence[ServerResult]) -> list[str]:
    """Markdown table for one throughput scenario."""
    floor = _floor_result(results)
    floor_cpu = floor.scenarios[scenario.name].cpu_us_median if floor and scenario.name in floor.scenarios else None
    lines = [
        "| server | req/s (median) | server CPU µs/req (median) | CPU vs floor | CPU µs/req (min–max) "
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
        lines.append(
            f"| {res.name} | {_fmt(sc.rps_median, 0)} | {_fmt(sc.cpu_us_median)} | "
            f"{_ratio(sc.cpu_us_median, floor_cpu)} | {_spread(sc)} | {sc.server_util_median:.0%} | "
            f"{sc.client_util_median:.0%} | {_errors_cell(sc)} |"
        )
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
            if sc.foreign_util_max > 0.03:
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


def write_markdown(
    path: Path,
    *,
    invocation: str,
    machine: dict[str, str],
    settings: dict[str, Any],
    tool_versions: dict[str, str],
    scenarios: Sequence[Scenario],
    wrk_commands: dict[str, str],
    memory_steps: Sequence[int],
    results: Sequence[ServerResult],
    chart: Path | None,
) -> None:
    out: list[str] = [
        "# fastsrv benchmark results",
        "",
        f"Generated by `{invocation}` on {machine['date']}. "
        "See [README.md](README.md) for what the figures mean.",
        "",
        "## Machine and software",
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
    out += ["", "## Commands", "", "Servers (each start picks a free port; shown with the last one used):", "", "```"]
    out += [f"# {res.name}\n{res.command}" for res in results if res.command]
    out += ["```", "", "Load (URL port as above):", "", "```"]
    out += [f"# {name}\n{cmd}" for name, cmd in wrk_commands.items()]
    out += ["```", ""]
    for res in results:
        for note in res.notes:
            out.append(f"- {res.name}: {note}")
    if any(res.notes for res in results):
        out.append("")

    for scenario in scenarios:
        out += [f"## {scenario.title}", "", *scenario_table(scenario, results), ""]
    if any(res.memory or res.memory_error for res in results):
        out += [
            "## Memory per idle keep-alive connection",
            "",
            "(server tree RSS with N idle connections − RSS before any) / N; each connection has "
            "done one `GET /` and then stays open and idle.",
            "",
            *memory_table(memory_steps, results),
            "",
        ]
    if chart is not None:
        out += ["## Chart", "", f"![benchmark chart]({os.path.relpath(chart, path.parent)})", ""]
    notes = observations(scenarios, results)
    if notes:
        out += ["## Observations", "", *[f"- {note}" for note in notes], ""]
    path.write_text("\n".join(out))


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
    path: Path, scenarios: Sequence[Scenario], memory_steps: Sequence[int], results: Sequence[ServerResult]
) -> bool:
    """Bar charts: CPU µs/request and req/s per scenario, RSS/connection per step.

    Each panel has its own scale (pipelined figures are an order of magnitude
    apart from plain ones); colours identify servers across panels.
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
    fig, axes = plt.subplots(len(rows), ncols, figsize=(6 * ncols, 4.2 * len(rows)), squeeze=False)
    floor = _floor_result(ok)

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
                title, unit, ref = f"RSS per idle connection, {key:,} open", "KiB / connection", None
            else:
                servers = [res for res in ok if key.name in res.scenarios and res.scenarios[key.name].runs]
                if kind == "cpu":
                    values = [res.scenarios[key.name].cpu_us_median for res in servers]
                    title, unit = f"Server CPU per request — {key.name}", "CPU µs / request (lower is better)"
                    ref = floor.scenarios[key.name].cpu_us_median if floor and key.name in floor.scenarios else None
                else:
                    values = [res.scenarios[key.name].rps_median / 1000 for res in servers]
                    title, unit, ref = f"Throughput — {key.name}", "thousand requests / s", None
            _bars(ax, [res.name for res in servers], values, [colours[res.name] for res in servers], ref)
            ax.set_title(title, fontsize=11)
            ax.set_ylabel(unit)
    fig.suptitle("fastsrv benchmark (medians; servers pinned to one CPU, wrk to the other)", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _bars(ax, labels: list[str], values: list[float], colours: list, ref: float | None) -> None:
    """One labelled bar per server; with ``ref``, also the ratio to it."""
    bars = ax.bar(labels, values, color=colours, width=0.6)
    top = max(values, default=1) or 1
    ax.set_ylim(0, top * 1.22)
    for bar, value in zip(bars, values, strict=True):
        text = f"{value:,.2f}" if value < 10 else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
        if ref:
            text += f"\n{value / ref:.2f}× floor"
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
