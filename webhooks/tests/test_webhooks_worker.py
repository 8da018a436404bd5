"""Webhooks through a real Celery worker process on the embedded filesystem queue."""

import pytest

from conftest import subprocess_env, wait_for
from messages.events import record_message_event
from streams.services import get_stream
from webhooks.models import WebhookDelivery
from webhooks.tests.test_webhooks import Receiver, all_triggers, outbound

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_real_worker_posts_every_event(server, start_process, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    receiver = Receiver()
    try:
        stream = get_stream(server, "outbound")
        all_triggers(stream, receiver.url)
        worker = start_process(
            ["-m", "celery", "-A", "postmark_site", "worker", "-l", "info", "--pool", "threads",
             "-Q", "webhooks"],
            env=subprocess_env(CELERY_BROKER_URL="", WEBHOOK_ALLOW_PRIVATE_URLS="true"),
            name="worker",
        )  # fmt: skip
        worker.wait_for("ready", timeout=60)
        message = outbound(server, stream)
        for i in range(20):  # committed one by one: each is queued by enqueue_event
            record_message_event(message, "Delivery", f"user{i}@example.net")
        wait_for(lambda: len(receiver.requests) >= 20, what="20 posts")
        wait_for(
            lambda: WebhookDelivery.objects.filter(status="delivered").count() == 20,
            what="20 delivered rows",
        )
        got = sorted(p["Recipient"] for p in receiver.payloads())
        assert got == sorted(f"user{i}@example.net" for i in range(20))
    finally:
        receiver.stop()
