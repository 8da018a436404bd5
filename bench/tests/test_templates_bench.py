"""``python -m bench.templates --quick`` renders and writes sane JSON. No timing thresholds: the
figures belong to the benchmark, not to the test suite."""

import pytest

pytestmark = pytest.mark.slow


def test_templates_bench_quick(run_quick):
    _, result = run_quick("bench.templates", timeout=180)
    figures = result["results"]
    assert figures["template_bytes"] > 20_000
    assert 0 < figures["render_us"] <= figures["render_inline_us"]
    assert len(result["goals"]) == 1
