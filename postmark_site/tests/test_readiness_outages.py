"""/readyz of the web app (under gunicorn) and of the gateway (runsmtp --http) turn 503 when the
database or the broker goes away, name what failed, and recover when it is back.

The outages are real, on private servers this test starts and stops: a PostgreSQL cluster made
with initdb in a temporary directory and a redis-server as the broker, each on a free port (the
machine's shared services are never touched)."""

import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import IN_CI, ROOT, free_port, subprocess_env, wait_for
from smtpgw.tests.metrics_scrape import get, scrape

pytestmark = [pytest.mark.slow, pytest.mark.services]


def _missing(reason: str):
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: every service-backed test must run)")
    pytest.skip(reason)


def _as_postgres(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", "postgres", "--", *args]


class PrivatePostgres:
    def __init__(self):
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not binaries:
            _missing("PostgreSQL's initdb is not installed")
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                _missing("running as root without a postgres user for initdb")
        self.bin = Path(binaries[-1]).parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="readyz-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        subprocess.run(
            _as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust",
                          "-U", "postgres", "--no-sync"]),
            check=True, capture_output=True,
        )  # fmt: skip
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log")]
        if args[0] == "start":
            command += ["-o", options]
        subprocess.run(_as_postgres([*command, *args, "-w"]), check=True, capture_output=True)

    def start(self):
        self.pg_ctl("start")

    def stop(self):
        self.pg_ctl("stop", "-m", "fast")

    def remove(self):
        subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "stop",
                                     "-m", "immediate"]), capture_output=True)  # fmt: skip
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres():
    server = PrivatePostgres()
    server.start()
    yield server
    server.remove()


@pytest.fixture
def private_redis(start_process):
    binary = shutil.which("redis-server")
    if not binary:
        _missing("redis-server is not installed")
    port = free_port()

    def start():
        process = start_process([binary, "--bind", "127.0.0.1", "--port", str(port), "--save",
                                 "", "--appendonly", "no"], name="redis")  # fmt: skip
        process.wait_for("Ready to accept connections", timeout=20)
        return process

    return port, start


def ready(base: str) -> tuple[int, dict]:
    status, body, _ = get(base + "/readyz", timeout=15)
    return status, json.loads(body)


def test_readyz_follows_database_and_broker_outages(
    private_postgres, private_redis, start_process, tmp_path
):
    redis_port, start_redis = private_redis
    redis = start_redis()
    env = subprocess_env(
        DATABASE_URL=private_postgres.url,
        CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
        HEALTH_CHECK_TIMEOUT=1,
        CONN_MAX_AGE=60,
        PROMETHEUS_MULTIPROC_DIR=tmp_path / "metrics",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                   env=env, check=True, capture_output=True)  # fmt: skip
    web_port, http_port, smtp_port = free_port(), free_port(), free_port()
    web = start_process(
        ["-m", "gunicorn", "postmark_site.wsgi:application", "--config",
         "postmark_site/gunicorn.py", "--bind", f"127.0.0.1:{web_port}"],
        env=env, name="gunicorn",
    )  # fmt: skip
    gateway = start_process(
        ["manage.py", "runsmtp", "--listen", f"transactional=127.0.0.1:{smtp_port}",
         "--http", f"127.0.0.1:{http_port}"],
        env=env, name="runsmtp",
    )  # fmt: skip
    web.wait_for("Booting worker")
    gateway.wait_for("SMTP gateway ready")
    endpoints = [f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{http_port}"]
    for base in endpoints:
        wait_for(lambda base=base: ready(base)[0] == 200, timeout=20, what=f"{base} ready")

    private_postgres.stop()
    for base in endpoints:
        status, answer = ready(base)
        assert status == 503, answer
        assert answer["status"] == "unavailable"
        assert answer["failed"] == ["database", "migrations"]
        assert answer["checks"]["broker"] == "ok"
        assert answer["checks"]["migrations"] == "not checked: the database is unavailable"
        assert get(base + "/healthz")[0] == 200  # alive all the same
    # The web app's metrics still answer, saying the database gauges are missing.
    assert scrape(endpoints[0] + "/metrics").value("postmark_queue_gauges_up") == 0
    private_postgres.start()
    for base in endpoints:
        wait_for(lambda base=base: ready(base)[0] == 200, timeout=20, what=f"{base} recovers")
    assert scrape(endpoints[0] + "/metrics").value("postmark_queue_gauges_up") == 1

    redis.stop()
    for base in endpoints:
        status, answer = ready(base)
        assert status == 503, answer
        assert answer["failed"] == ["broker"]
        assert answer["checks"]["database"] == "ok"
    started = time.monotonic()
    start_redis()
    for base in endpoints:
        wait_for(lambda base=base: ready(base)[0] == 200, timeout=20, what=f"{base} recovers")
    assert time.monotonic() - started < 30
