"""``python -m bench.messages_api --quick`` fills, times and cleans up, and writes sane JSON. No
timing thresholds: the figures belong to the benchmark, not to the test suite."""

import pytest

from conftest import require_service

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_messages_api_bench_quick(run_quick):
    require_service("PostgreSQL", "127.0.0.1", 5432)
    _, result = run_quick("bench.messages_api", timeout=300)
    requests = result["requests"]
    assert {"recipient", "fromemail (10 %)", "tag", "status=queued", "subject (a rare part)",
            "fromdate/todate", "messagestream", "metadata_order", "details", "opens",
            "clicks"} <= set(requests)  # fmt: skip
    for timing in requests.values():
        assert 0 < timing["median_ms"] <= timing["p95_ms"]
    assert requests["metadata_order"]["total_count"] >= 1
    assert requests["recipient"]["total_count"] >= 1
    assert requests["tag"]["returned"] == min(500, requests["tag"]["total_count"])
    assert requests["details"]["total_count"] is None
    assert len(result["goals"]) == len(requests) - 1  # every request but the baseline
