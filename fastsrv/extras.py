"""Optional dependencies: the extras of ``pip install 'fastsrv[...]'``.

A flag that needs one which is not installed is a :class:`ConfigError`
(``fastsrv run`` exits 2) that says what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from fastsrv.errors import ConfigError

EXTRAS = {
    "metrics": "prometheus_client",
    "reload": "watchfiles",
    "dotenv": "dotenv",
    "yaml": "yaml",
}


def require(extra: str, module: str, what: str) -> ModuleType:
    """Import ``module`` (of the extra ``extra``), or say what ``what`` needs."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{what} needs the '{extra}' extra, which is not installed: "
                          f"pip install 'fastsrv[{extra}]'") from None
