"""Autobahn|Testsuite, the field's WebSocket conformance suite, against the
native and the ASGI echo endpoints: no case FAILED, NON-STRICT or
UNIMPLEMENTED, in behaviour or in close behaviour.  CI runs a bounded
subset (every case of groups 1-7 and 10, the first of each compression
group: a few seconds); ``python bench/autobahn.py`` runs groups 1-13 and
compares uvicorn and granian.

The suite is Python 2 code, installed with pyenv's CPython 2.7 (``.ci/run``
installs it); without it these tests skip, or fail under
``FASTSRV_REQUIRE_AUTOBAHN=1``."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.harness import autobahn
from conftest import ProcessServer


@pytest.fixture(scope="module")
def suite_dir():
    try:
        return autobahn.install()
    except (autobahn.AutobahnMissing, OSError) as exc:
        if os.environ.get("FASTSRV_REQUIRE_AUTOBAHN") == "1":
            raise
        pytest.skip(str(exc))


def test_no_autobahn_case_fails_on_the_native_or_the_asgi_echo(suite_dir):
    servers = [ProcessServer(["tests.apps.websockets:native", "--ws-ping-interval", "0"]),
               ProcessServer(["tests.apps.websockets:asgi", "--lifespan", "off", "--ws-ping-interval", "0"])]
    try:
        for s in servers:
            s.wait_ready()
        # one fuzzing client per server, side by side
        with ThreadPoolExecutor(2) as pool:
            runs = [pool.submit(autobahn.run, {agent: f"ws://127.0.0.1:{s.port}/echo"}, autobahn.CI_CASES,
                                suite_dir, 300) for agent, s in zip(("native", "asgi"), servers)]
            results = {agent: cases for run in runs for agent, cases in run.result().items()}
    finally:
        for s in servers:
            s.kill()
    assert set(results) == {"native", "asgi"}
    for agent, cases in results.items():
        assert len(cases) > 250, (agent, len(cases))
        bad = sorted(((case, c["behavior"], c["behaviorClose"]) for case, c in cases.items()
                      if autobahn.verdict(c) not in ("OK", "INFORMATIONAL")), key=lambda x: autobahn.case_key(x[0]))
        assert bad == [], f"{agent}: {bad}"
