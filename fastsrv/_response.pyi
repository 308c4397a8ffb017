"""Typed surface of responses (``fastsrv/_response.pyx``)."""

from typing import Any, AsyncIterable, Iterable, Mapping, Optional, Sequence, Union

HeadersArg = Optional[Union[Mapping[str, str], Sequence[tuple[str, str]]]]

class InvalidResponseHeader(ValueError): ...
class ContentLengthMismatch(ValueError): ...

class Response:
    status: int
    body: bytes
    headers: Optional[list[tuple[Any, Any]]]
    content_type: str
    def __init__(self, body: Union[bytes, str] = ..., status: int = ..., headers: HeadersArg = ...,
                 content_type: Optional[str] = ...) -> None: ...
    @staticmethod
    def json(data: Any, status: int = ..., headers: HeadersArg = ...) -> "Response": ...
    @staticmethod
    def text(text: str, status: int = ..., headers: HeadersArg = ...) -> "Response": ...
    @staticmethod
    def html(text: str, status: int = ..., headers: HeadersArg = ...) -> "Response": ...

class StreamingResponse:
    status: int
    content: Union[AsyncIterable[Union[bytes, str]], Iterable[Union[bytes, str]]]
    headers: Optional[list[tuple[Any, Any]]]
    content_type: str
    def __init__(self, content: Union[AsyncIterable[Union[bytes, str]], Iterable[Union[bytes, str]]],
                 status: int = ..., headers: HeadersArg = ..., content_type: str = ...) -> None: ...

class HeadLines:
    date: bool
    extra: Optional[bytes]
    def __init__(self, date: bool = ..., server: Optional[Union[str, bytes]] = ...,
                 extra_headers: Iterable[tuple[Any, Any]] = ...) -> None: ...
    @property
    def server_line(self) -> Optional[bytes]: ...
