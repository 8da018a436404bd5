"""``python -m bounces.bench --quick`` fills, times and cleans up, and writes sane JSON. No timing
thresholds: the figures belong to the benchmark, not to the test suite."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, require_service

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_bounces_bench_quick(tmp_path):
    require_service("PostgreSQL", "127.0.0.1", 5432)
    out = tmp_path / "bounces-bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bounces.bench", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    requests = result["requests"]
    assert {"type", "inactive", "emailFilter", "tag", "messageID", "fromdate/todate",
            "messagestream", "deliverystats"} <= set(requests)  # fmt: skip
    for timing in requests.values():
        assert 0 < timing["median_ms"] <= timing["p95_ms"]
    assert requests["messageID"]["total_count"] == 1
    assert requests["type"]["returned"] == min(500, requests["type"]["total_count"])
    assert len(result["goals"]) == len(requests) - 1  # every request but the baseline
