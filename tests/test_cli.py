"""The ``fastsrv run`` command line."""

import json
import re
import signal
import subprocess
import sys

import pytest

from conftest import RawClient


def test_access_log_writes_one_line_per_request(process_server):
    p = process_server(["fastsrv.demo:app", "--access-log"]).wait_ready()
    c = RawClient(p.port)
    for path in ("/", "/nope"):
        c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        c.read_response()
    c.close()
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    log = p.log()
    # the Common Log Format (the default --access-log-format), then the duration in ms
    assert re.search(r'127\.0\.0\.1 - - \[[^]]+\] "GET / HTTP/1\.1" 200 13 [0-9.]+\n', log), log
    assert re.search(r'127\.0\.0\.1 - - \[[^]]+\] "GET /nope HTTP/1\.1" 404 10 [0-9.]+\n', log), log


def test_bad_settings_exit_2_with_the_setting_named():
    out = subprocess.run([sys.executable, "-m", "fastsrv", "run", "fastsrv.demo:app",
                          "--hook-timeout", "0"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "hook_timeout must be > 0 seconds" in out.stderr


def test_app_reference_without_attribute_is_explained():
    out = subprocess.run([sys.executable, "-m", "fastsrv", "run", "fastsrv.demo"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "MODULE:ATTR" in out.stderr


@pytest.mark.parametrize("args, kept", [([], False), (["--underscores-in-headers"], True),
                                        (["--underscores-in-headers", "--workers", "1"], True)],
                         ids=["default", "flag", "flag-passed-to-workers"])
def test_underscores_in_headers_keeps_the_fields_that_are_dropped_by_default(process_server, args, kept):
    p = process_server(["tests.apps.asgi_raw:app", "--lifespan", "off", *args])
    if "--workers" in args:
        p.READY = b"worker(s) serving on"
    p.wait_ready()
    c = RawClient(p.port)
    c.send(b"GET /scope HTTP/1.1\r\nHost: t\r\nX_Secret: 1\r\nX-Open: 2\r\n\r\n")
    headers = json.loads(c.read_response().body)["headers"]
    c.close()
    assert headers == [["host", "t"], *([["x_secret", "1"]] if kept else []), ["x-open", "2"]]
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
