"""Listening sockets: TCP, or a Unix socket (``--uds PATH``).

A Unix socket is made with mode 0666 (uvicorn's): any local user who can
reach the path may connect, so access is governed by the permissions of the
directory it is in (e.g. ``/run/myapp/``, owned by the service and the
proxy's group, mode 0750).  A stale socket file left by a process that died
is replaced; a path where a server still answers, or that is not a socket,
is refused.  The graceful shutdown removes the file once the listener is
closed (with ``--workers``, the supervisor does, when the stop begins), so
a proxy gets "no such file" at once rather than a refused connection.
"""

from __future__ import annotations

import os
import socket
import stat
from typing import Optional

UDS_MODE = 0o666


def bind_tcp(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening); ``OSError`` if it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def bind_unix(path: str) -> socket.socket:
    """A Unix socket bound at ``path`` with mode 0666 (not yet listening);
    ``OSError`` (with a message that says why) if it cannot be."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(f"{path} exists and is not a socket: remove it or choose another --uds path")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)         # stale: no server behind it
        else:
            raise OSError(f"a server already listens on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, UDS_MODE)
    except OSError:
        sock.close()
        raise
    return sock


def socket_identity(path: str) -> Optional[tuple[int, int]]:
    """``(device, inode)`` of the file at ``path``, or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def remove_unix(path: str, identity: Optional[tuple[int, int]]) -> bool:
    """Remove the socket file at ``path`` if it is still the one we made
    (a new server may have bound the path since); True if removed."""
    if identity is None or socket_identity(path) != identity:
        return False
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def url(sock: socket.socket, tls: bool = False) -> str:
    """``http(s)://host:port``, or ``unix:PATH``, of a listening socket."""
    if sock.family == socket.AF_UNIX:
        return f"{'https+' if tls else ''}unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
