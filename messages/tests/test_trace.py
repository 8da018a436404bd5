"""Trace fields: the Received line each accepted message gets on top, the Date a message without
one gets, and both in what processing stores (so DKIM at delivery signs them as sent)."""

import email
import email.policy
import email.utils
import uuid
from datetime import UTC, datetime

import pytest

from conftest import accepted_submission
from messages.models import OutboundMessage
from messages.processing import process_submission
from messages.trace import Arrival, address_literal, date_field, protocol, received_field

WHEN = datetime(2026, 12, 7, 9, 30, 5, tzinfo=UTC)


def arrival(**fields) -> Arrival:
    values = {"message_id": "4b1f0c52-0000-4000-8000-000000000001", "client_address": "192.0.2.7",
              "client_helo": "app.example.com", "tls_version": "TLSv1.3",
              "auth_mechanism": "CRAM-MD5", "endpoint": "transactional",
              "recipients": ("user@example.net",), "received_at": WHEN}  # fmt: skip
    values.update(fields)
    return Arrival(**values)


def test_the_received_line_as_rfc_5321_has_it(settings):
    settings.SMTP_HOSTNAME = "mail.example.org"
    assert received_field(arrival()) == (
        b"Received: from app.example.com ([192.0.2.7])\r\n"
        b"\tby mail.example.org with ESMTPSA id 4b1f0c52-0000-4000-8000-000000000001\r\n"
        b"\tfor <user@example.net>;\r\n"
        b"\tMon, 07 Dec 2026 09:30:05 +0000"
    )


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({}, "ESMTPSA"),
        ({"tls_version": ""}, "ESMTPA"),
        ({"authenticated": False}, "ESMTPS"),
        ({"authenticated": False, "tls_version": ""}, "ESMTP"),
        ({"endpoint": "api", "tls_version": "TLS"}, "HTTPS"),
        ({"endpoint": "api", "tls_version": ""}, "HTTP"),
    ],
)
def test_the_protocol_says_tls_and_auth(fields, expected):
    assert protocol(arrival(**fields)) == expected


@pytest.mark.parametrize(
    "helo, shown",
    [
        ("", "[192.0.2.7]"),
        ("bad helo (x); y", "[192.0.2.7]"),
        ("[192.0.2.7]", "[192.0.2.7]"),
        ("h\u00e9llo.example", "[192.0.2.7]"),
        ("a" * 300, "[192.0.2.7]"),
    ],
)
def test_a_helo_that_is_no_name_is_replaced_by_the_address(settings, helo, shown):
    settings.SMTP_HOSTNAME = "mail.example.org"
    line = received_field(arrival(client_helo=helo)).decode()
    assert line.startswith(f"Received: from {shown} ([192.0.2.7])")
    parsed = email.message_from_bytes(received_field(arrival(client_helo=helo)) + b"\r\n\r\n")
    assert parsed["Received"] is not None


def test_no_for_clause_for_several_recipients_or_unsafe_ones(settings):
    settings.SMTP_HOSTNAME = "mail.example.org"
    assert b" for <" not in received_field(arrival(recipients=("a@x.example", "b@x.example")))
    assert b" for <" not in received_field(arrival(recipients=("a>@x.example",)))
    assert b"for <a@x.example>" in received_field(arrival(recipients=("a@x.example",) * 2))


def test_address_literals():
    assert address_literal("2001:db8::1") == "[IPv6:2001:db8::1]"
    assert address_literal("::ffff:192.0.2.1") == "[192.0.2.1]"
    assert address_literal("nonsense") == "[0.0.0.0]"


def test_date_field():
    assert date_field(arrival()) == b"Date: Mon, 07 Dec 2026 09:30:05 +0000"


RAW_WITHOUT_DATE = (
    b"From: App <app@example.com>\r\nTo: user@example.net\r\nSubject: Hi\r\n\r\nHello.\r\n"
)


@pytest.mark.django_db
@pytest.mark.parametrize("line_end", [b"\r\n", b"\n"])
def test_processing_adds_received_on_top_and_a_missing_date(server, settings, line_end):
    settings.SMTP_HOSTNAME = "mail.example.org"
    raw = RAW_WITHOUT_DATE.replace(b"\r\n", line_end)
    submission = accepted_submission(server, raw, ["user@example.net"], client_helo="app.test",
                                     tls_version="TLSv1.3", auth_mechanism="PLAIN")  # fmt: skip
    process_submission(submission.pk)
    content = bytes(OutboundMessage.objects.get(message_id=submission.message_id).content)
    assert content.startswith(b"Received: from app.test ([127.0.0.1])" + line_end + b"\tby ")
    assert f"id {submission.message_id}".encode() in content
    assert content.count(b"\r\n" if line_end == b"\r\n" else b"\n") == content.count(line_end)
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert "with ESMTPSA" in message["Received"] and "for <user@example.net>" in message["Received"]
    date = email.utils.parsedate_to_datetime(message["Date"])
    assert abs((date - submission.received_at).total_seconds()) < 1
    assert message.get_content().strip() == "Hello."


@pytest.mark.django_db
def test_a_date_the_client_gave_is_kept(server):
    raw = RAW_WITHOUT_DATE.replace(
        b"Subject: Hi", b"Subject: Hi\r\nDate: Tue, 1 Dec 2026 08:00:00 +0100"
    )
    submission = accepted_submission(server, raw, ["user@example.net"])
    process_submission(submission.pk)
    content = bytes(OutboundMessage.objects.get(message_id=submission.message_id).content)
    assert content.count(b"Date:") == 1 and b"Date: Tue, 1 Dec 2026 08:00:00 +0100" in content
    assert content.count(b"Received:") == 1


def test_arrival_reads_a_submission():
    from messages.models import Submission

    submission = Submission(
        message_id=uuid.uuid4(),
        client_address="::1",
        client_helo="h.test",
        endpoint="transactional",
        credential_kind="ip",
        rcpt_to=["a@b.example"],
        received_at=WHEN,
    )
    read = Arrival.of(submission)
    assert (read.authenticated, read.recipients, read.client_address) == (
        False,
        ("a@b.example",),
        "::1",
    )
    assert protocol(read) == "ESMTP"


@pytest.mark.django_db
def test_http_sent_messages_get_a_received_line_and_one_date(server, settings):
    import json

    from django.test import Client

    settings.SMTP_HOSTNAME = "mail.example.org"
    api = Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)
    body = {"From": "app@example.com", "To": "user@example.net", "Subject": "Hi",
            "TextBody": "Hello"}  # fmt: skip
    response = api.post("/email", data=json.dumps(body), content_type="application/json")
    message_id = response.json()["MessageID"]
    content = bytes(OutboundMessage.objects.get(message_id=message_id).content)
    assert content.startswith(b"Received: from [127.0.0.1] ([127.0.0.1])\r\n")
    assert f"by mail.example.org with HTTP id {message_id}".encode() in content
    assert content.count(b"\r\nDate: ") == 1
