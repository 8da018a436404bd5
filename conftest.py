"""Fixtures shared by every app's tests: sample data, service availability, real processes
(a worker, an SMTP sink, a gateway process and credentials to use against it)."""

import fcntl
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
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


# What a test marked ``no_db`` may not use: a database (pytest-django refuses any other access
# in process) or a child process that could reach one. ``make test`` runs such tests on SQLite
# only: a second run on PostgreSQL would test the same Python again.
DATABASE_FIXTURES = frozenset(
    {"db", "transactional_db", "live_server", "django_db_setup", "django_db_reset_sequences",
     "django_db_serialized_rollback", "start_process", "gateway", "worker", "relaying_worker"}
)  # fmt: skip


def pytest_collection_modifyitems(config, items):
    wrong = [
        item.nodeid
        for item in items
        if item.get_closest_marker("no_db")
        and (item.get_closest_marker("django_db") or DATABASE_FIXTURES & set(item.fixturenames))
    ]
    if wrong:
        raise pytest.UsageError("marked no_db but uses a database: " + ", ".join(wrong))


class RsaKeyPool:
    """``core.dkim_keys.generate`` for the tests: an RSA 2048 key pair costs about 0.1 s of CPU,
    and hundreds of tests make domains. Inside a test every call still gives a key pair no other
    call of that test got (made by the real function, kept, and handed out again in later tests,
    whose databases are separate); outside a test (a module's or session's fixtures) every call
    makes a new one. Ed25519 keys cost nothing and are always new."""

    def __init__(self, generate):
        self.generate = generate
        self.made: list[tuple[str, str]] = []
        self.used = None  # keys handed out in the current test; None between tests
        self.lock = threading.Lock()

    def __call__(self, algorithm: str) -> tuple[str, str]:
        from core import dkim_keys

        with self.lock:
            if algorithm != dkim_keys.RSA or self.used is None:
                return self.generate(algorithm)
            if self.used == len(self.made):
                self.made.append(self.generate(algorithm))
            self.used += 1
            return self.made[self.used - 1]


@pytest.fixture(scope="session")
def _rsa_key_pool():
    from core import dkim_keys

    pool = RsaKeyPool(dkim_keys.generate)
    dkim_keys.generate = pool
    yield pool
    dkim_keys.generate = pool.generate


@pytest.fixture(autouse=True)
def _pooled_rsa_keys(request, _rsa_key_pool):
    """Tests marked ``fresh_dkim_keys`` (those of the generator itself) get the real function."""
    if request.node.get_closest_marker("fresh_dkim_keys"):
        yield
        return
    _rsa_key_pool.used = 0
    yield
    _rsa_key_pool.used = None


@pytest.fixture(scope="session", autouse=True)
def _no_metrics_files_of_earlier_runs():
    """Prometheus' multiprocess files of processes from earlier runs (same DATA_DIR) would only
    make every scrape slower: removed at the start, except this process's own."""
    from django.conf import settings

    for path in Path(settings.PROMETHEUS_MULTIPROC_DIR).glob("*.db"):
        if not path.stem.endswith(f"_{os.getpid()}"):
            path.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def _empty_embedded_queues():
    """Each test starts with the embedded broker's queues empty: tasks an earlier test left there
    (no worker ran them) would make a sweep think the workers are behind (``core.queues``)."""
    from django.conf import settings

    if settings.EMBEDDED_BROKER:
        for path in (settings.DATA_DIR / "queue").glob("*.msg"):
            path.unlink(missing_ok=True)


@pytest.fixture
def rabbitmq_url():
    """Held under a lock across processes: two runs of the suite at once (``make test`` runs the
    SQLite and the PostgreSQL one together) share the broker, and a test that drains the real
    ``delivery`` queue would take the other run's tasks."""
    require_service("RabbitMQ", "127.0.0.1", 5672)
    with open(Path(tempfile.gettempdir()) / "postmark-tests-rabbitmq.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield RABBITMQ_URL


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


# --- A real gateway process on free loopback ports, and credentials to use against it -------------


@dataclass
class Gateway:
    process: Process
    port: int  # transactional, plain (STARTTLS available)
    broadcast_port: int
    tls_port: int  # transactional, implicit TLS
    bounce_port: int = 0  # the bounce MX

    def smtp(self, port: int | None = None, **kwargs) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", port or self.port, timeout=20, **kwargs)
        client.ehlo("client.example")
        return client

    def smtp_tls(self) -> smtplib.SMTP_SSL:
        client = smtplib.SMTP_SSL("127.0.0.1", self.tls_port, timeout=20, context=insecure())
        client.ehlo("client.example")
        return client


BOUNCE_DOMAIN = "bounces.test.example"


def insecure() -> ssl.SSLContext:
    """The gateway's certificate is self-signed in tests."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def start_gateway(log_path, **env) -> Gateway:
    port, broadcast_port, tls_port, bounce_port = free_port(), free_port(), free_port(), free_port()
    args = [
        sys.executable,
        "manage.py",
        "runsmtp",
        "--listen",
        f"transactional=127.0.0.1:{port}",
        "--listen",
        f"broadcast=127.0.0.1:{broadcast_port}",
        "--listen",
        f"transactional+tls=127.0.0.1:{tls_port}",
        "--listen",
        f"bounce=127.0.0.1:{bounce_port}",
    ]
    settings = {
        "SMTP_AUTH_CACHE_SECONDS": 0,
        "SMTP_SHUTDOWN_GRACE": 5,
        "BOUNCE_DOMAIN": BOUNCE_DOMAIN,
        **env,
    }
    process = Process(args, subprocess_env(**settings), log_path)
    process.wait_for("SMTP gateway ready")
    return Gateway(process, port, broadcast_port, tls_port, bounce_port)


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker, tmp_path_factory):
    """One gateway process for a test module (its throttle allows plenty of failures)."""
    running = start_gateway(
        tmp_path_factory.mktemp("gateway") / "runsmtp.log", SMTP_AUTH_FAILURE_LIMIT=1000
    )
    yield running
    running.process.stop()


@dataclass
class Credentials:
    server: object
    server_token: str
    access_key: str
    secret: str
    broadcast_key: str
    broadcast_secret: str


@pytest.fixture
def creds(transactional_db):
    from streams.services import create_server, create_smtp_token, get_stream

    server = create_server("Gateway test")
    token, secret = create_smtp_token(get_stream(server, "outbound"))
    btoken, bsecret = create_smtp_token(get_stream(server, "broadcast"))
    return Credentials(
        server, server.api_tokens[0], token.access_key, secret, btoken.access_key, bsecret
    )


MESSAGE = (
    b"From: App <app@example.com>\r\n"
    b"To: User <user@example.net>\r\n"
    b"Subject: Hello\r\n"
    b"Message-ID: <hello@example.com>\r\n"
    b"\r\n"
    b"Hello there.\r\n"
)


def queued_id(reply: bytes) -> str:
    """The MessageID from '2.0.0 Ok: queued as <id>'."""
    text = reply.decode()
    assert "queued as " in text, text
    return text.rsplit("queued as ", 1)[1].strip()


def send(client: smtplib.SMTP, message: bytes = MESSAGE, rcpts=("user@example.net",)) -> str:
    """Send one message and return the id from the 250 reply."""
    client.mail("app@example.com")
    for rcpt in rcpts:
        code, reply = client.rcpt(rcpt)
        assert code == 250, reply
    code, reply = client.data(message)
    assert code == 250, reply
    return queued_id(reply)
