"""A short soak (``bench/soak.py --quick``): hundreds of thousands of mixed
requests, and nothing grows, on the native app and on the same routes as
raw ASGI (run in a Task per request, the path with the most objects)."""

import pytest

from bench.soak import ASGI_APP, MIB, NATIVE_APP, run_soak


@pytest.mark.parametrize("app, asgi_eager, seconds", [
    pytest.param(NATIVE_APP, "auto", 15, id="native"),
    pytest.param(ASGI_APP, "off", 8, id="asgi-task"),
])
def test_soak_answers_everything_and_leaks_no_memory_fds_or_connections(app, asgi_eager, seconds):
    soak = run_soak(seconds=seconds, connections=8, progress=5, app=app, asgi_eager=asgi_eager)
    assert soak.errors == 0, soak.error_samples
    assert soak.requests > 3_000 * seconds, soak
    assert soak.by_scenario.get("malformed") and soak.by_scenario.get("abandoned"), soak.by_scenario
    assert soak.rss_growth < 8 * MIB, soak.rss
    assert soak.fds["after"] == soak.fds["before"], soak.fds
    assert soak.leaked_connections == 0, soak.connections
    assert soak.leaked_asgi_cycles == 0, soak.connections
    if app == ASGI_APP:
        assert soak.connections["asgi_cycles_created"] > soak.requests / 2, "the ASGI app did not answer"
