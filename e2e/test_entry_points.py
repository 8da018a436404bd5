"""One message, two entry points: the same content sent over SMTP (a real gateway) and over
``POST /email`` (real HTTP) becomes the same outbound message, is relayed the same way by a real
worker, and produces the same events and bounces — processing has one path for both."""

import email
import email.policy
from email.message import EmailMessage

import pytest
import requests

from bounces.models import Bounce
from conftest import queued_id, wait_for
from messages.models import MessageEvent, OutboundMessage, Recipient
from servers.models import DeliveryType
from streams.models import Suppression

pytestmark = pytest.mark.django_db(transaction=True)

TO = ["User <ok-user@example.net>", "gone-user@example.net"]  # the sink refuses gone… (5.1.1)
CC = "ok-copy@example.net"
BCC = "ok-hidden@example.net"
TEXT = "Hello there, https://example.com/welcome\n"
HTML = "<p>Hello there</p>\n"


def over_smtp(gateway, creds) -> str:
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = "Shop <shop@example.com>"
    message["To"] = ", ".join(TO)
    message["Cc"] = CC
    message["Subject"] = "Welcome aboard"
    message["X-PM-Tag"] = "welcome"
    message["X-PM-Metadata-customer"] = "42"
    message["X-PM-TrackLinks"] = "HtmlOnly"
    message["X-PM-Message-Stream"] = "outbound"
    message.set_content(TEXT)
    message.add_alternative(HTML, subtype="html")
    client = gateway.smtp()
    client.login(creds.server_token, creds.server_token)
    client.mail("shop@example.com")
    for rcpt in ("ok-user@example.net", "gone-user@example.net", CC, BCC):
        client.rcpt(rcpt)
    code, reply = client.data(message.as_bytes())
    client.quit()
    assert code == 250, reply
    return queued_id(reply)


def over_http(live_server, creds) -> str:
    body = {
        "From": "Shop <shop@example.com>",
        "To": ", ".join(TO),
        "Cc": CC,
        "Bcc": BCC,
        "Subject": "Welcome aboard",
        "Tag": "welcome",
        "Metadata": {"customer": "42"},
        "TrackLinks": "HtmlOnly",
        "MessageStream": "outbound",
        "TextBody": TEXT,
        "HtmlBody": HTML,
    }
    response = requests.post(
        live_server.url + "/email",
        json=body,
        headers={"X-Postmark-Server-Token": creds.server_token, "Accept": "application/json"},
        timeout=30,
    )
    answer = response.json()
    assert answer["ErrorCode"] == 0, answer
    return answer["MessageID"]


def outcome(message_id: str, relayed: list) -> dict:
    """What an entry point's message became, without what differs by nature (ids, times)."""
    out = OutboundMessage.objects.get(message_id=message_id)
    [bounce] = Bounce.objects.filter(message_id=message_id)
    copies = [email.message_from_bytes(r.content, policy=email.policy.default) for r in relayed]
    return {
        "message": {
            "from": out.from_address,
            "to": out.to,
            "cc": out.cc,
            "bcc": out.bcc,
            "recipients": sorted(out.recipients),
            "subject": out.subject,
            "tag": out.tag,
            "metadata": out.metadata,
            "track_opens": out.track_opens,
            "track_links": out.track_links,
            "stream": out.stream.stream_id,
        },  # fmt: skip
        "deliveries": sorted(Recipient.objects.filter(message=out).values_list("email", "status")),
        "events": sorted(
            MessageEvent.objects.filter(message_id=message_id).values_list("type", "recipient")
        ),
        "bounce": (
            bounce.type,
            bounce.email,
            bounce.tag,
            bounce.message_stream,
            bounce.subject,
            bounce.from_address,
            bounce.inactive,
        ),  # fmt: skip
        "suppressed": list(Suppression.objects.values_list("email", "reason")),
        "relayed": sorted(
            (
                tuple(sorted(r.rcpt_tos)),
                str(c["From"]),
                str(c["To"]),
                str(c["Cc"]),
                c["Subject"],
                c.get_body(("plain",)).get_content().replace("\r\n", "\n"),
                c.get_body(("html",)).get_content().replace("\r\n", "\n"),
                sorted(k.lower() for k in c if k.lower().startswith(("x-pm-", "bcc"))),
                c["Message-ID"] == out.message_id_header,
            )
            for r, c in zip(relayed, copies, strict=True)
        ),  # fmt: skip
    }


EXPECTED = {
    "message": {
        "from": "Shop <shop@example.com>",
        "to": ["ok-user@example.net", "gone-user@example.net"],
        "cc": ["ok-copy@example.net"],
        "bcc": ["ok-hidden@example.net"],
        "recipients": [
            "gone-user@example.net",
            "ok-copy@example.net",
            "ok-hidden@example.net",
            "ok-user@example.net",
        ],  # fmt: skip
        "subject": "Welcome aboard",
        "tag": "welcome",
        "metadata": {"customer": "42"},
        "track_opens": False,
        "track_links": "HtmlOnly",
        "stream": "outbound",
    },
    "deliveries": [
        ("gone-user@example.net", "bounced"),
        ("ok-copy@example.net", "delivered"),
        ("ok-hidden@example.net", "delivered"),
        ("ok-user@example.net", "delivered"),
    ],  # fmt: skip
    "events": [
        ("Bounce", "gone-user@example.net"),
        ("Delivery", "ok-copy@example.net"),
        ("Delivery", "ok-hidden@example.net"),
        ("Delivery", "ok-user@example.net"),
    ],  # fmt: skip
    "bounce": (
        "HardBounce",
        "gone-user@example.net",
        "welcome",
        "outbound",
        "Welcome aboard",
        "shop@example.com",
        True,
    ),  # fmt: skip
    "suppressed": [("gone-user@example.net", "HardBounce")],
}


@pytest.mark.parametrize("entry_point", ["smtp", "http"])
def test_smtp_and_http_make_the_same_message_events_and_bounces(
    entry_point, gateway, creds, live_server, relay_sink, relaying_worker
):
    creds.server.delivery_type = DeliveryType.LIVE
    creds.server.save()
    if entry_point == "smtp":
        message_id = over_smtp(gateway, creds)
    else:
        message_id = over_http(live_server, creds)
    wait_for(
        lambda: Recipient.objects.filter(message__message_id=message_id).count() == 4
        and not Recipient.objects.filter(
            message__message_id=message_id, status__in=["pending", "sending", "deferred"]
        ).exists()
        and Bounce.objects.filter(message_id=message_id).exists(),
        timeout=60,
        what="delivery to every recipient",
    )  # fmt: skip
    wait_for(lambda: relay_sink.messages, what="the relayed message")
    result = outcome(message_id, relay_sink.messages)
    relayed = result.pop("relayed")
    assert result == EXPECTED
    # Tracked links make each copy differ: one transaction per recipient, each the same but for
    # its tracking tokens; every copy has the bodies as sent, no X-PM-* or Bcc header, and the
    # service's Message-ID.
    assert [r[0] for r in relayed] == [
        ("ok-copy@example.net",), ("ok-hidden@example.net",), ("ok-user@example.net",)
    ]  # fmt: skip
    for copy in relayed:
        assert copy[1:5] == (
            "Shop <shop@example.com>", "User <ok-user@example.net>, gone-user@example.net",
            "ok-copy@example.net", "Welcome aboard",
        )  # fmt: skip
        assert copy[5] == TEXT and copy[6] == HTML
        assert copy[7] == [] and copy[8] is True
