#!/usr/bin/env python3
"""A rolling restart behind HAProxy with WebSocket clients connected: how
many messages does it cost, and how long are clients without a server?

The same rolling restart as bench/rolling_restart.py (two instances behind
HAProxy with its default settings and health checks on /readyz, restarted
one at a time with SIGTERM, each replacement on the same port or at a new
address), with WebSocket clients instead of wrk (bench/ws_rolling_load.py):
each sends a numbered message every 50 ms and expects its ``ack:N``; when
its connection ends it reconnects at once (through HAProxy, so to the other
instance) and re-sends what was not acknowledged.

Counted per server: messages sent, acknowledged, re-sent after a
connection ended under them, lost (never acknowledged), how the connections
ended (Close 1012 and other codes, or 1006: dropped without a Close frame),
failed connection attempts, the reconnection time (median and max, from the
end of a connection to the next 101) and each old instance's exit status.

Servers (``--servers``): ``fastsrv-ws`` (``--shutdown-delay``, 1012 at the
drain), ``uvicorn-ws`` (``--ws websockets``) and ``granian-ws``, each serving
bench/peers/ws_rolling.py.

    python bench/ws_rolling_restart.py                     # all three, both scenarios
    python bench/ws_rolling_restart.py --servers fastsrv-ws --scenarios same-port --restarts 2
    python bench/ws_rolling_restart.py --report-from bench/ws_rolling_restart.json

Writes the section "Rolling restart with WebSocket clients" of
bench/RESULTS.md, the chart ``ws_rolling_restart.png`` and
``ws_rolling_restart.json`` beside it.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness.debian import ToolMissing, ensure_tools  # noqa: E402
from bench.harness.haproxy import HAProxy, StatusMonitor, haproxy_config  # noqa: E402
from bench.harness.report import write_section as write_results_section  # noqa: E402
from bench.harness.rolling import SCENARIOS, WS_SERVERS, Backend, Settings  # noqa: E402
from bench.rolling_restart import RollingRestart, describe_restart  # noqa: E402

log = logging.getLogger("bench.ws_rolling_restart")
SECTION = "ws-rolling-restart"


class WebSocketRollingRestart(RollingRestart):
    """The rolling restart with WebSocket clients as the load."""

    def __init__(self, *args: Any, clients: int, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.clients = clients
        self.load: Optional[subprocess.Popen[str]] = None
        self.stats: dict = {}

    def start(self) -> None:
        s = self.settings
        for name in ("a", "b"):
            self.backends[name] = Backend(self.server, name, self._new_port(), s, self.workdir, 0)
        for backend in self.backends.values():
            backend.wait_ready()
        frontend = self._new_port()
        socket_path = self.workdir / "admin.sock"
        config = haproxy_config(socket_path, frontend, {n: b.port for n, b in self.backends.items()},
                                inter_ms=s.inter_ms, fall=s.fall, rise=s.rise)
        self.haproxy = HAProxy(config, self.workdir, socket_path)
        self.haproxy.wait_started()
        self.monitor = StatusMonitor(self.haproxy, list(self.backends))
        self.monitor.start()
        for name in self.backends:
            self.monitor.wait_status(name, "UP", time.monotonic(), 10)
        self.t0 = time.monotonic()
        self.load = subprocess.Popen([sys.executable, str(ROOT / "bench" / "ws_rolling_load.py"),
                                      f"ws://127.0.0.1:{frontend}/", "--clients", str(self.clients)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.load.stdout is not None
        self.load.stdout.readline()
        self.progress(f"{self.tag} {self.clients} WebSocket clients through HAProxy on :{frontend}")

    def finish(self) -> None:
        assert self.load is not None
        self.load.send_signal(signal.SIGINT)
        out, _ = self.load.communicate(timeout=60)
        self.stats = json.loads(out.strip().splitlines()[-1])

    def close(self) -> None:
        if self.load is not None and self.load.poll() is None:
            self.load.kill()
            self.load.communicate()
        super().close()


def run_one(server: str, scenario: str, settings: Settings, clients: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ws-rolling-"))
    run = WebSocketRollingRestart(server, scenario, settings, workdir, log.info, clients=clients)
    try:
        run.start()
        time.sleep(settings.warmup)
        for index in range(settings.restarts):
            restart = run.restart(index)
            log.info("%s restart %d/%d (%s): %s", run.tag, index + 1, settings.restarts, restart.instance,
                     describe_restart(restart))
            time.sleep(settings.settle)
        time.sleep(settings.tail)
        run.finish()
        result = {"server": server, "scenario": scenario, **run.stats,
                  "exit_statuses": run.result.exit_statuses}
        log.info("%s %s", run.tag, result)
        return result
    except Exception as exc:
        log.error("%s failed: %s", run.tag, exc)
        return {"server": server, "scenario": scenario, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        run.close()


def report(results: list[dict], settings: Settings, clients: int) -> list[str]:
    lines = ["## Rolling restart with WebSocket clients", "",
             f"Generated by `python bench/ws_rolling_restart.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
             f": two instances behind HAProxy (default settings, checks on /readyz every {settings.inter_ms} ms, "
             f"fall {settings.fall}), {settings.restarts} restarts one instance at a time, {clients} WebSocket "
             "clients each sending a numbered message every 50 ms and re-sending what was not acknowledged after "
             f"reconnecting. fastsrv runs with `--shutdown-delay {settings.shutdown_delay:g}`.", "",
             "| server | scenario | sent | acked | re-sent | lost | closes seen | failed connects | reconnect ms "
             "(median / max) | exit statuses |", "|---|---|---:|---:|---:|---:|---|---:|---:|---|"]
    for r in results:
        if r.get("error"):
            lines.append(f"| {r['server']} | {r['scenario']} | failed: {r['error']} ||||||||")
            continue
        closes = ", ".join(f"{n} × {code}" for code, n in sorted(r["closes"].items()))
        failed = sum(r["connect_failures"].values())
        lines.append(f"| {r['server']} | {r['scenario']} | {r['sent']:,} | {r['acked']:,} | {r['resent']:,} | "
                     f"{r['lost']:,} | {closes} | {failed} | {r['reconnect_ms_median'] or 0:.0f} / "
                     f"{r['reconnect_ms_max'] or 0:.0f} | {r['exit_statuses']} |")
    lines.append("")
    return lines


def write_chart(path: Path, results: list[dict]) -> bool:
    """Messages re-sent and lost, and the time clients were without a server, per server and scenario."""
    rows = [r for r in results if not r.get("error")]
    if not rows:
        return False
    try:
        import matplotlib
    except ImportError:
        log.warning("matplotlib is missing: no chart (pip install matplotlib)")
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['server']}\n{r['scenario']}" for r in rows]
    xs = range(len(rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, series, title, log_scale in (
            (left, (("re-sent", "resent", "tab:blue"), ("lost", "lost", "tab:red")),
             "messages re-sent after a connection ended, and lost", False),
            (right, (("median", "reconnect_ms_median", "tab:green"), ("max", "reconnect_ms_max", "tab:gray")),
             "time from a connection's end to the next 101 (ms, log scale)", True)):
        width = 0.38
        for i, (name, key, colour) in enumerate(series):
            values = [r[key] or 0 for r in rows]
            bars = ax.bar([x + (i - 0.5) * width for x in xs], values, width, label=name, color=colour)
            for bar, value in zip(bars, values):
                ax.annotate(f"{value:,.0f}", (bar.get_x() + bar.get_width() / 2, value), xytext=(0, 2),
                            textcoords="offset points", ha="center", va="bottom", fontsize=7)
        if log_scale:
            ax.set_yscale("log")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, fontsize=7.5)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    fig.suptitle("Rolling restart behind HAProxy with WebSocket clients (lower is better)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_section(path: Path, lines: list[str]) -> None:
    """Replace (or append) this script's section of RESULTS.md, keeping the rest."""
    write_results_section(path, SECTION, "python bench/ws_rolling_restart.py", lines)


def write_report(out_dir: Path, results: list[dict], settings: Settings, clients: int) -> None:
    lines = report(results, settings, clients)
    if write_chart(out_dir / "ws_rolling_restart.png", results):
        lines += ["![rolling restart with WebSocket clients](ws_rolling_restart.png)", ""]
    write_section(out_dir / "RESULTS.md", lines)
    log.info("wrote the %s section of %s", SECTION, out_dir / "RESULTS.md")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(WS_SERVERS))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--restarts", type=int, default=4)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--shutdown-delay", type=float, default=1.5)
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench")
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--report-from", type=Path, default=None, metavar="JSON",
                        help="measure nothing: rewrite the section and chart from a dump (with the run's "
                             "--restarts, --clients and --shutdown-delay)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.report_from:
        results = json.loads(args.report_from.read_text())
        settings = Settings(restarts=args.restarts, shutdown_delay=args.shutdown_delay)
        write_report(args.out_dir, results, settings, args.clients)
        return 0
    try:
        ensure_tools(["haproxy"])
    except ToolMissing as exc:
        log.error("%s", exc)
        return 2
    settings = Settings(restarts=args.restarts, shutdown_delay=args.shutdown_delay)
    results = [run_one(server, scenario, settings, args.clients)
               for scenario in args.scenarios.split(",") for server in args.servers.split(",")]
    if not args.no_report:
        (args.out_dir / "ws_rolling_restart.json").write_text(json.dumps(results, indent=1) + "\n")
        write_report(args.out_dir, results, settings, args.clients)
    ok = all(not r.get("error") and r["lost"] == 0 and r["exit_statuses"] == [0] * args.restarts
             and set(r["closes"]) <= {1012} for r in results if r["server"] == "fastsrv-ws")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
