"""The native application API: routes, path parameters and middleware."""

from __future__ import annotations

import asyncio
import inspect
import re
from typing import Any, Awaitable, Callable, Iterable

from fastsrv._core import Route, Router
from fastsrv.hooks import Hooks

Handler = Callable[..., Any]
Middleware = Callable[[Any, Callable[[Any], Awaitable[Any]]], Awaitable[Any]]

_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(?::(str|int|path))?\}$")
_INT = re.compile(r"-?[0-9]+")


def _to_int(segment: str) -> int:
    # ASCII digits only: int() would also take "1_000", "+5", " 5" and
    # non-ASCII digits, none of which is an integer path segment
    if _INT.fullmatch(segment) is None:
        raise ValueError(segment)
    return int(segment)


_CONVERTERS: dict[str, Callable[[str], Any]] = {"str": str, "int": _to_int, "path": str}


class RouteError(ValueError):
    """A route cannot be registered: a malformed path pattern, a duplicate
    method for one path, or a handler that is not callable."""


def _is_async(fn: Any) -> bool:
    return (isinstance(fn, _InTask) or inspect.iscoroutinefunction(fn)
            or inspect.iscoroutinefunction(getattr(fn, "__call__", None)))


class _InTask:
    """Runs an async handler in an asyncio Task from its first line.

    By default an async handler starts in place, without a Task, and gets
    one only if it suspends; until then ``asyncio.current_task()`` returns a
    stand-in that ``asyncio.timeout()``, ``wait_for`` and ``TaskGroup`` work
    with.  Code that needs a real ``asyncio.Task`` from its first line (anyio
    cancel scopes, a Task's identity kept across the first ``await``) asks
    for this with ``eager=False``.
    """

    __slots__ = ("fn",)

    def __init__(self, fn: Handler) -> None:
        self.fn = fn

    def __call__(self, request: Any) -> "asyncio.Future[Any]":
        return asyncio.ensure_future(self.fn(request))


class _Node:
    """One path segment of the matcher for parameterized routes."""

    __slots__ = ("static", "param", "param_name", "param_conv", "rest_name", "rest_route", "route")

    def __init__(self) -> None:
        self.static: dict[str, _Node] = {}
        self.param: _Node | None = None
        self.param_name = ""
        self.param_conv: Callable[[str], Any] = str
        self.rest_name = ""
        self.rest_route: Route | None = None
        self.route: Route | None = None


class _Matcher:
    """A segment trie: static segments first, then ``{param}``, then
    ``{rest:path}``; each request walks it once, no regex per route."""

    def __init__(self) -> None:
        self.root = _Node()

    def add(self, segments: list[str], route: Route) -> None:
        node = self.root
        for i, seg in enumerate(segments):
            m = _PARAM.match(seg)
            if m is None:
                node = node.static.setdefault(seg, _Node())
                continue
            name, conv = m.group(1), m.group(2) or "str"
            if conv == "path":
                if i != len(segments) - 1:
                    raise RouteError(f"{{{name}:path}} must be the last segment")
                if node.rest_route is not None:
                    raise RouteError(f"a {{...:path}} route is already registered here ({{{node.rest_name}:path}})")
                node.rest_name = name
                node.rest_route = route
                return
            if node.param is None:
                node.param = _Node()
                node.param_name, node.param_conv = name, _CONVERTERS[conv]
            elif node.param_name != name:
                raise RouteError(f"conflicting parameter names {{{node.param_name}}} and {{{name}}}")
            elif node.param_conv is not _CONVERTERS[conv]:
                raise RouteError(f"conflicting converters for {{{name}}}")
            node = node.param
        node.route = route

    def __call__(self, path: str) -> tuple[Route, dict[str, Any]] | None:
        segments = path.split("/")[1:]
        params: dict[str, Any] = {}
        route = self._walk(self.root, segments, 0, params)
        return (route, params) if route is not None else None

    def _walk(self, node: _Node, segs: list[str], i: int, params: dict[str, Any]) -> Route | None:
        if i == len(segs):
            return node.route
        seg = segs[i]
        child = node.static.get(seg)
        if child is not None:
            found = self._walk(child, segs, i + 1, params)
            if found is not None:
                return found
        if node.param is not None and seg:
            try:
                value = node.param_conv(seg)
            except ValueError:
                value = None
            if value is not None:
                found = self._walk(node.param, segs, i + 1, params)
                if found is not None:
                    params[node.param_name] = value
                    return found
        if node.rest_route is not None:
            params[node.rest_name] = "/".join(segs[i:])
            return node.rest_route
        return None


class App:
    """A native fastsrv application.

    >>> app = App()
    >>> @app.get("/users/{id:int}")
    ... async def user(request):
    ...     return {"id": request.params["id"]}

    Handlers take the request and return a ``Response``, a
    ``StreamingResponse``, ``str``, ``bytes``, a ``dict``/``list`` (sent as
    JSON) or ``None`` (204).  Sync and async handlers both work; raise
    ``HTTPError`` for an error status.
    """

    def __init__(self) -> None:
        self._routes: dict[str, dict[str, Handler]] = {}
        self._websockets: dict[str, Handler] = {}
        self._middleware: list[Middleware] = []
        self._router: Router | None = None
        self.hooks = Hooks()

    def on_startup(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """Register a startup hook (run in order before the first accept)."""
        return self.hooks.on_startup(fn)

    def on_shutdown(self, fn: Callable[[], Any] | None = None, *, group: str | None = None,
                    timeout: float | None = None) -> Any:
        """Register a shutdown hook; see :class:`fastsrv.hooks.Hooks`."""
        return self.hooks.on_shutdown(fn, group=group, timeout=timeout)

    # ---- routes ----

    def add_route(self, path: str, handler: Handler, methods: Iterable[str] = ("GET",),
                  eager: bool = True) -> None:
        """Register ``handler`` for ``path`` and ``methods``.

        ``eager=False`` runs an async handler inside an asyncio Task from its
        first line (see :class:`_InTask`); the default runs it in place until
        it first suspends, which costs no Task for handlers that never do
        (``asyncio.timeout()``, ``wait_for`` and ``TaskGroup`` work there).
        """
        if not path.startswith("/"):
            raise RouteError(f"route path {path!r} must start with '/'")
        if not callable(handler):
            raise RouteError(f"handler for {path!r} is not callable")
        if self._router is not None:
            raise RouteError("routes cannot be added once the app is serving")
        if not eager and inspect.iscoroutinefunction(handler):
            handler = _InTask(handler)
        by_method = self._routes.setdefault(path, {})
        for method in methods:
            method = method.upper()
            if method in by_method:
                raise RouteError(f"{method} {path} is already registered")
            by_method[method] = handler

    def route(self, path: str, methods: Iterable[str] = ("GET",),
              eager: bool = True) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add_route`."""
        def register(fn: Handler) -> Handler:
            self.add_route(path, fn, methods, eager)
            return fn
        return register

    def get(self, path: str, eager: bool = True) -> Callable[[Handler], Handler]:
        return self.route(path, ("GET",), eager)

    def post(self, path: str, eager: bool = True) -> Callable[[Handler], Handler]:
        return self.route(path, ("POST",), eager)

    def put(self, path: str, eager: bool = True) -> Callable[[Handler], Handler]:
        return self.route(path, ("PUT",), eager)

    def patch(self, path: str, eager: bool = True) -> Callable[[Handler], Handler]:
        return self.route(path, ("PATCH",), eager)

    def delete(self, path: str, eager: bool = True) -> Callable[[Handler], Handler]:
        return self.route(path, ("DELETE",), eager)

    def websocket(self, path: str) -> Callable[[Handler], Handler]:
        """Register ``async def handler(ws)`` for WebSocket connections to
        ``path`` (path parameters as for routes); ``ws`` is a
        :class:`fastsrv.WebSocket`.  An ordinary request to a path with only
        a WebSocket handler is answered 404."""
        def register(fn: Handler) -> Handler:
            if not path.startswith("/"):
                raise RouteError(f"route path {path!r} must start with '/'")
            if not inspect.iscoroutinefunction(fn):
                raise RouteError(f"the WebSocket handler for {path!r} must be an async function")
            if self._router is not None:
                raise RouteError("routes cannot be added once the app is serving")
            if path in self._websockets:
                raise RouteError(f"a WebSocket handler for {path} is already registered")
            self._websockets[path] = fn
            return fn
        return register

    # ---- middleware ----

    def middleware(self, fn: Middleware) -> Middleware:
        """Register ``async def mw(request, call_next)``; ``await
        call_next(request)`` gives the inner result.  The first registered
        middleware is the outermost."""
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("middleware must be an async function: async def mw(request, call_next)")
        if self._router is not None:
            raise RouteError("middleware cannot be added once the app is serving")
        self._middleware.append(fn)
        return fn

    def _wrap(self, handler: Handler) -> Handler:
        for mw in reversed(self._middleware):
            handler = _chain(mw, handler)
        return handler

    # ---- the compiled router the core uses ----

    def router(self) -> Router:
        """The core's router for this app (built once, on first use)."""
        if self._router is None:
            router = Router()
            matcher = _Matcher()
            dynamic = False
            for path in {**self._routes, **self._websockets}:
                by_method = self._routes.get(path, {})
                handlers = {m: self._wrap(h) for m, h in by_method.items()}
                # a sync handler is called once its body has arrived (it reads
                # request.content), middleware or not: its wrapped form is a
                # coroutine function, but the route keeps the handler's kind
                async_methods = [m for m, h in by_method.items() if _is_async(h)]
                route = Route(handlers, async_methods, self._websockets.get(path))
                segments = path.split("/")[1:]
                if any(_PARAM.match(s) for s in segments):
                    matcher.add(segments, route)
                    dynamic = True
                else:
                    router.add(path, route)
            if dynamic:
                router.set_dynamic(matcher)
            self._router = router
        return self._router


def _chain(mw: Middleware, inner: Handler) -> Handler:
    inner_async = _is_async(inner)

    async def call_next(request: Any) -> Any:
        result = inner(request)
        if inner_async or inspect.isawaitable(result):
            result = await result
        return result

    async def wrapped(request: Any) -> Any:
        return await mw(request, call_next)

    return wrapped
