"""--reload on watchfiles: a code change restarts the server through the
graceful drain, so the new code answers new requests while a request in
flight finishes on the old; a change that does not import leaves the old
code serving."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import ProcessServer, RawClient

pytest.importorskip("watchfiles")

APP = '''
import asyncio
from fastsrv import App

app = App()
VERSION = "{version}"


@app.get("/")
def index(request):
    return VERSION


@app.get("/slow")
async def slow(request):
    await asyncio.sleep(1.5)
    return "slow " + VERSION
'''


class Reloading(ProcessServer):
    READY = b"worker(s) serving on"


def _get(port: int, path: str = "/") -> str:
    client = RawClient(port)
    client.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    resp = client.read_response()
    client.close()
    assert resp.status == 200, resp.raw
    return resp.body.decode()


def _wait_for_answer(port: int, expected: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while _get(port) != expected:
        assert time.monotonic() < deadline, f"still not {expected!r}"
        time.sleep(0.05)


def test_an_edit_is_served_by_new_code_while_the_request_in_flight_finishes(tmp_path: Path):
    module = tmp_path / "reloadapp.py"
    module.write_text(APP.format(version="one"))
    server = Reloading(["reloadapp:app", "--reload", "--reload-dir", str(tmp_path), "--app-dir", str(tmp_path)],
                       preexec_fn=os.setpgrp)
    try:
        server.wait_ready(20)
        assert _get(server.port) == "one"
        slow: list[str] = []
        client = RawClient(server.port)
        client.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = threading.Thread(target=lambda: slow.append(client.read_response().body.decode()))
        reader.start()
        time.sleep(0.2)
        module.write_text(APP.format(version="two"))
        _wait_for_answer(server.port, "two")
        reader.join(10)
        assert slow == ["slow one"], server.log()          # finished on the old code, not cut
        assert "changed: " in server.log() and "drains" in server.log()

        # a change that does not import: the old code serves on
        module.write_text("this is not python\n")
        deadline = time.monotonic() + 15
        while "exited before it served" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        assert _get(server.port) == "two"
        module.write_text(APP.format(version="three"))
        _wait_for_answer(server.port, "three")

        server.signal(signal.SIGTERM)
        assert server.wait(20) == 0, server.log()
    finally:
        if server.proc.poll() is None:
            os.killpg(server.proc.pid, signal.SIGKILL)
        server.kill()


def test_files_outside_the_include_globs_are_not_watched(tmp_path: Path):
    from fastsrv.reload import PathFilter
    default = PathFilter()
    assert default(None, str(tmp_path / "app.py"))
    assert not default(None, str(tmp_path / "notes.txt"))
    assert not default(None, str(tmp_path / "__pycache__" / "app.cpython-311.pyc"))
    assert not default(None, str(tmp_path / ".git" / "app.py"))
    custom = PathFilter(includes=["*.html"], excludes=["legacy_*"])
    assert custom(None, str(tmp_path / "templates" / "index.html"))
    assert not custom(None, str(tmp_path / "legacy_views.py"))
