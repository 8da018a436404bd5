"""The Messages API (compat §7) through real HTTP: Django's test client for the rules, and the
real clients (postmarker, postmark.js) against live_server."""

import uuid
from datetime import UTC, datetime, timedelta

import postmarker.core
import pytest
from django.test import Client
from django.utils import timezone

from bounces.services import record_bounce
from messages.events import record_bounce_event, record_message_event
from messages.models import MessageEvent, OutboundMessage, Recipient
from streams.services import get_stream
from streams.suppressions import suppress
from tracking import events as tracking

JSON = "application/json; charset=utf-8"
MESSAGE_FIELDS = {
    "MessageID": str,
    "Tag": str,
    "To": list,
    "Cc": list,
    "Bcc": list,
    "Recipients": list,
    "ReceivedAt": str,
    "From": str,
    "Subject": str,
    "Attachments": list,
    "Status": str,
    "TrackOpens": bool,
    "TrackLinks": str,
    "Metadata": dict,
    "MessageStream": str,
    "Sandboxed": bool,
}
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)

CONTENT = (
    "From: Shop <shop@example.com>\r\n"
    "To: Ann Reader <ann@example.net>, bob@example.net\r\n"
    "Subject: {subject}\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b1"\r\n'
    "\r\n"
    "--b1\r\n"
    'Content-Type: multipart/alternative; boundary="b2"\r\n'
    "\r\n"
    "--b2\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Hello text\r\n"
    "--b2\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "\r\n"
    "<p>Hello html</p>\r\n"
    "--b2--\r\n"
    "--b1\r\n"
    'Content-Type: application/pdf; name="invoice.pdf"\r\n'
    'Content-Disposition: attachment; filename="invoice.pdf"\r\n'
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "JVBERi0=\r\n"
    "--b1--\r\n"
)


def make_message(server, stream_id="outbound", subject="Your receipt", **fields):
    values = {
        "message_id": uuid.uuid4(),
        "server": server,
        "stream": get_stream(server, stream_id),
        "from_address": "Shop <shop@example.com>",
        "to": ["ann@example.net", "bob@example.net"],
        "recipients": ["ann@example.net", "Bob@Example.net"],
        "subject": subject,
        "tag": "receipt",
        "metadata": {"order": "42"},
        "content": CONTENT.format(subject=subject).encode(),
        "status": OutboundMessage.Status.SENT,
        "received_at": timezone.now(),
    }
    values.update(fields)
    message = OutboundMessage.objects.create(**values)
    Recipient.objects.bulk_create(Recipient(message=message, email=e) for e in message.recipients)
    return message


def token_of(server) -> str:
    return server.tokens.first().token


@pytest.fixture
def api(server):
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=token_of(server))


def listing(api, query="", status=200):
    response = api.get(f"/messages/outbound?count=500&offset=0{query}")
    assert response.status_code == status, response.content
    assert response["Content-Type"] == JSON
    return response.json()


def found_ids(body) -> list[str]:
    return [m["MessageID"] for m in body["Messages"]]


def assert_error(response, status: int, code: int) -> str:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"ErrorCode", "Message"}
    assert body["ErrorCode"] == code
    return body["Message"]


# --- GET /messages/outbound -----------------------------------------------------------------------


@pytest.mark.django_db
def test_list_shape_newest_first_and_scoped_to_the_server(api, server, other_server):
    older = make_message(server, received_at=timezone.now() - timedelta(hours=1))
    newer = make_message(server)
    make_message(other_server)
    body = listing(api)
    assert body["TotalCount"] == 2
    assert found_ids(body) == [str(newer.message_id), str(older.message_id)]
    item = body["Messages"][0]
    for field, kind in MESSAGE_FIELDS.items():
        assert isinstance(item[field], kind), field
    assert item["To"] == [
        {"Email": "ann@example.net", "Name": ""},
        {"Email": "bob@example.net", "Name": ""},
    ]
    assert item["Recipients"] == ["ann@example.net", "Bob@Example.net"]
    assert item["Status"] == "Sent" and item["Sandboxed"] is False
    assert item["Metadata"] == {"order": "42"} and item["MessageStream"] == "outbound"
    assert item["ReceivedAt"].endswith("Z")


@pytest.mark.django_db
def test_each_filter(api, server):
    base = timezone.now()
    a = make_message(server, subject="Password reset", tag="reset", metadata={"user": "7"})
    b = make_message(
        server,
        from_address="Billing <billing@example.org>",
        recipients=["carol@example.com"],
        status=OutboundMessage.Status.QUEUED,
        received_at=base - timedelta(days=3),
    )
    c = make_message(server, status=OutboundMessage.Status.SANDBOXED)
    d = make_message(server, "broadcast", status=OutboundMessage.Status.BOUNCED)
    assert found_ids(listing(api, "&recipient=CAROL@example.com")) == [str(b.message_id)]
    assert set(found_ids(listing(api, "&recipient=bob@example.net"))) == {
        str(a.message_id),
        str(c.message_id),
    }
    assert found_ids(listing(api, "&fromemail=billing@example.org")) == [str(b.message_id)]
    assert found_ids(listing(api, "&fromEmail=BILLING")) == [str(b.message_id)]
    assert found_ids(listing(api, "&tag=reset")) == [str(a.message_id)]
    assert found_ids(listing(api, "&subject=password")) == [str(a.message_id)]
    assert found_ids(listing(api, "&status=queued")) == [str(b.message_id)]
    assert found_ids(listing(api, "&status=Processed")) == [str(c.message_id)]
    assert set(found_ids(listing(api, "&status=sent"))) == {str(a.message_id)}
    assert found_ids(listing(api, "&messagestream=broadcast&status=sent")) == [str(d.message_id)]
    assert found_ids(listing(api, "&metadata_user=7")) == [str(a.message_id)]
    assert listing(api, "&metadata_user=8")["TotalCount"] == 0
    day = (base - timedelta(days=3)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert found_ids(listing(api, f"&fromdate=2000-01-01&todate={day}")) == [str(b.message_id)]
    assert str(b.message_id) not in found_ids(listing(api, f"&fromdate={day[:10]}T23:59:59Z"))
    assert listing(api, "&recipient=&tag=")["TotalCount"] == 3  # empty means no filter


@pytest.mark.django_db
def test_naive_dates_are_us_eastern(api, server):
    # 03:30 UTC on 2 June is still 1 June (23:30) in New York.
    at = datetime(2024, 6, 2, 3, 30, tzinfo=UTC)
    message = make_message(server, received_at=at)
    assert found_ids(listing(api, "&fromdate=2024-06-01&todate=2024-06-01")) == [
        str(message.message_id)
    ]
    assert listing(api, "&fromdate=2024-06-02")["TotalCount"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        "/messages/outbound",
        "/messages/outbound?count=10",
        "/messages/outbound?offset=0",
        "/messages/outbound?count=501&offset=0",
        "/messages/outbound?count=0&offset=0",
        "/messages/outbound?count=500&offset=9501",
        "/messages/outbound?count=x&offset=0",
        "/messages/outbound?count=1&offset=0&status=bounced",
        "/messages/outbound?count=1&offset=0&fromdate=yesterday",
        "/messages/outbound?count=1&offset=0&recipient=a%00b",
    ],
)
def test_query_errors_are_700(api, query):
    assert_error(api.get(query), 422, 700)


@pytest.mark.django_db
def test_window_of_exactly_10000_is_allowed_and_unknown_stream_is_1235(api, server):
    assert listing(api.__class__(HTTP_X_POSTMARK_SERVER_TOKEN=token_of(server)), "")
    response = api.get("/messages/outbound?count=500&offset=9500")
    assert response.status_code == 200
    message = assert_error(
        api.get("/messages/outbound?count=1&offset=0&messagestream=nope"), 422, 1235
    )
    assert message == "The stream provided: 'nope' does not exist on this server."


@pytest.mark.django_db
def test_liberal_paths_and_token_required(api, server):
    make_message(server)
    assert api.get("/Messages//Outbound/?count=1&offset=0").json()["TotalCount"] == 1
    assert_error(Client().get("/messages/outbound?count=1&offset=0"), 401, 10)


# --- details and dump -----------------------------------------------------------------------------


def _events(server, message):
    now = message.received_at
    record_message_event(
        message, MessageEvent.Type.DELIVERY, "ann@example.net",
        details="250 2.0.0 Ok: queued", occurred_at=now + timedelta(seconds=1),
    )  # fmt: skip
    soft = record_bounce(
        server=server, stream=message.stream, message_stream="outbound", type="Transient",
        email="bob@example.net", message_id=message.message_id, details="greylisted",
        bounced_at=now + timedelta(seconds=2),
    )  # fmt: skip
    record_bounce_event(soft, outbound=message)
    hard = record_bounce(
        server=server, stream=message.stream, message_stream="outbound", type="HardBounce",
        email="bob@example.net", message_id=message.message_id, details="550 no such user",
        bounced_at=now + timedelta(seconds=3), inactive=True, can_activate=True,
    )  # fmt: skip
    record_bounce_event(hard, outbound=message)
    suppress(message.stream, "bob@example.net", reason="HardBounce", origin="Recipient")
    opened = tracking.record_open(message, "ann@example.net", CHROME)
    clicked = tracking.record_click(
        message, "ann@example.net", "https://example.com/a", "HTML", CHROME
    )
    return hard, opened, clicked


@pytest.mark.django_db
def test_details_have_bodies_attachments_and_events_in_postmark_shapes(api, server):
    message = make_message(server, received_at=timezone.now() - timedelta(minutes=1))
    hard, _, _ = _events(server, message)
    response = api.get(f"/messages/outbound/{message.message_id}/details")
    assert response.status_code == 200, response.content
    body = response.json()
    for field, kind in MESSAGE_FIELDS.items():
        assert isinstance(body[field], kind), field
    assert body["To"][0] == {"Email": "ann@example.net", "Name": "Ann Reader"}
    assert body["TextBody"].strip() == "Hello text"
    assert body["HtmlBody"].strip() == "<p>Hello html</p>"
    assert body["Body"].startswith("From: Shop")
    assert body["Attachments"] == ["invoice.pdf"]
    events = body["MessageEvents"]
    assert [e["Type"] for e in events] == [
        "Delivered", "Transient", "Bounced", "SubscriptionChanged", "Opened", "LinkClicked",
    ]  # fmt: skip
    assert events[0]["Details"] == {
        "DeliveryMessage": "250 2.0.0 Ok: queued",
        "DestinationServer": "",
        "DestinationIP": "",
    }
    assert events[1]["Details"] == {"Summary": "greylisted"}
    assert events[2]["Details"] == {"Summary": "550 no such user", "BounceID": str(hard.pk)}
    assert events[3]["Details"] == {"Origin": "Recipient", "SuppressSending": "True"}
    assert events[4]["Details"]["Summary"].startswith("Email opened with Chrome")
    assert events[5]["Details"]["Link"] == "https://example.com/a"
    assert events[5]["Details"]["ClickLocation"] == "HTML"
    assert {tuple(sorted(e)) for e in events} == {("Details", "ReceivedAt", "Recipient", "Type")}


@pytest.mark.django_db
def test_dump_and_unknown_ids(api, server, other_server):
    message = make_message(server)
    response = api.get(f"/messages/outbound/{message.message_id}/dump")
    assert response.status_code == 200
    assert response.json() == {"Body": CONTENT.format(subject="Your receipt")}
    # Bracketed or upper-case ids are the same id.
    upper = str(message.message_id).upper()
    assert api.get(f"/messages/outbound/{upper}/details").status_code == 200
    foreign = make_message(other_server)
    for path in (
        f"/messages/outbound/{uuid.uuid4()}/details",
        f"/messages/outbound/{foreign.message_id}/details",
        f"/messages/outbound/{foreign.message_id}/dump",
        "/messages/outbound/not-an-id/dump",
    ):
        assert assert_error(api.get(path), 422, 701) == "This message was not found."


@pytest.mark.django_db
def test_a_refused_message_is_not_found_but_its_errors_are(api, server):
    message_id = uuid.uuid4()
    record_bounce(
        server=server, stream=get_stream(server, "outbound"), message_stream="outbound",
        type="SMTPApiError", email="x@example.net", message_id=message_id, details="refused",
        bounced_at=timezone.now(),
    )  # fmt: skip
    assert_error(api.get(f"/messages/outbound/{message_id}/details"), 422, 701)
    assert listing(api)["TotalCount"] == 0
    bounces = api.get(f"/bounces?messageID={message_id}").json()
    assert bounces["TotalCount"] == 1


# --- opens and clicks -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_opens_and_clicks_are_the_webhook_objects(api, server):
    message = make_message(server)
    other = make_message(server, tag="other")
    tracking.record_open(message, "ann@example.net", CHROME)
    tracking.record_open(other, "bob@example.net", "Thunderbird")
    tracking.record_click(message, "ann@example.net", "https://example.com/a", "Text", CHROME)
    opens = api.get("/messages/outbound/opens?count=10&offset=0").json()
    assert opens["TotalCount"] == 2
    first = opens["Opens"][-1]
    assert first["RecordType"] == "Open" and first["FirstOpen"] is True
    assert first["MessageID"] == str(message.message_id) and first["Tag"] == "receipt"
    assert first["Client"]["Family"] == "Chrome" and first["Platform"] == "Desktop"
    assert set(first) >= {"Recipient", "ReceivedAt", "UserAgent", "OS", "Geo", "Metadata"}
    query = "/messages/outbound/opens?count=10&offset=0"
    assert api.get(query + "&tag=receipt").json()["TotalCount"] == 1
    assert api.get(query + "&recipient=BOB@example.net").json()["TotalCount"] == 1
    assert api.get(query + "&client_family=chrome").json()["TotalCount"] == 1
    assert api.get(query + "&os_family=Windows&platform=Desktop").json()["TotalCount"] == 1
    # The official SDKs' spelling of the same filters.
    for spelling in ("clientFamily=chrome", "osFamily=Windows", "ClientName=Chrome%20120.0",
                     "osFamily=Windows&clientCompany=Google", "osname=Windows%2010"):  # fmt: skip
        assert api.get(f"{query}&{spelling}").json()["TotalCount"] == 1, spelling
    assert api.get(query + "&osFamily=Linux").json()["TotalCount"] == 0
    one = api.get(f"/messages/outbound/opens/{other.message_id}?count=10&offset=0").json()
    assert [o["Recipient"] for o in one["Opens"]] == ["bob@example.net"]
    clicks = api.get("/messages/outbound/clicks?count=10&offset=0").json()
    assert clicks["TotalCount"] == 1
    click = clicks["Clicks"][0]
    assert click["RecordType"] == "Click" and click["ClickLocation"] == "Text"
    assert click["OriginalLink"] == "https://example.com/a"
    assert_error(api.get("/messages/outbound/clicks?count=10"), 422, 700)
    assert_error(api.get(f"/messages/outbound/clicks/{uuid.uuid4()}?count=1&offset=0"), 422, 701)


# --- the real clients -----------------------------------------------------------------------------


@pytest.fixture
def postmarker_client(live_server, server):
    return postmarker.core.PostmarkClient(
        server_token=token_of(server), root_api_url=live_server.url + "/"
    )


@pytest.mark.django_db(transaction=True)
def test_postmarker_lists_and_reads_messages(postmarker_client, server):
    message = make_message(server, subject="From postmarker")
    make_message(server, subject="Another", tag="other")
    listed = postmarker_client.messages.outbound.all(count=10, tag="receipt")
    assert [m.MessageID for m in listed] == [str(message.message_id)]
    assert str(listed[0]) == "Sent message to ann@example.net, Bob@Example.net"
    details = postmarker_client.messages.outbound.get(str(message.message_id))
    assert details.Subject == "From postmarker"
    assert details.TextBody.strip() == "Hello text"
    assert details.MessageEvents == []
    assert postmarker_client.messages.outbound.get_dump(str(message.message_id)).startswith("From")
    tracking.record_open(message, "ann@example.net", CHROME)
    opens = postmarker_client.messages.outbound.opens.all(count=10)
    assert [o.Recipient for o in opens] == ["ann@example.net"]


@pytest.mark.django_db(transaction=True)
def test_postmark_js_lists_and_reads_messages(live_server, postmark_js, server):
    message = make_message(server, subject="From postmark.js")
    token = token_of(server)
    listed = postmark_js(live_server.url, "Server", token, "getOutboundMessages",
                         {"count": 5, "offset": 0, "subject": "postmark.js"})  # fmt: skip
    assert listed["ok"], listed
    assert listed["result"]["TotalCount"] == 1
    assert listed["result"]["Messages"][0]["MessageID"] == str(message.message_id)
    details = postmark_js(live_server.url, "Server", token, "getOutboundMessageDetails",
                          str(message.message_id))  # fmt: skip
    assert details["ok"], details
    assert details["result"]["HtmlBody"].strip() == "<p>Hello html</p>"
    missing = postmark_js(live_server.url, "Server", token, "getOutboundMessageDetails",
                          str(uuid.uuid4()))  # fmt: skip
    assert not missing["ok"] and missing["code"] == 701 and missing["statusCode"] == 422
    tracking.record_click(message, "ann@example.net", "https://example.com/a", "HTML", CHROME)
    clicks = postmark_js(live_server.url, "Server", token, "getMessageClicks", {"count": 5})
    assert clicks["ok"], clicks
    assert clicks["result"]["Clicks"][0]["OriginalLink"] == "https://example.com/a"


@pytest.mark.django_db
def test_messages_stored_before_from_email_get_it_from_the_migration(api, server):
    import importlib

    from django.apps import apps

    message = make_message(server, from_address='"Old, Sender" <Old@Example.com>')
    OutboundMessage.objects.filter(pk=message.pk).update(from_email="")
    assert listing(api, "&fromemail=old@example.com")["TotalCount"] == 0
    migration = importlib.import_module("messages.migrations.0005_message_queries")
    migration.fill_from_email(apps, None)
    assert found_ids(listing(api, "&fromemail=<OLD@example.com>")) == [str(message.message_id)]


@pytest.mark.django_db(transaction=True)
def test_a_message_sent_over_http_is_found_by_its_sender(api, server):
    """The send API stores messages in bulk (no save()): their sender is searchable all the same."""
    sent = api.post(
        "/email",
        {"From": "Shop <Orders@Example.com>", "To": "ann@example.net", "Subject": "Hi",
         "TextBody": "Hello"},
        content_type="application/json",
    ).json()  # fmt: skip
    assert sent["ErrorCode"] == 0, sent
    found = api.get("/messages/outbound", {"count": 10, "offset": 0,
                                           "fromemail": "orders@example.com"}).json()  # fmt: skip
    assert [m["MessageID"] for m in found["Messages"]] == [sent["MessageID"]]
