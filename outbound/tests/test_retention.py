"""Retention: bounces, dumps and raw messages are deleted past their settings."""

import pytest
from django.utils import timezone

from bounces.models import Bounce
from bounces.services import record_bounce
from conftest import accepted_submission
from outbound.models import OutboundMessage, Submission
from outbound.retention import enforce_retention
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
