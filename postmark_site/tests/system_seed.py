"""Work waiting in every queue, for the System page's tests and its screenshot."""

import uuid
from datetime import timedelta

from django.utils import timezone

from conftest import accepted_submission


def seed_waiting_work(server, now=None):
    """3 submissions waiting, deferred recipients at two domains, pending webhook posts at two
    URLs (one with credentials), and a day of samples rising towards now."""
    from messages.events import record_event
    from messages.models import OutboundMessage, QueueSample, Recipient
    from streams.services import get_stream
    from webhooks.models import Webhook, WebhookDelivery

    now = now or timezone.now()
    stream = get_stream(server, "outbound")
    for minutes in (50, 20, 5):
        accepted_submission(
            server, rcpts=["a@example.net"], received_at=now - timedelta(minutes=minutes)
        )
    for i, (domain, count) in enumerate((("slow.example", 4), ("busy.example", 2))):
        for n in range(count):
            message = OutboundMessage.objects.create(
                message_id=uuid.uuid4(), server=server, stream=stream, content=b"x",
                recipients=[f"user{n}@{domain}"],
                received_at=now - timedelta(hours=3 - i, minutes=n),
            )  # fmt: skip
            Recipient.objects.create(
                message=message, email=f"user{n}@{domain}", status=Recipient.Status.DEFERRED,
                next_attempt_at=now + timedelta(minutes=10 + n),
                last_reply=f"451 4.7.1 {domain}: greylisted, try again later",
            )  # fmt: skip
    hooks = [
        Webhook.objects.create(stream=stream, url="https://hooks.example.com/postmark"),
        Webhook.objects.create(stream=stream, url="https://bot:s3cret@crm.example.org/in"),
    ]
    for webhook, count in zip(hooks, (3, 1), strict=True):
        for _ in range(count):
            event = record_event(server_id=server.pk, stream_id=stream.pk, type="Delivery",
                                 recipient="x@example.net")  # fmt: skip
            WebhookDelivery.objects.create(
                webhook=webhook, event=event, next_attempt_at=now, last_status_code=503
            )
    QueueSample.objects.bulk_create(
        QueueSample(
            taken_at=now - timedelta(minutes=5 * step),
            values={
                "submissions_waiting": {"count": max(0, 3 - step // 40), "oldest_age_seconds": 0},
                "recipients_deferred": {"count": max(0, 6 - step // 12), "oldest_age_seconds": 0},
                "webhook_deliveries_pending": {
                    "count": max(1, 4 - step // 60),
                    "oldest_age_seconds": 0,
                },
            },
        )
        for step in range(1, 288)
    )
