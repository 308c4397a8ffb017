"""The servers under test, as a data table.

Adding a server is one ``Target`` entry in ``TARGETS``: an argv template whose
``{placeholders}`` are filled from a ``LaunchContext`` (plus the paths of the
``tools`` it needs), the Python packages whose versions go in the report, and
optionally a ``prepare`` hook that writes config files into the work dir.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from .debian import find_tool

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent


@dataclass(frozen=True)
class LaunchContext:
    """Everything a target's argv template and prepare hook may refer to."""

    python: str  # interpreter for Python servers
    port: int
    workdir: Path  # private temporary directory of this server start
    nofile: int  # RLIMIT_NOFILE the server runs with

    def placeholders(self, tools: dict[str, str]) -> dict[str, str]:
        return {
            "python": self.python,
            "port": str(self.port),
            "host": HOST,
            "workdir": str(self.workdir),
            "nofile": str(self.nofile),
            "bench": str(BENCH_DIR),
            "repo": str(REPO_DIR),
            **tools,
        }


@dataclass(frozen=True)
class Exchange:
    """The request a benchmark sends a server, and the answer it must give."""

    method: str = "GET"
    path: str = "/"
    body: bytes = b""
    content_type: str = ""
    expected: bytes = b"Hello, World!"  # the response body, exactly

    @property
    def is_hello(self) -> bool:
        """The plain ``GET /`` every server of the core and asgi suites answers."""
        return self == HELLO

    def describe(self) -> str:
        return f"{self.method} {self.path}" + (f" with a {len(self.body)}-byte {self.content_type} body"
                                               if self.body else "")


HELLO = Exchange()


@dataclass(frozen=True)
class Target:
    """A server under test."""

    name: str
    argv: tuple[str, ...]
    description: str
    request: Exchange = HELLO
    python_packages: tuple[str, ...] = ()  # required; versions reported (looked up with the target python)
    tools: tuple[str, ...] = ()  # executables needed, available as {tool} in argv
    version_argv: tuple[str, ...] = ()  # command printing the version of a non-Python server
    prepare: Callable[[LaunchContext], None] | None = None
    notes: tuple[str, ...] = field(default=())

    def tool_paths(self) -> dict[str, str]:
        """Absolute paths of the tools; KeyError-free: a missing tool maps to its bare name."""
        return {tool: find_tool(tool) or tool for tool in self.tools}

    def command(self, ctx: LaunchContext) -> list[str]:
        """The server's own argv for this launch (without CPU pinning / limits)."""
        values = ctx.placeholders(self.tool_paths())
        return [part.format(**values) for part in self.argv]


def write_nginx_conf(ctx: LaunchContext) -> None:
    """Render peers/nginx.conf.tmpl into the launch's work dir."""
    template = Template((BENCH_DIR / "peers" / "nginx.conf.tmpl").read_text())
    conf = template.substitute(
        port=ctx.port,
        workdir=ctx.workdir,
        nofile=ctx.nofile,
        worker_connections=max(1024, ctx.nofile - 64),
    )
    (ctx.workdir / "nginx.conf").write_text(conf)


ASGI_APP = "bench.peers.asgi_hello:app"
STARLETTE_APP = "bench.peers.starlette_hello:app"
FASTAPI_APP = "bench.peers.fastapi_hello:app"
RAW_ASGI_WHAT = "raw ASGI app (bench/peers/asgi_hello.py)"
STARLETTE_WHAT = "Starlette app (bench/peers/starlette_hello.py)"
FASTAPI_WHAT = "FastAPI app (bench/peers/fastapi_hello.py)"

# bench/peers/fastapi_hello.py: the tutorial's hello world, and a POST whose
# JSON body is validated into a pydantic model and sent back
FASTAPI_HELLO = Exchange(expected=b'{"message":"Hello, World!"}')
ITEM = b'{"name":"widget","price":9.5,"tags":["a","b"]}'
FASTAPI_ITEM = Exchange(method="POST", path="/items", body=ITEM, content_type="application/json",
                        expected=b'{"name":"widget","price":9.5,"tags":["a","b"],"in_stock":true}')


def fastsrv_asgi_argv(app: str) -> tuple[str, ...]:
    """fastsrv serving an ASGI callable through its ASGI interface, lifespan off as for the native target."""
    return ("{python}", "-m", "fastsrv", "run", app, "--interface", "asgi", "--lifespan", "off",
            "--host", "{host}", "--port", "{port}", "--log-level", "warning",
            "--keepalive-timeout", "600", "--app-dir", "{repo}")


def uvicorn_argv(app: str) -> tuple[str, ...]:
    return ("{python}", "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning",
            # uvicorn closes idle keep-alive connections after 5 s by default,
            # which would empty the memory scenario; throughput runs never idle.
            "--timeout-keep-alive", "600",
            "--host", "{host}", "--port", "{port}", "--app-dir", "{repo}", app)


def granian_argv(app: str) -> tuple[str, ...]:
    return ("{python}", "-m", "granian", "--interface", "asgi", "--loop", "uvloop",
            "--workers", "1", "--runtime-threads", "1", "--no-ws", "--log-level", "warning",
            # granian stops accepting beyond --backpressure (default 1024) open connections.
            "--backpressure", "{nofile}",
            "--host", "{host}", "--port", "{port}", "--working-dir", "{repo}", app)


FASTSRV_NOTE = "`--keepalive-timeout 600` only so idle connections survive the memory scenario"
UVICORN_NOTE = "`--timeout-keep-alive 600` only so idle connections survive the memory scenario"
GRANIAN_NOTE = "`--backpressure` raised so it accepts the memory scenario's 10,000 connections"

TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target(
            name="fastsrv",
            description="fastsrv, its demo app (`fastsrv.demo:app`)",
            argv=("{python}", "-m", "fastsrv", "run", "fastsrv.demo:app",
                  "--host", "{host}", "--port", "{port}", "--log-level", "warning",
                  # 5 s by default: would close the memory scenario's idle connections.
                  "--keepalive-timeout", "600"),
            python_packages=("fastsrv", "uvloop"),
            notes=(FASTSRV_NOTE,),
        ),
        Target(
            name="floor",
            description="bare uvloop Protocol + httptools parser, prebuilt response (bench/peers/floor.py)",
            argv=("{python}", "{bench}/peers/floor.py", "--host", "{host}", "--port", "{port}"),
            python_packages=("uvloop", "httptools"),
        ),
        Target(
            name="uvicorn",
            description=f"uvicorn (uvloop + httptools), {RAW_ASGI_WHAT}",
            argv=uvicorn_argv(ASGI_APP),
            python_packages=("uvicorn", "uvloop", "httptools"),
            notes=(UVICORN_NOTE,),
        ),
        Target(
            name="nginx",
            description="nginx, 1 worker, `return 200` from the config (bench/peers/nginx.conf.tmpl)",
            argv=("{nginx}", "-p", "{workdir}", "-e", "{workdir}/error.log", "-c", "{workdir}/nginx.conf"),
            tools=("nginx",),
            version_argv=("{nginx}", "-v"),
            prepare=write_nginx_conf,
        ),
        Target(
            name="granian",
            description=f"granian (Rust HTTP, ASGI interface, uvloop, 1 worker, 1 runtime thread), {RAW_ASGI_WHAT}",
            argv=granian_argv(ASGI_APP),
            python_packages=("granian",),
            notes=(GRANIAN_NOTE,),
        ),
        Target(
            name="fastsrv-asgi",
            description=f"fastsrv, ASGI interface, {RAW_ASGI_WHAT}",
            argv=fastsrv_asgi_argv(ASGI_APP),
            python_packages=("fastsrv", "uvloop"),
            notes=(FASTSRV_NOTE,),
        ),
        Target(
            name="fastsrv-asgi-task",
            description=f"fastsrv, ASGI interface, every request in its own Task (`--asgi-eager off`), "
                        f"{RAW_ASGI_WHAT}",
            argv=fastsrv_asgi_argv(ASGI_APP) + ("--asgi-eager", "off"),
            python_packages=("fastsrv", "uvloop"),
            notes=(FASTSRV_NOTE, "the mode apps built on anyio (Starlette, FastAPI) run in"),
        ),
        Target(
            name="fastsrv-asgi-task-scheduled",
            description=f"fastsrv, ASGI interface, every request in its own Task, scheduled on the loop as "
                        f"before Python 3.12 (`--asgi-eager off --asgi-task-start scheduled`), {RAW_ASGI_WHAT}",
            argv=fastsrv_asgi_argv(ASGI_APP) + ("--asgi-eager", "off", "--asgi-task-start", "scheduled"),
            python_packages=("fastsrv", "uvloop"),
            notes=(FASTSRV_NOTE, "what an eagerly started Task saves, side by side with fastsrv-asgi-task"),
        ),
        Target(
            name="fastsrv-fastapi-scheduled",
            description=f"fastsrv, ASGI interface, {FASTAPI_WHAT}: {FASTAPI_HELLO.describe()}, each request's "
                        "Task scheduled on the loop as before Python 3.12 (`--asgi-task-start scheduled`)",
            argv=fastsrv_asgi_argv(FASTAPI_APP) + ("--asgi-task-start", "scheduled"),
            python_packages=("fastsrv", "uvloop", "fastapi", "starlette", "pydantic"),
            request=FASTAPI_HELLO,
            notes=(FASTSRV_NOTE, "what an eagerly started Task saves, side by side with fastsrv-fastapi"),
        ),
        Target(
            name="fastsrv-starlette",
            description=f"fastsrv, ASGI interface, {STARLETTE_WHAT}",
            argv=fastsrv_asgi_argv(STARLETTE_APP),
            python_packages=("fastsrv", "uvloop", "starlette"),
            notes=(FASTSRV_NOTE,),
        ),
        Target(
            name="uvicorn-starlette",
            description=f"uvicorn (uvloop + httptools), {STARLETTE_WHAT}",
            argv=uvicorn_argv(STARLETTE_APP),
            python_packages=("uvicorn", "uvloop", "httptools", "starlette"),
            notes=(UVICORN_NOTE,),
        ),
        Target(
            name="granian-starlette",
            description=f"granian (as `granian`), {STARLETTE_WHAT}",
            argv=granian_argv(STARLETTE_APP),
            python_packages=("granian", "starlette"),
            notes=(GRANIAN_NOTE,),
        ),
        *(
            Target(
                name=f"{server}-{app}",
                description=f"{what}, {FASTAPI_WHAT}: {request.describe()}",
                argv=argv(FASTAPI_APP),
                python_packages=packages + ("fastapi", "starlette", "pydantic"),
                request=request,
                notes=(note,),
            )
            for app, request in (("fastapi", FASTAPI_HELLO), ("fastapi-json", FASTAPI_ITEM))
            for server, what, argv, packages, note in (
                ("fastsrv", "fastsrv, ASGI interface", fastsrv_asgi_argv, ("fastsrv", "uvloop"), FASTSRV_NOTE),
                ("uvicorn", "uvicorn (uvloop + httptools)", uvicorn_argv, ("uvicorn", "uvloop", "httptools"),
                 UVICORN_NOTE),
                ("granian", "granian (as `granian`)", granian_argv, ("granian",), GRANIAN_NOTE),
            )
        ),
    )
}

FLOOR = "floor"
