"""The send API through real HTTP (``live_server``) with Postmark's real clients, unmodified but
for their base URL — django-anymail's Postmark backend, postmarker and postmark.js — each message
then relayed by a real Celery worker to a local SMTP sink."""

import base64
import email
import email.policy

import pytest
from anymail.exceptions import AnymailRecipientsRefused
from anymail.message import attach_inline_image
from django.core.mail import EmailMultiAlternatives, get_connection

from conftest import wait_for
from messages.models import OutboundMessage, Recipient
from servers.models import DeliveryType
from streams.services import get_stream
from streams.suppressions import suppress

pytestmark = pytest.mark.django_db(transaction=True)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


@pytest.fixture
def token(server):
    server.delivery_type = DeliveryType.LIVE
    server.save()
    return server.tokens.first().token


def received(sink, count: int) -> list[email.message.EmailMessage]:
    """The first ``count`` messages the sink received, parsed."""
    wait_for(lambda: len(sink.messages) >= count, timeout=60, what=f"{count} relayed message(s)")
    return [
        email.message_from_bytes(m.content, policy=email.policy.default)
        for m in sink.messages[:count]
    ]


def delivered(message_id: str) -> list[str]:
    """The recipients of the message delivered, once delivery of every one has ended."""
    recipients = Recipient.objects.filter(message__message_id=message_id)
    wait_for(
        lambda: recipients.exists() and not recipients.exclude(
            status__in=["delivered", "bounced", "failed"]
        ).exists(),
        timeout=60,
        what="the deliveries",
    )  # fmt: skip
    return sorted(recipients.filter(status="delivered").values_list("email", flat=True))


# --- django-anymail --------------------------------------------------------------------------


@pytest.fixture
def anymail(settings, live_server, token):
    settings.ANYMAIL = {
        "POSTMARK_SERVER_TOKEN": token,
        "POSTMARK_API_URL": live_server.url + "/",
        "IGNORE_UNSUPPORTED_FEATURES": True,  # merge_data without a template: TemplateModel
    }
    return get_connection("anymail.backends.postmark.EmailBackend")


def test_anymail_single_send(anymail, relay_sink, relaying_worker):
    message = EmailMultiAlternatives(
        "Welcome", "Hello!", "Shop <shop@example.com>", ["Joe <ok1@example.net>"],
        cc=["ok2@example.net"], bcc=["ok3@example.net"], reply_to=["help@example.com"],
        headers={"X-Custom": "1"}, connection=anymail,
    )  # fmt: skip
    message.attach_alternative("<p>Hello!</p>", "text/html")
    message.tags = ["welcome"]
    message.metadata = {"user": "42"}
    message.track_opens = False
    message.send()
    status = message.anymail_status
    assert status.status == {"sent"}
    message_id = status.message_id
    assert {r: s.status for r, s in status.recipients.items()} == {
        "ok1@example.net": "sent", "ok2@example.net": "sent", "ok3@example.net": "sent"
    }  # fmt: skip
    assert delivered(message_id) == ["ok1@example.net", "ok2@example.net", "ok3@example.net"]
    [relayed] = received(relay_sink, 1)
    assert relayed["Subject"] == "Welcome" and relayed["X-Custom"] == "1"
    assert str(relayed["To"]) == "Joe <ok1@example.net>" and relayed["Bcc"] is None
    assert relayed["Reply-To"] == "help@example.com"
    assert relayed.get_body(("html",)).get_content().strip() == "<p>Hello!</p>"
    out = OutboundMessage.objects.get(message_id=message_id)
    assert out.tag == "welcome" and out.metadata == {"user": "42"}


def test_anymail_batch_with_merge_data(anymail, relay_sink, relaying_worker):
    message = EmailMultiAlternatives(
        "Hi", "Hello", "shop@example.com", ["ok-a@example.net", "B <ok-b@example.net>"],
        connection=anymail,
    )  # fmt: skip
    message.merge_data = {"ok-a@example.net": {"name": "A"}, "ok-b@example.net": {"name": "B"}}
    message.merge_metadata = {"ok-a@example.net": {"n": "1"}, "ok-b@example.net": {"n": "2"}}
    message.send()
    recipients = message.anymail_status.recipients
    assert {r: s.status for r, s in recipients.items()} == {
        "ok-a@example.net": "sent", "ok-b@example.net": "sent"
    }  # fmt: skip
    first, second = (recipients[r].message_id for r in ("ok-a@example.net", "ok-b@example.net"))
    assert first != second  # one message per To address
    assert delivered(first) == ["ok-a@example.net"] and delivered(second) == ["ok-b@example.net"]
    assert OutboundMessage.objects.get(message_id=second).metadata == {"n": "2"}
    assert len(received(relay_sink, 2)) == 2


def test_anymail_attachment_and_inline_image(anymail, relay_sink, relaying_worker):
    message = EmailMultiAlternatives(
        "Report", "See attached", "shop@example.com", ["ok@example.net"], connection=anymail
    )
    cid = attach_inline_image(message, PNG, "logo.png")
    message.attach("report.csv", "a,b\n1,2\n", "text/csv")
    message.attach_alternative(f"<p><img src='cid:{cid}'></p>", "text/html")
    message.send()
    assert message.anymail_status.status == {"sent"}
    [relayed] = received(relay_sink, 1)
    related = next(p for p in relayed.walk() if p.get_content_type() == "multipart/related")
    logo = related.get_payload()[1]
    assert logo["Content-ID"] == f"<{cid}>" and logo.get_content() == PNG
    assert f"cid:{cid}" in relayed.get_body(("html",)).get_content()
    [csv] = [p for p in relayed.iter_attachments() if p.get_filename() == "report.csv"]
    assert csv.get_content().replace("\r\n", "\n") == "a,b\n1,2\n"


def test_anymail_partly_inactive_recipients_are_rejected(
    anymail, server, relay_sink, relaying_worker
):
    suppress(get_stream(server, "outbound"), "gone@example.net", "HardBounce", "Recipient")
    message = EmailMultiAlternatives(
        "Hi", "Hello", "shop@example.com", ["ok@example.net", "Gone@example.net"],
        connection=anymail,
    )  # fmt: skip
    message.send()
    statuses = {r: s.status for r, s in message.anymail_status.recipients.items()}
    assert statuses == {"ok@example.net": "sent", "Gone@example.net": "rejected"}
    assert delivered(message.anymail_status.recipients["ok@example.net"].message_id) == [
        "ok@example.net"
    ]
    [relayed] = received(relay_sink, 1)
    assert relay_sink.messages[0].rcpt_tos == ["ok@example.net"]
    assert "Gone@example.net" in str(relayed["To"])  # the header is the sender's

    everyone_gone = EmailMultiAlternatives(
        "Hi", "Hello", "shop@example.com", ["gone@example.net"], connection=anymail
    )
    with pytest.raises(AnymailRecipientsRefused):  # anymail's answer to a 406
        everyone_gone.send()
    assert everyone_gone.anymail_status.status == {"rejected"}


# --- postmarker --------------------------------------------------------------------------------


def test_postmarker_send_and_send_batch(live_server, token, relay_sink, relaying_worker):
    from postmarker.core import PostmarkClient

    client = PostmarkClient(server_token=token, root_api_url=live_server.url + "/")
    answer = client.emails.send(
        From="shop@example.com", To="ok1@example.net", Subject="One", TextBody="Hello",
        HtmlBody="<b>Hello</b>", Tag="single", Metadata={"k": "v"}, Headers={"X-A": "b"},
        TrackLinks="HtmlOnly",
    )  # fmt: skip
    assert answer["ErrorCode"] == 0 and answer["To"] == "ok1@example.net"
    assert delivered(answer["MessageID"]) == ["ok1@example.net"]
    answers = client.emails.send_batch(
        {"From": "shop@example.com", "To": "ok2@example.net", "Subject": "A", "TextBody": "a"},
        {"From": "shop@example.com", "To": "ok3@example.net", "Subject": "B", "TextBody": "b",
         "MessageStream": "outbound"},
    )  # fmt: skip
    assert [a["ErrorCode"] for a in answers] == [0, 0]
    assert delivered(answers[1]["MessageID"]) == ["ok3@example.net"]
    messages = received(relay_sink, 3)
    assert sorted(str(m["Subject"]) for m in messages) == ["A", "B", "One"]
    one = next(m for m in messages if m["Subject"] == "One")
    assert one["X-A"] == "b"
    assert OutboundMessage.objects.get(message_id=answer["MessageID"]).track_links == "HtmlOnly"


# --- postmark.js -------------------------------------------------------------------------------


def test_postmark_js_send_email_and_batch(
    live_server, token, relay_sink, relaying_worker, postmark_js
):
    content = base64.b64encode(b"hello").decode()
    outcome = postmark_js(
        live_server.url, "Server", token, "sendEmail",
        {"From": "shop@example.com", "To": "ok1@example.net", "Subject": "JS", "TextBody": "x",
         "Attachments": [{"Name": "a.txt", "Content": content, "ContentType": "text/plain"}]},
    )  # fmt: skip
    assert outcome["ok"], outcome
    assert outcome["result"]["ErrorCode"] == 0 and outcome["result"]["Message"] == "OK"
    assert delivered(outcome["result"]["MessageID"]) == ["ok1@example.net"]
    batch = postmark_js(
        live_server.url, "Server", token, "sendEmailBatch",
        [{"From": "shop@example.com", "To": "ok2@example.net", "Subject": "J2", "TextBody": "x"},
         {"From": "shop@example.com", "To": "invalid@localhost", "TextBody": "x"}],
    )  # fmt: skip
    assert batch["ok"], batch
    assert [r["ErrorCode"] for r in batch["result"]] == [0, 300]
    assert batch["result"][1]["Message"] == "Invalid 'To' address: 'invalid@localhost'."
    assert delivered(batch["result"][0]["MessageID"]) == ["ok2@example.net"]
    failed = postmark_js(
        live_server.url, "Server", token, "sendEmail",
        {"From": "shop@example.com", "To": "ok@example.net", "TextBody": "x",
         "MessageStream": "nope"},
    )  # fmt: skip
    assert not failed["ok"] and failed["code"] == 1235 and failed["statusCode"] == 422
    messages = received(relay_sink, 2)
    [attachment] = next(m for m in messages if m["Subject"] == "JS").iter_attachments()
    assert attachment.get_content() in ("hello", b"hello")
