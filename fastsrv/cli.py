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

from fastsrv.config import (ACCESS_LOG_FORMATS, EAGER_MODES, INTERFACES, LIFESPAN_MODES, SIGNAL_POLICIES,
                            TASK_STARTS, WS_MODES, Config)
from fastsrv import environ
from fastsrv.errors import AppLoadError, ConfigError

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def load_app(spec: str, app_dir: str = ".", factory: bool = False) -> Any:
    """Import ``MODULE:ATTR`` and return the attribute (with ``factory``,
    what calling it with no arguments returns)."""
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
    if factory:
        if not callable(obj):
            raise AppLoadError(f"--factory: {spec} is a {type(obj).__name__}, not a function that makes the app")
        try:
            obj = obj()
        except Exception as exc:
            raise AppLoadError(f"--factory: calling {spec}() failed: {exc!r}") from exc
    if not callable(obj) and not hasattr(obj, "router"):
        raise AppLoadError(f"{spec} is a {type(obj).__name__}: neither a fastsrv App nor an ASGI application")
    return obj


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastsrv", description="A fast HTTP/1.1 server for Python.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve an app",
                         description="Serve MODULE:ATTR. Every option can also be given as an environment "
                                     "variable FASTSRV_<OPTION> (--ssl-certfile: FASTSRV_SSL_CERTFILE); the "
                                     "command line wins over the environment, which wins over --env-file.")
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
    run.add_argument("--ws-per-message-deflate", type=environ.parse_boolean, default=True, metavar="BOOLEAN",
                     help="accept permessage-deflate compression when the client offers it (default true)")
    run.add_argument("--ws-shutdown-code", type=int, default=1012, metavar="CODE",
                     help="the close code the server sends WebSockets at its graceful shutdown "
                          "(default 1012, Service Restart)")
    run.add_argument("--ws-shutdown-grace", type=float, default=1.0, metavar="SECONDS",
                     help="at the graceful shutdown, how long apps get to close their WebSockets "
                          "themselves before the server does (default 1)")
    run.add_argument("--factory", action="store_true",
                     help="APP is a function that takes no arguments and returns the app")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--uds", default=None, metavar="PATH",
                     help="listen on a Unix socket at PATH (mode 0666; removed at shutdown) "
                          "instead of --host/--port")
    run.add_argument("--fd", type=int, default=None, metavar="FD",
                     help="serve on an inherited listening socket, file descriptor FD "
                          "(socket activation), instead of binding --host/--port")
    run.add_argument("--backlog", type=int, default=2048, metavar="N",
                     help="the listen queue: connections the kernel holds before they are accepted "
                          "(default 2048)")
    tls = run.add_argument_group("TLS (on when --ssl-certfile is given)")
    tls.add_argument("--ssl-certfile", default=None, metavar="PATH", help="the certificate chain (PEM)")
    tls.add_argument("--ssl-keyfile", default=None, metavar="PATH",
                     help="its private key (PEM; default: in the certificate file)")
    tls.add_argument("--ssl-keyfile-password", default=None, metavar="PASSWORD",
                     help="the password of an encrypted key")
    tls.add_argument("--ssl-ca-certs", default=None, metavar="PATH",
                     help="CA certificates (PEM) client certificates are checked against")
    tls.add_argument("--ssl-cert-reqs", type=int, default=0, choices=(0, 1, 2), metavar="0|1|2",
                     help="client certificates: 0 not asked for (default), 1 optional, 2 required")
    tls.add_argument("--ssl-ciphers", default=None, metavar="CIPHERS",
                     help="OpenSSL cipher list for TLS 1.2 (default: OpenSSL's)")
    proxy = run.add_argument_group("behind a proxy")
    proxy.add_argument("--proxy-headers", action=argparse.BooleanOptionalAction, default=True,
                       help="take the client, scheme and host from X-Forwarded-For/-Proto/-Host or "
                            "Forwarded, from --forwarded-allow-ips peers only (default: on)")
    proxy.add_argument("--forwarded-allow-ips", default=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
                       metavar="LIST",
                       help="comma-separated addresses and CIDR networks trusted with proxy headers, "
                            "'*' for all, 'unix:' for Unix-socket peers (default: $FORWARDED_ALLOW_IPS "
                            "or 127.0.0.1)")
    heads = run.add_argument_group("response headers")
    heads.add_argument("--server-header", action=argparse.BooleanOptionalAction, default=True,
                       help="send 'server: fastsrv' unless the app sends its own (default: on)")
    heads.add_argument("--date-header", action=argparse.BooleanOptionalAction, default=True,
                       help="send the Date header (default: on)")
    heads.add_argument("--header", dest="headers", action="append", default=None, metavar="NAME:VALUE",
                       help="a header for every response (repeatable)")
    run.add_argument("--workers", type=int, default=None, metavar="N",
                     help="run N worker processes sharing the port under a supervisor that "
                          "forwards signals and restarts a worker that dies (default: one process, "
                          "no supervisor)")
    run.add_argument("--limit-max-requests", type=int, default=0, metavar="N",
                     help="after N responses, drain and exit; with --workers, the worker is replaced "
                          "(its successor started first) (default 0: never)")
    run.add_argument("--limit-max-requests-jitter", type=int, default=0, metavar="N",
                     help="add a random 0..N to --limit-max-requests per process, so that workers "
                          "are not replaced all at once (default 0)")
    run.add_argument("--limit-concurrency", type=int, default=0, metavar="N",
                     help="answer 503 to a request that arrives while N are in flight (default 0: no limit)")
    reload = run.add_argument_group("development")
    reload.add_argument("--reload", action="store_true",
                        help="restart (through the graceful drain) when a watched file changes")
    reload.add_argument("--reload-dir", dest="reload_dirs", action="append", default=None, metavar="DIR",
                        help="a directory to watch (repeatable; default: the current directory)")
    reload.add_argument("--reload-include", dest="reload_includes", action="append", default=None,
                        metavar="GLOB", help="also watch files matching GLOB (repeatable; default: *.py)")
    reload.add_argument("--reload-exclude", dest="reload_excludes", action="append", default=None,
                        metavar="GLOB", help="ignore files matching GLOB (repeatable; default: .*, "
                                             "*.py[cod], *~, .git, __pycache__)")
    run.add_argument("--app-dir", default=".", help="directory added to sys.path (default: .)")
    run.add_argument("--env-file", default=None, metavar="PATH",
                     help="read environment variables (for the app, and FASTSRV_* options) from a dotenv file")
    run.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    run.add_argument("--log-config", default=None, metavar="PATH",
                     help="a logging configuration file: .json or .yaml (dictConfig) or INI (fileConfig)")
    run.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=False,
                     help="log one line per response on fastsrv.access (default: off)")
    run.add_argument("--access-log-format", default="common", choices=ACCESS_LOG_FORMATS,
                     help="common (Common Log Format + duration), combined (+ referer, user agent) or "
                          "json (default: common)")
    run.add_argument("--metrics-path", default=None, metavar="PATH",
                     help="answer Prometheus metrics at PATH, e.g. /metrics (off by default; "
                          "needs fastsrv[metrics])")
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
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        if argv[:1] == ["run"]:
            environ.load_env_file(argv)
            environ.apply_env_defaults(_run_parser(parser))
    except ConfigError as exc:
        print(f"fastsrv run: error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.command == "bench":
        from fastsrv import benchcmd
        return benchcmd.main(args)
    from fastsrv import supervisor
    from fastsrv.logs import configure
    log = logging.getLogger("fastsrv")
    try:
        configure(args.log_config, args.log_level,
                  f"%(asctime)s %(levelname)s {supervisor.worker_label()}%(name)s: %(message)s")
        config = _config(args)
        if args.reload:
            return _supervise(args, config, reload=True)
        if args.workers is not None:
            return _supervise(args, config)
        app = load_app(args.app, args.app_dir, args.factory)
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


def _run_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices["run"]
    raise RuntimeError("no run command")


def _config(args: argparse.Namespace) -> Config:
    """The server configuration the ``run`` options describe."""
    return Config(
        host=args.host, port=args.port, uds=args.uds if args.fd is None else None,
        sock=_inherited_socket(args.fd), backlog=args.backlog,
        access_log=args.access_log, access_log_format=args.access_log_format,
        ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
        ssl_keyfile_password=args.ssl_keyfile_password, ssl_ca_certs=args.ssl_ca_certs,
        ssl_cert_reqs=args.ssl_cert_reqs, ssl_ciphers=args.ssl_ciphers,
        proxy_headers=args.proxy_headers, forwarded_allow_ips=args.forwarded_allow_ips,
        server_header=args.server_header, date_header=args.date_header, headers=list(args.headers or ()),
        metrics_path=args.metrics_path, limit_concurrency=args.limit_concurrency,
        limit_max_requests=args.limit_max_requests, limit_max_requests_jitter=args.limit_max_requests_jitter,
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


def _inherited_socket(fd: Optional[int]) -> Optional[socket.socket]:
    """The listening socket passed as ``--fd``; ConfigError if it is not one."""
    if fd is None:
        return None
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ConfigError(f"--fd {fd} is not an open socket ({exc.strerror or exc})") from None
    if (sock.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX) or sock.type != socket.SOCK_STREAM
            or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)):
        sock.detach()
        raise ConfigError(f"--fd {fd} is not a listening TCP or Unix stream socket")
    sock.set_inheritable(False)     # programs the app starts must not keep the port bound
    sock.setblocking(False)
    return sock


# options the supervisor acts on itself, not passed on to its workers
SUPERVISOR_OPTIONS = {"workers", "fd", "host", "port", "uds", "env_file", "reload", "reload_dirs",
                      "reload_includes", "reload_excludes"}


def _supervise(args: argparse.Namespace, config: Config, reload: bool = False) -> int:
    """``run --workers N`` (or ``--reload``): bind once, then supervise N
    workers running the same command on the inherited socket."""
    from fastsrv import supervisor
    workers = args.workers if args.workers is not None else 1
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    watcher = None
    if reload:
        from fastsrv.reload import Watcher
        watcher = Watcher(args.reload_dirs or [os.getcwd()], args.reload_includes or (), args.reload_excludes or ())
    if config.metrics_path:
        from fastsrv.extras import require
        require("metrics", "prometheus_client", "--metrics-path")
    sock = config.sock
    if sock is None:
        try:
            sock = supervisor.bind_socket(config.host, config.port, config.backlog, config.uds)
        except OSError as exc:
            where = config.uds or f"{config.host}:{config.port}"
            logging.getLogger("fastsrv").error("cannot listen on %s: %s", where, exc.strerror or exc)
            return 1
    forwarded = _forwarded_options(args, skip=SUPERVISOR_OPTIONS)
    stop_timeout = config.shutdown_delay + config.exit_wait_time + config.hook_budget

    def command(fd: int) -> list[str]:
        return [*supervisor.python_command(), "run", args.app, *forwarded, "--fd", str(fd)]

    settings = supervisor.SupervisorConfig(workers=workers, stop_timeout=stop_timeout)
    # a worker takes its options from its command line, never from these
    env_drop = [environ.env_name(action) for action in args.run_parser._actions
                if action.option_strings and action.dest in SUPERVISOR_OPTIONS]
    # two slots a worker: a replacement overlaps the worker it replaces
    sup = supervisor.Supervisor(sock, command, settings, env_drop=env_drop,
                                metrics=2 * workers + 2 if config.metrics_path else None,
                                uds=config.uds if config.sock is None else None,
                                tls=config.ssl_context is not None)
    if watcher is None:
        return sup.run()
    watcher.start(sup.request_reload)
    try:
        return sup.run()
    finally:
        watcher.stop()


def _forwarded_options(args: argparse.Namespace, skip: set[str]) -> list[str]:
    """The ``run`` options of ``args`` as a worker's argv, except ``skip``."""
    argv: list[str] = []
    for action in args.run_parser._actions:
        if not action.option_strings or action.dest in skip or action.dest == "help":
            continue
        value = getattr(args, action.dest)
        flag = action.option_strings[0]
        if isinstance(action, argparse._StoreTrueAction):
            if value:
                argv.append(flag)
        elif isinstance(action, argparse.BooleanOptionalAction):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(action, argparse._AppendAction):
            for item in value or ():
                argv.append(f"{flag}={item}")
        elif value is not None:
            argv.append(f"{flag}={value}")
    return argv


def config_argv(config: Config) -> list[str]:
    """The ``run`` options that make ``config`` (those that differ from the
    defaults), for ``fastsrv.run(app, workers=N)``."""
    defaults = Config()
    run = _run_parser(_parser())
    argv: list[str] = []
    if config.sock is not None or config.signal_waiter is not None:
        raise ConfigError("workers=N cannot pass an inherited socket or a signal_waiter to its workers")
    for action in run._actions:
        if not action.option_strings or not hasattr(config, action.dest):
            continue
        value = getattr(config, action.dest)
        if value == getattr(defaults, action.dest):
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse._StoreTrueAction):
            argv.append(flag) if value else None
        elif isinstance(action, argparse.BooleanOptionalAction):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(action, argparse._AppendAction):
            argv += [f"{flag}={': '.join(item) if isinstance(item, tuple) else item}" for item in value]
        else:
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
