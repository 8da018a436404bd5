"""The inbound MX end to end: mail sent over real SMTP to a gateway process's inbound listener,
processed by a real Celery worker, and POSTed to a local HTTP receiver, whose JSON django-anymail's
own Postmark inbound view parses into the same message."""

import base64
import shutil
import smtplib
import subprocess
import sys
from email.message import EmailMessage

import pytest
from anymail.signals import inbound as anymail_inbound
from anymail.webhooks.postmark import PostmarkInboundWebhookView
from django.test import RequestFactory

from conftest import Process, free_port, insecure, subprocess_env, wait_for
from inbound import services
from inbound.models import InboundMessage, InboundRule
from webhooks.tests.test_webhooks import Receiver

pytestmark = pytest.mark.django_db(transaction=True)

DOMAIN = "inbound.mx-test.example"


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker, tmp_path_factory):
    """A gateway process with an inbound listener and a worker process, sharing the embedded
    queue; both allowed to post to 127.0.0.1."""
    logs = tmp_path_factory.mktemp("inbound-mx")
    port = free_port()
    env = subprocess_env(
        INBOUND_DOMAIN=DOMAIN,
        WEBHOOK_ALLOW_PRIVATE_URLS="true",
        CELERY_BROKER_URL="",
        SMTP_AUTH_CACHE_SECONDS=0,
        INBOUND_MAX_MESSAGE_SIZE=2 * 1024 * 1024,
    )
    gateway = Process(
        [sys.executable, "manage.py", "runsmtp", "--listen", f"inbound=127.0.0.1:{port}"],
        env,
        logs / "runsmtp.log",
    )
    worker = Process(
        [sys.executable, "-m", "celery", "-A", "postmark_site", "worker", "-l", "info",
         "--pool", "threads"],
        env,
        logs / "worker.log",
    )  # fmt: skip
    try:
        gateway.wait_for("SMTP gateway ready")
        worker.wait_for("ready", timeout=60)
        yield port
    finally:
        gateway.stop()
        worker.stop()


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    settings.INBOUND_DOMAIN = DOMAIN
    settings.ANYMAIL = {"WEBHOOK_SECRET": "app:s3cret"}  # what anymail's view checks
    r = Receiver()
    yield r
    r.stop()


def hooked(server, receiver, status=200, credentials="app:s3cret"):
    receiver.status = status
    server.inbound_hook_url = receiver.url.replace("http://", f"http://{credentials}@")
    server.save()
    return f"{server.inbound_hash}+Ticket-7@{DOMAIN}"


def smtp(port) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=20)
    client.ehlo("mx.sender.example")
    return client


def reply_to(address: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Jörg Müller <joerg@customer.example>"
    message["To"] = f"Support <{address}>"
    message["Subject"] = "Re: Ticket 7: printer"
    message["In-Reply-To"] = "<ticket-7@app.example>"
    message.set_content(
        "It works again, thanks!\n\nOn Fri, Dec 4, 2026 at 4:02 PM Support "
        "<support@app.example> wrote:\n> Please restart the printer.\n"
    )
    message.add_alternative("<p>It works again, <b>thanks</b>!</p>", subtype="html")
    message.add_attachment(b"%PDF-1.4\n", maintype="application", subtype="pdf", filename="a.pdf")
    return message


def anymail_parse(request: dict):
    """The request as django-anymail's Postmark inbound view receives and parses it."""
    got = []

    def handler(sender, event, esp_name, **kwargs):
        got.append(event)

    anymail_inbound.connect(handler)
    try:
        view = PostmarkInboundWebhookView.as_view()
        http = RequestFactory().post(
            "/anymail/postmark/inbound/",
            data=request["body"],
            content_type="application/json",
            HTTP_AUTHORIZATION=request["headers"]["Authorization"],
        )
        assert view(http).status_code == 200
    finally:
        anymail_inbound.disconnect(handler)
    (event,) = got
    return event


def test_a_reply_arrives_as_postmark_inbound_json(stack, server, receiver):
    address = hooked(server, receiver)
    client = smtp(stack)
    assert not client.has_extn("auth")
    assert client.has_extn("starttls")
    assert int(client.esmtp_features["size"]) == 2 * 1024 * 1024
    client.send_message(reply_to(address), "bounces@customer.example", [address])
    client.quit()
    wait_for(lambda: receiver.requests, what="the inbound webhook")
    wait_for(lambda: InboundMessage.objects.filter(status="processed").exists(), what="processed")
    (request,) = receiver.requests
    body = receiver.payloads()[0]
    assert body["MailboxHash"] == "Ticket-7"
    assert body["StrippedTextReply"] == "It works again, thanks!"
    assert body["OriginalRecipient"] == address
    assert body["MessageStream"] == "inbound"
    event = anymail_parse(request)
    message = event.message
    assert event.event_id == str(InboundMessage.objects.get().message_id)
    assert str(message.from_email) == "Jörg Müller <joerg@customer.example>"
    assert message.subject == "Re: Ticket 7: printer"
    assert message.text.startswith("It works again, thanks!")
    assert message.html == "<p>It works again, <b>thanks</b>!</p>\n"
    # Postmark sends "ContentID": "" for an attachment that is not inline, which anymail's
    # parser files under inlines: look at both.
    (attachment,) = [p for p in message.attachments + message.inlines if p.get_filename()]
    assert attachment.get_filename() == "a.pdf"
    assert attachment.get_content_bytes() == b"%PDF-1.4\n"
    assert message.stripped_text == "It works again, thanks!"
    assert message.envelope_sender == "bounces@customer.example"
    assert message.envelope_recipient == address


def test_unknown_addresses_are_refused_at_rcpt(stack, server, receiver):
    client = smtp(stack)
    client.mail("someone@sender.example")
    code, reply = client.rcpt(f"0123456789abcdef0123456789abcdef@{DOMAIN}")
    assert (code, reply[:5]) == (550, b"5.1.1")
    code, _ = client.rcpt("postmaster@elsewhere.example")  # never a relay
    assert code == 550
    client.quit()


def test_one_server_per_transaction(stack, server, other_server, receiver):
    first = hooked(server, receiver)
    second = f"{other_server.inbound_hash}@{DOMAIN}"
    client = smtp(stack)
    client.mail("someone@sender.example")
    assert client.rcpt(first)[0] == 250
    code, reply = client.rcpt(second)
    assert (code, reply[:5]) == (452, b"4.5.3")
    assert client.rcpt(f"{server.inbound_hash}+other@{DOMAIN}")[0] == 250
    assert client.data(b"From: a@sender.example\r\nSubject: two\r\n\r\nhi\r\n")[0] == 250
    client.quit()
    wait_for(lambda: len(receiver.requests) == 2, what="one post per recipient")
    boxes = sorted(p["MailboxHash"] for p in receiver.payloads())
    assert boxes == ["Ticket-7", "other"]


def test_copies_per_transaction_are_capped(stack, server, receiver):
    """Each recipient is a stored copy: past ten in one transaction the rest get 452, which the
    sending MTA sends again in a transaction of its own."""
    hooked(server, receiver)
    client = smtp(stack)
    client.mail("someone@sender.example")
    for box in range(10):
        assert client.rcpt(f"{server.inbound_hash}+box{box}@{DOMAIN}")[0] == 250
    code, reply = client.rcpt(f"{server.inbound_hash}+box10@{DOMAIN}")
    assert (code, reply[:5]) == (452, b"4.5.3")
    client.quit()


def test_auth_is_not_offered_and_starttls_works(stack, server, receiver):
    client = smtp(stack)
    code, reply = client.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0a\0b").decode())
    assert code == 502
    client.starttls(context=insecure())
    client.ehlo("mx.sender.example")
    assert not client.has_extn("auth")
    client.quit()


def test_too_big_is_refused(stack, server, receiver):
    address = hooked(server, receiver)
    client = smtp(stack)
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        client.sendmail("a@sender.example", [address], b"x" * (3 * 1024 * 1024))
    assert refused.value.smtp_code == 552
    client.close()


def test_403_stops_and_500_retries(stack, server, receiver):
    address = hooked(server, receiver, status=403)
    client = smtp(stack)
    client.sendmail("a@sender.example", [address], b"From: a@sender.example\r\n\r\none\r\n")
    wait_for(lambda: InboundMessage.objects.filter(status="failed").exists(), what="failed")
    assert len(receiver.requests) == 1
    receiver.status = 500
    client.sendmail("a@sender.example", [address], b"From: a@sender.example\r\n\r\ntwo\r\n")
    client.quit()
    wait_for(lambda: InboundMessage.objects.filter(status="scheduled").exists(), what="scheduled")
    message = InboundMessage.objects.get(status="scheduled")
    assert message.attempts == 1
    assert 50 < (message.next_attempt_at - message.updated_at).total_seconds() <= 61
    assert len(receiver.requests) == 2


def test_a_blocked_sender_is_not_posted_until_bypassed(stack, server, receiver):
    address = hooked(server, receiver)
    InboundRule.objects.create(server=server, rule="blocked.example")
    client = smtp(stack)
    client.sendmail("x@blocked.example", [address], b"From: x@blocked.example\r\n\r\nhi\r\n")
    client.quit()
    wait_for(lambda: InboundMessage.objects.filter(status="blocked").exists(), what="blocked")
    assert receiver.requests == []
    assert services.bypass(InboundMessage.objects.get())
    wait_for(lambda: receiver.requests, what="the bypassed message's post")
    assert receiver.payloads()[0]["From"] == "x@blocked.example"


@pytest.mark.skipif(not shutil.which("swaks"), reason="swaks is not installed")
def test_swaks_over_starttls_reaches_the_hook(stack, server, receiver):
    """An ordinary sending MTA's session, by swaks with STARTTLS: the reply arrives as JSON."""
    address = hooked(server, receiver)
    done = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{stack}", "--tls", "--helo", "mx.sender.example",
         "--from", "bounces@customer.example", "--to", address,
         "--header", "From: Ann Customer <ann@customer.example>",
         "--header", "Subject: Re: Ticket 7 by swaks",
         "--body", "Thanks, swaks got through."],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "<~  250 2.0.0" in done.stdout
    wait_for(lambda: receiver.requests, what="the inbound webhook")
    body = receiver.payloads()[0]
    assert (body["From"], body["FromName"]) == ("ann@customer.example", "Ann Customer")
    assert body["Subject"] == "Re: Ticket 7 by swaks"
    assert body["TextBody"].strip() == "Thanks, swaks got through."
    assert body["MailboxHash"] == "Ticket-7" and body["OriginalRecipient"] == address
    event = anymail_parse(receiver.requests[0])
    assert event.message.subject == "Re: Ticket 7 by swaks"
