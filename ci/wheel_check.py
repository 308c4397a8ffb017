#!/usr/bin/env python3
"""Build fastsrv's wheel with one interpreter, install it in a fresh
virtualenv outside the checkout, and check that installed server for real.

    python3 ci/wheel_check.py --python /path/to/python3.12
    python ci/wheel_check.py --installed    # the fastsrv this interpreter has (cibuildwheel's test)

The installed ``fastsrv run fastsrv.demo:app`` (started from a directory
with no ``fastsrv/`` in it, so only the wheel can be imported) must answer
``GET /``; then, with a ``GET /sleep?ms=600`` in flight, SIGTERM must
refuse new connections at once, let that request finish with
``Connection: close``, and exit 0.  Exit status: 0 when all of it held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import glob
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def step(message: str) -> None:
    print(f"[wheel] {message}", flush=True)


def run(argv: list[str], cwd: str, timeout: float) -> None:
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(port: int, path: str, timeout: float = 5.0) -> bytes:
    """The whole answer to one ``GET path`` (the server closes or the
    response is complete by its Content-Length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: ci\r\n\r\n".encode())
        data = b""
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    return data
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def check_server(fastsrv_bin: str, workdir: str) -> None:
    port = free_port()
    proc = subprocess.Popen([fastsrv_bin, "run", "fastsrv.demo:app", "--port", str(port)], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 20
        while not any("serving on" in line for line in log):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the installed server did not start:\n" + "".join(log))
            time.sleep(0.05)
        hello = request(port, "/")
        if not (hello.startswith(b"HTTP/1.1 200") and hello.endswith(b"Hello, World!")):
            raise SystemExit(f"GET / answered {hello!r}")
        step("the installed server answers GET /")
        slow: list[bytes] = []
        sender = threading.Thread(target=lambda: slow.append(request(port, "/sleep?ms=600")))
        sender.start()
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            raise SystemExit("a new connection was accepted during the drain:\n" + "".join(log))
        except ConnectionRefusedError:
            step("new connections are refused once the drain has begun")
        sender.join(10)
        answer = slow[0] if slow else b""
        if not (answer.startswith(b"HTTP/1.1 200") and b"connection: close" in answer.lower()
                and answer.endswith(b"slept 600 ms\n")):
            raise SystemExit(f"the request in flight at SIGTERM got {answer!r}\n" + "".join(log))
        step("the request in flight at SIGTERM completed with Connection: close")
        status = proc.wait(15)
        reader.join(5)
        if status != 0:
            raise SystemExit(f"the server exited {status} after a clean drain:\n" + "".join(log))
        step("SIGTERM drained and the server exited 0")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable, help="the interpreter to build and install with")
    ap.add_argument("--installed", action="store_true",
                    help="check the fastsrv already installed for this interpreter; build nothing")
    args = ap.parse_args()
    if args.installed:
        with tempfile.TemporaryDirectory(prefix="fastsrv-wheel-") as tmp:
            check_server(os.path.join(os.path.dirname(sys.executable), "fastsrv"), tmp)
        return 0
    with tempfile.TemporaryDirectory(prefix="fastsrv-wheel-") as tmp:
        dist = os.path.join(tmp, "dist")
        started = time.monotonic()
        run([args.python, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, ROOT], cwd=tmp, timeout=900)
        wheels = glob.glob(os.path.join(dist, "fastsrv-*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"expected one fastsrv wheel, found {wheels}")
        step(f"built {os.path.basename(wheels[0])} in {time.monotonic() - started:.0f} s")
        venv = os.path.join(tmp, "venv")
        run([args.python, "-m", "venv", venv], cwd=tmp, timeout=300)
        python = os.path.join(venv, "bin", "python")
        run([python, "-m", "pip", "install", "-q", wheels[0]], cwd=tmp, timeout=900)
        where = subprocess.run([python, "-c", "import fastsrv._core, fastsrv; print(fastsrv.__file__)"],
                               cwd=tmp, capture_output=True, text=True, timeout=60)
        if where.returncode != 0 or not where.stdout.strip().startswith(venv):
            raise SystemExit(f"fastsrv did not import from the wheel's venv: {where.stdout}{where.stderr}")
        step(f"installed in a fresh virtualenv: {where.stdout.strip()}")
        check_server(os.path.join(venv, "bin", "fastsrv"), tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
