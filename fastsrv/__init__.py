"""fastsrv: a Cython-accelerated HTTP/1.1 server for Python on uvloop."""

from fastsrv._core import HTTPError
from fastsrv._parser import Limits, ParseError
from fastsrv._request import BodyError, ClientDisconnected, Headers, Request
from fastsrv._response import (
    ContentLengthMismatch,
    InvalidResponseHeader,
    Response,
    StreamingResponse,
)
from fastsrv._websocket import ConnectionClosed, WebSocket, WebSocketDisconnect
from fastsrv.app import App, RouteError
from fastsrv.asgi import ClientGoneError
from fastsrv.config import Config
from fastsrv.errors import AppLoadError, ConfigError, FastsrvError, ServerStateError, StartupError
from fastsrv.server import Server, ShutdownReport, State, run

__version__ = "0.1.0"

__all__ = [
    "App", "AppLoadError", "BodyError", "ClientDisconnected", "ClientGoneError", "Config", "ConfigError",
    "ContentLengthMismatch", "FastsrvError", "HTTPError", "Headers", "InvalidResponseHeader",
    "Limits", "ParseError", "Request", "Response", "RouteError", "Server", "ServerStateError",
    "ShutdownReport", "StartupError", "State", "StreamingResponse", "WebSocket", "WebSocketDisconnect",
    "ConnectionClosed", "run",
]
