"""DKIM signatures and the return path of relayed messages: a Live server relays to a local SMTP
sink, and dkimpy checks every delivered message against the records the domain's owner
published (``domains.signing``, ``core.dkim``)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bounces.verp import verp_address
from conftest import accepted_submission
from delivery.relay import deliver_message
from domains import signing
from domains.models import DkimKey, Domain
from domains.services import confirm_sender, create_domain, create_sender
from domains.tests.dkim_verify import PublishedKeys, signature_tags, unsigned, verify_all
from messages.models import OutboundMessage
from messages.processing import process_submission

SERVICE = "mail.service.test"
BOUNCES = "bounces.service.test"

pytestmark = pytest.mark.django_db


def message_from(sender: str, subject: str = "Order 7", body: bytes = b"Thank you.\r\n") -> bytes:
    return (
        f"From: Shop <{sender}>\r\nTo: ok@example.net\r\nSubject: {subject}\r\n"
        f"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode() + body


@pytest.fixture(autouse=True)
def service(settings):
    settings.DKIM_SERVICE_DOMAIN = SERVICE
    settings.BOUNCE_DOMAIN = BOUNCES
    signing.forget()
    yield
    signing.forget()


@pytest.fixture
def dns():
    return PublishedKeys()


def verified_domain(name: str, dns: PublishedKeys, ed25519=False, return_path=False) -> Domain:
    """A domain whose records its owner published and verification saw."""
    domain = create_domain(name, ed25519=ed25519)
    for key in domain.keys.all():
        activate(key)
        dns.publish_key(key)
    domain.dkim_verified = True
    domain.return_path_verified = return_path
    domain.save()
    return domain


def activate(key: DkimKey) -> None:
    key.state = DkimKey.State.ACTIVE
    key.activated_at = timezone.now()
    key.save()


def send(server, raw: bytes, rcpts=("ok@example.net",)) -> OutboundMessage:
    submission = accepted_submission(server, raw, list(rcpts))
    process_submission(submission.pk)
    message = OutboundMessage.objects.get(message_id=submission.message_id)
    assert deliver_message(message.pk) == "sent"
    return message


def publish_service_key(dns: PublishedKeys) -> DkimKey:
    key = DkimKey.objects.get(domain__name=SERVICE, state=DkimKey.State.ACTIVE)
    dns.publish_key(key)
    return key


def test_rsa_signature_of_the_from_domain_verifies(live, sink, dns):
    domain = verified_domain("shop.test", dns)
    send(live, message_from("orders@shop.test"))
    [received] = sink.messages
    assert verify_all(received.content, dns) == [True]
    [tags] = signature_tags(received.content)
    key = domain.keys.get()
    assert (tags["a"], tags["d"], tags["s"]) == ("rsa-sha256", "shop.test", key.selector)
    assert tags["c"] == "relaxed/relaxed"
    assert tags["h"].replace(" ", "").replace("\r\n", "").count("from") == 2


def test_rsa_and_ed25519_signatures_both_verify(live, sink, dns):
    verified_domain("shop.test", dns, ed25519=True)
    send(
        live,
        message_from("orders@shop.test", body=b"Gr\xc3\xbc\xc3\x9fe  \t aus Z\xc3\xbcrich\r\n"),
    )
    [received] = sink.messages
    assert [t["a"] for t in signature_tags(received.content)] == ["rsa-sha256", "ed25519-sha256"]
    assert verify_all(received.content, dns) == [True, True]


def test_tracked_messages_are_signed_per_recipient_after_the_rewrite(live, sink, dns, settings):
    settings.TRACKING_BASE_URL = "http://track.test"
    verified_domain("shop.test", dns, ed25519=True)
    raw = (
        message_from("orders@shop.test")
        .replace(
            b"text/plain; charset=utf-8\r\n",
            b"text/html; charset=utf-8\r\nX-PM-TrackOpens: true\r\n",
        )
        .replace(b"Thank you.", b'<p>Thank you. <a href="https://shop.test/o/7">Your order</a></p>')
    )
    raw = raw.replace(b"\r\n\r\n", b"\r\nX-PM-TrackLinks: HtmlOnly\r\n\r\n", 1)
    send(live, raw, rcpts=["ok1@example.net", "ok2@example.net"])
    first, second = sink.messages
    assert b"track.test" in first.content and unsigned(first.content) != unsigned(second.content)
    for received in (first, second):
        assert verify_all(received.content, dns) == [True, True]


def test_a_confirmed_single_address_sender_is_signed_with_the_service_key(live, sink, dns):
    confirm_sender(create_sender("me@solo.test"))
    message = send(live, message_from("me@solo.test"))
    key = publish_service_key(dns)
    [received] = sink.messages
    [tags] = signature_tags(received.content)
    assert (tags["d"], tags["s"]) == (SERVICE, key.selector)
    assert verify_all(received.content, dns) == [True]
    assert received.mail_from == verp_address(message.message_id, BOUNCES, only(message))


def only(message) -> int:
    """The id of the message's one Recipient row (its return path names it)."""
    return message.deliveries.get().pk


def test_a_domain_that_is_not_verified_does_not_sign(live, sink, dns):
    """Its signature would claim a domain nobody verified: the service signs instead."""
    domain = create_domain("solo.test")
    activate(domain.keys.get())  # verified once, broken since
    confirm_sender(create_sender("me@solo.test"))
    send(live, message_from("me@solo.test"))
    publish_service_key(dns)
    [received] = sink.messages
    assert signature_tags(received.content)[0]["d"] == SERVICE
    assert verify_all(received.content, dns) == [True]


def test_a_pending_key_never_signs(live, sink, dns):
    domain = create_domain("shop.test")  # its key is pending: its record was never seen
    Domain.objects.filter(pk=domain.pk).update(dkim_verified=True)
    send(live, message_from("orders@shop.test"))
    publish_service_key(dns)
    [received] = sink.messages
    assert signature_tags(received.content)[0]["d"] == SERVICE
    assert verify_all(received.content, dns) == [True]


def test_after_a_rotation_the_new_key_signs_and_the_old_record_can_go(live, sink, dns):
    domain = verified_domain("shop.test", dns)
    old = domain.keys.get()
    new = DkimKey.generate(domain)  # pending: published, not yet seen
    dns.publish_key(new)
    send(live, message_from("orders@shop.test", subject="before"))
    assert signature_tags(sink.messages[0].content)[0]["s"] == old.selector
    # Verification saw the new record: the new key signs, the old one is revoked.
    activate(new)
    old.state = DkimKey.State.REVOKED
    old.revoked_at = timezone.now()
    old.save()
    dns.remove(old.host)
    send(live, message_from("orders@shop.test", subject="after"))
    received = sink.messages[1]
    assert signature_tags(received.content)[0]["s"] == new.selector
    assert verify_all(received.content, dns) == [True]
    assert verify_all(sink.messages[0].content, dns) == [False]  # signed by the removed key


def test_the_return_path_uses_the_verified_custom_return_path_domain(live, sink, dns):
    verified_domain("shop.test", dns, return_path=True)
    message = send(live, message_from("orders@shop.test"))
    [received] = sink.messages
    assert received.mail_from == verp_address(
        message.message_id, "pm-bounces.shop.test", only(message)
    )
    assert received.mail_from.endswith("@pm-bounces.shop.test")


def test_an_unverified_return_path_domain_is_not_used(live, sink, dns):
    verified_domain("shop.test", dns, return_path=False)
    message = send(live, message_from("orders@shop.test"))
    [received] = sink.messages
    assert received.mail_from == verp_address(message.message_id, BOUNCES, only(message))


def test_a_key_that_cannot_be_loaded_sends_the_message_unsigned(live, sink, dns, caplog):
    domain = verified_domain("shop.test", dns)
    DkimKey.objects.filter(domain=domain).update(private_key_encrypted="not a key")
    Domain.objects.filter(name=SERVICE).delete()
    signing.forget()
    ensure = signing.ensure_service_key()
    DkimKey.objects.filter(pk=ensure[0].pk).update(private_key_encrypted="broken too")
    send(live, message_from("orders@shop.test"))
    [received] = sink.messages
    assert received.content.startswith(b"Received: from ")  # the trace line, no signature
    assert b"DKIM-Signature" not in received.content
    assert "cannot be loaded" in caplog.text


def test_keys_are_looked_up_once_per_from_domain_not_per_message(live, dns):
    verified_domain("shop.test", dns, ed25519=True)
    signing.ensure_service_key()
    signing.forget()
    with CaptureQueriesContext(connection) as first:
        signers = signing.signers_for("orders@shop.test")
    with CaptureQueriesContext(connection) as later:
        for _ in range(20):
            assert signing.signers_for("orders@shop.test") == signers
            assert signing.return_path_domain_for("orders@shop.test") == BOUNCES
    assert len(first) <= 2 and len(later) == 0
    assert [s.algorithm for s in signers] == ["rsa", "ed25519"]


def test_the_service_key_is_made_once(dns):
    first = signing.ensure_service_key()
    assert signing.ensure_service_key() == first
    [key] = first
    assert (key.domain.name, key.state, key.algorithm) == (SERVICE, "active", "rsa")
    assert not key.domain.dkim_verified  # nobody may send as the service's domain for it


def test_the_trace_fields_are_sent_and_the_signature_verifies_over_them(live, sink, dns, settings):
    settings.SMTP_HOSTNAME = "gateway.service.test"
    verified_domain("shop.test", dns)
    raw = message_from("orders@shop.test").replace(
        b"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\n", b""
    )
    message = send(live, raw)
    [received] = sink.messages
    content = received.content
    assert verify_all(content, dns) == [True]
    header = content.split(b"\r\n\r\n", 1)[0]
    # The signature in front, then the trace line as the gateway wrote it, then the message.
    assert header.startswith(b"DKIM-Signature:")
    after = header.split(b"\r\nReceived: ", 1)[1]
    assert after.startswith(b"from [127.0.0.1] ([127.0.0.1])\r\n\tby gateway.service.test with ")
    assert f"id {message.message_id}".encode() in after and b"for <ok@example.net>;" in after
    assert header.count(b"\r\nDate: ") == 1
    [tags] = signature_tags(content)
    assert "date" in tags["h"].replace(" ", "").replace("\r\n", "").split(":")
    # Altering the added Date breaks the signature: it is signed as the receiver sees it.
    altered = content.replace(b"\r\nDate: ", b"\r\nDate: Sun, ", 1)
    assert verify_all(altered, dns) == [False]
