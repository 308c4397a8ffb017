"""The parser's fuzz targets run for a few seconds and find nothing.

``fuzz/run.py`` rebuilds the parser with libFuzzer's coverage and ASan when
clang is there (it installs clang from Debian when it can; otherwise it
fuzzes the ordinary build, guided by Python-level coverage only); a crash, a
sanitizer report or a broken invariant makes it exit non-zero.  Long runs:
see fuzz/README.md.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("atheris", reason="atheris is not installed (it has wheels for CPython 3.11-3.13 "
                                      "on Linux; pip install atheris)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_fuzzer(target: str, seconds: int) -> str:
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "fuzz", "run.py"), "--target", target,
                           "--seconds", str(seconds)], cwd=ROOT, capture_output=True, text=True,
                          # the first run may install clang and build the instrumented parser
                          timeout=seconds + 600)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert "executions:" in proc.stdout, proc.stdout
    return proc.stdout


def test_parser_fuzz_target_finds_nothing_in_7_seconds():
    out = run_fuzzer("parser", 7)
    executions = int(out.split("executions: ")[1].split()[0])
    assert executions > 1000, out


def test_differential_fuzz_target_finds_nothing_in_5_seconds():
    run_fuzzer("differential", 5)
