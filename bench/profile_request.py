#!/usr/bin/env python3
"""Where an ASGI request's time goes on fastsrv: the app's own work, and
what the server adds to it.

    python bench/profile_request.py                            # FastAPI hello world, this interpreter
    python bench/profile_request.py --python /path/to/python3.13 --python /path/to/python3.11
    python bench/profile_request.py --app bench.peers.starlette_hello:app --server-arg=--asgi-eager=off
    python bench/profile_request.py --no-py-spy                # instruction counts only
    python bench/profile_request.py --peers ''                 # fastsrv only, no uvicorn/granian

Two measurements per interpreter:

* **Instructions per request** (valgrind's callgrind: exact and repeatable,
  unlike timings on a shared machine).  The server (``fastsrv run APP``,
  HTTP/1.1 over 10 keep-alive connections on 127.0.0.1) is counted serving
  N and 3N requests, and the app alone (its ASGI callable driven in a loop
  with a fastsrv-shaped scope and no-op ``receive``/``send``) running N and
  3N times; each figure is the difference divided by 2N, so start-up and
  shut-down cancel out.  The server's share is the first minus the second.
  uvicorn and granian (``--peers``) are counted serving the same app the
  same way, so the work each server adds around it can be compared.
  Kernel work (the socket syscalls, loopback delivery) is not counted.
* **Where the CPU goes under load** (py-spy, ``--native``, under
  ``wrk -t1 -c100``, server on CPU 0 and wrk on CPU 1): each sample is
  given to the innermost frame that belongs to a known owner (fastsrv's
  core, uvloop and libuv, asyncio's C Task, the app's framework packages,
  a system call), and the samples inside the app's call are told apart
  from the server's own.

Writes the section "Where a request's time goes" of bench/RESULTS.md
(``--out``), or only prints it with ``--print``.
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from harness.report import write_section  # noqa: E402

SECTION = "profile"
CLIENT_CONNECTIONS = 10

# drives an ASGI app in a loop with a scope shaped like fastsrv's (run by the interpreter under test)
ALONE = r'''
import asyncio, importlib, sys
sys.path.insert(0, sys.argv[3])
module, attr = sys.argv[1].split(":")
app = getattr(importlib.import_module(module), attr)
n = int(sys.argv[2])
method, path, body, ctype = sys.argv[4], sys.argv[5], sys.argv[6].encode("latin-1"), sys.argv[7]
headers = [(b"host", b"127.0.0.1:8000")]
if body:
    headers += [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
def scope():
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
            "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 40000), "scheme": "http", "method": method,
            "root_path": "", "path": path, "raw_path": path.encode(), "query_string": b"",
            "headers": list(headers), "state": {}, "extensions": {}}
async def receive():
    return {"type": "http.request", "body": body, "more_body": False}
async def send(message):
    pass
async def main():
    for _ in range(n):
        await app(scope(), receive, send)
import uvloop
uvloop.run(main())
'''

# frame owners, innermost first wins; (label, pattern on "function (file:line)")
OWNERS = (
    ("system calls (kernel)", re.compile(r"^(__libc_)?(write|writev|read|readv|send|sendmsg|sendto|recv|recvmsg|"
                                         r"recvfrom|epoll_wait|epoll_ctl|accept4?|close|shutdown)\S* \(libc\.so")),
    ("libc (malloc, memcpy, ...)", re.compile(r"\(libc\.so[^)]*\)$")),
    ("fastsrv core (Cython)", re.compile(r"\(fastsrv/[^)]*\.(pyx|pxi|pxd|c)[:)]")),
    ("fastsrv (Python)", re.compile(r"\(fastsrv/[^)]*\.py:")),
    ("asyncio (C Task, futures)", re.compile(r"\((_asynciomodule\.c|[^)]*asyncio/[^)]*)[:)]")),
    ("uvloop and libuv", re.compile(r"\((loop\.c|[^)]*uvloop/[^)]*|core\.c|linux\.c|stream\.c|tcp\.c|timer\.c|"
                                    r"uv-common\.c|poll\.c)[:)]")),
)
FRAMEWORK = re.compile(r"\((?:[^)]*/)?(starlette|fastapi|anyio|pydantic|pydantic_core|opentelemetry|contextlib|"
                       r"json|typing|inspect|enum|functools|bench/peers)[/.]")
APP_ENTRY = re.compile(r"(FastAPI|Starlette)\.__call__|\(bench/peers/")


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} [profile] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request_bytes(method: str, path: str, body: bytes, ctype: str) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if body:
        head += f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def drive(port: int, n: int, request: bytes, timeout: float = 600) -> None:
    """``n`` requests over CLIENT_CONNECTIONS keep-alive connections, each answered 200."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conns = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(CLIENT_CONNECTIONS)]
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        for i in range(n):
            s = conns[i % CLIENT_CONNECTIONS]
            s.sendall(request)
            data = b""
            while True:
                data += s.recv(65536)
                head, sep, rest = data.partition(b"\r\n\r\n")
                if not sep:
                    continue
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"unexpected answer {head[:80]!r}")
                length = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                          if line.lower().startswith(b"content-length:")]
                if (length and len(rest) >= length[0]) or (not length and rest.endswith(b"0\r\n\r\n")):
                    break
    finally:
        for s in conns:
            s.close()


def callgrind_total(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def server_argv(server: str, python: str, args: argparse.Namespace, port: int) -> list[str]:
    """The command serving ``args.app`` on ``server``, with the flags of the frameworks suite."""
    if server == "fastsrv":
        return [python, "-m", "fastsrv", "run", args.app, "--interface", "asgi", "--lifespan", "off",
                "--log-level", "warning", "--port", str(port), *args.server_arg]
    if server == "uvicorn":
        return [python, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                "--log-level", "warning", "--lifespan", "off", "--port", str(port), args.app]
    if server == "granian":
        return [python, "-m", "granian", "--interface", "asgi", "--loop", "uvloop", "--workers", "1",
                "--runtime-threads", "1", "--no-ws", "--log-level", "warning", "--port", str(port), args.app]
    raise ValueError(f"unknown server {server!r} (fastsrv, uvicorn, granian)")


def count_server(server: str, python: str, args: argparse.Namespace, n: int, tmp: Path) -> int:
    """Instructions of ``server``'s whole process tree (granian serves from a child process)
    serving ``n`` requests, start-up and shut-down included."""
    port = free_port()
    out = tmp / f"{server}.{n}"
    out.mkdir()
    argv = ["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={out}/%p.cg", "-q",
            *server_argv(server, python, args, port)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        drive(port, n, request_bytes(args.method, args.path, args.body.encode(), args.content_type))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(300)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    return sum(callgrind_total(path) for path in out.glob("*.cg"))


def count_alone(python: str, args: argparse.Namespace, n: int, tmp: Path) -> int:
    out = tmp / f"alone.{n}.cg"
    script = tmp / "alone.py"
    script.write_text(ALONE)
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "-q", python, str(script),
                    args.app, str(n), str(ROOT), args.method, args.path, args.body, args.content_type],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return callgrind_total(out)


def instructions(python: str, args: argparse.Namespace) -> dict[str, float]:
    """Instructions per request: {server: the app served by it, "alone": the app alone}."""
    counts: dict[str, float] = {}
    n = args.requests
    with tempfile.TemporaryDirectory(prefix="fastsrv-profile-") as tmp:
        for server in ["fastsrv", *args.peers]:
            log(f"callgrind: {server} serving {n} and {3 * n} requests")
            counts[server] = (count_server(server, python, args, 3 * n, Path(tmp))
                              - count_server(server, python, args, n, Path(tmp))) / (2 * n)
        log(f"callgrind: the app alone, {n} and {3 * n} calls")
        counts["alone"] = (count_alone(python, args, 3 * n, Path(tmp))
                           - count_alone(python, args, n, Path(tmp))) / (2 * n)
    return counts


def classify(stack: list[str]) -> tuple[str, bool]:
    """(owner of the sample, whether it is inside the app's call)."""
    inside = any(APP_ENTRY.search(frame) for frame in stack)
    for frame in reversed(stack):
        if FRAMEWORK.search(frame):
            return "the app and its framework", inside
        for label, pattern in OWNERS:
            if pattern.search(frame):
                return label, inside
    return "interpreter and other", inside


def sample_under_load(python: str, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """{owner: (share of samples, share inside the app)}."""
    py_spy = shutil.which("py-spy") or str(Path(python).with_name("py-spy"))
    port = free_port()
    server = subprocess.Popen(["taskset", "-c", "0", python, "-m", "fastsrv", "run", args.app, "--interface", "asgi",
                               "--lifespan", "off", "--log-level", "warning", "--port", str(port), *args.server_arg],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    body = args.body
    wrk = ["taskset", "-c", "1", "wrk", "-t1", "-c100", f"-d{args.seconds + 3}s", "-s", str(BENCH / "pipeline.lua"),
           f"http://127.0.0.1:{port}/", "--", "1", args.method, args.path, body, args.content_type]
    try:
        drive(port, 10, request_bytes(args.method, args.path, body.encode(), args.content_type), timeout=30)
        with tempfile.TemporaryDirectory(prefix="fastsrv-profile-") as tmp:
            raw = Path(tmp) / "stacks.txt"
            load = subprocess.Popen(wrk, stdout=subprocess.DEVNULL)
            time.sleep(1.5)
            log(f"py-spy: {args.seconds} s of samples under wrk -c100")
            subprocess.run([py_spy, "record", "--pid", str(server.pid), "--native", "--rate", "500",
                            "--duration", str(args.seconds), "--format", "raw", "--output", str(raw)],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            load.communicate(timeout=args.seconds + 60)
            counts: collections.Counter[tuple[str, bool]] = collections.Counter()
            for line in raw.read_text(errors="replace").splitlines():
                stack, _, count = line.rpartition(" ")
                counts[classify(stack.split(";"))] += int(count)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    total = sum(counts.values()) or 1
    shares: dict[str, tuple[float, float]] = {}
    for (owner, inside), count in counts.items():
        all_, in_app = shares.get(owner, (0.0, 0.0))
        shares[owner] = (all_ + count / total, in_app + (count / total if inside else 0.0))
    return shares


def version_of(python: str) -> str:
    return subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                          capture_output=True, text=True, check=True).stdout.strip()


def report(args: argparse.Namespace, rows: list[dict], date: str) -> list[str]:
    what = f"`{args.method} {args.path}`" + (f" with a {len(args.body)}-byte body" if args.body else "")
    extra = f" (`{' '.join(args.server_arg)}`)" if args.server_arg else ""
    lines = [
        "## Where a request's time goes",
        "",
        f"Generated by `python bench/profile_request.py` on {date}: "
        f"`{args.app}` on fastsrv{extra}, {what}. Instructions per request are counted by callgrind (exact, "
        "unlike timings here): fastsrv serving the app over 10 keep-alive connections, and the app alone, "
        "driven in a loop with a fastsrv-shaped scope and no-op `receive`/`send`; the difference is what the "
        "server adds (what the kernel does is not counted)."
        + (" The shares are py-spy samples of the server under `wrk -t1 -c100`, each given to the innermost "
           "frame with a known owner." if any(row.get("shares") for row in rows) else ""),
        "",
        "| CPython | on fastsrv: instructions/request | the app alone | fastsrv adds | fastsrv's share |"
        + "".join(f" on {peer} | {peer} adds | fastsrv ÷ {peer} |" for peer in args.peers),
        "|---|---:|---:|---:|---:|" + "---:|---:|---:|" * len(args.peers),
    ]
    for row in rows:
        counts = row["instructions"]
        served, alone = counts["fastsrv"], counts["alone"]
        line = f"| {row['version']} | {served:,.0f} | {alone:,.0f} | {served - alone:,.0f} | " \
               f"{(served - alone) / served:.1%} |"
        for peer in args.peers:
            line += f" {counts[peer]:,.0f} | {counts[peer] - alone:,.0f} | {served / counts[peer]:.2f}× |"
        lines.append(line)
    if args.peers:
        lines += ["", "The peers run with the frameworks suite's flags (uvicorn: uvloop + httptools; granian: "
                  "1 worker, 1 runtime thread, uvloop); granian's count is that of its whole process tree. "
                  "Instructions are not time: what the kernel does for each server is left out, and so is "
                  "how fast each instruction runs, so these ratios say how much work each server does "
                  "around the same app, and the timed suite says what it costs.", ""]
        for row in rows:
            counts = row["instructions"]
            floors = ", ".join(f"{counts['alone'] / counts[peer]:.2f}× {peer}'s" for peer in args.peers)
            lines.append(f"- CPython {row['version']}: the app alone is {floors} count, the lowest ratio a "
                         "server that added nothing at all could reach.")
    sampled = [row for row in rows if row.get("shares")]
    if sampled:
        lines += ["", "CPU samples under load (share of all samples; in brackets, the part inside the app's call):",
                  "", "| owner | " + " | ".join(f"CPython {row['version']}" for row in sampled) + " |",
                  "|---|" + "---:|" * len(sampled)]
        owners = sorted({owner for row in sampled for owner in row["shares"]},
                        key=lambda o: -max(row["shares"].get(o, (0, 0))[0] for row in sampled))
        for owner in owners:
            cells = []
            for row in sampled:
                share, inside = row["shares"].get(owner, (0.0, 0.0))
                cells.append(f"{share:.1%}" + (f" ({inside:.1%})" if inside else ""))
            lines.append(f"| {owner} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", action="append", default=[], help="interpreter(s) with fastsrv and the app "
                    "installed (default: this one); repeat to compare")
    ap.add_argument("--app", default="bench.peers.fastapi_hello:app")
    ap.add_argument("--method", default="GET")
    ap.add_argument("--path", default="/")
    ap.add_argument("--body", default="", help="request body (text)")
    ap.add_argument("--content-type", default="application/json")
    ap.add_argument("--server-arg", action="append", default=[], help="extra fastsrv run argument (repeat)")
    ap.add_argument("--peers", default="uvicorn,granian",
                    help="servers counted beside fastsrv serving the same app (default: uvicorn,granian; '' for none)")
    ap.add_argument("--requests", type=int, default=500, help="N: requests counted are N and 3N (default 500)")
    ap.add_argument("--seconds", type=int, default=8, help="py-spy sampling time (default 8)")
    ap.add_argument("--no-py-spy", action="store_true", help="instruction counts only")
    ap.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    ap.add_argument("--print", action="store_true", help="print the section instead of writing it")
    ap.add_argument("--json", type=Path, default=BENCH / "results_profile.json",
                    help="where the figures are dumped (default bench/results_profile.json)")
    ap.add_argument("--report-from", type=Path, default=None, metavar="JSON",
                    help="measure nothing: write the section from a dump")
    args = ap.parse_args()
    args.peers = [peer.strip() for peer in args.peers.split(",") if peer.strip()]
    for peer in args.peers:
        if peer not in ("uvicorn", "granian"):
            ap.error(f"--peers: unknown server {peer!r} (uvicorn, granian)")
    if args.report_from:
        dump = json.loads(args.report_from.read_text())
        for key in ("app", "method", "path", "body", "server_arg", "peers"):
            setattr(args, key, dump["settings"][key])
        return emit(args, dump["rows"], dump["date"])
    missing = [tool for tool in ("valgrind", "taskset") + (() if args.no_py_spy else ("wrk",)) if not shutil.which(tool)]
    if missing:
        log(f"missing: {', '.join(missing)} (apt-get install valgrind util-linux wrk)")
        return 2
    rows = []
    for python in args.python or [sys.executable]:
        row: dict = {"version": version_of(python)}
        log(f"CPython {row['version']} ({python})")
        row["instructions"] = instructions(python, args)
        if not args.no_py_spy:
            row["shares"] = sample_under_load(python, args)
        rows.append(row)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    settings = {key: getattr(args, key) for key in ("app", "method", "path", "body", "server_arg", "peers")}
    args.json.write_text(json.dumps({"date": date, "settings": settings, "rows": rows}, indent=1) + "\n")
    return emit(args, rows, date)


def emit(args: argparse.Namespace, rows: list[dict], date: str) -> int:
    lines = report(args, rows, date)
    if args.print:
        print("\n".join(lines))
    else:
        write_section(args.out, SECTION, "python bench/profile_request.py", lines)
        log(f"wrote {args.out} (section {SECTION})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
