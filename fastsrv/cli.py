"""The ``fastsrv`` command line."""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import socket
import sys
from typing import Any, Optional, Sequence

from fastsrv.config import (EAGER_MODES, INTERFACES, LIFESPAN_MODES, SIGNAL_POLICIES, TASK_STARTS,
                            WS_MODES, Config)
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
    run.add_argument("--asgi-task-start", default="eager", choices=TASK_STARTS,
                     help="on Python 3.12+, how a request's Task starts: its first step at once, so a "
                          "request that never suspends needs no loop round trip (eager), or on the "
                          "loop's next iteration (scheduled); before 3.12 always scheduled")
    run.add_argument("--ws", default="auto", choices=WS_MODES,
                     help="WebSocket: served by the core (auto, on), or upgrades answered 501 (off)")
    run.add_argument("--ws-max-size", type=int, default=16 * 1024 * 1024, metavar="BYTES",
                     help="largest WebSocket message, once inflated; over it the connection closes "
                          "with 1009 (default 16777216)")
    run.add_argument("--ws-ping-interval", type=float, default=20.0, metavar="SECONDS",
                     help="send a keepalive ping this often (default 20; 0 disables)")
    run.add_argument("--ws-ping-timeout", type=float, default=20.0, metavar="SECONDS",
                     help="close with 1011 when a ping is unanswered this long (default 20; 0 disables)")
    run.add_argument("--ws-per-message-deflate", type=_boolean, default=True, metavar="BOOLEAN",
                     help="accept permessage-deflate compression when the client offers it (default true)")
    run.add_argument("--ws-shutdown-code", type=int, default=1012, metavar="CODE",
                     help="the close code the server sends WebSockets at its graceful shutdown "
                          "(default 1012, Service Restart)")
    run.add_argument("--ws-shutdown-grace", type=float, default=1.0, metavar="SECONDS",
                     help="at the graceful shutdown, how long apps get to close their WebSockets "
                          "themselves before the server does (default 1)")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--fd", type=int, default=None, metavar="FD",
                     help="serve on an inherited listening socket, file descriptor FD "
                          "(socket activation), instead of binding --host/--port")
    run.add_argument("--workers", type=int, default=None, metavar="N",
                     help="run N worker processes sharing the port under a supervisor that "
                          "forwards signals and restarts a worker that dies (default: one process, "
                          "no supervisor)")
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
    run.add_argument("--underscores-in-headers", action="store_true",
                     help="keep header and trailer fields whose name has an underscore (Content_Length); "
                          "by default they are dropped, as nginx does, since CGI-style code reads them as "
                          "their hyphenated twins (logged at debug)")
    run.set_defaults(run_parser=run)     # the supervisor passes the options on to its workers
    from fastsrv import benchcmd
    benchcmd.add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "bench":
        from fastsrv import benchcmd
        return benchcmd.main(args)
    from fastsrv import supervisor
    logging.basicConfig(level=args.log_level.upper(),
                        format=f"%(asctime)s %(levelname)s {supervisor.worker_label()}%(name)s: %(message)s")
    log = logging.getLogger("fastsrv")
    try:
        config = _config(args)
        if args.workers is not None:
            return _supervise(args, config)
        app = load_app(args.app, args.app_dir)
        from fastsrv.server import Server
        server = Server(app, config)
    except (AppLoadError, ConfigError) as exc:
        log.error("%s", exc)
        return 2
    channel = supervisor.in_worker()
    if channel is not None:
        supervisor.attach_worker(server, channel)
    from fastsrv.server import run_on_uvloop
    return run_on_uvloop(server.serve())


def _config(args: argparse.Namespace) -> Config:
    """The server configuration the ``run`` options describe."""
    return Config(
        host=args.host, port=args.port, sock=_inherited_socket(args.fd), access_log=args.access_log,
        exit_wait_time=args.exit_wait_time, shutdown_delay=args.shutdown_delay,
        signal_policy=args.signal_policy, hook_timeout=args.hook_timeout,
        hook_budget=args.hook_budget, readiness_path=args.readiness_path,
        liveness_path=args.liveness_path, keepalive_timeout=args.keepalive_timeout,
        header_timeout=args.header_timeout, body_timeout=args.body_timeout,
        write_timeout=args.write_timeout,
        max_connections=args.max_connections, max_body_bytes=args.max_body_bytes,
        underscores_in_headers=args.underscores_in_headers,
        interface=args.interface, lifespan=args.lifespan, root_path=args.root_path,
        asgi_eager=args.asgi_eager,
        asgi_task_start=args.asgi_task_start,
        ws=args.ws, ws_max_size=args.ws_max_size, ws_ping_interval=args.ws_ping_interval,
        ws_ping_timeout=args.ws_ping_timeout, ws_per_message_deflate=args.ws_per_message_deflate,
        ws_shutdown_code=args.ws_shutdown_code, ws_shutdown_grace=args.ws_shutdown_grace,
    )


def _boolean(text: str) -> bool:
    """``true``/``false`` (and 1/0, yes/no, on/off), as uvicorn's boolean options."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _inherited_socket(fd: Optional[int]) -> Optional[socket.socket]:
    """The listening socket passed as ``--fd``; ConfigError if it is not one."""
    if fd is None:
        return None
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ConfigError(f"--fd {fd} is not an open socket ({exc.strerror or exc})") from None
    if (sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM
            or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)):
        sock.detach()
        raise ConfigError(f"--fd {fd} is not a listening TCP socket")
    sock.set_inheritable(False)     # programs the app starts must not keep the port bound
    sock.setblocking(False)
    return sock


def _supervise(args: argparse.Namespace, config: Config) -> int:
    """``run --workers N``: bind once, then supervise N workers running the
    same command on the inherited socket."""
    from fastsrv import supervisor
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    sock = config.sock
    if sock is None:
        try:
            sock = supervisor.bind_socket(config.host, config.port, config.backlog)
        except OSError as exc:
            logging.getLogger("fastsrv").error("cannot listen on %s:%d: %s", config.host, config.port,
                                               exc.strerror or exc)
            return 1
    forwarded = _forwarded_options(args, skip={"workers", "fd", "host", "port"})
    stop_timeout = config.shutdown_delay + config.exit_wait_time + config.hook_budget

    def command(fd: int) -> list[str]:
        return [*supervisor.python_command(), "run", args.app, *forwarded, "--fd", str(fd)]

    settings = supervisor.SupervisorConfig(workers=args.workers, stop_timeout=stop_timeout)
    return supervisor.Supervisor(sock, command, settings).run()


def _forwarded_options(args: argparse.Namespace, skip: set[str]) -> list[str]:
    """The ``run`` options of ``args`` as a worker's argv, except ``skip``."""
    argv: list[str] = []
    for action in args.run_parser._actions:
        if not action.option_strings or action.dest in skip or action.dest == "help":
            continue
        value = getattr(args, action.dest)
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            if value:
                argv.append(flag)
        elif value is not None:
            argv.append(f"{flag}={value}")
    return argv


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
