"""``python -m bench.dkim --quick`` signs with every key set and writes sane JSON. No timing
thresholds: the figures belong to the benchmark, not to the test suite."""

import pytest

pytestmark = pytest.mark.slow


def test_dkim_bench_quick(run_quick):
    _, result = run_quick("bench.dkim", timeout=180)
    results = result["results"]
    assert set(results) == {"rsa", "ed25519", "rsa+ed25519"}
    assert [results[k]["signatures"] for k in ("rsa", "ed25519", "rsa+ed25519")] == [1, 1, 2]
    for figures in results.values():
        assert figures["unsigned_us"] > 0 and figures["signed_us"] > 0
    assert len(result["goals"]) == 3
