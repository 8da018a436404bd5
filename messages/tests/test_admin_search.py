"""The admin's activity and bounce lists find messages the way a user asks — MessageID, recipient,
sender, subject, tag; status and date — through the Messages and bounce APIs' query functions."""

import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from bounces.services import record_bounce
from messages.models import OutboundMessage, Recipient
from streams.services import get_stream


def make_message(server, subject, *, to="user@example.net", sender="Shop <shop@example.com>",
                 tag="", status=OutboundMessage.Status.SENT, ago=timedelta(hours=1)):  # fmt: skip
    message = OutboundMessage.objects.create(
        message_id=uuid.uuid4(), server=server, stream=get_stream(server, "outbound"),
        from_address=sender, to=[to], recipients=[to], subject=subject, tag=tag,
        content=b"Subject: x\r\n\r\nx", status=status, received_at=timezone.now() - ago,
    )  # fmt: skip
    Recipient.objects.create(message=message, email=to)
    return message


def shown(client, url, query) -> str:
    response = client.get(url + query)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db
def test_activity_search_and_filters(admin_client, server):
    reset = make_message(server, "Reset your password", to="Ann@Example.net", tag="reset")
    make_message(server, "Weekly digest", sender="News <news@example.org>", tag="digest",
                 status=OutboundMessage.Status.QUEUED, ago=timedelta(days=10))  # fmt: skip
    make_message(server, "Sandboxed one", status=OutboundMessage.Status.SANDBOXED)
    url = reverse("admin:outbound_outboundmessage_changelist")
    cases = {
        f"?q={reset.message_id}": "Reset your password",
        f"?q=<{str(reset.message_id).upper()}>": "Reset your password",
        "?q=ann@example.net": "Reset your password",
        "?q=news@example.org": "Weekly digest",
        "?q=PASSWORD": "Reset your password",
        "?q=digest": "Weekly digest",
        "?status=queued": "Weekly digest",
        "?status=processed": "Sandboxed one",
    }
    for query, subject in cases.items():
        page = shown(admin_client, url, query)
        others = {"Reset your password", "Weekly digest", "Sandboxed one"} - {subject}
        assert subject in page and not any(o in page for o in others), query
    recent = shown(admin_client, url, "?received=7d")
    assert "Reset your password" in recent and "Weekly digest" not in recent
    assert "Weekly digest" in shown(admin_client, url, "?received=30d")
    assert "Reset your password" in shown(admin_client, url, "?status=sent")
    assert "Sandboxed one" in shown(admin_client, url, "?status=bogus&received=bogus")


@pytest.mark.django_db
def test_bounce_search_and_date_filter(admin_client, server):
    stream = get_stream(server, "outbound")
    message_id = uuid.uuid4()
    common = {"server": server, "stream": stream, "message_stream": "outbound"}
    record_bounce(**common, type="HardBounce", email="gone@example.net", message_id=message_id,
                  from_address="billing@example.com", subject="Invoice 7", tag="invoice",
                  bounced_at=timezone.now())  # fmt: skip
    old = timezone.now() - timedelta(days=9)
    record_bounce(**common, type="SoftBounce", email="full@example.org", subject="Welcome",
                  from_address="hello@example.com", bounced_at=old)  # fmt: skip
    url = reverse("admin:bounces_bounce_changelist")
    for query in (f"?q={message_id}", "?q=billing@example.com", "?q=invoice 7", "?q=invoice",
                  "?q=GONE@", "?bounced=7d"):  # fmt: skip
        page = shown(admin_client, url, query)
        assert "gone@example.net" in page and "full@example.org" not in page, query
    page = shown(admin_client, url, "?q=hello@example.com")
    assert "full@example.org" in page and "gone@example.net" not in page
