"""Install the Debian tools a script needs (wrk, nginx, haproxy, clang) when
they are missing, the way every script here does it: ``apt-get install``
as root, ``apt-get update`` and once more only if that fails."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from typing import Mapping, Sequence

log = logging.getLogger("bench.debian")

# the command a script looks for -> the Debian package that has it
PACKAGES: Mapping[str, str] = {"wrk": "wrk", "nginx": "nginx-light", "haproxy": "haproxy", "clang": "clang",
                               "taskset": "util-linux", "prlimit": "util-linux"}


# Debian installs servers (nginx, haproxy) in sbin, which a non-login PATH may lack
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def find_tool(name: str) -> str | None:
    """The executable ``name`` on the PATH or in the usual system directories; None if absent."""
    return shutil.which(name) or shutil.which(name, path=SEARCH_PATH)


class ToolMissing(RuntimeError):
    """A tool is missing and could not be installed; the message says how to get it."""


def can_install() -> bool:
    """True when this process may run apt-get (root, on a Debian-like system)."""
    return shutil.which("apt-get") is not None and os.geteuid() == 0


def ensure_tools(tools: Sequence[str], timeout: float = 900) -> dict[str, str]:
    """The path of every command in ``tools``, installing the missing ones
    from Debian's packages; :class:`ToolMissing` if that is not possible."""
    missing = sorted({PACKAGES.get(tool, tool) for tool in tools if find_tool(tool) is None})
    if not missing:
        return {tool: find_tool(tool) or tool for tool in tools}
    how = f"apt-get install {' '.join(missing)}"
    if not can_install():
        raise ToolMissing(f"{', '.join(missing)} not installed, and this is not root with apt-get: run `{how}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    log.info("installing missing tools: %s", " ".join(install))
    failure = ""
    for commands in ([install], [["apt-get", "update", "-q"], install]):
        try:
            for command in commands:
                subprocess.run(command, check=True, timeout=timeout, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            break
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            failure = str(exc)
    still = [tool for tool in tools if find_tool(tool) is None]
    if still:
        raise ToolMissing(f"could not install {', '.join(still)} ({failure or 'not found after the install'}):"
                          f" run `{how}`")
    return {tool: find_tool(tool) or tool for tool in tools}
