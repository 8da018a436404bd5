"""The gateway benchmark runs end to end (figures are not asserted: the machines are noisy)."""

import pytest

from bench.common import procfile_line
from conftest import require_service


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


@pytest.mark.slow
@pytest.mark.services
def test_quick_run_as_make_run(run_quick):
    """``--quick --as-run-only``: one gateway process and the Procfile's worker on PostgreSQL and
    a RabbitMQ virtual host of their own, against a one-process sink; the worker delivers."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    require_service("RabbitMQ", "127.0.0.1", 5672)
    stdout, result = run_quick("bench.gateway", "--as-run-only", timeout=90)
    as_run = result["as_run"]
    assert as_run["worker_command"] == procfile_line("worker")  # what `make run` runs
    assert as_run["worker_alive"]
    best = as_run["loadgen"]["best"]
    assert best["gateway"]["messages_per_second"] > 0 and best["sink"]["messages_per_second"] > 0
    assert as_run["durability"]["passed"], as_run["durability"]
    assert as_run["delivered_during_runs"] is None or as_run["delivered_during_runs"] > 0
    assert [g["goal"] for g in result["goals"]] == [
        "gateway as make run (1 process + worker) >= 0.8x the sink"
    ]
    assert "loadgen" not in result and "data" not in result
    assert "as make run" in stdout
