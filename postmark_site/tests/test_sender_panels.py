"""The senders' state on a server's page and on the dashboard: which From domains and addresses
are refused (SMTP API errors 400/401 of the last days) and which may send."""

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from bounces.services import record_bounce
from domains.models import Domain
from domains.services import create_sender
from messages.senders import sender_states
from postmark_site.tests.test_dashboard import make_message
from streams.services import create_server, get_stream

pytestmark = pytest.mark.django_db


def refused(server, sender: str, details: str, days_ago: float = 1):
    record_bounce(
        server=server, stream=get_stream(server, "outbound"), message_stream="outbound",
        type="SMTPApiError", email="ann@example.net", from_address=sender, details=details,
        bounced_at=timezone.now() - timezone.timedelta(days=days_ago),
    )  # fmt: skip


@pytest.fixture
def shop(db):
    cache.clear()
    server = create_server("Shop")
    make_message(server)  # From app@example.com: a verified test domain
    for _ in range(2):
        refused(server, "news@shop.test", "'news@shop.test' is not a confirmed Sender Signature.")
    refused(server, "old@gone.test", "'old@gone.test' is not a confirmed Sender Signature.", 30)
    create_sender("info@club.test")
    refused(server, "info@club.test", "Sender signature not confirmed.")
    return server


def test_sender_states_judge_each_sender_by_the_rule_of_now(shop):
    states = {s.sender: s for s in sender_states([shop.pk])}
    assert set(states) == {"shop.test", "info@club.test", "example.com"}  # gone.test: too old
    assert not states["shop.test"].allowed and states["shop.test"].refused == 2
    assert states["shop.test"].text.startswith(
        "mail from shop.test is not verified: messages will be refused (ErrorCode 400)"
    )
    assert "is not confirmed" in states["info@club.test"].text
    assert states["example.com"].allowed and states["example.com"].sent
    assert [s.allowed for s in sender_states([shop.pk])] == [False, False, True]

    Domain.objects.create(name="shop.test", dkim_verified=True)  # fixed since
    assert {s.sender: s.allowed for s in sender_states([shop.pk])}["shop.test"] is True
    Domain.objects.filter(name="example.com").update(dkim_verified=False)  # a record vanished
    example = {s.sender: s for s in sender_states([shop.pk])}["example.com"]
    assert not example.allowed and example.refused == 0 and example.sent
    assert sender_states([create_server("Quiet").pk]) == []


def test_the_server_page_and_the_dashboard_show_refused_senders(shop, admin_client):
    page = admin_client.get(reverse("admin:servers_server_change", args=[shop.pk])).content
    page = page.decode()
    assert 'id="sender-problems"' in page
    assert "mail from shop.test is not verified: messages will be refused" in page
    assert "mail from example.com is sent: DKIM verified" in page  # in the SMTP configuration
    dashboard = admin_client.get(reverse("admin:dashboard")).content.decode()
    assert "Senders refused" in dashboard and "mail from shop.test is not verified" in dashboard
    other = create_server("Other")
    quiet = admin_client.get(reverse("admin:dashboard") + f"?server={other.pk}").content.decode()
    assert "Senders refused" not in quiet
