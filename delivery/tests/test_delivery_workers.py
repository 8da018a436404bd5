"""Delivery by real Celery worker processes on the embedded filesystem queue, to a real SMTP sink.

The same delivery batch is published twice (as a broker redelivers a task whose first run is still
going) and two worker processes run it at once: each recipient is sent one copy, and the poison in
the batch (an SMTPUTF8 address, to a sink that does not offer SMTPUTF8) bounces alone while the
three ordinary messages beside it are delivered.
"""

import time

import pytest
from django.conf import settings

from bounces.models import Bounce
from conftest import subprocess_env, wait_for
from delivery import tasks
from delivery.tests.sinks import SmtpSink
from delivery.tests.test_delivery import queued_message
from messages.models import OutboundMessage, Recipient
from servers.models import DeliveryType

pytestmark = pytest.mark.django_db(transaction=True)


def worker_args(n: int) -> list[str]:
    """A delivery worker with one slot, a fresh node name and no cluster chatter."""
    return ["-m", "celery", "-A", "postmark_site", "worker", "-l", "info", "-Q", "delivery",
            "--pool", "solo", "-n", f"delivery-{n}-{time.monotonic_ns()}@%h",
            "--without-mingle", "--without-gossip"]  # fmt: skip


def test_two_worker_processes_deliver_a_batch_with_a_poison_once(server, start_process):
    server.delivery_type = DeliveryType.LIVE
    server.save()
    for path in (settings.DATA_DIR / "queue").glob("*.msg"):
        path.unlink()  # left over by earlier tests
    with SmtpSink(smtputf8=False, rcpt_delay=0.2) as sink:
        env = subprocess_env(
            CELERY_BROKER_URL="",
            OUTBOUND_SMTP_RELAY=f"smtp://127.0.0.1:{sink.port}?starttls=never",
        )
        workers = [start_process(worker_args(n), env=env, name=f"worker-{n}") for n in range(2)]
        for worker in workers:
            worker.wait_for("ready", timeout=60)
        ordinary = [queued_message(server, [f"ok{i}@example.net"]) for i in range(3)]
        poison = queued_message(server, ["jörg@example.net"])
        batch = [ordinary[0].pk, poison.pk, ordinary[1].pk, ordinary[2].pk]
        for _ in range(2):
            tasks.deliver.apply_async((batch,))
        wait_for(
            lambda: not OutboundMessage.objects.filter(pk__in=batch, status="queued").exists(),
            what="every message of the batch to be done",
        )
        for worker in workers:
            worker.wait_for("succeeded", timeout=30)
    assert all("outbound.tasks.deliver" in worker.output() for worker in workers)
    assert sink.delivered_to() == {f"ok{i}@example.net": 1 for i in range(3)}
    assert set(Recipient.objects.values_list("email", "status", "attempts")) == {
        ("ok0@example.net", "delivered", 1),
        ("ok1@example.net", "delivered", 1),
        ("ok2@example.net", "delivered", 1),
        ("jörg@example.net", "bounced", 1),
    }
    bounce = Bounce.objects.get()  # one bounce, although two workers ran the batch
    assert bounce.email == "jörg@example.net" and "SMTPUTF8" in bounce.details
