"""Server configuration: one dataclass, checked when it is made."""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

from fastsrv._parser import Limits
from fastsrv._websocket import WsConfig
from fastsrv.errors import ConfigError

SIGNAL_POLICIES = ("graceful", "legacy")
INTERFACES = ("auto", "native", "asgi")
LIFESPAN_MODES = ("auto", "on", "off")
EAGER_MODES = ("auto", "on", "off")
TASK_STARTS = ("eager", "scheduled")
WS_MODES = ("auto", "on", "off")
ACCESS_LOG_FORMATS = ("common", "combined", "json")


def valid_close_code(code: int) -> bool:
    """Whether an endpoint may send ``code`` in a Close frame (RFC 6455 7.4)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999

SignalWaiter = Callable[[], Awaitable[str]]


@dataclass
class Config:
    """Everything a :class:`fastsrv.Server` needs to know.

    Lifecycle settings follow Hertz: ``exit_wait_time`` bounds the wait for
    in-flight requests (default 5 s); ``shutdown_delay`` keeps serving, with
    readiness answering 503, before the listener closes (default 0).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    uds: Optional[str] = None        # a Unix socket path instead of host and port
    sock: Optional[socket.socket] = None
    backlog: int = 2048
    reuse_port: bool = False

    # TLS (uvicorn's --ssl-* options); on when ssl_certfile is set
    ssl_certfile: Optional[str] = None
    ssl_keyfile: Optional[str] = None
    ssl_keyfile_password: Optional[str] = None
    ssl_ca_certs: Optional[str] = None
    ssl_cert_reqs: int = int(ssl.CERT_NONE)     # CERT_OPTIONAL (1) or CERT_REQUIRED (2): client certificates
    ssl_ciphers: Optional[str] = None           # an OpenSSL cipher list; None: OpenSSL's defaults

    # behind a proxy: whose X-Forwarded-* / Forwarded headers are believed
    proxy_headers: bool = True
    forwarded_allow_ips: str = "127.0.0.1"

    # every response
    server_header: bool = True
    date_header: bool = True
    headers: list[tuple[str, str]] = field(default_factory=list)

    # Prometheus metrics, answered by the core at this path (off by default)
    metrics_path: Optional[str] = None

    # limits (answered with 414 / 431 / 413)
    max_request_line: int = 8192
    max_header_bytes: int = 65536
    max_header_count: int = 100
    max_body_bytes: int = 10 * 1024 * 1024
    max_connections: int = 0
    limit_concurrency: int = 0          # past this many requests in flight: 503 (0: no limit)
    limit_max_requests: int = 0         # drain and exit (or, a worker, be replaced) after this many
    limit_max_requests_jitter: int = 0  # ... plus a random 0..jitter more, so workers do not recycle at once

    # header and trailer fields named with "_" (Content_Length) are dropped,
    # as nginx does: CGI-style normalizers read them as their "-" twins
    underscores_in_headers: bool = False

    # timeouts, seconds (0 disables)
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 5.0
    write_timeout: float = 30.0

    # lifecycle
    exit_wait_time: float = 5.0
    shutdown_delay: float = 0.0
    signal_policy: str = "graceful"
    signal_waiter: Optional[SignalWaiter] = None
    handle_signals: bool = True
    hook_timeout: float = 5.0
    hook_budget: float = 10.0
    readiness_path: Optional[str] = None
    liveness_path: Optional[str] = None

    access_log: bool = False
    access_log_format: str = "common"   # common | combined | json

    # ASGI (see fastsrv.asgi)
    interface: str = "auto"         # auto | native | asgi
    lifespan: str = "auto"          # auto | on | off
    root_path: str = ""
    asgi_eager: str = "auto"        # auto | on | off: run requests in place until they suspend
    asgi_task_start: str = "eager"  # eager | scheduled: how a request's Task starts (Python 3.12+)

    # WebSocket (RFC 6455; permessage-deflate, RFC 7692)
    ws: str = "auto"                 # auto | on | off (off: upgrades are answered 501)
    ws_max_size: int = 16 * 1024 * 1024
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    ws_per_message_deflate: bool = True
    ws_shutdown_code: int = 1012     # Service Restart: clients reconnect, elsewhere
    ws_shutdown_grace: float = 1.0   # at the drain, time apps get to close by themselves
    ws_close_timeout: float = 5.0    # how long a Close waits for the client's

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, got {self.port}")
        for name in ("header_timeout", "body_timeout", "keepalive_timeout", "write_timeout",
                     "exit_wait_time", "shutdown_delay"):
            value = getattr(self, name)
            if not value >= 0:      # also refuses NaN
                raise ConfigError(f"{name} must be >= 0 seconds, got {value}")
        for name in ("hook_timeout", "hook_budget"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"{name} must be > 0 seconds, got {value}")
        if self.signal_policy not in SIGNAL_POLICIES:
            raise ConfigError(f"signal_policy must be one of {', '.join(SIGNAL_POLICIES)}, "
                              f"got {self.signal_policy!r}")
        for name in ("readiness_path", "liveness_path"):
            path = getattr(self, name)
            if path is not None and not path.startswith("/"):
                raise ConfigError(f"{name} must start with '/', got {path!r}")
        for name, allowed in (("interface", INTERFACES), ("lifespan", LIFESPAN_MODES),
                              ("asgi_eager", EAGER_MODES), ("asgi_task_start", TASK_STARTS),
                              ("ws", WS_MODES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            raise ConfigError(f"root_path must start with '/' and not end with one (e.g. /api), "
                              f"got {self.root_path!r}")
        if self.ws_max_size < 1:
            raise ConfigError(f"ws_max_size must be at least 1 byte, got {self.ws_max_size}")
        for name in ("ws_ping_interval", "ws_ping_timeout", "ws_shutdown_grace", "ws_close_timeout"):
            value = getattr(self, name)
            if not value >= 0:
                raise ConfigError(f"{name} must be >= 0 seconds, got {value}")
        if not valid_close_code(self.ws_shutdown_code):
            raise ConfigError(f"ws_shutdown_code must be a close code a server may send (1000-1003, "
                              f"1007-1014, 3000-4999), got {self.ws_shutdown_code}")
        if self.max_connections < 0:
            raise ConfigError("max_connections must be >= 0 (0 means no cap)")
        for name in ("limit_concurrency", "limit_max_requests", "limit_max_requests_jitter"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (0 means no limit), got {getattr(self, name)}")
        if self.backlog < 1:
            raise ConfigError(f"backlog must be at least 1, got {self.backlog}")
        if self.access_log_format not in ACCESS_LOG_FORMATS:
            raise ConfigError(f"access_log_format must be one of {', '.join(ACCESS_LOG_FORMATS)}, "
                              f"got {self.access_log_format!r}")
        if self.metrics_path is not None and not self.metrics_path.startswith("/"):
            raise ConfigError(f"metrics_path must start with '/', got {self.metrics_path!r}")
        if self.uds is not None and (self.sock is not None or not self.uds):
            raise ConfigError("uds is a path, and cannot be combined with an inherited socket (fd)")
        self.headers = [self._header(item) for item in self.headers]
        self._ssl_context: Optional[ssl.SSLContext] = None
        if self.ssl_certfile is None and (self.ssl_keyfile or self.ssl_ca_certs or self.ssl_keyfile_password):
            raise ConfigError("ssl_keyfile, ssl_keyfile_password and ssl_ca_certs need ssl_certfile "
                              "(--ssl-certfile): TLS is on when a certificate is given")
        if self.ssl_certfile is not None:
            from fastsrv.tls import server_context
            self._ssl_context = server_context(self)
        if self.proxy_headers:
            from fastsrv._proxy import parse_trusted
            try:
                parse_trusted(self.forwarded_allow_ips)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        try:
            self.limits()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @staticmethod
    def _header(item: Any) -> tuple[str, str]:
        """A ``--header`` as ``(name, value)``: from ``"Name: value"`` or a pair."""
        if isinstance(item, str):
            name, sep, value = item.partition(":")
            if not sep or not name.strip():
                raise ConfigError(f"a header is given as NAME:VALUE (e.g. 'X-Served-By: edge-1'), got {item!r}")
            item = (name.strip(), value.strip())
        name, value = item
        from fastsrv._response import HeadLines
        try:
            HeadLines(True, None, [(name, value)])
        except ValueError as exc:
            raise ConfigError(f"header {name!r}: {exc}") from None
        return str(name), str(value)

    @property
    def ssl_context(self) -> Optional[ssl.SSLContext]:
        """The server's TLS context (made and checked when the Config was), or None."""
        return self._ssl_context

    def ws_config(self) -> Optional[WsConfig]:
        """The WebSocket settings of this configuration; None with ``ws="off"``."""
        if self.ws == "off":
            return None
        return WsConfig(self.ws_max_size, self.ws_ping_interval, self.ws_ping_timeout,
                        self.ws_close_timeout, self.ws_per_message_deflate)

    def limits(self) -> Limits:
        """The parser limits of this configuration."""
        return Limits(self.max_request_line, self.max_header_bytes,
                      self.max_header_count, self.max_body_bytes)
