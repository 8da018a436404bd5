"""``python -m bench.pipeline --quick`` runs end to end (PostgreSQL + RabbitMQ) and writes sane
JSON. No timing thresholds: the figures belong to the benchmark, not to the test suite."""

import pytest

from bench.common import procfile_line
from conftest import require_service

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_pipeline_bench_quick(run_quick):
    require_service("PostgreSQL", "127.0.0.1", 5432)
    require_service("RabbitMQ", "127.0.0.1", 5672)
    _, result = run_quick("bench.pipeline", timeout=420)
    assert result["errors"] == {}
    processing = result["processing"]
    messages = result["config"]["messages"]
    for run in processing["runs"].values():
        assert run["completed"] and run["left_unprocessed"] == 0
        assert run["messages_per_second"] > 0
    assert processing["direct"]["messages"] == messages
    statuses = processing["statuses"]
    assert statuses.get("accepted", 0) == 0
    assert statuses["failed"] == processing["bounces"] > 0  # the unknown-stream ones
    e2e = result["e2e"]
    assert e2e["completed"] and e2e["delivered"] == e2e["accepted"] == messages
    assert e2e["messages_per_second"] > 0 and e2e["gateway_alone"]["messages_per_second"] > 0
    delivered = result["delivery"]
    assert delivered["completed"] and delivered["counted_at_sink"] == messages
    assert delivered["cpu_ms_per_recipient"] > 0
    versus = result["postfix"]
    assert versus["postfix"]["completed"] and versus["postfix"]["counted_at_sink"] == 300
    for label in ("scaled", "as make run"):
        assert versus[label]["completed"] and versus[label]["counted_at_sink"] == 300
    kill = result["kill"]
    assert kill["completed"] and kill["missing"] == 0
    assert kill["delivered_once"] + kill["duplicated"] == kill["accepted"]
    rss = result["rss"]  # the Procfile's worker, fed in several chunks
    assert rss["worker_command"] == procfile_line("worker")  # what `make run` runs
    assert rss["completed"] and rss["counted_at_sink"] == rss["messages"] == 500
    assert rss["chunk"] < rss["messages"]
    assert str(rss["worker_pid"]) in rss["by_process"]
    assert 0 < rss["first_mb"] <= rss["peak_mb"] <= rss["high_water_mb"]
    assert {g["goal"].split()[0] for g in result["goals"]} == {
        "processing",
        "delivery",
        "end",
        "versus",
        "run",
        "worker",
    }
