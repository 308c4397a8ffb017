"""The package metadata says what CI tests: the same Python versions in the
classifiers, ``requires-python``, cibuildwheel's build selector and the CI
matrix."""

from __future__ import annotations

import os
import re
import sys
from fnmatch import fnmatch

try:
    import tomllib
except ImportError:     # Python 3.10: pytest brings tomli
    import tomli as tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "ci"))

import interpreters  # noqa: E402


def pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_classifiers_name_exactly_the_versions_ci_tests() -> None:
    classifiers = pyproject()["project"]["classifiers"]
    versions = [c.rsplit(" :: ", 1)[1] for c in classifiers
                if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert tuple(versions) == interpreters.SUPPORTED


def test_requires_python_starts_at_the_oldest_version_ci_tests() -> None:
    assert pyproject()["project"]["requires-python"] == f">={interpreters.SUPPORTED[0]}"


def test_cibuildwheel_builds_every_supported_version_on_linux_and_macos() -> None:
    cibw = pyproject()["tool"]["cibuildwheel"]
    built = cibw["build"].split()
    assert built == [f"cp{v.replace('.', '')}-*" for v in interpreters.SUPPORTED]
    assert set(cibw["linux"]["archs"]) == {"x86_64", "aarch64"}
    assert set(cibw["macos"]["archs"]) == {"x86_64", "arm64"}
    skipped = cibw.get("skip", "").split()
    for version in interpreters.SUPPORTED:
        tag = "cp" + version.replace(".", "")
        for ident in ([f"{tag}-{libc}_{arch}" for libc in ("manylinux", "musllinux") for arch in ("x86_64", "aarch64")]
                      + [f"{tag}-macosx_{arch}" for arch in ("x86_64", "arm64")]):
            assert not any(fnmatch(ident, pattern) for pattern in skipped), ident
    assert any("wheel_check.py --installed" in command for command in cibw["test-command"])


def test_this_interpreter_is_one_ci_tests() -> None:
    assert f"{sys.version_info[0]}.{sys.version_info[1]}" in interpreters.SUPPORTED
