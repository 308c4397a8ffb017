"""A 15 s soak (``bench/soak.py --quick``): hundreds of thousands of mixed
requests, and nothing grows."""

from bench.soak import MIB, run_soak


def test_soak_answers_everything_and_leaks_no_memory_fds_or_connections():
    soak = run_soak(seconds=15, connections=8, progress=5)
    assert soak.errors == 0, soak.error_samples
    assert soak.requests > 50_000, soak
    assert soak.by_scenario.get("malformed") and soak.by_scenario.get("abandoned"), soak.by_scenario
    assert soak.rss_growth < 8 * MIB, soak.rss
    assert soak.fds["after"] == soak.fds["before"], soak.fds
    assert soak.leaked_connections == 0, soak.connections
