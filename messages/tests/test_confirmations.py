"""A sender signature's confirmation message: sent by the service itself through its System
stream and a real worker to a local SMTP sink; the link it carries confirms the signature (on
POST: a GET only shows the page); expired or tampered links are refused with a clear page."""

import email
import email.policy
import re
import time

import pytest
from django.core import signing
from django.test import Client

from bounces.models import Bounce
from conftest import accepted_submission, subprocess_env, wait_for
from delivery.tests.sinks import SmtpSink
from domains.confirmation import SALT, confirmation_token
from domains.identity import sender_refusal
from domains.models import SenderSignature
from domains.services import IdentityError, create_sender, request_confirmation
from messages.confirmations import confirmation_message, send_confirmation
from messages.models import OutboundMessage, Submission
from messages.processing import process_submission
from messages.system import system_stream
from servers.models import Server
from streams.services import create_server

LINK = re.compile(r"http://testserver(/senders/confirm/\S+)")


def confirmation_client() -> Client:
    return Client(enforce_csrf_checks=True)


def press_confirm(client: Client, path: str, page):
    """What a person does on the page: press Confirm (a POST with the page's CSRF token)."""
    csrf = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1)
    return client.post(path, {"csrfmiddlewaretoken": csrf.decode()})


@pytest.mark.django_db(transaction=True)
def test_a_confirmation_message_is_relayed_and_its_link_confirms(start_process, settings):
    settings.TRACKING_BASE_URL = "http://testserver"
    for path in (settings.DATA_DIR / "queue").glob("*.msg"):
        path.unlink()  # left over by earlier tests
    with SmtpSink() as sink:
        env = subprocess_env(
            CELERY_BROKER_URL="",
            OUTBOUND_SMTP_RELAY=f"smtp://127.0.0.1:{sink.port}?starttls=never",
        )
        worker = start_process(
            ["-m", "celery", "-A", "postmark_site", "worker", "-l", "info", "--pool", "threads",
             "-n", f"confirmations-{time.monotonic_ns()}@%h", "--without-mingle",
             "--without-gossip"],
            env=env, name="worker",
        )  # fmt: skip
        worker.wait_for("ready", timeout=60)
        signature = create_sender("Owner@Shop.test", name="Shop Owner", note="From Ann, at IT.")
        request_confirmation(signature)
        wait_for(lambda: sink.messages, timeout=60, what="the confirmation message")

    [received] = sink.messages
    assert received.rcpt_tos == ["owner@shop.test"]
    assert received.mail_from  # the VERP return path of the System server's message
    message = email.message_from_bytes(received.content, policy=email.policy.default)
    assert message["From"].addresses[0].addr_spec == settings.SYSTEM_FROM
    assert message["To"].addresses[0].addr_spec == "owner@shop.test"
    body = message.get_content()
    assert "From Ann, at IT." in body
    outbound = OutboundMessage.objects.get()
    system = Server.objects.get(name=settings.SYSTEM_SERVER_NAME)
    assert (outbound.server_id, outbound.stream.stream_id) == (system.pk, "outbound")
    assert system.delivery_type == "Live"

    path = LINK.search(body).group(1)
    assert sender_refusal("owner@shop.test")[0] == 401
    client = confirmation_client()
    page = client.get(path)
    assert page.status_code == 200 and b"Confirm owner@shop.test" in page.content
    assert not SenderSignature.objects.get(pk=signature.pk).confirmed  # a GET confirms nothing
    confirmed = press_confirm(client, path, page)
    assert confirmed.status_code == 200 and b'id="confirmed"' in confirmed.content
    signature.refresh_from_db()
    assert signature.confirmed and signature.confirmed_at is not None
    assert sender_refusal("owner@shop.test") is None
    again = confirmation_client().get(path)  # the link still shows the state
    assert b"owner@shop.test is confirmed" in again.content


@pytest.mark.django_db
def test_the_message_goes_through_the_system_stream_as_a_submission(settings):
    settings.TRACKING_BASE_URL = "https://mail.example.test/"
    signature = create_sender("owner@shop.test")
    submission = send_confirmation(signature=signature)
    assert submission.stream == system_stream()  # made once, reused
    assert Server.objects.filter(name=settings.SYSTEM_SERVER_NAME).count() == 1
    assert (submission.rcpt_to, submission.status) == (["owner@shop.test"], "accepted")
    assert b"https://mail.example.test/senders/confirm/" in bytes(submission.raw)
    message = confirmation_message(signature)
    assert "note" not in message.get_content()  # no personal note, no "Their note:"

    # The System server may send as SYSTEM_FROM, which is not a signature of the account (the
    # account's lists show only its own), and no other server may.
    assert process_submission(submission.pk) == "processed"
    assert OutboundMessage.objects.get(submission=submission).recipients == ["owner@shop.test"]
    assert list(SenderSignature.objects.values_list("email", flat=True)) == ["owner@shop.test"]
    assert sender_refusal(settings.SYSTEM_FROM)[0] == 400
    other = create_server("Tenant")
    raw = f"From: {settings.SYSTEM_FROM}\r\nTo: ann@example.net\r\nSubject: x\r\n\r\nx\r\n"
    forged = accepted_submission(other, raw.encode(), ["ann@example.net"])
    assert process_submission(forged.pk) == "failed"
    assert Bounce.objects.get(message_id=forged.message_id).details == (
        f"'{settings.SYSTEM_FROM}' is not a confirmed Sender Signature."
    )


@pytest.mark.django_db
def test_resend_is_for_unconfirmed_signatures_only():
    signature = create_sender("owner@shop.test")
    request_confirmation(signature)
    request_confirmation(signature)
    assert Submission.objects.count() == 2
    assert SenderSignature.objects.get(pk=signature.pk).confirmation_sent_at is not None
    confirmed = create_sender("done@shop.test", confirmed=True)
    with pytest.raises(IdentityError, match="already confirmed"):
        request_confirmation(confirmed)


@pytest.mark.django_db
def test_expired_tampered_and_stale_links_are_refused_with_a_clear_page(settings):
    signature = create_sender("owner@shop.test")
    token = confirmation_token(signature)
    client = Client()

    tampered = client.post(f"/senders/confirm/{token[:-3]}xyz")
    assert tampered.status_code == 400
    assert b"This confirmation link is not valid" in tampered.content
    other_salt = signing.TimestampSigner(salt="other").sign_object(
        {"id": signature.pk, "email": signature.email}
    )
    assert client.get(f"/senders/confirm/{other_salt}").status_code == 400

    settings.SENDER_CONFIRMATION_MAX_AGE = 0
    time.sleep(1.1)  # a timestamp older than the max age: the signer's clock has one-second steps
    expired = client.post(f"/senders/confirm/{token}")
    assert expired.status_code == 400 and b"This confirmation link has expired" in expired.content
    assert not SenderSignature.objects.get(pk=signature.pk).confirmed

    settings.SENDER_CONFIRMATION_MAX_AGE = 3600
    signature.delete()
    gone = client.get(f"/senders/confirm/{token}")
    assert gone.status_code == 400 and b"no longer exists" in gone.content
    # A token made for an address confirms only that address, even with the same ID reused.
    forged = signing.TimestampSigner(salt=SALT).sign_object({"id": 1, "email": "x@y.test"})
    assert client.get(f"/senders/confirm/{forged}").status_code == 400


@pytest.mark.django_db
def test_the_system_server_made_concurrently_is_used_once(settings, monkeypatch):
    from messages import system

    stream = system_stream()
    real = Server.objects.filter

    def not_seen_yet(*args, **kwargs):  # another process made it between the look-up and now
        found = real(*args, **kwargs)
        monkeypatch.setattr(Server.objects, "filter", real)
        return found.none()

    monkeypatch.setattr(Server.objects, "filter", not_seen_yet)
    assert system.system_stream() == stream
    assert Server.objects.filter(name=settings.SYSTEM_SERVER_NAME).count() == 1
