"""Build the Cython core of fastsrv.

Environment switches (also usable with ``pip install .``):

* ``FASTSRV_ANNOTATE=1`` writes ``cython -a`` HTML next to each ``.pyx``.
* ``FASTSRV_DEBUG=1`` builds with bounds checks and ``-O0 -g`` for gdb and
  sanitizers.  (Every build counts the connections it creates and frees:
  ``fastsrv._core.debug_counters()``.)
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

MODULES = ["_parser", "_response", "_request", "_core"]

debug = os.environ.get("FASTSRV_DEBUG") == "1"
annotate = os.environ.get("FASTSRV_ANNOTATE") == "1"

compile_args = ["-O0", "-g"] if debug else ["-O2"]
compile_args += ["-Wall", "-Wno-unused-function", "-Wno-unreachable-code"]

extensions = [
    Extension(f"fastsrv.{name}", [f"fastsrv/{name}.pyx"], extra_compile_args=compile_args)
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
