"""Whose From the service's DKIM key vouches for: messages relayed to a local SMTP sink, their
signatures checked by dkimpy against the published records.

A tenant with a confirmed single-address signature (me@solo.test) tries to send as
security@<the service's own domain>, which would be signed d=<the service's domain> with the
service's key and pass DMARC for the operator's domain. Every such From is refused by processing;
a message the older rule let through (stored as it left processing) goes out unsigned; the
service's key signs a From on its own domain only when that From passes the rule (a confirmed
signature) or is the System server's own (sender signature confirmations)."""

import email
import email.policy
import uuid

import pytest
from django.utils import timezone

from bounces.models import Bounce
from conftest import accepted_submission
from delivery.relay import deliver_message
from domains import signing
from domains.models import DkimKey
from domains.services import confirm_sender, create_sender
from domains.tests.dkim_verify import PublishedKeys, signature_tags, verify_all
from messages.confirmations import send_confirmation
from messages.models import OutboundMessage, Recipient
from messages.processing import process_submission
from streams.services import get_stream

SERVICE = "mail.service.test"
TARGET = f"security@{SERVICE}"

pytestmark = pytest.mark.django_db

# From fields that show TARGET to a reader while naming me@solo.test somewhere.
HOSTILE = {
    "encoded-word display name": f"=?us-ascii?q?me=40solo=2Etest?= <{TARGET}>",
    "address as display name": f"me@solo.test <{TARGET}>",
    "two mailboxes": f"me@solo.test, {TARGET}",
    "two From fields": f"me@solo.test\r\nFrom: {TARGET}",
    "folded address": f"me@solo.test\r\n <{TARGET}>",
    "group": f"Staff: me@solo.test, {TARGET};",
    "plain": f"Security <{TARGET}>",
}


@pytest.fixture(autouse=True)
def service(settings):
    settings.DKIM_SERVICE_DOMAIN = SERVICE
    settings.BOUNCE_DOMAIN = f"bounces.{SERVICE}"
    settings.SYSTEM_FROM = f"postmaster@{SERVICE}"
    signing.forget()
    yield
    signing.forget()


@pytest.fixture
def dns():
    return PublishedKeys()


@pytest.fixture
def solo():
    confirm_sender(create_sender("me@solo.test"))


def raw_from(from_value: str) -> bytes:
    return (
        f"From: {from_value}\r\nTo: ok@example.net\r\nSubject: Password reset\r\n"
        "Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nReset it here.\r\n"
    ).encode()


def processed(server, raw: bytes) -> OutboundMessage | None:
    submission = accepted_submission(server, raw, ["ok@example.net"])
    process_submission(submission.pk)
    return OutboundMessage.objects.filter(message_id=submission.message_id).first()


def stored(server, raw: bytes) -> OutboundMessage:
    """A message as processing by an older rule left it: queued, its content as received."""
    message = OutboundMessage.objects.create(
        message_id=uuid.uuid4(), server=server, stream=get_stream(server, "outbound"),
        from_address="me@solo.test", recipients=["ok@example.net"], subject="Password reset",
        content=raw, received_at=timezone.now(),
    )  # fmt: skip
    Recipient.objects.create(message=message, email="ok@example.net")
    return message


def signed_domains(content: bytes, dns: PublishedKeys) -> list[tuple[str, bool]]:
    """(d=, whether dkimpy verifies it) of each signature of a delivered message."""
    key = DkimKey.objects.filter(domain__name=SERVICE, state=DkimKey.State.ACTIVE).first()
    if key is not None:
        dns.publish_key(key)
    tags = signature_tags(content)
    return list(zip([t["d"] for t in tags], verify_all(content, dns), strict=True))


def shown_from(content: bytes) -> str:
    """The From a reader's client shows (the standard library's reading of the last one)."""
    message = email.message_from_bytes(content, policy=email.policy.compat32)
    return ", ".join(message.get_all("From") or [])


@pytest.mark.parametrize("name", list(HOSTILE))
def test_processing_refuses_every_from_that_shows_the_service_domain(live, sink, solo, name):
    assert processed(live, raw_from(HOSTILE[name])) is None
    bounce = Bounce.objects.get()
    assert bounce.type == "SMTPApiError" and bounce.content.startswith(
        ("ErrorCode: 300\r\n", "ErrorCode: 400\r\n")
    )
    assert sink.messages == []


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_message_of_the_older_rule_is_never_signed_for_the_service_domain(
    live, sink, dns, solo, name
):
    message = stored(live, raw_from(HOSTILE[name]))
    assert deliver_message(message.pk) == "sent"
    [received] = sink.messages
    assert TARGET in shown_from(received.content)
    assert (SERVICE, True) not in signed_domains(received.content, dns)
    assert signed_domains(received.content, dns) == []


def test_a_confirmed_signature_on_the_service_domain_is_signed_for_it(live, sink, dns):
    confirm_sender(create_sender(TARGET))
    message = processed(live, raw_from(f"Security <{TARGET}>"))
    assert deliver_message(message.pk) == "sent"
    [received] = sink.messages
    assert signed_domains(received.content, dns) == [(SERVICE, True)]


def test_the_system_servers_own_mail_is_signed_for_the_service_domain(sink, dns):
    submission = send_confirmation(signature=create_sender("owner@shop.test"))
    assert process_submission(submission.pk) == "processed"
    message = OutboundMessage.objects.get(submission=submission)
    assert deliver_message(message.pk) == "sent"
    [received] = sink.messages
    assert f"<postmaster@{SERVICE}>" in shown_from(received.content)
    assert signed_domains(received.content, dns) == [(SERVICE, True)]


def test_the_system_from_sent_by_another_server_is_not_signed(live, sink, dns):
    message = stored(live, raw_from(f"Mail service <postmaster@{SERVICE}>"))
    assert deliver_message(message.pk) == "sent"
    [received] = sink.messages
    assert signed_domains(received.content, dns) == []


def test_a_signature_revoked_after_processing_no_longer_signs(live, sink, dns):
    signature = create_sender(TARGET)
    confirm_sender(signature)
    message = processed(live, raw_from(TARGET))
    signature.delete()
    assert deliver_message(message.pk) == "sent"
    [received] = sink.messages
    assert signed_domains(received.content, dns) == []
