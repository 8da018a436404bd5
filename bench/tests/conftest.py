"""What the benchmark tests share: running a benchmark the way ``python -m bench`` does."""

import json
import subprocess
import sys

import pytest

from bench.common import ROOT


@pytest.fixture
def run_quick(tmp_path):
    """``run_quick(module, *args, timeout=...)`` runs ``python -m module --quick args --json PATH``
    from the project root, asserts that it exited 0 and returns (its stdout, its JSON)."""

    def run(module: str, *args: str, timeout: float) -> tuple[str, dict]:
        out = tmp_path / f"{module}.json"
        done = subprocess.run(
            [sys.executable, "-m", module, "--quick", *args, "--json", str(out)],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout, json.loads(out.read_text())

    return run
