"""The CPython interpreters of the supported versions that this machine has.

Looked for, per version, as ``python3.X`` on the PATH and under pyenv's
versions directory (``$PYENV_ROOT``, ``pyenv root``, or ``~/.pyenv``), the
highest patch release first; each candidate must run and report that
version.  Nothing is hard-coded but the versions fastsrv supports.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Optional

SUPPORTED = ("3.10", "3.11", "3.12", "3.13")


@dataclass(frozen=True)
class Interpreter:
    version: str        # "3.12"
    full: str           # "3.12.1"
    path: str


def _pyenv_root() -> Optional[str]:
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        try:
            root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            root = None
    if not root:
        root = os.path.expanduser("~/.pyenv")
    return root if os.path.isdir(root) else None


def _patch_key(path: str) -> tuple[int, ...]:
    m = re.search(r"/(\d+)\.(\d+)\.(\d+)[^/]*/bin/", path)
    return tuple(int(x) for x in m.groups()) if m else (0,)


def _candidates(version: str) -> list[str]:
    found: list[str] = []
    root = _pyenv_root()
    if root:
        # release builds only (3.12.1, not 3.12.1t or 3.13-dev)
        paths = [p for p in glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}"))
                 if re.search(rf"/{re.escape(version)}\.\d+/bin/", p)]
        found += sorted(paths, key=_patch_key, reverse=True)
    on_path = shutil.which(f"python{version}")
    if on_path and "/shims/" not in on_path:
        found.append(on_path)
    return found


def _version_of(path: str) -> Optional[str]:
    try:
        out = subprocess.run([path, "-c", "import platform; print(platform.python_implementation(), "
                              "platform.python_version())"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 2 or parts[0] != "CPython":
        return None
    return parts[1]


def find(versions: tuple[str, ...] = SUPPORTED) -> tuple[list[Interpreter], list[str]]:
    """The interpreters found, and the versions not found."""
    found: list[Interpreter] = []
    missing: list[str] = []
    for version in versions:
        for path in _candidates(version):
            full = _version_of(path)
            if full is not None and full.startswith(version + "."):
                found.append(Interpreter(version, full, path))
                break
        else:
            missing.append(version)
    return found, missing


if __name__ == "__main__":
    have, lack = find()
    for interp in have:
        print(f"CPython {interp.full}: {interp.path}")
    for version in lack:
        print(f"CPython {version}: not found")
