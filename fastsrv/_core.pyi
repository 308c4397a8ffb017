"""Typed surface of the connection core (``fastsrv/_core.pyx``)."""

import asyncio
from typing import Any, Callable, Iterable, Mapping, Optional

from fastsrv._metrics import Metrics
from fastsrv._parser import Limits
from fastsrv._proxy import ProxyHeaders
from fastsrv._request import Request, ShutdownSignal
from fastsrv._response import HeadLines

def monotonic() -> float: ...
def debug_counters() -> dict[str, int]: ...

class HTTPError(Exception):
    status: int
    detail: Optional[str]
    headers: Optional[list[tuple[str, str]]]
    def __init__(self, status: int, detail: Optional[str] = ..., headers: Any = ...) -> None: ...

class ProtocolConfig:
    limits: Limits
    header_timeout: float
    body_timeout: float
    keepalive_timeout: float
    write_timeout: float
    body_high_water: int
    pipeline_high_water: int
    access_log: Any
    underscores_in_headers: bool
    head: HeadLines
    tls: bool
    proxy: Optional[ProxyHeaders]
    metrics: Optional[Metrics]
    limit_concurrency: int
    def __init__(self, limits: Optional[Limits] = ..., header_timeout: float = ...,
                 body_timeout: float = ..., keepalive_timeout: float = ...,
                 body_high_water: int = ..., pipeline_high_water: int = ...,
                 access_log: Any = ..., write_timeout: float = ..., ws: Any = ...,
                 head: Optional[HeadLines] = ..., tls: bool = ..., proxy: Optional[ProxyHeaders] = ...,
                 metrics: Optional[Metrics] = ..., limit_concurrency: int = ...,
                 underscores_in_headers: bool = ...) -> None: ...

class Route:
    def __init__(self, handlers: Mapping[str, Callable[[Request], Any]],
                 async_methods: Iterable[str] = ...) -> None: ...

class Router:
    def __init__(self) -> None: ...
    def add(self, path: str, route: Route) -> None: ...
    def set_dynamic(self, matcher: Callable[[str], Optional[tuple[Route, dict[str, Any]]]]) -> None: ...
    def copy(self) -> "Router": ...

class ConnectionRegistry:
    active: int
    requests_total: int
    closed_total: int
    max_connections: int
    draining: bool
    config: ProtocolConfig
    shutdown_signal: ShutdownSignal
    def __init__(self, config: Optional[ProtocolConfig] = ..., max_connections: int = ...) -> None: ...
    @property
    def open(self) -> int: ...
    @property
    def idle(self) -> int: ...
    def start(self, loop: asyncio.AbstractEventLoop) -> None: ...
    def stop(self) -> None: ...
    gentle: bool
    request_limit: int
    on_request_limit: Optional[Callable[[], None]]
    def begin_drain(self, gentle: bool = ...) -> None: ...
    def expire_idle(self, grace: float) -> int: ...
    def close_idle(self) -> int: ...
    async def wait_idle(self) -> None: ...
    async def wait_closed(self) -> None: ...
    @property
    def running_tasks(self) -> int: ...
    def detached_tasks(self) -> int: ...
    def active_tasks(self) -> list[asyncio.Future[Any]]: ...
    def cancel_active(self) -> int: ...
    def close_all(self) -> int: ...

class ClientGoneError(ConnectionError): ...

class ASGIApp:
    app: Callable[..., Any]
    eager: bool
    eager_start: bool
    root_path: str
    state: dict[str, Any]
    def __init__(self, app: Callable[..., Any], eager: bool = ..., root_path: str = ...,
                 state: Optional[dict[str, Any]] = ..., eager_start: bool = ...) -> None: ...

class HttpProtocol(asyncio.Protocol):
    requests: int
    def __init__(self, registry: ConnectionRegistry, router: Router,
                 asgi: Optional[ASGIApp] = ...) -> None: ...
    def on_timeout(self) -> None: ...
    def close(self) -> None: ...
    def cut(self) -> None: ...
