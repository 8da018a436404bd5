"""``python -m bench.faults --quick`` on two short rows: it starts a private PostgreSQL cluster and
a private RabbitMQ node, restarts the node mid-run, and leaves nothing behind. The figures belong
to the benchmark; what is checked is that each row ran, and counted what it should."""

import glob
import os
import shutil
from pathlib import Path

import pytest

from bench.faults import ROWS

pytestmark = [pytest.mark.slow]


def leftovers() -> set[str]:
    """Folders of private servers, and processes still running from one."""
    found = set(glob.glob("/tmp/faults-pg-*")) | set(glob.glob("/tmp/faults-rabbit-*"))
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "faults-pg-" in text or "faults-rabbit-" in text:
            found.add(text[:200])
    return found


def test_faults_bench_quick(run_quick):
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb") or not shutil.which("rabbitmq-server"):
        pytest.skip("initdb and rabbitmq-server are needed for the private servers")
    before = leftovers()
    _, result = run_quick(
        "bench.faults", "--rows", "relay-451,rabbitmq", "--relay-error-seconds", "8",
        "--restart-seconds", "4", "--warmup", "10", timeout=900,
    )  # fmt: skip
    assert result["errors"] == {}
    assert leftovers() <= before
    for key in ("relay-451", "rabbitmq"):
        row = result["rows"][key]
        assert row["acknowledged"] > 0 and row["baseline_per_second"] > 0
        assert row["drained_after"] is not None, row
        assert row["at_sink"] + row["lost"] + row["waiting"] + row["failed"] >= row["acknowledged"]
        assert row["fault_seconds"] >= 4
    assert result["rows"]["relay-451"]["lost"] == result["rows"]["relay-451"]["failed"] == 0
    assert [g["goal"].split(":")[0] for g in result["goals"]] == ["faults", "faults"]
    assert set(ROWS) == {"blackhole", "relay-421", "relay-451", "postgres", "rabbitmq", "oom",
                         "dns", "disk"}  # fmt: skip
    assert os.path.exists(result["config"]["json"])
