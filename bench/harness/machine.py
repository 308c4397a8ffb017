"""Describe the machine and the software under test, for the report."""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def describe_machine() -> dict[str, str]:
    return {
        "cpu": cpu_model(),
        "logical_cpus": str(os.cpu_count()),
        "memory": memory_total(),
        "kernel": f"{platform.system()} {platform.release()}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _run(argv: Sequence[str], timeout: float = 20, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    return (done.stdout + done.stderr).strip()


NOT_INSTALLED = "not installed"

_VERSIONS_SNIPPET = """
import importlib, importlib.metadata as md, json, sys
found = {"python": sys.version.split()[0]}
for name in sys.argv[2:]:
    try:
        found[name] = md.version(name)
    except md.PackageNotFoundError:
        try:
            module = importlib.import_module(name)
        except ImportError:
            found[name] = sys.argv[1]
        else:
            found[name] = f"{getattr(module, '__version__', '?')} (uninstalled, from {module.__path__[0]})"
print(json.dumps(found))
"""


def python_versions(python: str, packages: Sequence[str], cwd: Path) -> dict[str, str]:
    """Interpreter and package versions as seen by ``python`` (the server's interpreter) run in ``cwd``."""
    out = _run([python, "-c", _VERSIONS_SNIPPET, NOT_INSTALLED, *packages], cwd=cwd)
    try:
        return json.loads(out.splitlines()[-1])
    except (ValueError, IndexError):
        return {"python": f"unknown ({out[:200]})"}


def tool_version(argv: Sequence[str]) -> str:
    """First version-looking token printed by e.g. ``nginx -v`` or ``wrk -v``."""
    out = _run(argv)
    match = re.search(r"(?:/|\s)v?(\d+\.\d+(?:\.\d+)?)", out)
    return match[1] if match else out.splitlines()[0] if out else "unknown"
