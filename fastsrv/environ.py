"""Options from the environment: ``FASTSRV_<FLAG>`` and ``--env-file``.

Every ``fastsrv run`` option can be given as an environment variable named
after it: ``--port 9000`` is ``FASTSRV_PORT=9000``, ``--ssl-certfile`` is
``FASTSRV_SSL_CERTFILE``.  On/off options take ``true``/``false`` (also
1/0, yes/no, on/off); a repeatable option (``--header``,
``--reload-dir``...) takes one value per line.  The command line wins over
the environment, which wins over ``--env-file``.

``--env-file PATH`` (or ``FASTSRV_ENV_FILE``) reads a dotenv file with
python-dotenv (``pip install 'fastsrv[dotenv]'``) into the environment
before the options are read, without replacing variables already set: the
app (and every worker) sees its variables, and ``FASTSRV_*`` lines in it set
options.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Optional, Sequence

from fastsrv.errors import ConfigError
from fastsrv.extras import require

PREFIX = "FASTSRV_"


def env_name(action: argparse.Action) -> str:
    """The environment variable of an option: ``--ssl-certfile`` -> ``FASTSRV_SSL_CERTFILE``."""
    return PREFIX + action.option_strings[0].lstrip("-").replace("-", "_").upper()


def load_env_file(argv: Sequence[str]) -> Optional[str]:
    """Read the ``--env-file`` of ``argv`` (or ``FASTSRV_ENV_FILE``) into
    ``os.environ``; return its path, or None when there is none."""
    path = None
    for i, arg in enumerate(argv):
        if arg == "--env-file" and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--env-file="):
            path = arg.split("=", 1)[1]
    path = path or os.environ.get(PREFIX + "ENV_FILE")
    if not path:
        return None
    if not os.path.isfile(path):
        raise ConfigError(f"--env-file {path!r}: no such file")
    dotenv = require("dotenv", "dotenv", "--env-file")
    dotenv.load_dotenv(path, override=False)
    return path


def parse_boolean(text: str) -> bool:
    """``true``/``false`` (and 1/0, yes/no, on/off), as uvicorn's boolean options:
    the value of a boolean flag or of its ``FASTSRV_*`` variable."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _convert(action: argparse.Action, text: str) -> Any:
    if isinstance(action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction)):
        return parse_boolean(text)
    if isinstance(action, argparse._AppendAction):
        return [_convert_one(action, line.strip()) for line in text.splitlines() if line.strip()]
    return _convert_one(action, text)


def _convert_one(action: argparse.Action, text: str) -> Any:
    value = action.type(text) if callable(action.type) else text
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"expected one of {', '.join(map(str, action.choices))}, got {text!r}")
    return value


def apply_env_defaults(parser: argparse.ArgumentParser, environ: Optional[dict[str, str]] = None) -> list[str]:
    """Make ``FASTSRV_<FLAG>`` variables the defaults of ``parser``'s options;
    return the variables used.  A value that does not fit is a ConfigError."""
    environ = os.environ if environ is None else environ
    used = []
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "env_file"):
            continue
        name = env_name(action)
        if name not in environ:
            continue
        try:
            value = _convert(action, environ[name])
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            raise ConfigError(f"{name}={environ[name]!r} ({action.option_strings[-1]}): {exc}") from None
        parser.set_defaults(**{action.dest: value})
        used.append(name)
    return used
