"""Logging: ``--log-config`` files and the access log's formats.

``--log-config FILE`` hands the file to :mod:`logging.config`, as uvicorn
does: ``.json`` and ``.yaml``/``.yml`` files hold a ``dictConfig``
dictionary (YAML needs PyYAML: ``pip install 'fastsrv[yaml]'``), any other
file is read by ``fileConfig`` (INI).  Loggers: ``fastsrv.lifecycle``,
``fastsrv.supervisor``, ``fastsrv.error``, ``fastsrv.access``.

The access log (``--access-log``) writes one line per response on
``fastsrv.access``, in one of three formats (``--access-log-format``):

* ``common``: the Common Log Format with the duration in milliseconds
  after it: ``127.0.0.1 - - [06/Dec/2025:21:40:10 +0000] "GET / HTTP/1.1" 200 13 0.084``
* ``combined``: the same with the Referer and User-Agent, as nginx's
  ``combined``, then the duration
* ``json``: one JSON object per line: ``client``, ``method``, ``path``,
  ``query``, ``http_version``, ``status``, ``bytes``, ``duration_ms``,
  ``time`` (ISO 8601, UTC), ``referer``, ``user_agent``

``bytes`` counts the response body, as in the Common Log Format.  The
client is the one a trusted proxy forwarded when there is one.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import time
from typing import Any

from fastsrv.errors import ConfigError
from fastsrv.extras import require

access_logger = logging.getLogger("fastsrv.access")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def configure(log_config: str | None, level: str, fmt: str) -> None:
    """Set up logging from ``log_config`` (a file), or the default format at ``level``."""
    if log_config is None:
        logging.basicConfig(level=level.upper(), format=fmt)
        return
    lower = log_config.lower()
    if not os.path.isfile(log_config):     # fileConfig before 3.11 reads a missing file as empty
        raise ConfigError(f"--log-config {log_config!r}: no such file")
    try:
        if lower.endswith(".json"):
            with open(log_config) as f:
                logging.config.dictConfig(json.load(f))
        elif lower.endswith((".yaml", ".yml")):
            yaml = require("yaml", "yaml", "--log-config with a YAML file")
            with open(log_config) as f:
                logging.config.dictConfig(yaml.safe_load(f))
        else:
            logging.config.fileConfig(log_config, disable_existing_loggers=False)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"--log-config {log_config!r} is not a logging configuration "
                          f"logging.config accepts: {exc}") from None


def _clf_time(now: float) -> str:
    t = time.gmtime(now)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def _target(request: Any) -> str:
    query = request.query_string
    raw = request.raw_path.decode("latin-1")
    return f"{raw}?{query.decode('latin-1')}" if query else raw


def _quote(text: str | None) -> str:
    if not text:
        return '"-"'
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class AccessLog:
    """What the core calls once per response when the access log is on:
    ``access_log(client, request, status, body_bytes, seconds)``."""

    def __init__(self, fmt: str = "common", logger: logging.Logger = access_logger) -> None:
        self.logger = logger
        self.line = {"common": self._common, "combined": self._combined, "json": self._json}[fmt]

    def __call__(self, client: str, request: Any, status: int, nbytes: int, seconds: float) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info("%s", self.line(client, request, status, nbytes, seconds))

    @staticmethod
    def _common(client: str, request: Any, status: int, nbytes: int, seconds: float) -> str:
        return (f'{client} - - [{_clf_time(time.time())}] "{request.method} {_target(request)} '
                f'HTTP/{request.http_version}" {status} {nbytes or "-"} {seconds * 1000:.3f}')

    @staticmethod
    def _combined(client: str, request: Any, status: int, nbytes: int, seconds: float) -> str:
        headers = request.headers
        return (f'{client} - - [{_clf_time(time.time())}] "{request.method} {_target(request)} '
                f'HTTP/{request.http_version}" {status} {nbytes or "-"} {_quote(headers.get("referer"))} '
                f'{_quote(headers.get("user-agent"))} {seconds * 1000:.3f}')

    @staticmethod
    def _json(client: str, request: Any, status: int, nbytes: int, seconds: float) -> str:
        headers = request.headers
        return json.dumps({
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "client": client, "method": request.method, "path": request.path,
            "query": request.query_string.decode("latin-1"), "http_version": request.http_version,
            "status": status, "bytes": nbytes, "duration_ms": round(seconds * 1000, 3),
            "referer": headers.get("referer"), "user_agent": headers.get("user-agent"),
        }, ensure_ascii=False)
