#!/usr/bin/env python3
"""Workers on one host: req/s and CPU per request for one process, one worker
under the supervisor, and two workers; and what the supervisor itself costs.

Each configuration is measured with ``fastsrv bench --json`` (wrk, ``GET /``
on the demo app, 100 keep-alive connections, 2 wrk threads), ``--runs``
times, interleaved so that drift on the machine hits every configuration
alike; the report gives medians.  Nothing is pinned: on a 2-core machine the
server's workers and wrk share both cores, which is the point of the
comparison (one worker leaves a core to wrk; two compete with it).

* ``single``: ``fastsrv run fastsrv.demo:app``, no supervisor;
* ``workers-1``: ``--workers 1``, the same server under the supervisor: the
  difference to ``single`` is the supervisor's cost on the request path;
* ``workers-2``: ``--workers 2``.

The supervisor's own CPU time over each measured window is reported too.

    python bench/scaling.py                  # 3 runs x 10 s of each (~2 min)
    python bench/scaling.py --quick          # 1 run x 3 s (a smoke test)

Writes the section ``workers`` of bench/RESULTS.md, bench/results_workers.png
and bench/results_workers.json (``--out-dir`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from harness.debian import ToolMissing, ensure_tools  # noqa: E402
from harness.machine import describe_machine  # noqa: E402
from harness.report import write_section  # noqa: E402

log = logging.getLogger("bench.scaling")

CONFIGS: dict[str, list[str]] = {
    "single": [],
    "workers-1": ["--workers", "1"],
    "workers-2": ["--workers", "2"],
}
LABELS = {"single": "one process", "workers-1": "--workers 1", "workers-2": "--workers 2"}
SECTION = "workers"


def measure(config: str, duration: float, connections: int, threads: int) -> dict[str, Any]:
    """One ``fastsrv bench --json`` run of ``config``."""
    argv = [sys.executable, "-m", "fastsrv", "bench", "fastsrv.demo:app", "--tool", "wrk", "--json",
            "--duration", f"{duration:g}", "--connections", str(connections), "--threads", str(threads),
            *CONFIGS[config]]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=duration + 120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    if result["errors"] or result["server_exit_status"] != 0:
        raise RuntimeError(f"{config}: {result['errors']} errors, server exit {result['server_exit_status']}")
    return result


def median(runs: list[dict[str, Any]], key: str) -> Optional[float]:
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Medians (and ranges) per configuration."""
    summary = {}
    for config, results in runs.items():
        summary[config] = {
            "runs": len(results),
            "requests_per_s": median(results, "requests_per_s"),
            "requests_per_s_range": [min(r["requests_per_s"] for r in results),
                                     max(r["requests_per_s"] for r in results)],
            "server_cpu_us_per_request": median(results, "server_cpu_us_per_request"),
            "cpu_range": [min(r["server_cpu_us_per_request"] for r in results),
                          max(r["server_cpu_us_per_request"] for r in results)],
            "server_cpu_utilisation": median(results, "server_cpu_utilisation"),
            "supervisor_cpu_s": median(results, "supervisor_cpu_s"),
            "supervisor_cpu_s_max": max((r["supervisor_cpu_s"] or 0.0) for r in results),
            "latency_ms": {p: median(results, f"{p}_ms") for p in ("p50", "p90", "p99")},
            "load_cpu_s": median(results, "load_cpu_s"),
            "measured_s": median(results, "measured_s"),
        }
    return summary


def report(summary: dict[str, dict[str, Any]], settings: dict[str, Any], machine: dict[str, str]) -> list[str]:
    """The markdown of the ``workers`` section."""
    single = summary.get("single", {}).get("requests_per_s")
    lines = [
        "## Workers: one process, one worker, two workers",
        "",
        f"`python bench/scaling.py` — `fastsrv bench --json --tool wrk` on the demo app, `GET /`, "
        f"{settings['connections']} keep-alive connections, wrk with {settings['threads']} threads, "
        f"{settings['runs']} × {settings['duration']:g} s per configuration (interleaved), medians. "
        f"Nothing is pinned: on this {machine['logical_cpus']}-CPU machine the workers and wrk share the "
        "cores, so two workers compete with wrk for CPU and the req/s figure is a whole-machine figure, "
        "not a per-core one. CPU µs/request is the whole server's (supervisor + workers).",
        "",
        "| configuration | req/s (range) | vs one process | server CPU µs/req (range) | server CPU use "
        "| wrk CPU use | p50 / p90 / p99 ms | supervisor CPU over the run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for config, s in summary.items():
        lat = s["latency_ms"]
        sup = s["supervisor_cpu_s"]
        ratio = f"{s['requests_per_s'] / single:.2f}×" if single else "—"
        lines.append(
            f"| {LABELS[config]} | {s['requests_per_s']:,.0f} ({s['requests_per_s_range'][0]:,.0f}-"
            f"{s['requests_per_s_range'][1]:,.0f}) | {ratio} | {s['server_cpu_us_per_request']:.2f} "
            f"({s['cpu_range'][0]:.2f}-{s['cpu_range'][1]:.2f}) | {s['server_cpu_utilisation'] * 100:.0f} % | "
            f"{s['load_cpu_s'] / s['measured_s'] * 100:.0f} % | "
            f"{lat['p50']:.2f} / {lat['p90']:.2f} / {lat['p99']:.2f} | "
            + ("—" if sup is None else f"{sup:.3f} s (max {s['supervisor_cpu_s_max']:.3f} s)") + " |")
    lines += ["", *observations(summary, machine), "", "![workers chart](results_workers.png)", ""]
    return lines


def observations(summary: dict[str, dict[str, Any]], machine: dict[str, str]) -> list[str]:
    """What the figures say, computed from them."""
    out = []
    cpus = int(machine["logical_cpus"])
    for config, s in summary.items():
        busy = s["server_cpu_utilisation"] + s["load_cpu_s"] / s["measured_s"]
        out.append(f"- {LABELS[config]}: server and wrk together use {busy * 100:.0f} % of the "
                   f"{cpus * 100} % the machine has.")
    single, one, two = (summary.get(k) for k in ("single", "workers-1", "workers-2"))
    if single and one:
        out.append(f"- The supervisor on the request path: `--workers 1` costs "
                   f"{one['server_cpu_us_per_request']:.2f} µs/request against {single['server_cpu_us_per_request']:.2f} "
                   f"for one process ({one['server_cpu_us_per_request'] / single['server_cpu_us_per_request']:.2f}×, "
                   f"within the runs' ranges: {single['cpu_range'][0]:.2f}-{single['cpu_range'][1]:.2f} and "
                   f"{one['cpu_range'][0]:.2f}-{one['cpu_range'][1]:.2f}); the supervisor itself used at most "
                   f"{max(one['supervisor_cpu_s_max'], (two or one)['supervisor_cpu_s_max']):.3f} s of CPU per run "
                   f"(clock ticks of 10 ms: 0.000 means under one tick).")
    if single and two:
        out.append(f"- Two workers: {two['requests_per_s'] / single['requests_per_s']:.2f}× the req/s of one "
                   f"process at {two['server_cpu_us_per_request'] / single['server_cpu_us_per_request']:.2f}× "
                   f"the CPU per request. With wrk on the same {cpus} cores the machine is already saturated by one "
                   "worker and wrk, so a second worker cannot add throughput here: it takes CPU from wrk, and "
                   "each worker's event loop, less busy, handles fewer requests per wake-up, which is the higher "
                   "CPU per request. What a second worker adds on a host with a free core is not measured here: "
                   "this machine has none once wrk runs on it.")
    return out



def chart(path: Path, summary: dict[str, dict[str, Any]], settings: dict[str, Any]) -> None:
    """req/s and CPU µs/request side by side, one bar per configuration."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    labels = [LABELS[n] for n in names]
    colours = [plt.get_cmap("tab10")(i) for i in range(len(names))]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, key, rng, title, fmt in (
        (left, "requests_per_s", "requests_per_s_range", "req/s (higher is better)", "{:,.0f}"),
        (right, "server_cpu_us_per_request", "cpu_range", "server CPU µs per request (lower is better)",
         "{:.2f}"),
    ):
        values = [summary[n][key] for n in names]
        lows = [v - summary[n][rng][0] for n, v in zip(names, values)]
        highs = [summary[n][rng][1] - v for n, v in zip(names, values)]
        bars = ax.bar(labels, values, color=colours, yerr=[lows, highs], capsize=4)
        for bar, value in zip(bars, values):
            ax.annotate(fmt.format(value), (bar.get_x() + bar.get_width() / 2, value / 2),
                        ha="center", va="center", fontsize=10, color="white", fontweight="bold")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, max(v + h for v, h in zip(values, highs)) * 1.18)
    fig.suptitle(f"fastsrv workers on 2 shared cores: GET /, wrk -c{settings['connections']} "
                 f"-t{settings['threads']}, medians of {settings['runs']} × {settings['duration']:g} s",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"a subset of {','.join(CONFIGS)}")
    parser.add_argument("--quick", action="store_true", help="1 run x 3 s")
    parser.add_argument("--out-dir", type=Path, default=BENCH)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.quick:
        args.runs, args.duration = 1, 3
    configs = [c for c in args.configs.split(",") if c]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    try:
        ensure_tools(["wrk"])
    except ToolMissing as exc:
        log.error("%s", exc)
        return 2
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    total = args.runs * len(configs)
    t0 = time.monotonic()
    for i in range(args.runs):
        for config in configs:
            result = measure(config, args.duration, args.connections, args.threads)
            runs[config].append(result)
            log.info("[%d/%d, %.0f s] %s run %d: %.0f req/s, %.2f µs CPU/request, supervisor %s s",
                     len(sum(runs.values(), [])), total, time.monotonic() - t0, config, i + 1,
                     result["requests_per_s"], result["server_cpu_us_per_request"], result["supervisor_cpu_s"])
    summary = summarise(runs)
    settings = {"runs": args.runs, "duration": args.duration, "connections": args.connections,
                "threads": args.threads}
    machine = describe_machine()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "results_workers.json").write_text(
        json.dumps({"settings": settings, "machine": machine, "summary": summary, "runs": runs}, indent=2) + "\n")
    chart(args.out_dir / "results_workers.png", summary, settings)
    lines = report(summary, settings, machine)
    write_section(args.out_dir / "RESULTS.md", SECTION, "python bench/scaling.py", lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
