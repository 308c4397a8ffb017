"""Typed errors of the fastsrv control plane.

Parsing and request errors live with the core (``ParseError``,
``BodyError``, ``ClientDisconnected``, ``InvalidResponseHeader``); they are
re-exported from :mod:`fastsrv`.
"""


class FastsrvError(Exception):
    """Base class of the errors fastsrv raises to the code that runs it."""


class ConfigError(FastsrvError, ValueError):
    """A setting is out of range or inconsistent; the message names it."""


class AppLoadError(FastsrvError):
    """``MODULE:ATTR`` could not be imported or does not name an app."""


class StartupError(FastsrvError):
    """The server could not start: a startup hook failed or the address
    could not be bound.  Nothing was served."""


class ServerStateError(FastsrvError):
    """A lifecycle call that does not fit the server's state (for example
    ``serve()`` twice)."""
