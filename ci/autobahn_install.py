#!/usr/bin/env python3
"""Install Autobahn|Testsuite (Python 2, with pyenv's CPython 2.7) for the
WebSocket conformance test; print its directory, or say why not (exit 1)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.harness import autobahn  # noqa: E402

try:
    directory = autobahn.install()
except (autobahn.AutobahnMissing, OSError) as exc:
    print(f"[autobahn] not installed: {exc}", file=sys.stderr)
    sys.exit(1)
print(f"[autobahn] installed in {directory}", file=sys.stderr)
print(directory)
