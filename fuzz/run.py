#!/usr/bin/env python3
"""Run a fuzz target of fastsrv's parser for a bounded time and report.

    python fuzz/run.py --seconds 60                       # the parser target
    python fuzz/run.py --seconds 60 --target differential # against h11/httptools
    python fuzz/run.py --seconds 60 --target core         # the connection core on a fake transport
    python fuzz/run.py --seconds 60 --target core-asgi    # the same with an ASGI app
    python fuzz/run.py --seconds 10 --no-native           # ordinary build only
    python fuzz/run.py --target core --reproduce fuzz/artifacts/crash-...

When clang can build with AddressSanitizer here (Debian: ``apt-get install
clang libclang-rt-14-dev``; nothing is installed by this script), the compiled
modules a target loads (the parser; all of them for ``core`` and
``core-asgi``) are first rebuilt out of the tree with libFuzzer's coverage
instrumentation and AddressSanitizer (``FASTSRV_FUZZ=1``, into
``fuzz/build/``), so libFuzzer is guided by the branches of the generated C.
Otherwise (or with ``--no-native``) the target runs on the ordinary build,
says so, and libFuzzer sees only Python-level edges of the harness.
The corpus grows in ``fuzz/corpus/<target>/``; crashes land in
``fuzz/artifacts/``.  Exit status: 0 when the run ended without a finding,
1 on a finding, 2 when the run could not be set up.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import common  # noqa: E402
import seeds  # noqa: E402

TARGETS = {"parser": "fuzz_parser.py", "differential": "fuzz_differential.py", "core": "fuzz_core.py",
           "core-asgi": "fuzz_core_asgi.py", "websocket": "fuzz_websocket.py"}
CORE = "_parser,_response,_request,_inplace,_websocket,_core"
# the compiled modules each target loads instrumented
NATIVE = {"parser": "_parser", "differential": "_parser", "core": CORE, "core-asgi": CORE, "websocket": CORE}
# inputs a target also starts from, besides the seeds and its own corpus
# (read only: libFuzzer adds what it finds to the target's own)
SHARED_CORPUS = {"core-asgi": ["core"]}
BUILD = os.path.join(HERE, "build")
STATUS_LINE = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)")
LOADED = re.compile(r"INFO: Loaded \d+ modules\s+\((\d+) inline 8-bit counters\)")
STAT = re.compile(r"^stat::(\w+):\s+(\d+)")
FUNC = re.compile(r"(?:UN)?COVERED_FUNC: hits: \d+ edges: (\d+)/(\d+) (\S+)")
# the parser's own code in the generated C (not Cython's module machinery)
PARSER_FUNC = re.compile(r"_13RequestParser_|_next_element|_ieq|build_header_list")
CORE_FUNC = re.compile(r"_7fastsrv_5_core_12HttpProtocol_|_7fastsrv_8_request_10BodyStream_")
# the ASGI layer (_asgi.pxi): the app, the exchange and the scope; and the
# stand-in Task of a request running in place (_inplace.pyx)
ASGI_FUNC = re.compile(r"_7fastsrv_5_core_(7ASGIApp|9ASGICycle)_|_7fastsrv_8_inplace_|_asgi_headers|"
                       r"_lower_name|_wants_websocket|_stand_in")


PROBE_C = "int fastsrv_probe(int x) { return x + 1; }\n"


def native_toolchain() -> Optional[str]:
    """None when clang can build and link a sanitizer-instrumented shared
    object here; otherwise why not.  Nothing is installed: on Debian the
    toolchain is ``apt-get install clang libclang-rt-14-dev`` (the second
    holds ASan's runtime, which ``clang`` alone does not pull in); .ci/run
    installs both."""
    cc = os.environ.get("CC", "clang").split()[0]
    if not shutil.which(cc):
        return f"{cc} not found"
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(PROBE_C)
        proc = subprocess.run([cc, "-shared", "-fPIC", "-fsanitize=address,fuzzer-no-link", src,
                               "-o", os.path.join(tmp, "probe.so")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    if proc.returncode != 0:
        last = [line for line in proc.stdout.splitlines() if line.strip()][-1:] or ["(no output)"]
        return f"{cc} cannot link an AddressSanitizer build: {last[0].strip()}"
    return None


def build_native(modules: str) -> Optional[str]:
    """The instrumented modules' directory entry for the parser, rebuilt when
    the sources changed; None (with the reason printed) when this machine
    cannot build it, and the target then fuzzes the ordinary build."""
    missing = [name for name in ("Cython", "setuptools") if not importlib.util.find_spec(name)]
    why = f"{', '.join(missing)} not installed" if missing else native_toolchain()
    if why:
        print(f"no instrumented build ({why}): fuzzing the ordinary build, with Python-level "
              "coverage only; for coverage of the generated C: apt-get install clang "
              "libclang-rt-14-dev", flush=True)
        return None
    sources = [path for pattern in ("*.pyx", "*.pxd", "*.pxi")
               for path in glob.glob(os.path.join(ROOT, "fastsrv", pattern))]
    sources.append(os.path.join(ROOT, "setup.py"))
    # this interpreter's builds only: fuzz/build/ holds one per Python version
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    built = [os.path.join(BUILD, "fastsrv", name + suffix) for name in modules.split(",")]
    parser = os.path.join(BUILD, "fastsrv", "_parser" + suffix)
    if all(map(os.path.exists, built)) and all(os.path.getmtime(b) > os.path.getmtime(s)
                                               for b in built for s in sources):
        return parser
    print("building the instrumented core (FASTSRV_FUZZ=1) ...", flush=True)
    proc = subprocess.run([sys.executable, "setup.py", "build_ext", "--build-lib", BUILD,
                           "--build-temp", os.path.join(BUILD, "tmp", sys.implementation.cache_tag), "--force"],
                          cwd=ROOT, env={**os.environ, "FASTSRV_FUZZ": "1", "FASTSRV_FUZZ_MODULES": modules},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], file=sys.stderr)
        raise SystemExit("the instrumented build failed (the toolchain probe passed): see above")
    return parser


def fuzz_env(native: Optional[str]) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop(common.PARSER_ENV, None)
    if native:
        import atheris

        env[common.PARSER_ENV] = native
        # libFuzzer and ASan runtimes for the instrumented module
        env["LD_PRELOAD"] = os.path.join(atheris.path(), "asan_with_fuzzer.so")
        env["ASAN_OPTIONS"] = "detect_leaks=0:allocator_may_return_null=1:handle_abort=1"
        env["PYTHONMALLOC"] = "malloc"     # every object a separate ASan allocation
    return env


def run(target: str, seconds: int, native: Optional[str], verbose: bool, extra: List[str]) -> int:
    corpus = os.path.join(HERE, "corpus", target)
    seed_dir = os.path.join(HERE, "corpus", "seeds-websocket" if target == "websocket" else "seeds")
    artifacts = os.path.join(HERE, "artifacts") + os.sep
    os.makedirs(corpus, exist_ok=True)
    os.makedirs(artifacts, exist_ok=True)
    count = seeds.write(seed_dir, target)
    print(f"target {target}: {'native coverage of the parser (clang, ASan)' if native else 'Python-level coverage only'}; "
          f"{count} seeds; {seconds} s", flush=True)
    shared = [path for name in SHARED_CORPUS.get(target, [])
              for path in [os.path.join(HERE, "corpus", name)] if os.path.isdir(path)]
    cmd = [sys.executable, os.path.join(HERE, TARGETS[target]), corpus, seed_dir, *shared,
           f"-max_total_time={seconds}", f"-artifact_prefix={artifacts}", "-print_final_stats=1",
           "-max_len=4096", "-timeout=20", "-rss_limit_mb=2048",
           "-dict=" + os.path.join(HERE, "http.dict"), *extra]
    if native:
        cmd.append("-print_coverage=1")
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            errors="replace", env=fuzz_env(native), cwd=ROOT)
    last_status, total_edges, stats, tail = None, None, {}, []
    parser_edges, core_edges, asgi_edges = [0, 0], [0, 0], [0, 0]
    for line in proc.stderr:
        if "COVERED_" not in line:
            tail = (tail + [line])[-60:]
        m = STATUS_LINE.match(line)
        if m:
            last_status = m
            if verbose or m.group(2) == "pulse":
                print(f"  {time.monotonic() - started:6.1f} s  execs {m.group(1)}  cov {m.group(3)}  "
                      f"ft {m.group(4)}  corpus {m.group(5)}", flush=True)
        elif verbose:
            print("  " + line.rstrip(), flush=True)
        if LOADED.search(line):
            total_edges = int(LOADED.search(line).group(1))
        m = STAT.match(line)
        if m:
            stats[m.group(1)] = int(m.group(2))
        m = FUNC.search(line)
        for pattern, edges in ((PARSER_FUNC, parser_edges), (CORE_FUNC, core_edges), (ASGI_FUNC, asgi_edges)):
            if m and pattern.search(m.group(3)):
                edges[0] += int(m.group(1))
                edges[1] += int(m.group(2))
    code = proc.wait()
    elapsed = time.monotonic() - started
    execs = stats.get("number_of_executed_units") or (int(last_status.group(1)) if last_status else 0)
    print(f"executions: {execs} in {elapsed:.0f} s ({execs / max(elapsed, 1e-9):.0f}/s)")
    if last_status:
        cov = int(last_status.group(3))
        share = f" of {total_edges} instrumented ({100 * cov / total_edges:.1f}%)" if total_edges else ""
        print(f"coverage: {cov} edges{share}; {last_status.group(4)} features; "
              f"corpus {last_status.group(5)} inputs")
    if parser_edges[1]:
        print(f"parser code (RequestParser methods and helpers in the generated C): "
              f"{parser_edges[0]}/{parser_edges[1]} edges ({100 * parser_edges[0] / parser_edges[1]:.1f}%)")
    if core_edges[1]:
        print(f"connection code (HttpProtocol and BodyStream methods in the generated C): "
              f"{core_edges[0]}/{core_edges[1]} edges ({100 * core_edges[0] / core_edges[1]:.1f}%)")
    if asgi_edges[1] and target == "core-asgi":
        print(f"ASGI code (ASGIApp, ASGICycle, the stand-in Task and scope helpers in the generated C): "
              f"{asgi_edges[0]}/{asgi_edges[1]} edges ({100 * asgi_edges[0] / asgi_edges[1]:.1f}%)")
    if code != 0:
        print("FINDING (libFuzzer exit status %d); the end of its output:" % code)
        print("".join(tail))
        crashes = sorted(glob.glob(artifacts + "*"), key=os.path.getmtime)
        if crashes:
            print(f"reproduce: python fuzz/run.py --target {target} --reproduce {crashes[-1]}")
        return 1
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60, help="how long to fuzz (default 60)")
    ap.add_argument("--target", choices=sorted(TARGETS), default="parser")
    ap.add_argument("--no-native", action="store_true", help="do not build the instrumented parser")
    ap.add_argument("--verbose", action="store_true", help="echo libFuzzer's output")
    ap.add_argument("--reproduce", metavar="FILE", help="run the target once on FILE (a crash-* artifact)")
    ap.add_argument("libfuzzer", nargs="*", help="extra libFuzzer flags (after --)")
    args = ap.parse_args(argv)
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed (pip install atheris)", file=sys.stderr)
        return 2
    native = None if args.no_native else build_native(NATIVE[args.target])
    if args.reproduce:
        return subprocess.call([sys.executable, os.path.join(HERE, TARGETS[args.target]), args.reproduce],
                               env=fuzz_env(native), cwd=ROOT)
    return run(args.target, args.seconds, native, args.verbose, args.libfuzzer)


if __name__ == "__main__":
    sys.exit(main())
