"""``python -m bench.inbound --quick`` posts every accepted message once and writes sane JSON. No
timing thresholds: the figures belong to the benchmark, not to the test suite."""

import pytest

pytestmark = pytest.mark.slow


def test_inbound_bench_quick(run_quick):
    _, result = run_quick("bench.inbound", timeout=600)
    assert result["accepted"] == result["posts"] == result["config"]["messages"]
    assert result["statuses"]["processed"] == result["accepted"]
    assert result["parsing"]["parse_ms"] > 0
    assert result["sink_per_second"] > 0
    assert len(result["goals"]) == 2
