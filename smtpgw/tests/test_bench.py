"""The gateway benchmark runs end to end (figures are not asserted: the machines are noisy)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_benchmark_runs_and_checks_durability(tmp_path):
    """``--quick`` on SQLite: both servers take mail and every 250 is a stored row."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "smtpgw.bench", "--quick", "--database", "sqlite", "--json", out],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    best = result["loadgen"]["best"]
    assert best["gateway"]["messages_per_second"] > 0
    assert best["sink"]["messages_per_second"] > 0
    assert result["durability"]["passed"], result["durability"]
    assert result["durability"]["rows"] > 0
    assert "PASS" in done.stdout or "MISS" in done.stdout
