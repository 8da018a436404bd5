"""The bounce MX: asynchronous bounces, spam complaints and auto-replies sent to VERP addresses
arrive over real SMTP and become bounces linked to the original message."""

import re
import smtplib
import uuid
from pathlib import Path

import pytest
from django.utils import timezone

from bounces.models import Bounce
from bounces.verp import verp_address
from conftest import BOUNCE_DOMAIN
from core import crypto
from domains.services import create_domain
from messages.models import OutboundMessage, Recipient, Submission
from messages.processing import process_submission
from servers.models import DeliveryType
from streams.models import Suppression
from streams.services import get_stream

pytestmark = pytest.mark.django_db(transaction=True)

CORPUS = Path(__file__).resolve().parents[2] / "bounces" / "tests" / "corpus"
UUID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def sent_message(server, recipients) -> OutboundMessage:
    server.delivery_type = DeliveryType.LIVE
    server.save()
    message = OutboundMessage.objects.create(
        message_id=uuid.uuid4(),
        server=server,
        stream=get_stream(server, "outbound"),
        from_address="App <app@example.com>",
        recipients=recipients,
        subject="Your receipt",
        tag="receipts",
        metadata={"order": "7"},
        content=b"Subject: Your receipt\r\n\r\nThanks\r\n",
        status="sent",
        received_at=timezone.now(),
    )
    for email in recipients:
        Recipient.objects.create(message=message, email=email, status="delivered")
    return message


def report_for(name: str, message: OutboundMessage) -> bytes:
    """A corpus report rewritten to be about ``message`` and addressed to our bounce domain."""
    raw = (CORPUS / name).read_bytes()
    raw = UUID_RE.sub(str(message.message_id).encode(), raw)
    raw = raw.replace(b"bounces.mailer.example", BOUNCE_DOMAIN.encode())
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # SMTP speaks CRLF


def verp(message, domain: str = BOUNCE_DOMAIN) -> str:
    """The return path the copy to the message's first recipient went out with."""
    first = message.deliveries.order_by("pk").first()
    return verp_address(message.message_id, domain, first.pk)


def per_message_verp(message) -> str:
    """The one return path per message that mail sent before they were per recipient has."""
    message_id = str(message.message_id)
    return f"pm_bounces+{message_id}.{crypto.tag(b'verp', message_id, 10)}@{BOUNCE_DOMAIN}"


def deliver_report(gateway, message, raw: bytes, address: str = "") -> None:
    client = smtplib.SMTP("127.0.0.1", gateway.bounce_port, timeout=10)
    client.ehlo("mx.remote.example")
    assert not client.has_extn("auth")
    client.sendmail("", [address or verp(message)], raw)
    client.quit()
    for submission in Submission.objects.filter(endpoint="bounce"):
        process_submission(submission.pk)


def test_a_hard_bounce_report_deactivates_the_recipient(gateway, server, settings):
    settings.BOUNCE_DOMAIN = BOUNCE_DOMAIN
    message = sent_message(server, ["john.doe@example.org"])
    deliver_report(gateway, message, report_for("postfix_user_unknown.eml", message))
    bounce = Bounce.objects.get()
    assert (bounce.type, bounce.email) == ("HardBounce", "john.doe@example.org")
    assert bounce.message_id == message.message_id
    assert bounce.inactive and bounce.can_activate
    assert bounce.tag == "receipts" and bounce.subject == "Your receipt"
    assert "Diagnostic-Code" in bounce.content  # the received report is the dump
    assert Suppression.objects.get().reason == "HardBounce"
    assert Recipient.objects.get().status == "bounced"


def test_a_spam_complaint_cannot_be_reactivated(gateway, server, settings):
    settings.BOUNCE_DOMAIN = BOUNCE_DOMAIN
    message = sent_message(server, ["judy.smith@yahoo.com"])
    deliver_report(gateway, message, report_for("arf_yahoo_abuse.eml", message))
    bounce = Bounce.objects.get()
    assert (bounce.type, bounce.email) == ("SpamComplaint", "judy.smith@yahoo.com")
    assert bounce.inactive and not bounce.can_activate
    assert Suppression.objects.get().reason == "SpamComplaint"


def test_an_auto_reply_is_recorded_and_deactivates_nothing(gateway, server, settings):
    settings.BOUNCE_DOMAIN = BOUNCE_DOMAIN
    message = sent_message(server, ["kate@example.org"])
    deliver_report(gateway, message, report_for("autoreply_sieve_vacation.eml", message))
    bounce = Bounce.objects.get()
    assert bounce.type == "AutoResponder"
    assert not bounce.inactive
    assert not Suppression.objects.exists()


def test_the_bounce_mx_is_never_a_relay(gateway, server, settings):
    message = sent_message(server, ["a@example.org"])
    client = smtplib.SMTP("127.0.0.1", gateway.bounce_port, timeout=10)
    client.ehlo("mx.remote.example")
    client.mail("")
    for address in [
        "victim@example.net",
        f"pm_bounces+{uuid.uuid4()}@{BOUNCE_DOMAIN}",  # no such message
        f"pm_bounces+{message.message_id}@other.example",  # not our domain
        f"pm_bounces+not-a-uuid@{BOUNCE_DOMAIN}",
    ]:
        code, reply = client.rcpt(address)
        assert code == 550, (address, reply)
    code, _ = client.rcpt(verp(message))
    assert code == 250
    client.quit()


def custom_return_path(name: str, verified: bool) -> str:
    """A domain with a custom Return-Path domain (``pm-bounces.<name>``), verified or not."""
    domain = create_domain(name)
    domain.return_path_verified = verified
    domain.save()
    return domain.return_path_domain


def test_a_report_to_a_verified_custom_return_path_is_taken(gateway, server, settings):
    settings.BOUNCE_DOMAIN = BOUNCE_DOMAIN
    return_path = custom_return_path("shop.test", verified=True)
    message = sent_message(server, ["john.doe@example.org"])
    address = verp(message, return_path)
    raw = report_for("postfix_user_unknown.eml", message).replace(
        BOUNCE_DOMAIN.encode(), return_path.encode()
    )
    client = smtplib.SMTP("127.0.0.1", gateway.bounce_port, timeout=10)
    client.ehlo("mx.remote.example")
    client.sendmail("", [address], raw)
    client.quit()
    [submission] = Submission.objects.filter(endpoint="bounce")
    assert submission.rcpt_to == [address]
    process_submission(submission.pk)
    bounce = Bounce.objects.get()
    assert (bounce.type, bounce.email) == ("HardBounce", "john.doe@example.org")
    assert bounce.message_id == message.message_id


def test_a_return_path_domain_not_verified_is_refused(gateway, server, settings):
    return_path = custom_return_path("shop.test", verified=False)
    message = sent_message(server, ["a@example.org"])
    client = smtplib.SMTP("127.0.0.1", gateway.bounce_port, timeout=10)
    client.ehlo("mx.remote.example")
    client.mail("")
    code, reply = client.rcpt(verp(message, return_path))
    assert code == 550, reply
    assert client.rcpt(verp(message))[0] == 250  # BOUNCE_DOMAIN still takes it
    client.quit()


def test_a_forged_complaint_naming_a_stranger_suppresses_nobody(gateway, server, settings):
    """Anyone who received a message sent with one return path per message (mail in flight at
    the upgrade) knows it; a report sent there may still only affect that message's recipients.
    (Per-recipient return paths: ``test_bounce_reports``.)"""
    settings.BOUNCE_DOMAIN = BOUNCE_DOMAIN
    message = sent_message(server, ["attacker@example.org"])
    # The ARF names judy.smith@yahoo.com, who never received this message.
    raw = report_for("arf_yahoo_abuse.eml", message)
    deliver_report(gateway, message, raw, per_message_verp(message))
    assert not Bounce.objects.exists()
    assert not Suppression.objects.exists()
    report = Submission.objects.get(endpoint="bounce")
    assert report.status == "failed"
    assert b"feedback@arf.mail.yahoo.com" in bytes(report.raw)  # kept for operators


def test_return_paths_the_service_did_not_issue_are_refused(gateway, server, settings):
    message = sent_message(server, ["a@example.org"])
    untagged = f"pm_bounces+{message.message_id}@{BOUNCE_DOMAIN}"
    forged = f"pm_bounces+{message.message_id}.0123456789@{BOUNCE_DOMAIN}"
    client = smtplib.SMTP("127.0.0.1", gateway.bounce_port, timeout=10)
    client.ehlo("mx.remote.example")
    client.mail("")
    for address in (untagged, forged):
        code, reply = client.rcpt(address)
        assert code == 550, (address, reply)
    assert client.rcpt(verp(message))[0] == 250
    client.quit()
