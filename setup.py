"""Build the Cython core of fastsrv.

Environment switches (also usable with ``pip install .``):

* ``FASTSRV_ANNOTATE=1`` writes ``cython -a`` HTML next to each ``.pyx``.
* ``FASTSRV_DEBUG=1`` builds with bounds checks and ``-O0 -g`` for gdb and
  sanitizers.  (Every build counts the connections it creates and frees:
  ``fastsrv._core.debug_counters()``.)
* ``FASTSRV_FUZZ=1`` builds with clang, libFuzzer's coverage
  instrumentation and AddressSanitizer
  (``-fsanitize=address,fuzzer-no-link``), for ``fuzz/run.py``; only the
  modules named in ``FASTSRV_FUZZ_MODULES`` (comma-separated) if it is
  set.  Build it out of the tree so that the normal build is left alone: ``FASTSRV_FUZZ=1 python setup.py build_ext --build-lib fuzz/build
  --build-temp fuzz/build/tmp`` (``fuzz/run.py`` does this itself).
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

MODULES = ["_parser", "_response", "_request", "_inplace", "_websocket", "_proxy", "_metrics", "_core"]

debug = os.environ.get("FASTSRV_DEBUG") == "1"
annotate = os.environ.get("FASTSRV_ANNOTATE") == "1"
fuzz = os.environ.get("FASTSRV_FUZZ") == "1"

compile_args = ["-O0", "-g"] if debug else ["-O2"]
compile_args += ["-Wall", "-Wno-unused-function", "-Wno-unreachable-code"]
link_args = []
if fuzz:
    # libFuzzer's edge counters and comparison hooks in the generated C, and
    # ASan; both runtimes come from atheris' asan_with_fuzzer.so (LD_PRELOAD).
    os.environ.setdefault("CC", "clang")
    os.environ.setdefault("LDSHARED", "clang -shared")
    # e.g. FASTSRV_FUZZ_MODULES=_parser: the parser alone builds in seconds
    MODULES = os.environ.get("FASTSRV_FUZZ_MODULES", ",".join(MODULES)).split(",")
    compile_args += ["-fsanitize=address,fuzzer-no-link", "-g"]
    link_args += ["-fsanitize=address,fuzzer-no-link"]

extensions = [
    Extension(f"fastsrv.{name}", [f"fastsrv/{name}.pyx"], extra_compile_args=compile_args,
              extra_link_args=link_args)
    for name in MODULES
]

directives = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": False,
    "cdivision": True,
    "embedsignature": True,
    "warn.unused": True,
    "warn.maybe_uninitialized": True,
}

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=annotate,
        force=debug or annotate,
    )
)
