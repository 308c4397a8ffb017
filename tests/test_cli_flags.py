"""The smaller uvicorn-compatible flags: --factory, --backlog, --server-header,
--date-header, --header, --limit-concurrency, FASTSRV_<FLAG> and --env-file,
--log-config, the access log formats, fastsrv.run(app, workers=N), and the
extras a flag needs."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import ROOT, ProcessServer, RawClient, _free_port
from tests.apps.production import app as native_app, asgi_app


def _get(port: int, path: str = "/", headers: str = "") -> "object":
    client = RawClient(port)
    client.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode())
    resp = client.read_response()
    client.close()
    return resp


def _exit_2(*args: str, env: dict | None = None) -> str:
    out = subprocess.run([sys.executable, "-m", "fastsrv", "run", *args], capture_output=True, text=True,
                         timeout=30, cwd=ROOT, env={**os.environ, **(env or {})})
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    return out.stderr


def test_factory_calls_the_function_for_the_app(process_server):
    p = process_server(["tests.apps.production:make_app", "--factory"]).wait_ready()
    assert _get(p.port).body == b"made by the factory"
    p.signal(signal.SIGTERM)
    assert p.wait() == 0


def test_factory_that_fails_exits_2():
    assert "--factory: calling tests.apps.production:hello() failed" in _exit_2(
        "tests.apps.production:hello", "--factory", "--port", "0")


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read the listen queue")
@pytest.mark.parametrize("workers", [[], ["--workers", "1"]], ids=["single", "workers"])
def test_backlog_sets_the_listen_queue(process_server, workers):
    p = process_server(["tests.apps.production:app", "--backlog", "37", *workers])
    p.READY = b"worker(s) serving on" if workers else p.READY
    p.wait_ready()
    out = subprocess.run(["ss", "-Hltn", f"sport = :{p.port}"], capture_output=True, text=True).stdout
    assert out.split()[2] == "37", out       # Send-Q of a listening socket: its backlog
    p.signal(signal.SIGTERM)
    assert p.wait() == 0


@pytest.mark.parametrize("app", [native_app, asgi_app], ids=["native", "asgi"])
def test_server_and_date_headers_are_on_by_default_and_can_be_turned_off(serve, app):
    on = _get(serve(app).port)
    assert on.header("server") == "fastsrv" and on.header("date")
    off = _get(serve(app, server_header=False, date_header=False).port)
    assert off.header("server") is None and off.header("date") is None
    assert off.status == 200


def test_an_app_server_header_replaces_fastsrv_s(serve):
    resp = _get(serve(native_app).port, "/with-server")
    assert [v for k, v in resp.headers if k == "server"] == ["my-app/1.0"]


def test_header_flags_add_headers_to_every_response(process_server):
    p = process_server(["tests.apps.production:app", "--header", "X-Served-By: edge-1",
                        "--header", "Strict-Transport-Security:max-age=63072000"]).wait_ready()
    for path in ("/", "/nope"):
        resp = _get(p.port, path)
        assert resp.header("x-served-by") == "edge-1"
        assert resp.header("strict-transport-security") == "max-age=63072000"
    p.signal(signal.SIGTERM)
    assert p.wait() == 0


def test_a_malformed_header_flag_exits_2():
    assert "a header is given as NAME:VALUE" in _exit_2("fastsrv.demo:app", "--header", "no-colon")
    assert "header 'X-Bad'" in _exit_2("fastsrv.demo:app", "--header", "X-Bad: a\u0001b")


def test_limit_concurrency_answers_503_past_it(serve):
    srv = serve(native_app, limit_concurrency=1)
    slow = RawClient(srv.port)
    slow.send(b"GET /sleep?ms=500 HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.1)
    refused = _get(srv.port)
    assert refused.status == 503 and refused.header("retry-after") == "1"
    assert slow.read_response().status == 200
    assert _get(srv.port).status == 200
    slow.close()


class Command(ProcessServer):
    """A server started by a command of the test's own (no --port added)."""

    def __init__(self, argv: list[str], port: int, env: dict | None = None) -> None:
        self.argv = argv
        super().__init__([], env=env, port=port)

    def command(self, args: list[str]) -> list[str]:
        return self.argv


def test_every_flag_can_come_from_the_environment():
    port = _free_port()
    env = {"FASTSRV_PORT": str(port), "FASTSRV_SERVER_HEADER": "false",
           "FASTSRV_HEADER": "X-One: 1\nX-Two: 2", "FASTSRV_LIMIT_CONCURRENCY": "5"}
    p = Command([sys.executable, "-m", "fastsrv", "run", "tests.apps.production:app"], port, env)
    try:
        p.wait_ready()
        resp = _get(port)
        assert resp.header("server") is None
        assert resp.header("x-one") == "1" and resp.header("x-two") == "2"
        p.signal(signal.SIGTERM)
        assert p.wait() == 0
    finally:
        p.kill()


def test_a_bad_environment_value_exits_2_naming_the_variable():
    err = _exit_2("fastsrv.demo:app", env={"FASTSRV_PORT": "eighty"})
    assert "FASTSRV_PORT='eighty' (--port)" in err
    err = _exit_2("fastsrv.demo:app", env={"FASTSRV_ACCESS_LOG": "maybe"})
    assert "FASTSRV_ACCESS_LOG='maybe'" in err and "expected true or false" in err


def test_env_file_sets_the_app_environment_and_options_and_the_command_line_wins(process_server, tmp_path):
    env_file = tmp_path / "prod.env"
    env_file.write_text("GREETING='hello from the env file'\nFASTSRV_SERVER_HEADER=false\n"
                        "FASTSRV_PORT=1\n")       # the command line's --port wins
    p = process_server(["tests.apps.production:app", "--env-file", str(env_file)]).wait_ready()
    resp = _get(p.port, "/env?name=GREETING")
    assert resp.body == b"hello from the env file"
    assert resp.header("server") is None
    p.signal(signal.SIGTERM)
    assert p.wait() == 0


def _log_config(kind: str, path: Path, logfile: Path) -> Path:
    fmt = "CUSTOM %(name)s %(message)s"
    if kind == "ini":
        target = path / "logging.ini"
        target.write_text(f"""[loggers]
keys=root,access
[handlers]
keys=file
[formatters]
keys=plain
[logger_root]
level=INFO
handlers=file
[logger_access]
level=INFO
handlers=file
qualname=fastsrv.access
propagate=0
[handler_file]
class=FileHandler
formatter=plain
args=({str(logfile)!r},)
[formatter_plain]
format={fmt}
""")
        return target
    config = {"version": 1, "disable_existing_loggers": False,
              "formatters": {"plain": {"format": fmt}},
              "handlers": {"file": {"class": "logging.FileHandler", "filename": str(logfile), "formatter": "plain"}},
              "root": {"level": "INFO", "handlers": ["file"]}}
    if kind == "json":
        target = path / "logging.json"
        target.write_text(json.dumps(config))
    else:
        import yaml
        target = path / "logging.yaml"
        target.write_text(yaml.safe_dump(config))
    return target


@pytest.mark.parametrize("kind", ["json", "yaml", "ini"])
def test_log_config_files_configure_logging(process_server, tmp_path, kind):
    logfile = tmp_path / "server.log"
    config = _log_config(kind, tmp_path, logfile)
    p = ProcessServer(["tests.apps.production:app", "--log-config", str(config), "--access-log"])
    try:
        deadline = time.monotonic() + 10
        while not (logfile.exists() and "serving on" in logfile.read_text()):
            assert time.monotonic() < deadline and p.proc.poll() is None, p.log()
            time.sleep(0.02)
        _get(p.port, "/whoami")
        p.signal(signal.SIGTERM)
        assert p.wait() == 0
        text = logfile.read_text()
        assert "CUSTOM fastsrv.lifecycle serving on" in text
        assert re.search(r'CUSTOM fastsrv.access 127\.0\.0\.1 - - \[.*\] "GET /whoami HTTP/1.1" 200', text)
    finally:
        p.kill()


def test_a_bad_log_config_exits_2(tmp_path):
    bad = tmp_path / "logging.json"
    bad.write_text('{"version": 99}')
    assert "is not a logging configuration" in _exit_2("fastsrv.demo:app", "--log-config", str(bad))
    assert "no such file" in _exit_2("fastsrv.demo:app", "--log-config", str(tmp_path / "nope.ini"))


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def access_lines():
    handler = _Records()
    logger = logging.getLogger("fastsrv.access")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(old)


def _one_request_logged(serve, fmt: str, lines: list[str]) -> str:
    srv = serve(native_app, access_log=True, access_log_format=fmt)
    resp = _get(srv.port, "/whoami?x=1", "Referer: https://ref.example/\r\nUser-Agent: probe/1.0\r\n")
    deadline = time.monotonic() + 2
    while not lines:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert len(lines) == 1
    return lines[0], len(resp.body)


def test_access_log_common_format(serve, access_lines):
    line, size = _one_request_logged(serve, "common", access_lines)
    m = re.fullmatch(r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /whoami\?x=1 HTTP/1\.1" '
                     r'200 (\d+) ([\d.]+)', line)
    assert m, line
    assert int(m.group(1)) == size and float(m.group(2)) > 0


def test_access_log_combined_format(serve, access_lines):
    line, size = _one_request_logged(serve, "combined", access_lines)
    assert re.fullmatch(r'127\.0\.0\.1 - - \[.*\] "GET /whoami\?x=1 HTTP/1\.1" 200 \d+ '
                        r'"https://ref\.example/" "probe/1\.0" [\d.]+', line), line


def test_access_log_json_format(serve, access_lines):
    line, size = _one_request_logged(serve, "json", access_lines)
    entry = json.loads(line)
    assert entry["client"] == "127.0.0.1" and entry["method"] == "GET" and entry["path"] == "/whoami"
    assert entry["query"] == "x=1" and entry["status"] == 200 and entry["bytes"] == size
    assert entry["duration_ms"] > 0 and entry["user_agent"] == "probe/1.0"


def test_access_log_client_is_the_one_a_trusted_proxy_forwarded(serve, access_lines):
    srv = serve(native_app, access_log=True)
    _get(srv.port, "/", "X-Forwarded-For: 203.0.113.7\r\n")
    deadline = time.monotonic() + 2
    while not access_lines:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert access_lines[0].startswith("203.0.113.7 - - [")


def test_fastsrv_run_with_workers(tmp_path):
    port = _free_port()
    script = tmp_path / "serve_me.py"
    script.write_text(f"""
import fastsrv, os, time
from fastsrv import App
app = App()

@app.get("/pid")
def pid(request):
    time.sleep(0.2)   # holds this worker, so that requests meanwhile go to the other
    return str(os.getpid())

if __name__ == "__main__":
    raise SystemExit(fastsrv.run(app, workers=2, port={port}, server_header=False))
""")
    p = Command([sys.executable, str(script)], port, {"PYTHONPATH": ROOT})
    p.READY = b"worker(s) serving on"
    try:
        p.wait_ready(20)
        # concurrent requests: one worker accepting them all in turn would
        # hold each one 0.2 s (a shared socket spreads light sequential load
        # unevenly, so sequential requests could all reach one worker)
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda _: _get(port, "/pid"), range(8)))
        assert all(resp.header("server") is None for resp in responses)
        pids = {int(resp.body) for resp in responses}
        assert len(pids) == 2 and os.getpid() not in pids
        p.signal(signal.SIGTERM)
        assert p.wait() == 0
    finally:
        for pid in pids if "pids" in locals() else ():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.kill()


@pytest.mark.parametrize("flag, module, extra", [
    (["--reload"], "watchfiles", "reload"),
    (["--metrics-path", "/metrics"], "prometheus_client", "metrics"),
    (["--env-file", "{env_file}"], "dotenv", "dotenv"),
    (["--log-config", "{yaml_file}"], "yaml", "yaml"),
])
def test_a_flag_whose_extra_is_missing_exits_2_saying_what_to_install(tmp_path, flag, module, extra):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / f"{module}.py").write_text("raise ImportError('not installed here')\n")
    (tmp_path / "x.env").write_text("A=1\n")
    (tmp_path / "x.yaml").write_text("version: 1\n")
    args = [a.format(env_file=tmp_path / "x.env", yaml_file=tmp_path / "x.yaml") for a in flag]
    err = _exit_2("fastsrv.demo:app", "--port", "0", *args,
                  env={"PYTHONPATH": f"{blocked}{os.pathsep}{ROOT}"})
    assert f"pip install 'fastsrv[{extra}]'" in err
