"""Delivery survives workers killed with SIGKILL mid-run: a real worker on RabbitMQ relays to a
real SMTP sink; nothing is lost, and nothing already recorded as delivered is sent again."""

import contextlib
import os
import signal
import time
import uuid
from collections import Counter

import pytest
from django.utils import timezone

from bounces.verp import message_id_from_verp
from conftest import subprocess_env
from delivery.tasks import deliver
from delivery.tests.sinks import SmtpSink
from messages.models import OutboundMessage, Recipient
from servers.models import DeliveryType
from streams.services import get_stream

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MESSAGES = 300
CONCURRENCY = 4
KILLS = 2


def make_messages(server, count):
    stream = get_stream(server, "outbound")
    messages = []
    for i in range(count):
        message_id = uuid.uuid4()
        messages.append(
            OutboundMessage(
                message_id=message_id,
                server=server,
                stream=stream,
                recipients=[f"ok{i}@example.net"],
                content=f"Message-ID: <{message_id}@test>\r\nSubject: {i}\r\n\r\nhi\r\n".encode(),
                received_at=timezone.now(),
            )
        )
    OutboundMessage.objects.bulk_create(messages)
    messages = list(OutboundMessage.objects.filter(server=server))
    Recipient.objects.bulk_create([Recipient(message=m, email=m.recipients[0]) for m in messages])
    return messages


def delivered_count():
    return Recipient.objects.filter(status=Recipient.Status.DELIVERED).count()


def test_killed_workers_lose_nothing(server, rabbitmq_url, start_process):
    from postmark_site.celery import app

    server.delivery_type = DeliveryType.LIVE
    server.save()
    # The real delivery queue: a worker re-queues in-doubt and deferred deliveries there.
    queue = "delivery"
    with SmtpSink() as sink:
        env = subprocess_env(
            CELERY_BROKER_URL=rabbitmq_url,
            OUTBOUND_SMTP_RELAY=f"smtp://127.0.0.1:{sink.port}?starttls=never",
            OUTBOUND_TIMEOUT=1,  # a recipient left 'sending' by a dead worker is retried after 3 s
        )
        args = ["-m", "celery", "-A", "postmark_site", "worker", "-l", "info", "--pool",
                "threads", "--concurrency", str(CONCURRENCY), "-Q", queue]  # fmt: skip

        def start_worker():
            # A fresh node name: the dead worker's exclusive control queue lingers a while.
            name = [
                "-n",
                f"kill-test-{time.monotonic_ns()}@%h",
                "--without-mingle",
                "--without-gossip",
            ]
            worker = start_process(args + name, env=env, name="worker")
            worker.wait_for("ready", timeout=60)
            return worker

        messages = make_messages(server, MESSAGES)
        with app.connection_for_write(rabbitmq_url) as connection:
            with contextlib.suppress(Exception):  # left over from another run
                connection.default_channel.queue_purge(queue)
            for message in messages:
                deliver.apply_async((message.pk,), connection=connection, queue=queue)

        worker = start_worker()
        for kill in range(KILLS):
            target = MESSAGES * (kill + 1) // (KILLS + 2)
            deadline = time.monotonic() + 60
            while delivered_count() < target and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(worker.proc.pid, signal.SIGKILL)
            worker.proc.wait()
            worker = start_worker()

        deadline = time.monotonic() + 120
        while delivered_count() < MESSAGES and time.monotonic() < deadline:
            time.sleep(0.2)
        worker.stop()

        per_message = Counter(message_id_from_verp(r.mail_from) for r in sink.messages)
    assert delivered_count() == MESSAGES, Counter(
        Recipient.objects.values_list("status", flat=True)
    )
    expected = {str(m.message_id) for m in messages}
    assert set(per_message) == expected  # every message reached the sink
    duplicates = sum(n - 1 for n in per_message.values())
    # Only a delivery in the few milliseconds between the sink's 250 and the commit recording it
    # can be sent again: at most one per worker slot and kill. Recorded ones never are.
    assert duplicates <= KILLS * CONCURRENCY, per_message.most_common(5)
