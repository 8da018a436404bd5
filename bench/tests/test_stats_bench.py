"""``python -m bench.stats --quick`` fills, builds the roll-ups, times every stats request and
cleans up, and writes sane JSON. No timing thresholds: the figures belong to the benchmark."""

import pytest

from conftest import require_service

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_stats_bench_quick(run_quick):
    require_service("PostgreSQL", "127.0.0.1", 5432)
    _, result = run_quick("bench.stats", timeout=600)
    requests = result["requests"]
    assert {"overview", "sends", "bounces", "opens/platforms", "clicks/location"} <= set(requests)
    for timing in requests.values():
        assert timing["status"] == 200
        assert 0 < timing["median_ms"] <= timing["max_ms"]
    assert result["rollup_rows"] > 0 and result["refresh_ms"] > 0
    assert len(result["goals"]) == len(requests)
