"""Typed surface of the request parser (``fastsrv/_parser.pyx``)."""

from typing import Any, Optional

class ParseError(Exception):
    status: int
    reason: str
    requests: list[dict[str, Any]]
    def __init__(self, status: int, reason: str, requests: Optional[list[dict[str, Any]]] = ...) -> None: ...

class Limits:
    max_request_line: int
    max_header_bytes: int
    max_header_count: int
    max_body_bytes: int
    def __init__(self, max_request_line: int = ..., max_header_bytes: int = ...,
                 max_header_count: int = ..., max_body_bytes: int = ...) -> None: ...

class RequestParser:
    error_status: int
    error_reason: Optional[str]
    expect_continue: bool
    upgrade: bool
    keep_alive: bool
    body_kind: int
    content_length: int
    trailers: Optional[list[tuple[bytes, bytes]]]
    underscores_in_headers: bool
    def __init__(self, limits: Optional[Limits] = ..., underscores_in_headers: bool = ...) -> None: ...
    def feed(self, data: bytes) -> list[dict[str, Any]]: ...
