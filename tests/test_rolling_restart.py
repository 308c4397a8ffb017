"""A rolling restart behind a real HAProxy loses no request
(``bench/rolling_restart.py``, short settings): two fastsrv instances with
``--shutdown-delay`` above HAProxy's ``fall × inter``, wrk keep-alive load
through HAProxy (default reuse and retry settings), four restarts, one
instance at a time — each replacement on a new port that HAProxy's server
slot is pointed at once it is ready and the old process has exited, and
each on the old instance's port."""

from __future__ import annotations

import pytest

from bench.harness.debian import ToolMissing, ensure_tools
from bench.rolling_restart import Settings, describe_restart, failure_breakdown, rolling_restart


@pytest.fixture(scope="module")
def tools() -> None:
    try:
        ensure_tools(["haproxy", "wrk"])
    except ToolMissing as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("scenario", ["new-address", "same-port"])
def test_rolling_restart_behind_haproxy_loses_no_request(tools: None, scenario: str) -> None:
    settings = Settings(restarts=4, connections=48, shutdown_delay=1.5, inter_ms=250, fall=2, rise=2,
                        warmup=1.0, settle=0.6, tail=0.5)
    result = rolling_restart("fastsrv", settings, scenario, progress=lambda line: None)
    timeline = "\n".join(describe_restart(r) for r in result.restarts)
    assert not result.error, result.error
    assert result.failed == 0, f"{failure_breakdown(result)}; HAProxy: {result.haproxy_failures}\n{timeline}"
    assert result.completed > 1_000, result
    assert len(result.restarts) == 4
    assert [r.exit_status for r in result.restarts] == [0, 0, 0, 0], timeline
    for restart in result.restarts:
        # HAProxy had stopped routing to the instance before it stopped accepting
        down, closed, exited = restart.down, restart.listener_closed, restart.exited
        assert down is not None and closed is not None and exited is not None, timeline
        assert restart.sigterm < down < closed <= exited, timeline
        assert restart.up is not None and restart.ready is not None and restart.up >= restart.ready, timeline
        if scenario == "new-address":
            # the slot kept the old address until the old process had exited, and moved once the new one was ready
            assert restart.new_port is not None and restart.new_port != restart.port, timeline
            assert restart.switched is not None and restart.switched >= max(exited, restart.ready), timeline
            assert restart.up >= restart.switched, timeline
        else:
            assert restart.new_port is None and restart.switched is None, timeline


def test_websocket_clients_lose_nothing_and_get_1012_in_a_rolling_restart(tools: None) -> None:
    """bench/ws_rolling_restart.py, short: WebSocket clients through HAProxy
    see every connection end with a Close 1012, reconnect to the other
    instance at once, and lose no message (those sent after the server's
    Close are re-sent on the new connection)."""
    from bench.harness.rolling import Settings as RollingSettings
    from bench.ws_rolling_restart import run_one

    settings = RollingSettings(restarts=2, shutdown_delay=1.5, inter_ms=250, fall=2, rise=2, warmup=1.0,
                               settle=0.6, tail=0.5)
    result = run_one("fastsrv-ws", "same-port", settings, clients=20)
    assert not result.get("error"), result
    # a message sent after the server's Close is dropped and re-sent on the
    # next connection: re-sent is allowed, lost is not
    assert result["sent"] > 500 and result["lost"] == 0 and result["resent"] < result["sent"] // 50, result
    assert set(result["closes"]) == {"1012"} and result["connect_failures"] == {}, result
    assert result["exit_statuses"] == [0, 0], result
    assert result["reconnect_ms_max"] < 500, result
