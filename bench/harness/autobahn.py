"""Autobahn|Testsuite (the fuzzing client) against WebSocket servers.

The suite is Python 2 code: it is installed with a CPython 2.7 (pyenv's,
or one on the PATH) by ``python2.7 -m pip install --target DIR
autobahntestsuite`` and started with DIR added through ``site.addsitedir``
so that its namespace packages load.  ``FASTSRV_AUTOBAHN_DIR`` names an
installation to use (``.ci/run`` makes one); otherwise one is made under
``~/.cache/fastsrv/autobahn``.
"""
from __future__ import annotations

import collections
import glob
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

DEFAULT_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fastsrv" / "autobahn"
# the groups of the suite; 9.* (performance) is left to benchmark runs
GROUPS = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*", "12.*", "13.*"]
# a bounded subset for CI (a few seconds): every case of groups 1-7 and 10,
# and the first cases of each compression group
CI_CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*",
            "12.1.1", "12.1.3", "12.2.1", "12.3.1", "12.5.1", "13.1.1", "13.2.1", "13.3.1", "13.4.1",
            "13.5.1", "13.6.1", "13.7.1"]
VERDICTS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")


class AutobahnMissing(RuntimeError):
    """Autobahn|Testsuite is not installed and cannot be here."""


def python2() -> str | None:
    """A CPython 2.7 interpreter: pyenv's, or ``python2.7`` on the PATH."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = sorted(glob.glob(os.path.join(root, "versions", "2.7*", "bin", "python2.7")), reverse=True)
    return found[0] if found else shutil.which("python2.7")


def install(directory: Path | None = None, timeout: float = 600) -> Path:
    """The directory holding the suite, installed there if it is not."""
    directory = Path(os.environ.get("FASTSRV_AUTOBAHN_DIR") or directory or DEFAULT_DIR)
    if (directory / "autobahntestsuite").is_dir():
        return directory
    interpreter = python2()
    if interpreter is None:
        raise AutobahnMissing("Autobahn|Testsuite needs CPython 2.7 (pyenv install 2.7.18), which is not here")
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent) as tmp:
        proc = subprocess.run([interpreter, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                               "--target", tmp, "autobahntestsuite"], capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise AutobahnMissing(f"pip install autobahntestsuite failed: {proc.stderr.strip()[-500:]}")
        os.replace(tmp, directory)
        os.makedirs(tmp)            # for the context manager's clean-up
    return directory


def run(servers: dict[str, str], cases: list[str], directory: Path, timeout: float = 7200,
        progress=None) -> dict[str, dict[str, dict]]:
    """Run the fuzzing client against ``servers`` (agent name -> ws:// URL);
    ``{agent: {case id: {"behavior", "behaviorClose", "duration"}}}``."""
    interpreter = python2()
    if interpreter is None:
        raise AutobahnMissing("Autobahn|Testsuite needs CPython 2.7, which is not here")
    with tempfile.TemporaryDirectory(prefix="fastsrv-autobahn-") as tmp:
        spec = {"outdir": os.path.join(tmp, "reports"), "cases": cases, "exclude-cases": [],
                "exclude-agent-cases": {},
                "servers": [{"agent": agent, "url": url} for agent, url in servers.items()]}
        spec_path = os.path.join(tmp, "spec.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        code = ("import site, sys; site.addsitedir(sys.argv[1]); "
                "sys.argv = ['wstest', '-m', 'fuzzingclient', '-s', sys.argv[2]]; "
                "from autobahntestsuite.wstest import run; run()")
        proc = subprocess.Popen([interpreter, "-c", code, str(directory), spec_path], cwd=tmp,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if progress is not None and line.startswith("Running test case"):
                progress(line.strip())
        proc.wait(timeout)
        index = os.path.join(tmp, "reports", "index.json")
        if not os.path.exists(index):
            raise RuntimeError(f"the fuzzing client wrote no report (exit status {proc.returncode})")
        with open(index) as f:
            raw = json.load(f)
    return {agent: {case: {"behavior": v["behavior"], "behaviorClose": v["behaviorClose"],
                           "duration": v.get("duration", 0)} for case, v in cases_.items()}
            for agent, cases_ in raw.items()}


def verdict(case: dict) -> str:
    """One verdict per case: the worse of its behaviour and its close behaviour."""
    order = {v: i for i, v in enumerate(VERDICTS)}
    return max(case["behavior"], case["behaviorClose"], key=lambda v: order.get(v, len(VERDICTS)))


def summary(results: dict[str, dict]) -> dict[str, collections.Counter]:
    return {agent: collections.Counter(verdict(c) for c in cases.values()) for agent, cases in results.items()}


def case_key(case: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case.split("."))
