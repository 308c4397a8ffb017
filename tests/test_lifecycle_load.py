"""SIGTERM under load: every request the server took is answered in full."""

from bench.drain_under_load import drain_under_load


def test_sigterm_under_load_cuts_no_response_and_exits_0():
    run = drain_under_load(connections=20, seconds=2.0, signal_after=0.7)
    assert run.completed > 100, run
    assert run.completed_after_signal > 0, run      # in-flight work finished after the signal
    assert (run.cut, run.failed) == (0, 0), run
    assert run.exit_status == 0, run.server_log
    assert "cancelled" not in run.server_log
