"""The sender rule through the real gateway and a real worker: an unverified From becomes an
SMTPApiError with Postmark's sentence (seen through the bounce API), or a 550 5.7.1 in the session
for a server in strict mode; a confirmed signature or a verified domain sends, through a DNS flap
too, until its record has failed over the grace period."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bounces.models import Bounce
from conftest import send, wait_for
from delivery.tests.sinks import DnsServer
from domains.models import Domain
from domains.services import confirm_sender, create_domain, create_sender
from domains.tasks import recheck_domains
from domains.tests.dkim_verify import PublishedKeys, signature_tags, verify_all
from domains.verification import verify_domain
from messages.models import OutboundMessage, Submission
from servers.models import DeliveryType, Server

pytestmark = pytest.mark.django_db(transaction=True)

UNKNOWN = (
    "The 'From' address you supplied (news@unverified.test) is not a Sender Signature on your "
    "account. Please add and confirm this address in order to be able to use it in the 'From' "
    "field of your messages."
)


def message(sender: str) -> bytes:
    return (
        f"From: News <{sender}>\r\nTo: ann@example.net\r\nSubject: Hi\r\n"
        f"Message-ID: <hi@unverified.test>\r\n\r\nHello.\r\n"
    ).encode()


def test_an_unverified_from_is_an_smtp_api_error_400_in_the_bounce_api(gateway, creds, worker):
    client = gateway.smtp()
    client.login(creds.server_token, creds.server_token)
    message_id = send(client, message("news@unverified.test"), rcpts=["ann@example.net"])
    client.quit()
    wait_for(lambda: Bounce.objects.filter(message_id=message_id).exists(), what="the error")
    assert not OutboundMessage.objects.filter(message_id=message_id).exists()
    api = Client(HTTP_X_POSTMARK_SERVER_TOKEN=creds.server_token)
    listed = api.get("/bounces", {"count": 10, "offset": 0, "type": "SMTPApiError"}).json()
    assert listed["TotalCount"] == 1
    bounce = listed["Bounces"][0]
    assert (bounce["Email"], bounce["From"]) == ("ann@example.net", "news@unverified.test")
    dump = api.get(f"/bounces/{bounce['ID']}/dump").json()["Body"]
    assert f"ErrorCode: 400\r\nMessage: {UNKNOWN}\r\n" in dump


def test_an_unconfirmed_signature_is_error_401(gateway, creds, worker):
    create_sender("news@unverified.test")
    client = gateway.smtp()
    client.login(creds.server_token, creds.server_token)
    message_id = send(client, message("news@unverified.test"), rcpts=["ann@example.net"])
    client.quit()
    wait_for(lambda: Bounce.objects.filter(message_id=message_id).exists(), what="the error")
    bounce = Bounce.objects.get(message_id=message_id)
    assert bounce.details == "Sender signature not confirmed."
    assert "ErrorCode: 401\r\nMessage: Sender signature not confirmed.\r\n" in bounce.dump_text


def test_strict_mode_refuses_an_unverified_from_with_550_5_7_1(gateway, creds, worker):
    Server.objects.filter(pk=creds.server.pk).update(strict_smtp=True)
    client = gateway.smtp()
    client.login(creds.server_token, creds.server_token)
    client.mail("bounces@unverified.test")
    client.rcpt("ann@example.net")
    code, reply = client.data(message("news@unverified.test"))
    assert code == 550
    assert reply == f"5.7.1 {UNKNOWN} (ErrorCode 400)".encode()
    confirm_sender(create_sender("news@unverified.test"))
    client.mail("bounces@unverified.test")
    client.rcpt("ann@example.net")
    code, _ = client.data(message("news@unverified.test"))
    assert code == 250
    client.quit()
    wait_for(lambda: Submission.objects.filter(status="processed").exists(), what="processing")


def test_a_dns_flap_keeps_a_verified_domain_sending_until_the_grace_is_over(
    gateway, creds, relay_sink, relaying_worker, settings
):
    """The review's reproduction: one periodic check gets NXDOMAIN for a verified domain's DKIM
    record. The domain stays verified: its mail is accepted, processed, signed and relayed (the
    signature verifies where the record is published), and the System page, the domain's page
    and /metrics say what fails since when. Once checks have failed over the grace period, the
    domain is un-verified and its mail is refused (ErrorCode 400)."""
    settings.BOUNCE_DOMAIN = "bounces.mail.test"
    settings.DOMAIN_RECHECK_SECONDS = 1800
    settings.DNS_VERIFY_TIMEOUT = 2.0
    settings.DNS_UNVERIFY_AFTER_FAILURES = 3
    settings.DNS_UNVERIFY_AFTER_HOURS = 24
    creds.server.delivery_type = DeliveryType.LIVE
    creds.server.save()
    Domain.objects.update(periodic_checks=False)  # the periodic checks look at flaky.test only
    domain = create_domain("flaky.test")
    key = domain.keys.get()
    receivers = PublishedKeys()  # what the world's resolvers see: the record stays published
    receivers.publish_key(key)
    hour, t0 = timedelta(hours=1), timezone.now()
    with DnsServer({}) as dns:
        settings.OUTBOUND_DNS_SERVERS = [f"127.0.0.1:{dns.port}"]
        dns.set(key.host, "TXT", [key.text_value])
        dns.set("pm-bounces.flaky.test", "CNAME", ["bounces.mail.test."])
        verify_domain(domain, now=t0)
        domain.refresh_from_db()
        assert domain.dkim_verified and domain.return_path_verified

        dns.remove(key.host, "TXT")  # one flaky answer: NXDOMAIN
        recheck_domains(now=t0 + hour)
        domain.refresh_from_db()
        assert domain.dkim_verified and domain.dkim_failed_checks == 1

        message_id = smtp_send(gateway, creds, "news@flaky.test", "During the flap")
        wait_for(lambda: relayed(relay_sink, "During the flap"), what="the relayed message")
        copy = relayed(relay_sink, "During the flap")
        assert OutboundMessage.objects.filter(message_id=message_id).exists()
        assert not Bounce.objects.filter(message_id=message_id).exists()
        assert [t["d"] for t in signature_tags(copy.content)] == ["flaky.test"]
        assert verify_all(copy.content, receivers) == [True]
        assert copy.mail_from.endswith("@pm-bounces.flaky.test")

        admin = Client()
        admin.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
        system = admin.get(reverse("admin:system")).content.decode()
        assert "flaky.test" in system and "allowed (grace period: DKIM failing since" in system
        page = admin.get(reverse("admin:domains_domain_change", args=[domain.pk])).content
        page = page.decode()
        assert "allowed (DKIM verified; its record is failing since" in page
        assert "DKIM of flaky.test: 1 check failed since " in page and "NXDOMAIN" in page
        metrics = Client().get("/metrics").content.decode()
        assert (
            'postmark_domain_dns_failed_checks{domain="flaky.test",record="DKIM",verified="true"}'
            " 1.0" in metrics
        )

        for hours in (2, 3, 1 + 24):  # the record stays away over the grace period
            recheck_domains(now=t0 + hours * hour)
        domain.refresh_from_db()
        assert not domain.dkim_verified and domain.dkim_failed_checks == 4

    message_id = smtp_send(gateway, creds, "news@flaky.test", "After the grace")
    wait_for(lambda: Bounce.objects.filter(message_id=message_id).exists(), what="the error")
    bounce = Bounce.objects.get(message_id=message_id)
    assert bounce.type == "SMTPApiError"
    assert "ErrorCode: 400\r\n" in bounce.dump_text and "news@flaky.test" in bounce.dump_text
    assert not relayed(relay_sink, "After the grace")


def smtp_send(gateway, creds, sender: str, subject: str) -> str:
    client = gateway.smtp()
    client.login(creds.server_token, creds.server_token)
    raw = (
        f"From: News <{sender}>\r\nTo: ann@example.net\r\nSubject: {subject}\r\n"
        f"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\nHello.\r\n"
    ).encode()
    message_id = send(client, raw, rcpts=["ann@example.net"])
    client.quit()
    return message_id


def relayed(sink, subject: str):
    found = [m for m in sink.messages if f"Subject: {subject}".encode() in m.content]
    return found[0] if found else None
