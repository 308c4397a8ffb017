#!/usr/bin/env python3
"""Raw ASGI, Starlette and FastAPI on fastsrv, uvicorn and granian, on two
Python versions side by side.

    python bench/frameworks.py                         # CPython 3.11 and 3.13, 4 runs x 10 s each
    python bench/frameworks.py --versions 3.12,3.13 --runs 5
    python bench/frameworks.py --python 3.13=/path/to/venv/bin/python   # an interpreter of your own
    python bench/frameworks.py --report-from bench     # rewrite the report from the JSON dumps

For each version it runs ``bench/run.py --suite frameworks`` (servers pinned
to CPU 0, wrk to CPU 1, plain keep-alive, server CPU µs per request, medians)
with that interpreter, then writes the section "Python versions and
frameworks" of bench/RESULTS.md, the chart ``results_frameworks.png`` and one
JSON dump per version (``results_frameworks-3.X.json``).

Interpreters: CPython 3.X is found as ci/matrix.py finds it (pyenv, PATH) and
gets a virtualenv under ``--venv-root`` (default ``bench/.venvs``) with
``pip install -e '.[bench]'``, reused by later runs (the core is rebuilt in
place for it each time).  ``--python VERSION=PATH`` uses an interpreter that
already has fastsrv and the peers installed instead.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "ci"))

import interpreters  # noqa: E402
from harness.report import write_section  # noqa: E402
from harness.results import ServerResult, server_result_from_json  # noqa: E402
from harness.targets import ITEM  # noqa: E402

SECTION = "frameworks"
CHART = "results_frameworks.png"
# (app label, the servers running it): rows of the report and panels of the chart
APPS = (
    ("native API (fastsrv demo, GET /)", ("fastsrv",)),
    ("raw ASGI hello world", ("fastsrv-asgi", "fastsrv-asgi-task", "fastsrv-asgi-task-scheduled",
                              "uvicorn", "granian")),
    ("Starlette hello world", ("fastsrv-starlette", "uvicorn-starlette", "granian-starlette")),
    ("FastAPI hello world", ("fastsrv-fastapi", "fastsrv-fastapi-scheduled", "uvicorn-fastapi",
                             "granian-fastapi")),
    ("FastAPI, POST of a pydantic JSON body", ("fastsrv-fastapi-json", "uvicorn-fastapi-json",
                                               "granian-fastapi-json")),
)
# (server, peer, target ratio of their CPU µs/req, on which version): the goals of issue 11
GOALS = (
    ("fastsrv-fastapi", "uvicorn-fastapi", 0.65, "3.13"),
    ("fastsrv-fastapi", "granian-fastapi", 0.75, "3.13"),
)
# fastsrv must be no slower on the newer version than on the older one
SAME_OR_BETTER = ("fastsrv", "fastsrv-asgi")


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} [frameworks] {message}", file=sys.stderr, flush=True)


def bench_venv(interp: interpreters.Interpreter, venv_root: Path) -> str:
    """A virtualenv of ``interp`` with fastsrv (built in place) and the peers."""
    venv = venv_root / f"venv-{interp.version}"
    python = venv / "bin" / "python"
    if not python.exists():
        log(f"creating {venv} with CPython {interp.full}")
        subprocess.run([interp.path, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", ".[bench]"], cwd=ROOT, check=True)
    else:
        subprocess.run([str(python), "setup.py", "-q", "build_ext", "--inplace"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    return str(python)


def run_suite(version: str, python: str, args: argparse.Namespace, out_dir: Path, scratch: Path) -> Path:
    """bench/run.py's frameworks suite with ``python``: its dump in ``out_dir``, its own
    report and chart (superseded by this script's) in ``scratch``."""
    dump = out_dir / f"results_frameworks-{version}.json"
    argv = [sys.executable, str(BENCH / "run.py"), "--suite", "frameworks", "--python", python,
            "--runs", str(args.runs), "--duration", str(args.duration), "--pipeline", "1",
            "--json", str(dump), "--out", str(scratch / f"frameworks-{version}.md")]
    if args.servers:
        argv += ["--servers", args.servers]
    log(f"CPython {version}: {shlex.join(argv)}")
    subprocess.run(argv, cwd=ROOT, check=True)
    return dump


def load(dump: Path) -> tuple[dict, dict[str, ServerResult]]:
    data = json.loads(dump.read_text())
    results = {res.name: res for res in map(server_result_from_json, data["servers"])}
    return data, results


def cpu(results: dict[str, ServerResult], name: str) -> float | None:
    res = results.get(name)
    sc = res.scenarios.get("plain") if res and not res.error else None
    return sc.cpu_us_median if sc and sc.runs else None


def cpu_range(results: dict[str, ServerResult], name: str) -> tuple[float, float] | None:
    res = results.get(name)
    sc = res.scenarios.get("plain") if res and not res.error else None
    if not sc or not sc.runs:
        return None
    values = [run.cpu_us_per_request for run in sc.runs]
    return min(values), max(values)


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "–" if not a or not b else f"{a / b:.2f}×"


def peer_of(server: str, peer: str) -> str:
    """The name of ``peer`` (uvicorn/granian) serving the app ``server`` serves."""
    suffix = server.split("-", 1)[1] if "-" in server else ""
    suffix = re.sub(r"^(asgi(-task(-scheduled)?)?)$", "", suffix).replace("-scheduled", "")
    return f"{peer}-{suffix}" if suffix else peer


def report(versions: list[str], dumps: dict[str, tuple[dict, dict[str, ServerResult]]], chart: bool) -> list[str]:
    first = dumps[versions[0]][0]
    runs, duration = first["settings"]["runs"], first["settings"]["duration"]
    machine = first["machine"]
    lines = [
        "## Python versions and frameworks",
        "",
        f"Generated by `python bench/frameworks.py` on {machine['date']}: `bench/run.py --suite frameworks` once "
        f"per Python version ({', '.join(versions)}), {runs} runs × {duration:g} s of plain keep-alive "
        "(`wrk -t1 -c100`) per server after a warm-up, servers on CPU 0 and wrk on CPU 1; the figure is the "
        "server's CPU µs per request, median of the runs (range in brackets). See [README.md](README.md) for "
        "the method.",
        "",
        f"- CPU: {machine['cpu']}, {machine['logical_cpus']} logical CPUs; kernel {machine['kernel']}",
        "- Versions: " + "; ".join(
            f"CPython {v}: " + ", ".join(f"{k} {val}" for k, val in _versions(dumps[v][1]).items())
            for v in versions),
        "- Apps: `bench/peers/asgi_hello.py` (raw ASGI), `starlette_hello.py`, `fastapi_hello.py` (`GET /` "
        f"answering `{{\"message\": \"Hello, World!\"}}`, and `POST /items` with a {len(ITEM)}-byte JSON body validated "
        "into a pydantic model and sent back). fastsrv serves ASGI apps through `--interface asgi`; "
        "Starlette and FastAPI use anyio, so each request gets a Task from its first line, started eagerly "
        "on Python 3.12+ (`-scheduled`: `--asgi-task-start scheduled`, as before 3.12). "
        "`fastsrv-asgi-task` is the raw app in that mode; `fastsrv-asgi` runs it in place.",
        "",
    ]
    lines += ["### Targets", "",
              "| ratio | target | on | measured | runs allow |", "|---|---:|---|---:|---|"]
    for server, peer, target, version in GOALS:
        if version not in dumps:
            continue
        results = dumps[version][1]
        mine, theirs = cpu(results, server), cpu(results, peer)
        mr, tr = cpu_range(results, server), cpu_range(results, peer)
        verdict = "–" if not mine or not theirs else ("met" if mine / theirs <= target else "**not met**")
        allow = f"{mr[0] / tr[1]:.2f}–{mr[1] / tr[0]:.2f}" if mr and tr else "–"
        lines.append(f"| {server} ÷ {peer} | ≤ {target:.2f}× | {version} | {ratio(mine, theirs)} {verdict} | "
                     f"{allow} |")
    if len(versions) >= 2:
        old, new = versions[0], versions[-1]
        for server in SAME_OR_BETTER:
            a, b = cpu(dumps[new][1], server), cpu(dumps[old][1], server)
            ra, rb = cpu_range(dumps[new][1], server), cpu_range(dumps[old][1], server)
            verdict = "–" if not a or not b else ("met" if a <= b else "**not met**" if ra and rb and ra[0] > rb[1]
                                                 else "not met, within the run-to-run spread")
            allow = f"{ra[0] / rb[1]:.2f}–{ra[1] / rb[0]:.2f}" if ra and rb else "–"
            lines.append(f"| {server} on {new} ÷ on {old} | ≤ 1.00× | both | {ratio(a, b)} {verdict} | {allow} |")
    lines.append("")
    head = "| app | server | " + " | ".join(f"CPython {v}" for v in versions)
    head += " | " + " | ".join(f"÷ uvicorn, {v}" for v in versions) + " | " + " | ".join(
        f"÷ granian, {v}" for v in versions)
    if len(versions) >= 2:
        head += f" | {versions[-1]} ÷ {versions[0]}"
    lines += ["### Server CPU µs per request", "", head + " |",
              "|---|---|" + "---:|" * (3 * len(versions) + (1 if len(versions) >= 2 else 0))]
    for app, servers in APPS:
        for server in servers:
            if not any(server in dumps[v][1] for v in versions):
                continue
            cells = []
            for v in versions:
                value, spread = cpu(dumps[v][1], server), cpu_range(dumps[v][1], server)
                cells.append(fmt(value) + (f" ({spread[0]:.1f}–{spread[1]:.1f})" if spread else ""))
            for peer in ("uvicorn", "granian"):
                cells += [ratio(cpu(dumps[v][1], server), cpu(dumps[v][1], peer_of(server, peer)))
                          if server != "fastsrv" else "–" for v in versions]
            if len(versions) >= 2:
                cells.append(ratio(cpu(dumps[versions[-1]][1], server), cpu(dumps[versions[0]][1], server)))
            lines.append(f"| {app} | {server} | " + " | ".join(cells) + " |")
    lines.append("")
    if chart:
        lines += ["### Chart", "", f"![frameworks chart]({CHART})", ""]
    return lines


def _versions(results: dict[str, ServerResult]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for res in results.values():
        merged.update(res.versions)
    return merged


def write_chart(path: Path, versions: list[str], dumps: dict[str, tuple[dict, dict[str, ServerResult]]]) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(app, [s for s in servers if any(cpu(dumps[v][1], s) for v in versions)]) for app, servers in APPS]
    panels = [(app, servers) for app, servers in panels if servers]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1, 5.2), squeeze=False,
                             gridspec_kw={"width_ratios": [max(2, len(s)) for _, s in panels]})
    colours = plt.get_cmap("tab10")
    width = 0.8 / len(versions)
    for ax, (app, servers) in zip(axes[0], panels):
        for i, v in enumerate(versions):
            values = [cpu(dumps[v][1], s) or 0.0 for s in servers]
            xs = [x + (i - (len(versions) - 1) / 2) * width for x in range(len(servers))]
            bars = ax.bar(xs, values, width * 0.95, color=colours(i), label=f"CPython {v}")
            for bar, value in zip(bars, values):
                if value:
                    ax.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, value), xytext=(0, 2),
                                textcoords="offset points", ha="center", va="bottom", fontsize=7.5)
        ax.set_xticks(range(len(servers)))
        ax.set_xticklabels(servers, rotation=25, ha="right", fontsize=8)
        ax.set_title(app, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0][0].set_ylabel("server CPU µs / request (lower is better)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("Frameworks on fastsrv, uvicorn and granian, by Python version "
                 "(medians; server pinned to one CPU, wrk to the other)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--versions", default="3.11,3.13", help="CPython versions to compare (default: 3.11,3.13)")
    ap.add_argument("--python", action="append", default=[], metavar="VERSION=PATH",
                    help="use this interpreter for VERSION (it must have fastsrv and the peers)")
    ap.add_argument("--runs", type=int, default=4, help="measured runs per server (default: 4)")
    ap.add_argument("--duration", type=float, default=10, help="seconds per run (default: 10)")
    ap.add_argument("--servers", default="", help="comma-separated subset of the suite's servers")
    ap.add_argument("--venv-root", type=Path, default=BENCH / ".venvs")
    ap.add_argument("--out-dir", type=Path, default=BENCH, help="where the dumps, chart and RESULTS.md are")
    ap.add_argument("--report-from", type=Path, default=None, metavar="DIR",
                    help="measure nothing: rewrite the section from the dumps in DIR")
    args = ap.parse_args()
    try:
        import matplotlib  # noqa: F401  (the chart; checked before the runs, not after)
    except ImportError:
        log("matplotlib is missing for this interpreter: pip install matplotlib (or '.[bench]')")
        return 2
    versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    out_dir = args.out_dir.resolve()
    if args.report_from is None:
        given = dict(item.split("=", 1) for item in args.python)
        found, missing = interpreters.find(tuple(v for v in versions if v not in given))
        if missing:
            log(f"CPython {', '.join(missing)} not found (pyenv, PATH); give it with --python VERSION=PATH")
            return 2
        pythons = {**given, **{i.version: bench_venv(i, args.venv_root) for i in found}}
        with tempfile.TemporaryDirectory(prefix="fastsrv-frameworks-") as scratch:
            for v in versions:
                run_suite(v, pythons[v], args, out_dir, Path(scratch))
    source = (args.report_from or out_dir).resolve()
    dumps = {v: load(source / f"results_frameworks-{v}.json") for v in versions}
    charted = write_chart(out_dir / CHART, versions, dumps)
    write_section(out_dir / "RESULTS.md", SECTION, "python bench/frameworks.py", report(versions, dumps, charted))
    log(f"wrote {out_dir / 'RESULTS.md'} (section {SECTION}) and {out_dir / CHART}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
