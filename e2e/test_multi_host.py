"""The production topology on one machine: two gateway groups on two loopback addresses (as two
hosts would be), dedicated workers per queue, one beat, on PostgreSQL and RabbitMQ (a vhost of
this test's own). Mail goes through both groups while one gateway group and one delivery worker
are killed (SIGKILL); every acknowledged message is delivered to the sink, and the metrics of
both "hosts" add up:

- the gateways' accepted messages are the submissions stored, and every one was processed:
  accepted = processed + failed (SMTPApiError only);
- a recipient's delivery is counted once, however often the sink saw it (at-least-once);
- each webhook post is counted once.

See docs/topology.svg (drawn from docs/topology.dot) for the picture.
"""

import contextlib
import http.server
import os
import signal
import smtplib
import subprocess
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connection

from bounces.verp import message_id_from_verp
from conftest import (
    IN_CI,
    MESSAGE,
    Process,
    free_port,
    queued_id,
    require_service,
    subprocess_env,
    wait_for,
)
from delivery.tests.sinks import SmtpSink
from messages.models import Recipient, Submission
from servers.models import DeliveryType
from smtpgw.tests.metrics_scrape import scrape
from streams.services import get_stream

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.django_db(transaction=True)]

HOSTS = ("127.0.0.1", "127.0.0.2")
MESSAGES_PER_HOST = 120
BROKEN_EVERY = 15  # every 15th message names an unknown stream: an SMTPApiError, never sent
DELIVERY_CONCURRENCY = 4
CLIENT_THREADS = 6


def _skip_or_fail(reason: str):
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: every service-backed test must run)")
    pytest.skip(reason)


@pytest.fixture
def rabbitmq_vhost():
    """A RabbitMQ vhost for this run only (rabbitmqctl), removed afterwards."""
    require_service("RabbitMQ", "127.0.0.1", 5672)
    vhost = f"multihost-{uuid.uuid4().hex[:10]}"
    try:
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True,
                       capture_output=True, timeout=60)  # fmt: skip
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*",
                        ".*"], check=True, capture_output=True, timeout=60)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        _skip_or_fail(f"cannot make a RabbitMQ vhost of this test's own with rabbitmqctl: {exc}")
    yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)


class WebhookReceiver(http.server.ThreadingHTTPServer):
    def __init__(self):
        self.posts = Counter()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(handler):  # noqa: N802, N805
                body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
                self.posts[body] += 1
                handler.send_response(200)
                handler.send_header("Content-Length", "0")
                handler.end_headers()

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


def descendants(pid: int) -> list[int]:
    """The process's children, grandchildren, ... (from /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found += [int(child), *descendants(int(child))]
    return found


def kill_group(process: Process) -> None:
    """SIGKILL a process and everything it started, as a host losing power would."""
    for pid in [*descendants(process.proc.pid), process.proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.proc.wait()


def worker_metrics(directory: Path):
    """What the web app's /metrics reports from a host's metrics directory."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from core.metrics import WORKER_PREFIXES, _Prefixed
    from smtpgw.tests.metrics_scrape import Sample

    registry = CollectorRegistry()
    registry.register(_Prefixed(str(directory), WORKER_PREFIXES))
    samples = Sample()
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_two_hosts_lose_a_gateway_and_a_delivery_worker(
    creds, rabbitmq_vhost, start_process, tmp_path
):
    if connection.vendor != "postgresql":
        pytest.skip("the multi-host topology runs on PostgreSQL (the PostgreSQL pass of make test)")
    from webhooks.models import Webhook

    creds.server.delivery_type = DeliveryType.LIVE
    creds.server.save()
    receiver = WebhookReceiver()
    stream = get_stream(creds.server, "outbound")
    Webhook.objects.create(stream=stream, url=f"http://127.0.0.1:{receiver.port}/hook",
                           delivery_enabled=True)  # fmt: skip
    sink = SmtpSink()
    sink.__enter__()
    try:
        _run_topology(creds, rabbitmq_vhost, start_process, tmp_path, sink, receiver)
    finally:
        sink.__exit__(None, None, None)
        receiver.shutdown()


def _run_topology(creds, broker_url, start_process, tmp_path, sink, receiver):
    from webhooks.models import WebhookDelivery

    smtp_port = free_port()
    http_port = free_port()
    metrics_dirs = {host: tmp_path / f"metrics-{host}" for host in HOSTS}
    for directory in metrics_dirs.values():
        directory.mkdir()

    def env_for(host, **extra):
        return subprocess_env(
            CELERY_BROKER_URL=broker_url,
            PROMETHEUS_MULTIPROC_DIR=metrics_dirs[host],
            OUTBOUND_SMTP_RELAY=f"smtp://127.0.0.1:{sink.port}?starttls=never",
            OUTBOUND_TIMEOUT=1,  # a recipient left 'sending' by a dead worker is free after 3 s
            SWEEP_AFTER_SECONDS=3,
            SWEEP_INTERVAL_SECONDS=1,
            WEBHOOK_SWEEP_INTERVAL_SECONDS=1,
            WEBHOOK_ALLOW_PRIVATE_URLS="true",
            SMTP_AUTH_CACHE_SECONDS=0,
            SMTP_SHUTDOWN_GRACE=2,
            **extra,
        )

    def gateway(host):
        process = start_process(
            ["manage.py", "runsmtp", "--processes", "2",
             "--listen", f"transactional={host}:{smtp_port}", "--http", f"{host}:{http_port}"],
            env=env_for(host), name=f"smtp-{host}",
        )  # fmt: skip
        return process

    def worker(host, queues, name, concurrency=2):
        return start_process(
            ["-m", "celery", "-A", "postmark_site", "worker", "-Q", queues, "-l", "info",
             "--pool", "threads", "--concurrency", str(concurrency), "--without-mingle",
             "--without-gossip", "-n", f"{name}-{uuid.uuid4().hex[:6]}@{host}"],
            env=env_for(host), name=name,
        )  # fmt: skip

    gateways = {host: gateway(host) for host in HOSTS}
    workers = [
        worker(HOSTS[0], "processing,celery", "processing", concurrency=4),
        worker(HOSTS[0], "delivery", "delivery-a", concurrency=DELIVERY_CONCURRENCY),
        worker(HOSTS[1], "delivery", "delivery-b", concurrency=DELIVERY_CONCURRENCY),
        worker(HOSTS[1], "webhooks", "webhooks", concurrency=4),
    ]
    beat = start_process(
        ["-m", "celery", "-A", "postmark_site", "beat", "-l", "info",
         "-s", str(tmp_path / "beat-schedule")],
        env=env_for(HOSTS[0]), name="beat",
    )  # fmt: skip
    for process in gateways.values():
        process.wait_for("SMTP gateway ready", timeout=60)
    for process in workers:
        process.wait_for("ready", timeout=90)
    beat.wait_for("beat: Starting", timeout=60)

    acknowledged: dict[str, str] = {}  # MessageID -> host
    broken: set[str] = set()
    lock = threading.Lock()
    sent = Counter()

    def send_batch(host: str, numbers: list[int]) -> None:
        client = None
        for number in numbers:
            message = MESSAGE
            if number % BROKEN_EVERY == 0:
                message = b"X-PM-Message-Stream: no-such-stream\r\n" + MESSAGE
            try:
                if client is None:
                    client = smtplib.SMTP(host, smtp_port, timeout=10)
                    client.login(creds.server_token, creds.server_token)
                client.mail("app@example.com")
                client.rcpt(f"ok{number}@example.net")
                code, reply = client.data(message)
            except (OSError, smtplib.SMTPException):
                client = None  # the gateway went away: this message was never acknowledged
                continue
            finally:
                with lock:
                    sent[host] += 1
            if code == 250:
                with lock:
                    message_id = queued_id(reply)
                    acknowledged[message_id] = host
                    if number % BROKEN_EVERY == 0:
                        broken.add(message_id)
        if client is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                client.quit()

    chunks = [
        (host, list(range(start, MESSAGES_PER_HOST, CLIENT_THREADS // 2)))
        for host in HOSTS
        for start in range(CLIENT_THREADS // 2)
    ]
    started = time.monotonic()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        futures = [pool.submit(send_batch, host, numbers) for host, numbers in chunks]
        # One gateway group goes down a third of the way through its share, the other stays.
        wait_for(lambda: sent[HOSTS[0]] >= MESSAGES_PER_HOST // 3, timeout=60, what="sending")
        kill_group(gateways[HOSTS[0]])
        # One delivery worker goes down with deliveries in flight.
        wait_for(
            lambda: Recipient.objects.filter(status=Recipient.Status.DELIVERED).count() >= 40,
            timeout=60, what="deliveries under way",
        )  # fmt: skip
        kill_group(workers[1])
        for future in futures:
            future.result()
    assert len(acknowledged) >= MESSAGES_PER_HOST  # the surviving group took its whole share

    # The dead gateway group comes back (as systemd restarts it) and serves its metrics again.
    gateways[HOSTS[0]] = gateway(HOSTS[0])
    gateways[HOSTS[0]].wait_for("SMTP gateway ready", timeout=60)

    good = set(acknowledged) - broken
    wait_for(
        lambda: Recipient.objects.filter(
            message__message_id__in=good, status=Recipient.Status.DELIVERED
        ).count() == len(good)
        and not Submission.objects.filter(status__in=["accepted", "rejected"]).exists(),
        timeout=90, what="every acknowledged message delivered",
    )  # fmt: skip
    wait_for(
        lambda: not WebhookDelivery.objects.filter(status="pending").exists(),
        timeout=60, what="the webhook posts",
    )  # fmt: skip
    time.sleep(0.5)  # the last on-commit counters

    # Every acknowledged message reached the sink; duplicates only from the killed worker.
    per_message = Counter(message_id_from_verp(r.mail_from) for r in sink.messages)
    assert good <= set(per_message)
    assert not broken & set(per_message)
    duplicates = sum(n - 1 for n in per_message.values())
    assert duplicates <= DELIVERY_CONCURRENCY, per_message.most_common(5)

    # The metrics add up across both hosts.
    gateway_samples = [scrape(f"http://{host}:{http_port}/metrics") for host in HOSTS]
    accepted = sum(s.value("postmark_smtp_accepted_messages_total") for s in gateway_samples)
    worker_samples = [worker_metrics(metrics_dirs[host]) for host in HOSTS]

    def workers_total(name, **labels):
        return sum(s.value(name, **labels) for s in worker_samples)

    stored = Submission.objects.count()
    processed = workers_total("postmark_processing_submissions_total", result="processed")
    failed = workers_total("postmark_processing_submissions_total", result="failed")
    assert stored >= len(acknowledged)
    # A gateway killed between a commit and its count may miss a few; never counts extra.
    assert stored - 8 <= accepted <= stored
    assert processed + failed == stored
    assert failed == Submission.objects.filter(status="failed").count() >= len(broken)
    delivered = Recipient.objects.filter(status=Recipient.Status.DELIVERED).count()
    counted = workers_total("postmark_delivery_outcomes_total", outcome="Delivered")
    # Counted once per recipient (never per duplicate); the killed worker may have died between
    # a commit and its count.
    assert delivered - DELIVERY_CONCURRENCY <= counted <= delivered
    posts = workers_total("postmark_webhook_posts_total", status="200")
    assert posts == WebhookDelivery.objects.filter(status="delivered").count() == delivered
    assert sum(receiver.posts.values()) == posts
    assert workers_total("postmark_worker_tasks_total", task="outbound.tasks.sweep") > 0
    assert time.monotonic() - started < 120
