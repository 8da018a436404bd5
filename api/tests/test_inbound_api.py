"""The Messages API for inbound mail and the inbound rule triggers (compat §13.3, §13.4) through
real HTTP with Django's test client: the shapes, every filter, paging and its errors, scoping to
the token's server, bypass and retry with their sentences, and the rules' errors."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from inbound.models import InboundMessage, InboundRule
from inbound.parsing import parse
from streams.services import get_stream

JSON = "application/json; charset=utf-8"
S = InboundMessage.Status
# Every field of a list item, and its type (postmark-python requires most of them).
ITEM_FIELDS = {
    "MessageID": str, "From": str, "FromName": str, "FromFull": dict, "To": str, "ToFull": list,
    "Cc": str, "CcFull": list, "Bcc": str, "BccFull": list, "ReplyTo": str,
    "OriginalRecipient": str, "Subject": str, "Date": str, "MailboxHash": str, "Tag": str,
    "Status": str, "MessageStream": str, "Attachments": list,
}  # fmt: skip
DETAIL_FIELDS = {"TextBody": str, "HtmlBody": str, "StrippedTextReply": str, "Headers": list,
                 "BlockedReason": str}  # fmt: skip
PDF = "JVBERi0xLjQK"  # base64 of "%PDF-1.4\n"
SOURCE = (
    "From: {name} <{sender}>\r\n"
    "To: Support <{rcpt}>\r\n"
    "Reply-To: replies@example.com\r\n"
    "Subject: {subject}\r\n"
    "Date: Fri, 1 Aug 2014 16:45:32 -0400\r\n"
    "In-Reply-To: <ticket-42@app.example>\r\n"
    "X-Ticket: 7\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b1"\r\n'
    "\r\n"
    "--b1\r\n"
    'Content-Type: multipart/alternative; boundary="b2"\r\n'
    "\r\n"
    "--b2\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Thanks!\r\n"
    "\r\n"
    "On Thu, Jul 31, 2014 at 9:00 AM Support <support@app.example> wrote:\r\n"
    "> the question\r\n"
    "--b2\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "\r\n"
    "<p>Thanks!</p><script>alert(1)</script>\r\n"
    "--b2--\r\n"
    "--b1\r\n"
    'Content-Type: application/pdf; name="invoice.pdf"\r\n'
    'Content-Disposition: attachment; filename="invoice.pdf"\r\n'
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    f"{PDF}\r\n"
    "--b1\r\n"
    "Content-Type: image/png\r\n"
    'Content-Disposition: inline; filename="logo.png"\r\n'
    "Content-ID: <logo@x>\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "iVBORw0=\r\n"
    "--b1--\r\n"
)


def make_inbound(server, *, status=S.PROCESSED, sender="ann@example.com", name="Ann Sender",
                 box="T-42", subject="Re: ticket 42", received_at=None, **fields):  # fmt: skip
    """An inbound message as intake stores it: the real parser's JSON and summary columns."""
    local = f"{server.inbound_hash}+{box}" if box else server.inbound_hash
    rcpt = f"{local}@{settings.INBOUND_DOMAIN}"
    raw = SOURCE.format(name=name, sender=sender, rcpt=rcpt, subject=subject).encode()
    payload = parse(raw, rcpt, "bounces@example.com").payload
    message_id = uuid.uuid4()
    payload.update(MessageID=str(message_id), MessageStream="inbound")
    values = {
        "message_id": message_id,
        "server": server,
        "stream": get_stream(server, "inbound"),
        "status": status,
        "from_email": payload["From"],
        "from_name": payload["FromName"],
        "to": payload["To"],
        "cc": payload["Cc"],
        "subject": payload["Subject"],
        "mailbox_hash": payload["MailboxHash"],
        "original_recipient": rcpt,
        "date": payload["Date"],
        "received_at": received_at or timezone.now(),
        "payload": payload,
        "raw": raw,
    }
    values.update(fields)
    return InboundMessage.objects.create(**values)


def token_of(server) -> str:
    return server.tokens.first().token


@pytest.fixture
def api(server):
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=token_of(server))


def listing(api, query="", status=200):
    response = api.get(f"/messages/inbound?count=500&offset=0{query}")
    assert response.status_code == status, response.content
    assert response["Content-Type"] == JSON
    return response.json()


def found_ids(body) -> list[str]:
    return [m["MessageID"] for m in body["InboundMessages"]]


def assert_error(response, status: int, code: int) -> str:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"ErrorCode", "Message"}
    assert body["ErrorCode"] == code, body
    return body["Message"]


# --- GET /messages/inbound ----------------------------------------------------------------------


@pytest.mark.django_db
def test_empty_listing_is_postmarks(api):
    assert listing(api) == {"TotalCount": 0, "InboundMessages": []}


@pytest.mark.django_db
def test_list_shape_newest_first_and_scoped_to_the_server(api, server, other_server):
    older = make_inbound(server, received_at=timezone.now() - timedelta(hours=1))
    newer = make_inbound(server, status=S.BLOCKED)
    make_inbound(other_server)
    body = listing(api)
    assert body["TotalCount"] == 2
    assert found_ids(body) == [str(newer.message_id), str(older.message_id)]
    item = body["InboundMessages"][0]
    assert set(item) == set(ITEM_FIELDS)
    for field, kind in ITEM_FIELDS.items():
        assert isinstance(item[field], kind), field
    assert item["Status"] == "Blocked" and body["InboundMessages"][1]["Status"] == "Processed"
    assert item["FromFull"] == {"Email": "ann@example.com", "Name": "Ann Sender", "MailboxHash": ""}
    assert item["ToFull"][0]["MailboxHash"] == "T-42" and item["MailboxHash"] == "T-42"
    assert item["MessageStream"] == "inbound" and item["ReplyTo"] == "replies@example.com"
    # Attachments without their content (compat §13.3).
    assert item["Attachments"] == [
        {"Name": "invoice.pdf", "ContentType": "application/pdf", "ContentLength": 9,
         "ContentID": ""},
        {"Name": "logo.png", "ContentType": "image/png", "ContentLength": 5, "ContentID": "logo@x"},
    ]  # fmt: skip
    assert "TextBody" not in item and "Headers" not in item


@pytest.mark.django_db
def test_a_message_that_could_not_be_parsed_still_lists_every_field(api, server):
    broken = make_inbound(server, status=S.FAILED, payload={}, from_email="", from_name="")
    [item] = listing(api)["InboundMessages"]
    assert item["MessageID"] == str(broken.message_id)
    assert set(item) == set(ITEM_FIELDS)
    assert item["Attachments"] == [] and item["ToFull"] == [] and item["Status"] == "Failed"
    details = api.get(f"/messages/inbound/{broken.message_id}/details").json()
    assert details["TextBody"] == "" and details["Headers"] == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("&recipient=APP@example.org", ["plain"]),
        ("&fromemail=Bob@Example.com", ["blocked"]),
        ("&fromemail=bob", ["blocked"]),
        ("&fromEmail=Carol", ["failed"]),  # a part of the display name; any parameter case
        ("&tag=billing", ["failed"]),
        ("&subject=INVOICE", ["blocked"]),
        ("&mailboxhash=T-42", ["processed"]),
        ("&mailboxHash=t-42", []),  # exact
        ("&status=blocked", ["blocked"]),
        ("&status=Failed", ["failed"]),
        ("&status=processed", ["plain", "processed"]),
        ("&status=sent", ["plain", "processed"]),  # postmark.js's word for it
        ("&status=queued", []),
        ("&status=&subject=", ["failed", "blocked", "plain", "processed"]),  # empty: no filter
    ],
)
def test_filters(api, server, query, expected):
    now = timezone.now()
    made = {
        "processed": make_inbound(server, received_at=now - timedelta(minutes=4)),
        "plain": make_inbound(server, box="", original_recipient="app@example.org",
                              received_at=now - timedelta(minutes=3)),
        "blocked": make_inbound(server, status=S.BLOCKED, sender="bob@example.com", box="B",
                                subject="Your invoice", received_at=now - timedelta(minutes=2)),
        "failed": make_inbound(server, status=S.FAILED, sender="c@example.com", name="Carol",
                               tag="billing", box="F", received_at=now - timedelta(minutes=1)),
    }  # fmt: skip
    names = {str(m.message_id): name for name, m in made.items()}
    assert [names[i] for i in found_ids(listing(api, query))] == expected


@pytest.mark.django_db
def test_dates_are_eastern_time_and_inclusive(api, server):
    # 2024-01-10 23:30 Eastern is 2024-01-11 04:30 UTC.
    late = make_inbound(server, received_at=datetime(2024, 1, 11, 4, 30, tzinfo=UTC))
    make_inbound(server, received_at=datetime(2024, 1, 11, 5, 30, tzinfo=UTC))  # the 11th there
    assert found_ids(listing(api, "&fromdate=2024-01-10&todate=2024-01-10")) == [
        str(late.message_id)
    ]
    assert listing(api, "&fromDate=2024-01-11T00:00:00")["TotalCount"] == 1
    assert listing(api, "&todate=2024-01-11T04:30:00Z")["TotalCount"] == 1


@pytest.mark.django_db
def test_paging(api, server):
    now = timezone.now()
    made = [make_inbound(server, received_at=now - timedelta(minutes=n)) for n in range(5)]
    response = api.get("/messages/inbound?count=2&offset=1")
    body = response.json()
    assert body["TotalCount"] == 5
    assert found_ids(body) == [str(m.message_id) for m in made[1:3]]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        "count=501&offset=0",
        "count=0&offset=0",
        "count=100&offset=9901",
        "count=10",
        "offset=0",
        "count=ten&offset=0",
        "count=10&offset=-1",
        "count=10&offset=0&status=bounced",
        "count=10&offset=0&fromdate=yesterday",
        "count=10&offset=0&todate=0000-01-01",
        "count=10&offset=0&subject=%00",
    ],
)
def test_bad_queries_are_error_700(api, query):
    assert_error(api.get(f"/messages/inbound?{query}"), 422, 700)


@pytest.mark.django_db
def test_any_spelling_of_the_path(api, server):
    message = make_inbound(server)
    for path in ("/Messages/Inbound/", "/messages//INBOUND"):
        assert api.get(f"{path}?count=1&offset=0").json()["TotalCount"] == 1, path
    response = api.get(f"/messages/Inbound/{str(message.message_id).upper()}/Details/")
    assert response.json()["MessageID"] == str(message.message_id)


@pytest.mark.django_db
def test_a_token_is_required(server):
    assert_error(Client().get("/messages/inbound?count=1&offset=0"), 401, 10)
    bad = Client(HTTP_X_POSTMARK_SERVER_TOKEN="nope")
    assert_error(bad.put(f"/messages/inbound/{uuid.uuid4()}/bypass"), 401, 10)


# --- GET /messages/inbound/{id}/details ----------------------------------------------------------


@pytest.mark.django_db
def test_details(api, server):
    message = make_inbound(server, status=S.BLOCKED, blocked_reason="Sender blocked: example.com")
    response = api.get(f"/messages/inbound/{message.message_id}/details")
    assert response.status_code == 200 and response["Content-Type"] == JSON
    body = response.json()
    assert set(ITEM_FIELDS) | set(DETAIL_FIELDS) <= set(body)
    for field, kind in DETAIL_FIELDS.items():
        assert isinstance(body[field], kind), field
    assert body["TextBody"].startswith("Thanks!") and body["StrippedTextReply"] == "Thanks!"
    assert body["HtmlBody"] == "<p>Thanks!</p><script>alert(1)</script>"
    assert {"Name": "X-Ticket", "Value": "7"} in body["Headers"]
    assert body["BlockedReason"] == "Sender blocked: example.com"
    assert body["Attachments"][0]["Content"] == PDF  # the details carry the content
    assert "RawEmail" not in body


@pytest.mark.django_db
def test_details_carry_the_raw_email_when_the_server_keeps_it(api, server):
    server.raw_email_enabled = True
    server.save()
    message = make_inbound(server)
    body = api.get(f"/messages/inbound/{message.message_id}/details").json()
    assert body["RawEmail"].startswith("From: Ann Sender <ann@example.com>")


@pytest.mark.django_db
@pytest.mark.parametrize("suffix", ["details", "bypass", "retry"])
def test_unknown_malformed_and_foreign_ids_are_701(api, server, other_server, suffix):
    foreign = make_inbound(other_server, status=S.BLOCKED if suffix == "bypass" else S.FAILED)
    expected = {
        "details": "This message was not found.",
        "bypass": "This message was not found or cannot be bypassed.",
        "retry": "This message was not found or cannot be retried.",
    }[suffix]
    call = api.get if suffix == "details" else api.put
    for message_id in (uuid.uuid4(), "not-a-uuid", "%E2%80%AE", "1" * 300, foreign.message_id):
        assert assert_error(call(f"/messages/inbound/{message_id}/{suffix}"), 422, 701) == expected
    foreign.refresh_from_db()
    assert foreign.status in (S.BLOCKED, S.FAILED)  # untouched


# --- PUT …/bypass and …/retry --------------------------------------------------------------------


@pytest.mark.django_db
def test_bypass_a_blocked_message(api, server, settings):
    message = make_inbound(server, status=S.BLOCKED)
    response = api.put(f"/messages/inbound/{message.message_id}/bypass", data="junk")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "ErrorCode": 0,
        "Message": f"Successfully bypassed message: {message.message_id}.",
    }
    message.refresh_from_db()
    assert message.status != S.BLOCKED
    # Bypassed once: not blocked any more, so not again.
    again = api.put(f"/messages/inbound/{message.message_id}/bypass")
    assert assert_error(again, 422, 701) == "This message was not found or cannot be bypassed."


@pytest.mark.django_db
@pytest.mark.parametrize("status", [S.PROCESSED, S.FAILED, S.QUEUED, S.SCHEDULED])
def test_only_a_blocked_message_can_be_bypassed(api, server, status):
    message = make_inbound(server, status=status)
    assert_error(api.put(f"/messages/inbound/{message.message_id}/bypass"), 422, 701)
    message.refresh_from_db()
    assert message.status == status


@pytest.mark.django_db
def test_retry_a_failed_message(api, server):
    message = make_inbound(server, status=S.FAILED, attempts=11)
    response = api.put(f"/messages/inbound/{message.message_id}/retry")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "ErrorCode": 0,
        "Message": f"Successfully rescheduled failed message: {message.message_id}.",
    }
    message.refresh_from_db()
    assert message.status != S.FAILED


@pytest.mark.django_db
@pytest.mark.parametrize("status", [S.PROCESSED, S.BLOCKED, S.QUEUED, S.SCHEDULED])
def test_only_a_failed_message_can_be_retried(api, server, status):
    message = make_inbound(server, status=status)
    assert_error(api.put(f"/messages/inbound/{message.message_id}/retry"), 422, 701)
    message.refresh_from_db()
    assert message.status == status


@pytest.mark.django_db
def test_a_failing_bypass_is_702_not_a_500(api, server, monkeypatch):
    from inbound import services

    def broken(message):
        raise RuntimeError("the queue is gone")

    monkeypatch.setattr(services, "bypass", broken)
    monkeypatch.setattr(services, "retry", broken)
    blocked = make_inbound(server, status=S.BLOCKED)
    failed = make_inbound(server, status=S.FAILED)
    assert_error(api.put(f"/messages/inbound/{blocked.message_id}/bypass"), 422, 702)
    assert_error(api.put(f"/messages/inbound/{failed.message_id}/retry"), 422, 703)


@pytest.mark.django_db
def test_reading_methods_only(api, server):
    message = make_inbound(server)
    assert api.post("/messages/inbound?count=1&offset=0").status_code == 405
    assert api.get(f"/messages/inbound/{message.message_id}/bypass").status_code == 405
    assert api.delete(f"/messages/inbound/{message.message_id}/details").status_code == 405


# --- /triggers/inboundrules ----------------------------------------------------------------------


def rules(api, query="?count=500&offset=0"):
    response = api.get(f"/triggers/inboundrules{query}")
    assert response.status_code == 200, response.content
    return response.json()


def create(api, body):
    return api.post("/triggers/inboundrules", data=body, content_type="application/json")


@pytest.mark.django_db
def test_rules_created_listed_and_removed(api, server, other_server):
    assert rules(api) == {"TotalCount": 0, "InboundRules": []}
    made = create(api, {"Rule": " Someone@Example.COM "})
    assert made.status_code == 200, made.content
    first = made.json()
    assert first == {"Rule": "someone@example.com", "ID": first["ID"]}
    second = create(api, {"rule": "Bücher.example"}).json()  # any key case; IDNA
    assert second["Rule"] == "xn--bcher-kva.example"
    InboundRule.objects.create(server=other_server, rule="other.example")
    body = rules(api, "?count=1&offset=1")
    assert body == {"TotalCount": 2, "InboundRules": [second]}
    assert rules(api, "?Count=500&Offset=0")["InboundRules"] == [first, second]
    removed = api.delete(f"/triggers/inboundRules/{first['ID']}")
    assert removed.status_code == 200
    assert removed.json() == {"ErrorCode": 0, "Message": "Rule someone@example.com removed."}
    assert rules(api)["InboundRules"] == [second]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, 809),
        ({"Rule": None}, 809),
        ({"Rule": "   "}, 809),
        ([], 809),
        ({"Rule": "not an address"}, 813),
        ({"Rule": "localhost"}, 813),
        ({"Rule": "@example.com"}, 813),
        ({"Rule": "a@b@"}, 813),
        ({"Rule": "x" * 400 + ".example"}, 813),
        ({"Rule": 42}, 813),
        ({"Rule": ["a@example.com"]}, 813),
        ({"Rule": "bad..example"}, 813),
    ],
)
def test_invalid_rules(api, body, code):
    assert_error(create(api, body), 422, code)
    assert not InboundRule.objects.exists()


@pytest.mark.django_db
def test_a_rule_that_exists_is_810_in_any_spelling(api, server, other_server):
    assert create(api, {"Rule": "example.com"}).status_code == 200
    message = assert_error(create(api, {"Rule": "EXAMPLE.com."}), 422, 810)
    assert "example.com" in message
    other = Client(HTTP_X_POSTMARK_SERVER_TOKEN=token_of(other_server))
    assert create(other, {"Rule": "example.com"}).status_code == 200  # per server


@pytest.mark.django_db
def test_removing_an_unknown_or_foreign_rule_is_812(api, other_server):
    foreign = InboundRule.objects.create(server=other_server, rule="other.example")
    for rule_id in (foreign.pk, 999999, "abc", "1" * 40):
        assert_error(api.delete(f"/triggers/inboundrules/{rule_id}"), 422, 812)
    assert InboundRule.objects.filter(pk=foreign.pk).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query", ["", "?count=501&offset=0", "?count=0&offset=0", "?count=x&offset=0", "?count=5"]
)
def test_bad_rule_paging_is_800(api, query):
    assert_error(api.get(f"/triggers/inboundrules{query}"), 422, 800)


@pytest.mark.django_db
def test_junk_rule_body_is_invalid_json(api):
    response = api.post("/triggers/inboundrules", data="{", content_type="application/json")
    assert_error(response, 422, 402)


@pytest.mark.django_db
def test_tag_triggers_answer_that_they_are_discontinued(api):
    for method in (api.get, api.post, api.delete):
        message = assert_error(method("/triggers/tags/1"), 404, 404)
        assert "discontinued" in message
    assert_error(api.get("/triggers/Tags?count=5&offset=0"), 404, 404)


@pytest.mark.django_db
def test_the_schema_lists_the_inbound_endpoints(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "get" in paths["/messages/inbound"]
    assert "get" in paths["/messages/inbound/{message_id}/details"]
    assert "put" in paths["/messages/inbound/{message_id}/bypass"]
    assert "put" in paths["/messages/inbound/{message_id}/retry"]
    assert {"get", "post"} <= set(paths["/triggers/inboundrules"])
    assert "delete" in paths["/triggers/inboundrules/{rule_id}"]
    assert "/triggers/tags" not in paths
    params = {p["name"] for p in paths["/messages/inbound"]["get"]["parameters"]}
    assert {"count", "offset", "mailboxhash", "status", "fromdate", "todate"} <= params
