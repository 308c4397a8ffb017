"""Benchmark suites: which servers one ``run.py`` invocation compares, and how its report reads.

``core`` compares fastsrv's native interface with the floor, uvicorn and nginx
and owns the body of RESULTS.md.  ``asgi`` compares ASGI servers on the same
two apps (a raw ASGI hello world and a Starlette one) and owns a delimited
section of the same file, so running one suite never erases the other's
figures.  A suite's goals are the CPU-per-request ratios an issue sets; the
report marks each one met or not met.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .targets import FLOOR, TARGETS


@dataclass(frozen=True)
class Goal:
    """``server``'s CPU µs/req must be at most ``max_ratio`` × ``reference``'s, in every scenario."""

    server: str
    reference: str
    max_ratio: float
    source: str  # where the goal was set


@dataclass(frozen=True)
class Suite:
    """A named selection of servers, with the reference each one is compared to."""

    name: str
    servers: tuple[str, ...]
    title: str  # heading of the suite's report
    chart_name: str  # chart file, written beside the report
    memory: bool  # run the idle-connection memory scenario unless told otherwise
    reference: str  # the "CPU vs" column divides by this server's figure ...
    reference_by_server: dict[str, str] = field(default_factory=dict)  # ... or by this one for these servers
    reference_label: str = ""  # column heading; default "CPU vs <reference>"
    goals: tuple[Goal, ...] = ()
    owns_file: bool = False  # True: writes the whole report file; False: its own section in it
    summary: str = ""  # one paragraph under the title

    def reference_of(self, server: str) -> str:
        """The server whose CPU µs/req ``server``'s is divided by in the "CPU vs" column."""
        return self.reference_by_server.get(server, self.reference)


CORE = Suite(
    name="core",
    servers=("fastsrv", "floor", "uvicorn", "nginx"),
    title="fastsrv benchmark results",
    chart_name="results.png",
    memory=True,
    reference=FLOOR,
    owns_file=True,
)

ISSUE_4 = "issue 4 (ASGI)"

ASGI = Suite(
    name="asgi",
    servers=("fastsrv-asgi", "fastsrv-asgi-task", "uvicorn", "granian",
             "fastsrv-starlette", "uvicorn-starlette", "granian-starlette"),
    title="ASGI servers: raw ASGI and Starlette hello world",
    chart_name="results_asgi.png",
    memory=False,
    reference="uvicorn",
    reference_by_server={
        "fastsrv-starlette": "uvicorn-starlette",
        "uvicorn-starlette": "uvicorn-starlette",
        "granian-starlette": "uvicorn-starlette",
    },
    reference_label="CPU vs uvicorn, same app",
    goals=(
        Goal("fastsrv-asgi", "granian", 0.6, ISSUE_4),
        Goal("fastsrv-asgi", "uvicorn", 0.4, ISSUE_4),
        Goal("fastsrv-starlette", "uvicorn-starlette", 0.7, ISSUE_4),
    ),
    summary=(
        "The same two apps on three servers: `bench/peers/asgi_hello.py` (raw ASGI, the app costs close to "
        "nothing, so the figures are the server's) and `bench/peers/starlette_hello.py` (one Starlette route, "
        "`PlainTextResponse`, default middleware only). fastsrv runs them through its ASGI interface "
        "(`--interface asgi`; `fastsrv-asgi-task` gives every request a Task from its first line, as "
        "anyio-based apps get), uvicorn with uvloop + httptools, granian with 1 worker and 1 runtime thread. "
        "The idle-connection memory scenario is not run by this suite unless `--memory` is given."
    ),
)

ISSUE_11 = "issue 11 (Python versions), on 3.13"

FRAMEWORKS = Suite(
    name="frameworks",
    servers=("fastsrv", "fastsrv-asgi", "fastsrv-asgi-task", "fastsrv-asgi-task-scheduled", "uvicorn", "granian",
             "fastsrv-starlette", "uvicorn-starlette", "granian-starlette",
             "fastsrv-fastapi", "fastsrv-fastapi-scheduled", "uvicorn-fastapi", "granian-fastapi",
             "fastsrv-fastapi-json", "uvicorn-fastapi-json", "granian-fastapi-json"),
    title="Frameworks on fastsrv, uvicorn and granian",
    chart_name="results_frameworks_run.png",
    memory=False,
    reference="uvicorn",
    reference_by_server={
        **{f"{server}-{app}": f"uvicorn-{app}"
           for server in ("fastsrv", "uvicorn", "granian") for app in ("starlette", "fastapi", "fastapi-json")},
        "fastsrv": "fastsrv",
        "fastsrv-fastapi-scheduled": "uvicorn-fastapi",
    },
    reference_label="CPU vs uvicorn, same app",
    goals=(
        Goal("fastsrv-fastapi", "uvicorn-fastapi", 0.65, ISSUE_11),
        Goal("fastsrv-fastapi", "granian-fastapi", 0.75, ISSUE_11),
    ),
    summary=(
        "Raw ASGI, Starlette and FastAPI apps (`bench/peers/asgi_hello.py`, `starlette_hello.py`, "
        "`fastapi_hello.py`: a hello world and a POST of a small JSON body validated by pydantic) on fastsrv, "
        "uvicorn (uvloop + httptools) and granian (1 worker, 1 runtime thread), and fastsrv's native demo app. "
        "`bench/frameworks.py` runs this suite once per Python version and writes the comparison."
    ),
)

SUITES: dict[str, Suite] = {suite.name: suite for suite in (CORE, ASGI, FRAMEWORKS)}

for _suite in SUITES.values():
    _unknown = {*_suite.servers, *_suite.reference_by_server.values(), _suite.reference} - TARGETS.keys()
    assert not _unknown, f"suite {_suite.name} names unknown servers: {_unknown}"
