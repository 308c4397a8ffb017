#!/usr/bin/env python3
"""The README's test command on every supported CPython this machine has,
each in its own fresh virtualenv, then the wheel check with each.

    python3 ci/matrix.py                  # every version found
    python3 ci/matrix.py --versions 3.12  # only these
    python3 ci/matrix.py --no-wheel       # the suites only

For each interpreter: ``python -m venv``, ``pip install -e '.[test]'``,
``python -m pytest`` (the README's command, with that interpreter), then
``ci/wheel_check.py`` (build the wheel, install it outside the checkout,
serve the demo, drain on SIGTERM, exit 0).  It says which versions were
found and which are missing, prints a table of counts and times, and exits
1 if any step failed (0 otherwise).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import interpreters  # noqa: E402

SUMMARY = re.compile(r"^=+ (.*) in ([\d.]+)s", re.M)
COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|warnings?|deselected)")


@dataclass
class Result:
    interp: interpreters.Interpreter
    install_s: float = 0.0
    test_s: float = 0.0
    wheel_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    failure: Optional[str] = None


def banner(text: str) -> None:
    print(f"\n{'=' * 8} {text} {'=' * max(8, 70 - len(text))}", flush=True)


def stream(argv: list[str], timeout: float, env: Optional[dict[str, str]] = None) -> tuple[int, str]:
    """Run ``argv`` in the checkout, echoing its output; (status, output)."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", env=env)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        lines.append(line)
        if time.monotonic() > deadline:
            proc.kill()
            lines.append(f"\n[ci] killed after {timeout:.0f} s\n")
            break
    return proc.wait(), "".join(lines)


def run_one(interp: interpreters.Interpreter, venv_root: str, wheel: bool, pytest_args: list[str]) -> Result:
    result = Result(interp)
    venv = os.path.join(venv_root, f"venv-{interp.version}")
    python = os.path.join(venv, "bin", "python")
    banner(f"CPython {interp.full}: a fresh virtualenv, pip install -e '.[test]'")
    started = time.monotonic()
    status, _ = stream([interp.path, "-m", "venv", venv], 300)
    if status == 0:
        status, _ = stream([python, "-m", "pip", "install", "-q", "-e", ".[test]"], 1200)
    result.install_s = time.monotonic() - started
    if status != 0:
        result.failure = f"install failed ({status})"
        return result
    banner(f"CPython {interp.full}: python -m pytest")
    started = time.monotonic()
    status, out = stream([python, "-m", "pytest", *pytest_args], 1500)
    result.test_s = time.monotonic() - started
    summary = SUMMARY.findall(out)
    if summary:
        result.counts = {kind.rstrip("s") if kind.startswith(("error", "warning")) else kind: int(n)
                         for n, kind in COUNT.findall(summary[-1][0])}
    if status != 0:
        result.failure = f"pytest exited {status}"
        return result
    if wheel:
        banner(f"CPython {interp.full}: the wheel, installed outside the checkout")
        started = time.monotonic()
        status, _ = stream([sys.executable, os.path.join(HERE, "wheel_check.py"), "--python", interp.path], 1200)
        result.wheel_s = time.monotonic() - started
        if status != 0:
            result.failure = f"wheel check failed ({status})"
    return result


def table(results: list[Result], missing: list[str]) -> str:
    rows = ["| CPython | passed | failed | skipped | install | tests | wheel check | result |",
            "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        c = r.counts
        rows.append(f"| {r.interp.full} | {c.get('passed', 0)} | {c.get('failed', 0) + c.get('error', 0)} | "
                    f"{c.get('skipped', 0)} | {r.install_s:.0f} s | {r.test_s:.0f} s | "
                    f"{f'{r.wheel_s:.0f} s' if r.wheel_s else '-'} | {r.failure or 'ok'} |")
    for version in missing:
        rows.append(f"| {version} | - | - | - | - | - | - | not found on this machine |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--versions", default=",".join(interpreters.SUPPORTED),
                    help="comma-separated versions (default: every supported one)")
    ap.add_argument("--no-wheel", action="store_true", help="skip the wheel check")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = ap.parse_args()
    wanted = tuple(v.strip() for v in args.versions.split(",") if v.strip())
    unknown = [v for v in wanted if v not in interpreters.SUPPORTED]
    if unknown:
        print(f"not a supported version: {', '.join(unknown)} (supported: {', '.join(interpreters.SUPPORTED)})")
        return 2
    found, missing = interpreters.find(wanted)
    banner("interpreters")
    for interp in found:
        print(f"found    CPython {interp.full}: {interp.path}")
    for version in missing:
        print(f"MISSING  CPython {version}: not on the PATH nor under pyenv's versions")
    if not found:
        print("no supported interpreter found")
        return 1
    started = time.monotonic()
    venv_root = tempfile.mkdtemp(prefix="fastsrv-ci-")
    try:
        results = [run_one(interp, venv_root, not args.no_wheel, args.pytest_args) for interp in found]
    finally:
        shutil.rmtree(venv_root, ignore_errors=True)
    banner(f"summary ({(time.monotonic() - started) / 60:.1f} min)")
    print(table(results, missing), flush=True)
    return 1 if any(r.failure for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
