"""Fixtures shared by every app's tests: sample data, service availability, real processes."""

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from bench.common import free_port  # noqa: F401 (tests import it from here)

ROOT = Path(__file__).resolve().parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip with a clear reason when a service is down, except in CI, where that is a failure."""
    if reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: every service-backed test must run)")
    pytest.skip(f"{message}; start it to run this test")


@pytest.fixture(scope="session", autouse=True)
def _no_metrics_files_of_earlier_runs():
    """Prometheus' multiprocess files of processes from earlier runs (same DATA_DIR) would only
    make every scrape slower: removed at the start, except this process's own."""
    from django.conf import settings

    for path in Path(settings.PROMETHEUS_MULTIPROC_DIR).glob("*.db"):
        if not path.stem.endswith(f"_{os.getpid()}"):
            path.unlink(missing_ok=True)


@pytest.fixture
def rabbitmq_url():
    require_service("RabbitMQ", "127.0.0.1", 5672)
    return RABBITMQ_URL


@pytest.fixture
def redis_url():
    require_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def database_url_for_subprocess() -> str:
    """The URL of the database the tests run on, for a worker or gateway started as a process."""
    from django.db import connection

    cfg = connection.settings_dict
    if cfg["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{cfg['NAME']}"
    user = cfg.get("USER") or ""
    auth = f"{user}:{cfg.get('PASSWORD') or ''}@" if user else ""
    return (
        f"postgres://{auth}{cfg.get('HOST') or '127.0.0.1'}:{cfg.get('PORT') or 5432}/{cfg['NAME']}"
    )


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="postmark_site.settings",
        DATABASE_URL=database_url_for_subprocess(),
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Process:
    """A child process whose output goes to a log file, stopped (and reaped) by the fixture."""

    def __init__(self, args, env, log_path: Path):
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(
            f"{text!r} not seen in the output of {self.proc.args}:\n{self.output()}"
        )

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def start_process(tmp_path):
    """Start ``python ARGS...`` (or a command) as a child process; all are stopped at teardown."""
    started: list[Process] = []

    def start(args, env=None, name="process") -> Process:
        if args[0] in ("-m", "manage.py"):
            args = [sys.executable, *args]
        process = Process(args, env or subprocess_env(), tmp_path / f"{name}-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()


def accepted_submission(server, raw: bytes = b"x", rcpts=(), **fields):
    """A submission as the gateway commits it, for tests that start after the 250."""
    from django.utils import timezone

    from messages.models import Submission

    values = {
        "message_id": uuid.uuid4(),
        "server": server,
        "endpoint": "transactional",
        "credential_kind": "smtp_token" if fields.get("stream") else "server_token",
        "client_address": "127.0.0.1",
        "mail_from": "app@example.com",
        "rcpt_to": list(rcpts),
        "size": len(raw),
        "raw": raw,
        "received_at": timezone.now(),
    }
    values.update(fields)
    return Submission.objects.create(**values)


# The sender domains of the test data (RFC 2606's): verified, as an operator's own would be, so
# every test that is not about sender identity sends as it always did. Tests of the sender rules
# use other domains.
TEST_SENDER_DOMAINS = ("example.com", "example.org", "example.net")


@pytest.fixture(autouse=True)
def verified_test_domains(request):
    marker = request.node.get_closest_marker("django_db")
    names = set(request.fixturenames)
    if marker is None and not names & {"db", "transactional_db", "live_server"}:
        return
    transactional = bool(marker and marker.kwargs.get("transaction")) or bool(
        names & {"transactional_db", "live_server"}
    )
    request.getfixturevalue("transactional_db" if transactional else "db")
    from domains.models import Domain

    for name in TEST_SENDER_DOMAINS:
        Domain.objects.get_or_create(name=name, defaults={"dkim_verified": True})


@pytest.fixture
def server(db):
    from streams.services import create_server

    return create_server("Test server")


@pytest.fixture
def other_server(db):
    from streams.services import create_server

    return create_server("Other server")


@pytest.fixture
def worker(start_process):
    """A real Celery worker process on the embedded filesystem queue the gateway publishes to."""
    process = start_process(
        ["-m", "celery", "-A", "postmark_site", "worker", "-l", "info", "--pool", "threads"],
        env=subprocess_env(CELERY_BROKER_URL=""),
        name="worker",
    )
    process.wait_for("ready", timeout=60)
    return process


@pytest.fixture
def relay_sink():
    """A local SMTP sink (``delivery.tests.sinks``) for a worker process to relay to."""
    from delivery.tests.sinks import SmtpSink

    with SmtpSink() as running:
        yield running


@pytest.fixture
def relaying_worker(relay_sink, start_process):
    """A real Celery worker process on the embedded queue that relays to ``relay_sink``."""
    process = start_process(
        ["-m", "celery", "-A", "postmark_site", "worker", "-l", "info", "--pool", "threads"],
        env=subprocess_env(
            CELERY_BROKER_URL="",
            OUTBOUND_SMTP_RELAY=f"smtp://127.0.0.1:{relay_sink.port}?starttls=never",
        ),
        name="worker",
    )
    process.wait_for("ready", timeout=60)
    return process


NODE_CLIENTS = ROOT / "clients" / "node"


@pytest.fixture
def postmark_js():
    """Postmark's Node.js client (clients/node, installed by ``make test``), unmodified: call
    ``postmark_js(base_url, "Server"|"Account", token, method, *args)`` → the parsed outcome,
    ``{"ok": True, "result": ...}`` or ``{"ok": False, "code": ..., "statusCode": ..., ...}``."""
    import json
    import shutil

    if shutil.which("node") is None or not (NODE_CLIENTS / "node_modules" / "postmark").is_dir():
        message = "Node.js or clients/node/node_modules is missing (make test installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)

    def call(base_url: str, kind: str, token: str, method: str, *args):
        done = subprocess.run(
            ["node", "call.js", base_url, kind, token, method, *(json.dumps(a) for a in args)],
            cwd=NODE_CLIENTS, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return call


@pytest.fixture
def live(server):
    """The test server, delivering for real (Live)."""
    from servers.models import DeliveryType

    server.delivery_type = DeliveryType.LIVE
    server.save()
    return server


@pytest.fixture
def sink(settings):
    """A real local SMTP sink that this process relays to."""
    from delivery.tests.sinks import SmtpSink

    with SmtpSink() as running:
        settings.OUTBOUND_SMTP_RELAY = f"smtp://127.0.0.1:{running.port}?starttls=never"
        yield running
