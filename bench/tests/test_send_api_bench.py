"""``python -m bench.send_api --quick`` runs the gateway and gunicorn, sends batches, checks that
every MessageID answered is stored, cleans up and writes sane JSON. No timing thresholds: the
figures belong to the benchmark, not to the test suite."""

import pytest

from conftest import require_service

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_send_api_bench_quick(run_quick):
    require_service("PostgreSQL", "127.0.0.1", 5432)
    stdout, result = run_quick(
        "bench.send_api", "--batches", "2", "--batch-size", "50", "--messages", "100", timeout=240
    )
    assert result["api"]["messages_ok"] == 100 and result["api"]["messages_failed"] == 0
    assert result["stored"] == {"answered": 100, "stored": 100}
    assert result["smtp"]["messages_ok"] == 100
    assert result["api"]["messages_per_second"] > 0 and result["ratio_to_smtp"] > 0
    assert [g["passed"] for g in result["goals"]][1] is True
    assert "POST /email/batch" in stdout
