"""The gateway benchmark runs end to end (figures are not asserted: the machines are noisy)."""

import pytest


@pytest.mark.slow
def test_quick_benchmark_runs_and_checks_durability(run_quick):
    """``--quick`` on SQLite: both servers take mail and every 250 is a stored row."""
    stdout, result = run_quick("bench.gateway", "--database", "sqlite", timeout=120)
    best = result["loadgen"]["best"]
    assert best["gateway"]["messages_per_second"] > 0
    assert best["sink"]["messages_per_second"] > 0
    assert result["durability"]["passed"], result["durability"]
    assert result["durability"]["rows"] > 0
    assert "PASS" in stdout or "MISS" in stdout
    # The DATA phase fed the gateway and the sink the same inputs, and both answered as aiosmtpd.
    for server in ("gateway", "sink"):
        figures = result["data"][server]
        assert figures["endless"]["reply"].startswith("500"), figures["endless"]
        assert figures["lines"]["reply_codes"] == ["250"], figures["lines"]
        assert figures["beside"]["beside_messages"] > 0
    goals = [goal["goal"] for goal in result["goals"]]
    assert any("without CRLF" in goal for goal in goals)
    assert any("empty lines" in goal for goal in goals)
