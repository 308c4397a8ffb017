"""The ``fastsrv`` command line."""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import sys
from typing import Any, Optional, Sequence

from fastsrv.config import EAGER_MODES, INTERFACES, LIFESPAN_MODES, SIGNAL_POLICIES, Config
from fastsrv.errors import AppLoadError, ConfigError

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def load_app(spec: str, app_dir: str = ".") -> Any:
    """Import ``MODULE:ATTR`` and return the attribute."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AppLoadError(f"app must be given as MODULE:ATTR (e.g. myapp:app), got {spec!r}")
    if app_dir:
        sys.path.insert(0, os.path.abspath(app_dir))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(f"cannot import module {module_name!r}: {exc}") from exc
    try:
        obj: Any = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise AppLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj) and not hasattr(obj, "router"):
        raise AppLoadError(f"{spec} is a {type(obj).__name__}: neither a fastsrv App nor an ASGI application")
    return obj


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastsrv", description="A fast HTTP/1.1 server for Python.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve an app", description="Serve MODULE:ATTR.")
    run.add_argument("app", help="the app to serve, as MODULE:ATTR (a fastsrv App or an ASGI app)")
    run.add_argument("--interface", default="auto", choices=INTERFACES,
                     help="how to call the app: a fastsrv App (native) or ASGI; auto tells them apart")
    run.add_argument("--lifespan", default="auto", choices=LIFESPAN_MODES,
                     help="ASGI lifespan: on requires it, auto uses it when the app supports it")
    run.add_argument("--root-path", default="", metavar="PATH",
                     help="ASGI root_path: the prefix the app is mounted under behind a proxy (e.g. /api)")
    run.add_argument("--asgi-eager", default="auto", choices=EAGER_MODES,
                     help="run ASGI requests in place until they first suspend (on), in a Task "
                          "from the first line (off), or decide by whether the app uses anyio (auto)")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--app-dir", default=".", help="directory added to sys.path (default: .)")
    run.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    run.add_argument("--access-log", action="store_true", help="log one line per request")
    run.add_argument("--exit-wait-time", type=float, default=5.0, metavar="SECONDS",
                     help="how long a graceful shutdown waits for in-flight requests (default 5)")
    run.add_argument("--shutdown-delay", type=float, default=0.0, metavar="SECONDS",
                     help="keep serving this long after the signal, readiness answering 503 (default 0)")
    run.add_argument("--signal-policy", default="graceful", choices=SIGNAL_POLICIES,
                     help="graceful: TERM/INT/HUP drain; legacy: TERM stops at once")
    run.add_argument("--hook-timeout", type=float, default=5.0, metavar="SECONDS")
    run.add_argument("--hook-budget", type=float, default=10.0, metavar="SECONDS")
    run.add_argument("--readiness-path", default=None, help="e.g. /readyz (off by default)")
    run.add_argument("--liveness-path", default=None, help="e.g. /livez (off by default)")
    run.add_argument("--keepalive-timeout", type=float, default=5.0, metavar="SECONDS")
    run.add_argument("--header-timeout", type=float, default=10.0, metavar="SECONDS")
    run.add_argument("--body-timeout", type=float, default=30.0, metavar="SECONDS")
    run.add_argument("--write-timeout", type=float, default=30.0, metavar="SECONDS",
                     help="cut a client that reads none of a pending response for this long")
    run.add_argument("--max-connections", type=int, default=0)
    run.add_argument("--max-body-bytes", type=int, default=10 * 1024 * 1024)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("fastsrv")
    try:
        app = load_app(args.app, args.app_dir)
        config = Config(
            host=args.host, port=args.port, access_log=args.access_log,
            exit_wait_time=args.exit_wait_time, shutdown_delay=args.shutdown_delay,
            signal_policy=args.signal_policy, hook_timeout=args.hook_timeout,
            hook_budget=args.hook_budget, readiness_path=args.readiness_path,
            liveness_path=args.liveness_path, keepalive_timeout=args.keepalive_timeout,
            header_timeout=args.header_timeout, body_timeout=args.body_timeout,
            write_timeout=args.write_timeout,
            max_connections=args.max_connections, max_body_bytes=args.max_body_bytes,
            interface=args.interface, lifespan=args.lifespan, root_path=args.root_path,
            asgi_eager=args.asgi_eager,
        )
        from fastsrv.server import Server
        server = Server(app, config)
    except (AppLoadError, ConfigError) as exc:
        log.error("%s", exc)
        return 2
    from fastsrv.server import run_on_uvloop
    return run_on_uvloop(server.serve())


def exit_now(status: int) -> None:
    """Exit without the interpreter's teardown of every module and object.

    That teardown takes 30-120 ms after the last response has gone out, and a
    stopping pod should be gone as soon as its work is done.  Output is
    flushed and ``atexit`` callbacks still run first.
    """
    atexit._run_exitfuncs()     # includes logging.shutdown(), registered by logging
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def console_main() -> None:
    """The ``fastsrv`` console script."""
    exit_now(main())


if __name__ == "__main__":
    console_main()
