"""The parser's fuzz targets run for a few seconds and find nothing.

``fuzz/run.py`` rebuilds the parser with libFuzzer's coverage and ASan when
clang can link an ASan build here (Debian: clang and libclang-rt-14-dev,
which .ci/run installs); otherwise it fuzzes the ordinary build, guided by
Python-level coverage only, and these tests say so in a warning.  With
``FASTSRV_FUZZ_REQUIRE_NATIVE=1`` (set by .ci/run once it has installed the
toolchain) that fallback is a failure.  A crash, a sanitizer report or a
broken invariant makes the run exit non-zero.  Long runs: see fuzz/README.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

pytest.importorskip("atheris", reason="atheris is not installed (it has wheels for CPython 3.11-3.13 "
                                      "on Linux; pip install atheris)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_fuzzer(target: str, seconds: int) -> str:
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "fuzz", "run.py"), "--target", target,
                           "--seconds", str(seconds)], cwd=ROOT, capture_output=True, text=True,
                          # the first run builds the instrumented parser
                          timeout=seconds + 600)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert "executions:" in proc.stdout, proc.stdout
    if "native coverage" not in proc.stdout:
        fallback = next((line for line in proc.stdout.splitlines() if line.startswith("no instrumented build")),
                        "no instrumented build")
        assert os.environ.get("FASTSRV_FUZZ_REQUIRE_NATIVE") != "1", fallback
        warnings.warn(f"fuzz target {target}: {fallback}")
    return proc.stdout


def test_parser_fuzz_target_finds_nothing_in_7_seconds():
    out = run_fuzzer("parser", 7)
    executions = int(out.split("executions: ")[1].split()[0])
    assert executions > 1000, out


def test_differential_fuzz_target_finds_nothing_in_5_seconds():
    run_fuzzer("differential", 5)
