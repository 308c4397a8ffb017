"""``--reload``: restart when the code changes, through the graceful drain.

A file watcher (watchfiles, ``pip install 'fastsrv[reload]'``) runs in a
thread of the supervisor that ``--reload`` starts (one worker unless
``--workers`` says more).  When a watched file changes, every worker is
replaced the way ``--limit-max-requests`` replaces one: a new worker, which
imports the code as it is now, is started first; once it serves, the old
one drains, so a request in flight (a long poll, a slow upload) finishes
with the old code while new requests get the new.  A change that does not
import (a syntax error) leaves the old worker serving and is logged; the
next change tries again.

Watched: ``--reload-dir`` directories (default: the current one), files
matching ``--reload-include`` globs (default ``*.py``) and none matching
``--reload-exclude`` (default: hidden files and directories, ``*.py[cod]``,
``*~``, ``__pycache__``); a glob is matched against the file name and each
directory name on its path.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
from typing import Any, Callable, Iterable, Optional

from fastsrv.errors import ConfigError
from fastsrv.extras import require

log = logging.getLogger("fastsrv.supervisor")

DEFAULT_INCLUDES = ("*.py",)
DEFAULT_EXCLUDES = (".*", "*.py[cod]", "*~", "__pycache__")


class PathFilter:
    """Which changed paths restart the server."""

    def __init__(self, includes: Iterable[str] = (), excludes: Iterable[str] = ()) -> None:
        self.includes = tuple(dict.fromkeys((*DEFAULT_INCLUDES, *includes)))
        # a pattern asked to be included is no longer excluded by default
        self.excludes = tuple(dict.fromkeys(
            (*(p for p in DEFAULT_EXCLUDES if p not in self.includes), *excludes)))

    def __call__(self, change: Any, path: str) -> bool:
        parts = os.path.normpath(path).split(os.sep)
        name = parts[-1]
        if any(fnmatch.fnmatch(part, pattern) for part in parts for pattern in self.excludes if part):
            return False
        return any(fnmatch.fnmatch(name, pattern) for pattern in self.includes)


class Watcher:
    """Watches ``dirs`` in a thread; calls ``on_change()`` for each batch of changes."""

    def __init__(self, dirs: Iterable[str], includes: Iterable[str] = (), excludes: Iterable[str] = ()) -> None:
        self._watchfiles = require("reload", "watchfiles", "--reload")
        self.dirs = [os.path.abspath(d) for d in dirs]
        for d in self.dirs:
            if not os.path.isdir(d):
                raise ConfigError(f"--reload-dir {d!r}: no such directory")
        self.filter = PathFilter(includes, excludes)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self, on_change: Callable[[], None]) -> None:
        log.info("watching %s for changes to %s (--reload)", ", ".join(self.dirs), ", ".join(self.filter.includes))
        self._thread = threading.Thread(target=self._run, args=(on_change,), name="fastsrv-reload", daemon=True)
        self._thread.start()

    def _run(self, on_change: Callable[[], None]) -> None:
        for changes in self._watchfiles.watch(*self.dirs, watch_filter=self.filter, stop_event=self._stop,
                                              debounce=200, step=50, raise_interrupt=False):
            names = sorted({os.path.relpath(path) for _, path in changes})
            log.info("changed: %s: replacing the workers", ", ".join(names[:5]) + (" ..." if len(names) > 5 else ""))
            on_change()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
