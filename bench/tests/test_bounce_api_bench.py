"""``python -m bench.bounce_api --quick`` fills, times and cleans up, and writes sane JSON. No
timing thresholds: the figures belong to the benchmark, not to the test suite."""

import pytest

from conftest import require_service

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_bounce_api_bench_quick(run_quick):
    require_service("PostgreSQL", "127.0.0.1", 5432)
    _, result = run_quick("bench.bounce_api", timeout=120)
    requests = result["requests"]
    assert {"type", "inactive", "emailFilter", "tag", "messageID", "fromdate/todate",
            "messagestream", "deliverystats"} <= set(requests)  # fmt: skip
    for timing in requests.values():
        assert 0 < timing["median_ms"] <= timing["p95_ms"]
    assert requests["messageID"]["total_count"] == 1
    assert requests["type"]["returned"] == min(500, requests["type"]["total_count"])
    assert len(result["goals"]) == len(requests) - 1  # every request but the baseline
