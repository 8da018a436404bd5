"""Retention: bounces, dumps and raw messages are deleted past their settings."""

import pytest
from django.utils import timezone

from bounces.models import Bounce
from bounces.services import record_bounce
from conftest import accepted_submission
from messages.models import OutboundMessage, Submission
from messages.retention import enforce_retention
from streams.services import get_stream


def days_ago(days):
    return timezone.now() - timezone.timedelta(days=days)


def bounce(server, days):
    return record_bounce(
        server=server,
        message_stream="outbound",
        type="HardBounce",
        email=f"{days}@example.net",
        content="dump",
        bounced_at=days_ago(days),
    )


def message(server, days, status):
    submission = accepted_submission(server, received_at=days_ago(days), status="processed")
    return OutboundMessage.objects.create(
        message_id=submission.message_id,
        submission=submission,
        server=server,
        stream=get_stream(server, "outbound"),
        content=b"x",
        status=status,
        received_at=days_ago(days),
    )


@pytest.mark.django_db
def test_retention_defaults(server, settings):
    assert (settings.BOUNCE_RETENTION_DAYS, settings.DUMP_RETENTION_DAYS) == (45, 30)
    old, middle, recent = bounce(server, 46), bounce(server, 31), bounce(server, 1)
    sent_long_ago = message(server, 46, "sent")
    stuck_long_ago = message(server, 46, "queued")
    sent_recently = message(server, 2, "sent")
    accepted_long_ago = accepted_submission(server, received_at=days_ago(50))

    counts = enforce_retention()

    assert counts["bounces"] == 1 and counts["dumps"] == 1
    assert not Bounce.objects.filter(pk=old.pk).exists()
    middle.refresh_from_db()
    assert middle.content == "" and not middle.dump_available
    recent.refresh_from_db()
    assert recent.content == "dump"
    assert not OutboundMessage.objects.filter(pk=sent_long_ago.pk).exists()
    assert OutboundMessage.objects.filter(pk=stuck_long_ago.pk).exists()
    assert OutboundMessage.objects.filter(pk=sent_recently.pk).exists()
    assert Submission.objects.filter(pk=accepted_long_ago.pk).exists()  # never lose unprocessed


@pytest.mark.django_db
def test_retention_settings(server, settings):
    settings.BOUNCE_RETENTION_DAYS = 3
    bounce(server, 4)
    assert enforce_retention()["bounces"] == 1


@pytest.mark.django_db
def test_events_and_their_webhook_rows_go_in_batches(server, settings):
    from messages.events import record_event
    from messages.models import MessageEvent
    from webhooks.models import Webhook, WebhookAttempt, WebhookDelivery

    stream = get_stream(server, "outbound")
    webhook = Webhook.objects.create(stream=stream, url="https://hooks.example/x")
    old = []
    for i in range(5):
        event = record_event(
            server_id=server.pk, stream_id=stream.pk, type="Delivery",
            recipient=f"{i}@example.net", occurred_at=days_ago(46),
        )  # fmt: skip
        delivery = WebhookDelivery.objects.create(webhook=webhook, event=event)
        WebhookAttempt.objects.create(delivery=delivery, number=1, started_at=days_ago(46))
        old.append(event.pk)
    recent = record_event(
        server_id=server.pk, stream_id=stream.pk, type="Delivery", recipient="new@example.net"
    )

    counts = enforce_retention(batch=2)

    assert counts["events"] == 5
    assert list(MessageEvent.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not WebhookDelivery.objects.exists() and not WebhookAttempt.objects.exists()


@pytest.mark.django_db
def test_a_shared_dump_goes_with_the_last_bounce_that_uses_it(server):
    from bounces.models import Dump

    shared = Dump.objects.create(text="the message")
    Dump.objects.filter(pk=shared.pk).update(created_at=days_ago(31))
    bounces = [
        record_bounce(
            server=server,
            message_stream="outbound",
            type="SMTPApiError",
            email=f"{i}@example.net",
            content="ErrorCode: 300\r\n\r\n",
            source=shared,
            bounced_at=days_ago(31),
        )  # fmt: skip
        for i in range(3)
    ]
    assert bounces[0].dump_text == "ErrorCode: 300\r\n\r\nthe message"

    assert enforce_retention(batch=2)["dumps"] == 3

    assert not Dump.objects.exists()
    for bounce_row in Bounce.objects.all():
        assert not bounce_row.dump_available and bounce_row.dump_text == ""
