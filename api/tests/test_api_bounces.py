"""The bounce API (compat §3) through real HTTP requests with Django's test client."""

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from bounces.models import Bounce
from bounces.services import record_bounce
from streams.models import Suppression
from streams.services import get_stream
from streams.suppressions import suppress

BOUNCE_FIELDS = {
    "RecordType": str,
    "ID": int,
    "Type": str,
    "TypeCode": int,
    "Name": str,
    "Tag": str,
    "MessageID": str,
    "ServerID": int,
    "MessageStream": str,
    "Description": str,
    "Details": str,
    "Email": str,
    "From": str,
    "BouncedAt": str,
    "DumpAvailable": bool,
    "Inactive": bool,
    "CanActivate": bool,
    "Subject": str,
}
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
JSON = "application/json; charset=utf-8"


def make_bounce(server, **fields):
    values = {"message_stream": "outbound", "type": "HardBounce", "email": "user@example.com"}
    values.update(fields)
    if values["message_stream"] and "stream" not in values:
        values["stream"] = server.streams.filter(stream_id=values["message_stream"]).first()
    return record_bounce(server=server, **values)


def client_for(server) -> Client:
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)


@pytest.fixture
def api(server):
    return client_for(server)


def listing(api, query="count=500&offset=0", **params):
    response = api.get(f"/bounces?{query}", params) if params else api.get(f"/bounces?{query}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == JSON
    return response.json()


def ids(body) -> list[int]:
    return [b["ID"] for b in body["Bounces"]]


def assert_error(response, status: int, code: int):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == JSON
    body = response.json()
    assert set(body) == {"ErrorCode", "Message"}
    assert body["ErrorCode"] == code
    assert isinstance(body["Message"], str) and body["Message"]
    return body["Message"]


# --- the bounce object --------------------------------------------------------------------------


def check_bounce_object(data: dict, content: bool):
    expected = dict(BOUNCE_FIELDS, **({"Content": str} if content else {}))
    assert set(data) == set(expected)
    for key, kind in expected.items():
        assert data[key] is not None, key
        assert type(data[key]) is kind, (key, data[key])
    assert data["RecordType"] == "Bounce"
    assert TIMESTAMP_RE.match(data["BouncedAt"]), data["BouncedAt"]


@pytest.mark.django_db
def test_every_field_present_and_never_null_for_a_bare_bounce(server, api):
    bounce = make_bounce(server, message_stream="outbound", email="bare@example.com")
    listed = listing(api)["Bounces"][0]
    check_bounce_object(listed, content=False)
    assert listed["MessageID"] == ""
    assert listed["Tag"] == listed["From"] == listed["Subject"] == listed["Details"] == ""
    assert listed["DumpAvailable"] is False
    single = api.get(f"/bounces/{bounce.id}")
    assert single["Content-Type"] == JSON
    check_bounce_object(single.json(), content=True)
    assert single.json()["Content"] == ""


@pytest.mark.django_db
def test_bounce_object_values(server, api):
    message_id = uuid.uuid4()
    at = datetime(2019, 11, 5, 16, 33, 54, 907025, tzinfo=UTC)
    bounce = make_bounce(
        server,
        type="HardBounce",
        email="john@example.com",
        message_id=message_id,
        from_address="sender@example.com",
        subject="Test subject",
        tag="Test",
        details="Test bounce details",
        content="<Full dump of bounce>",
        inactive=True,
        can_activate=True,
        bounced_at=at,
    )
    data = api.get(f"/bounces/{bounce.id}").json()
    check_bounce_object(data, content=True)
    assert data == {
        "RecordType": "Bounce",
        "ID": bounce.id,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "Test",
        "MessageID": str(message_id),
        "ServerID": server.id,
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message (ex: unknown user, "
        "mailbox not found).",
        "Details": "Test bounce details",
        "Email": "john@example.com",
        "From": "sender@example.com",
        "BouncedAt": "2019-11-05T16:33:54.907025Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Test subject",
        "Content": "<Full dump of bounce>",
    }
    listed = listing(api)["Bounces"][0]
    assert "Content" not in listed
    assert listed == {k: v for k, v in data.items() if k != "Content"}


@pytest.mark.django_db
def test_bounce_json_metadata_for_webhooks(server):
    from bounces.serializers import bounce_json

    bounce = make_bounce(server, metadata={"a_key": "a_value"})
    data = bounce_json(bounce, content=True, metadata=True)
    assert data["Metadata"] == {"a_key": "a_value"}
    assert data["Content"] == ""


# --- GET /bounces: filters, limits, parsing ------------------------------------------------------


@pytest.mark.django_db
def test_list_newest_first_then_id_desc_and_paging(server, api):
    at = datetime(2024, 5, 1, 12, tzinfo=UTC)
    older = make_bounce(server, bounced_at=at - timedelta(hours=1))
    same_a = make_bounce(server, bounced_at=at)
    same_b = make_bounce(server, bounced_at=at)
    newest = make_bounce(server, bounced_at=at + timedelta(hours=1))
    body = listing(api)
    assert body["TotalCount"] == 4
    assert ids(body) == [newest.id, same_b.id, same_a.id, older.id]
    page = listing(api, "count=2&offset=1")
    assert page["TotalCount"] == 4
    assert ids(page) == [same_b.id, same_a.id]
    assert listing(api, "count=2&offset=10") == {"TotalCount": 4, "Bounces": []}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        "",
        "offset=0",
        "count=10",
        "count=&offset=0",
        "count=0&offset=0",
        "count=501&offset=0",
        "count=-1&offset=0",
        "count=ten&offset=0",
        "count=10&offset=-1",
        "count=10&offset=x",
        "count=500&offset=9501",
        "count=1&offset=10000",
    ],
)
def test_count_and_offset_rules(api, query):
    assert_error(api.get(f"/bounces?{query}"), 422, 1000)


@pytest.mark.django_db
def test_limits_at_the_edges_are_fine(server, api):
    make_bounce(server)
    assert listing(api, "count=500&offset=9500")["TotalCount"] == 1
    assert listing(api, "count=1&offset=0")["TotalCount"] == 1
    assert listing(api, "count=1&offset=9999")["Bounces"] == []


@pytest.mark.django_db
def test_message_id_needs_no_count_or_offset(server, api):
    wanted = uuid.uuid4()
    hit = make_bounce(server, message_id=wanted)
    make_bounce(server, message_id=uuid.uuid4())
    make_bounce(server)
    body = listing(api, f"messageID={wanted}")
    assert body["TotalCount"] == 1 and ids(body) == [hit.id]
    # ... and they still work (and are validated) when given
    assert ids(listing(api, f"messageid={wanted}&count=1&offset=0")) == [hit.id]
    assert_error(api.get(f"/bounces?messageID={wanted}&count=501&offset=0"), 422, 1000)
    assert_error(api.get("/bounces?messageID=not-a-uuid"), 422, 1000)


@pytest.mark.django_db
def test_type_filter(server, api):
    hard = make_bounce(server, type="HardBounce")
    soft = make_bounce(server, type="SoftBounce")
    assert ids(listing(api, "count=10&offset=0&type=HardBounce")) == [hard.id]
    assert ids(listing(api, "count=10&offset=0&type=softbounce")) == [soft.id]
    assert listing(api, "count=10&offset=0&type=SpamComplaint")["TotalCount"] == 0
    message = assert_error(api.get("/bounces?count=10&offset=0&type=Nonsense"), 422, 1000)
    assert "Nonsense" in message and "HardBounce" in message


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("spelling", "expected"),
    [("true", True), ("True", True), ("TRUE", True), ("false", False), ("False", False),
     ("FALSE", False)],
)  # fmt: skip
def test_inactive_boolean_spellings(server, api, spelling, expected):
    inactive = make_bounce(server, inactive=True, can_activate=True)
    active = make_bounce(server, type="SoftBounce", inactive=False)
    body = listing(api, f"count=10&offset=0&inactive={spelling}")
    assert ids(body) == [inactive.id if expected else active.id]


@pytest.mark.django_db
def test_inactive_absent_or_empty_means_both_and_junk_is_an_error(server, api):
    make_bounce(server, inactive=True)
    make_bounce(server, inactive=False)
    assert listing(api, "count=10&offset=0")["TotalCount"] == 2
    assert listing(api, "count=10&offset=0&inactive=")["TotalCount"] == 2
    assert_error(api.get("/bounces?count=10&offset=0&inactive=maybe"), 422, 1000)


@pytest.mark.django_db
def test_email_filter_is_a_case_insensitive_substring(server, api):
    hit = make_bounce(server, email="John.Smith@Example.com")
    make_bounce(server, email="other@example.org")
    assert ids(listing(api, "count=10&offset=0&emailFilter=smith@example")) == [hit.id]
    assert ids(listing(api, "count=10&offset=0&emailFilter=JOHN")) == [hit.id]
    assert listing(api, "count=10&offset=0&emailFilter=nobody")["TotalCount"] == 0


@pytest.mark.django_db
def test_tag_filter(server, api):
    hit = make_bounce(server, tag="welcome")
    make_bounce(server, tag="invoice")
    make_bounce(server)
    assert ids(listing(api, "count=10&offset=0&tag=welcome")) == [hit.id]


@pytest.mark.django_db
def test_message_id_finds_the_bounces_of_every_stream_unless_one_is_named(server, api):
    wanted = uuid.uuid4()
    broadcast = make_bounce(server, message_id=wanted, message_stream="broadcast")
    outbound = make_bounce(server, message_id=wanted, message_stream="outbound")
    make_bounce(server, message_stream="broadcast")
    assert ids(listing(api, f"messageID={wanted}")) == [outbound.id, broadcast.id]
    assert ids(listing(api, f"messageID={wanted}&messagestream=broadcast")) == [broadcast.id]
    assert ids(listing(api, f"messageID={wanted}&count=10&offset=0&messagestream=outbound")) == [
        outbound.id
    ]


@pytest.mark.django_db
def test_message_stream_filter_defaults_to_outbound(server, api):
    outbound = make_bounce(server, message_stream="outbound")
    broadcast = make_bounce(server, message_stream="broadcast")
    assert ids(listing(api)) == [outbound.id]
    assert ids(listing(api, "count=10&offset=0&messagestream=broadcast")) == [broadcast.id]
    assert ids(listing(api, "count=10&offset=0&MessageStream=broadcast")) == [broadcast.id]
    assert listing(api, "count=10&offset=0&messagestream=nothing")["TotalCount"] == 0


@pytest.mark.django_db
def test_empty_values_mean_no_filter(server, api):
    make_bounce(server, type="HardBounce", tag="a", inactive=True)
    make_bounce(server, type="SoftBounce", tag="", inactive=False)
    query = (
        "count=10&offset=0&type=&inactive=&emailFilter=&tag=&messageID=&fromdate=&todate="
        "&messagestream="
    )
    assert listing(api, query)["TotalCount"] == 2


@pytest.mark.django_db
def test_parameter_names_in_any_case(server, api):
    hit = make_bounce(
        server,
        type="HardBounce",
        email="case@example.com",
        tag="t",
        inactive=True,
        message_id=uuid.uuid4(),
        bounced_at=datetime(2021, 6, 1, 12, tzinfo=UTC),
    )
    make_bounce(server, type="SoftBounce", bounced_at=datetime(2021, 6, 1, 12, tzinfo=UTC))
    query = (
        "COUNT=10&Offset=0&Type=HardBounce&EmailFilter=case&TAG=t&Inactive=TRUE"
        "&fromDate=2021-06-01&ToDate=2021-06-01&MessageStream=outbound"
    )
    assert ids(listing(api, query)) == [hit.id]
    assert ids(listing(api, f"MESSAGEID={hit.message_id}")) == [hit.id]


@pytest.mark.django_db
def test_fromdate_todate_are_inclusive_us_eastern_dates(server, api):
    def at(*args):
        return make_bounce(server, bounced_at=datetime(*args, tzinfo=UTC)).id

    # 2021-01-01 in New York (EST, UTC-5) runs from 05:00Z to the next day's 05:00Z.
    before = at(2021, 1, 1, 4, 59, 59, 999999)
    first = at(2021, 1, 1, 5, 0, 0)
    last = at(2021, 1, 2, 4, 59, 59, 999999)
    after = at(2021, 1, 2, 5, 0, 0)
    day = listing(api, "count=10&offset=0&fromdate=2021-01-01&todate=2021-01-01")
    assert sorted(ids(day)) == sorted([first, last])
    assert sorted(ids(listing(api, "count=10&offset=0&fromdate=2021-01-01"))) == sorted(
        [first, last, after]
    )
    assert sorted(ids(listing(api, "count=10&offset=0&todate=2020-12-31"))) == [before]


@pytest.mark.django_db
def test_date_times_naive_eastern_inclusive_to_the_second_and_with_offsets(server, api):
    def at(*args):
        return make_bounce(server, bounced_at=datetime(*args, tzinfo=UTC)).id

    # Summer: EDT, UTC-4. 12:00:00 New York time = 16:00:00Z.
    early = at(2021, 7, 1, 15, 59, 59)
    noon = at(2021, 7, 1, 16, 0, 0, 500000)
    late = at(2021, 7, 1, 16, 0, 1)
    q = "count=10&offset=0&"
    assert sorted(ids(listing(api, q + "todate=2021-07-01T12:00:00"))) == sorted([early, noon])
    assert sorted(ids(listing(api, q + "fromdate=2021-07-01T12:00:00"))) == sorted([noon, late])
    assert ids(listing(api, q + "fromdate=2021-07-01T12:00:00&todate=2021-07-01T12:00:00")) == [
        noon
    ]
    # Explicit offsets, Z, a space separator, and a '+' that the query string turned into a space.
    assert ids(listing(api, q + "fromdate=2021-07-01T16:00:01Z")) == [late]
    assert ids(listing(api, q + "fromdate=2021-07-01T12:00:01-04:00")) == [late]
    assert ids(listing(api, q + "fromdate=2021-07-01 18:00:01+02:00")) == [late]
    assert ids(listing(api, q + "fromdate=2021-07-01T16:00:01%2B00:00")) == [late]
    assert ids(listing(api, q + "todate=2021-07-01T15:59:59.000000Z")) == [early]


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["yesterday", "2021-13-01", "2021-01-01T25:00:00", "01/02/2021"])
def test_bad_dates_are_1000(api, value):
    assert_error(api.get("/bounces", {"count": 1, "offset": 0, "fromdate": value}), 422, 1000)
    assert_error(api.get("/bounces", {"count": 1, "offset": 0, "todate": value}), 422, 1000)


# --- single bounce, dump, activate --------------------------------------------------------------


@pytest.mark.django_db
def test_dump(server, api):
    with_dump = make_bounce(server, content="Received: from x\r\n\r\nbody ü")
    without = make_bounce(server)
    response = api.get(f"/bounces/{with_dump.id}/dump")
    assert response["Content-Type"] == JSON
    assert response.json() == {"Body": "Received: from x\r\n\r\nbody ü"}
    assert api.get(f"/bounces/{without.id}/dump").json() == {"Body": ""}


@pytest.mark.django_db
@pytest.mark.parametrize("bad_id", ["999999", "0", "abc", "12abc", "99999999999999999999999"])
def test_unknown_bounce_ids_are_1001(api, bad_id):
    for path in (f"/bounces/{bad_id}", f"/bounces/{bad_id}/dump"):
        assert_error(api.get(path), 422, 1001)
    assert_error(api.put(f"/bounces/{bad_id}/activate"), 422, 1001)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (None, None),
        ("", "application/json"),
        ("{}", "application/json"),
        ("this is not json", "application/json"),
        ("<xml/>", "text/xml"),
        ('{"Anything": null}', "text/plain"),
    ],
)
def test_activate_with_any_body(server, api, body, content_type):
    stream = get_stream(server, "outbound")
    bounce = make_bounce(server, email="Hard@Example.com", inactive=True, can_activate=True)
    suppress(stream, bounce.email, Suppression.Reason.HARD_BOUNCE, "Recipient", bounce=bounce)
    kwargs = {}
    if body is not None:
        kwargs = {"data": body, "content_type": content_type}
    response = api.put(f"/bounces/{bounce.id}/activate", **kwargs)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == JSON
    data = response.json()
    assert data["Message"] == "OK"
    check_bounce_object(data["Bounce"], content=False)
    assert data["Bounce"]["ID"] == bounce.id
    assert data["Bounce"]["Inactive"] is False
    bounce.refresh_from_db()
    assert bounce.inactive is False
    assert not Suppression.objects.filter(stream=stream, email="hard@example.com").exists()
    # idempotent
    assert api.put(f"/bounces/{bounce.id}/activate").json()["Message"] == "OK"


@pytest.mark.django_db
def test_activate_also_clears_other_inactive_bounces_of_the_address(server, api):
    first = make_bounce(server, email="a@example.com", inactive=True, can_activate=True)
    second = make_bounce(server, email="A@example.com", inactive=True, can_activate=True)
    elsewhere = make_bounce(
        server, email="a@example.com", message_stream="broadcast", inactive=True, can_activate=True
    )
    assert api.put(f"/bounces/{second.id}/activate").status_code == 200
    first.refresh_from_db()
    elsewhere.refresh_from_db()
    assert first.inactive is False
    assert elsewhere.inactive is True  # another stream: its own suppression list


@pytest.mark.django_db
def test_spam_complaints_cannot_be_activated(server, api):
    stream = get_stream(server, "outbound")
    spam = make_bounce(
        server, type="SpamComplaint", email="spam@example.com", inactive=True, can_activate=False
    )
    suppress(stream, spam.email, Suppression.Reason.SPAM_COMPLAINT, "Recipient", bounce=spam)
    message = assert_error(api.put(f"/bounces/{spam.id}/activate"), 422, 1003)
    assert "spam" in message.lower()
    spam.refresh_from_db()
    assert spam.inactive is True
    assert Suppression.objects.filter(stream=stream, email="spam@example.com").exists()
    # a hard bounce of the same address cannot lift the complaint either
    hard = make_bounce(server, email="spam@example.com", inactive=True, can_activate=True)
    assert "spam" in assert_error(api.put(f"/bounces/{hard.id}/activate"), 422, 1003).lower()
    assert Suppression.objects.filter(stream=stream, email="spam@example.com").exists()


@pytest.mark.django_db
def test_bounces_that_cannot_be_activated_are_1003(server, api):
    soft = make_bounce(server, type="SoftBounce", can_activate=False)
    assert "CanActivate" in assert_error(api.put(f"/bounces/{soft.id}/activate"), 422, 1003)


# --- tags and delivery stats --------------------------------------------------------------------


@pytest.mark.django_db
def test_tags_are_distinct_and_non_empty(server, other_server, api):
    for tag in ("welcome", "invoice", "welcome", ""):
        make_bounce(server, tag=tag)
    make_bounce(server, tag="broadcast-tag", message_stream="broadcast")
    make_bounce(other_server, tag="secret")
    response = api.get("/bounces/tags")
    assert response.status_code == 200
    assert response["Content-Type"] == JSON
    assert sorted(response.json()) == ["broadcast-tag", "invoice", "welcome"]


@pytest.mark.django_db
def test_delivery_stats(server, api):
    assert api.get("/deliverystats").json() == {
        "InactiveMails": 0,
        "Bounces": [{"Name": "All", "Count": 0}],
    }
    make_bounce(server, type="SoftBounce", email="soft@example.com")
    make_bounce(server, type="HardBounce", email="a@example.com", inactive=True, can_activate=True)
    make_bounce(server, type="HardBounce", email="A@Example.com", inactive=True, can_activate=True)
    make_bounce(server, type="HardBounce", email="b@example.com", inactive=True, can_activate=True)
    make_bounce(server, type="SpamComplaint", email="c@example.com", inactive=True)
    make_bounce(server, type="Transient", email="d@example.com", message_stream="broadcast")
    response = api.get("/deliverystats")
    assert response.status_code == 200
    assert response["Content-Type"] == JSON
    assert response.json() == {
        "InactiveMails": 3,
        "Bounces": [
            {"Name": "All", "Count": 6},
            {"Type": "HardBounce", "Name": "Hard bounce", "Count": 3, "TypeCode": 1},
            {"Type": "Transient", "Name": "Message delayed", "Count": 1, "TypeCode": 2},
            {"Type": "SoftBounce", "Name": "Soft bounce", "Count": 1, "TypeCode": 4096},
            {"Type": "SpamComplaint", "Name": "Spam complaint", "Count": 1, "TypeCode": 100001},
        ],
    }
    assert "Type" not in response.json()["Bounces"][0]


@pytest.mark.django_db
def test_delivery_stats_is_one_grouped_query_plus_the_inactive_count(
    server, api, django_assert_max_num_queries
):
    for kind in ("HardBounce", "SoftBounce", "Transient"):
        make_bounce(server, type=kind)
    # token look-up and its server (2) + grouped counts (1) + distinct inactive addresses (1)
    with django_assert_max_num_queries(4):
        assert api.get("/deliverystats").status_code == 200


# --- authentication and tenant isolation --------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    ["/deliverystats", "/bounces?count=1&offset=0", "/bounces/1", "/bounces/1/dump",
     "/bounces/tags", "/message-streams/outbound/suppressions/dump"],
)  # fmt: skip
def test_missing_or_wrong_token_is_401_code_10(server, path):
    missing = assert_error(Client().get(path), 401, 10)
    assert "X-Postmark-Server-Token" in missing
    wrong = Client(HTTP_X_POSTMARK_SERVER_TOKEN="not-a-token").get(path)
    assert "valid Server token" in assert_error(wrong, 401, 10)
    blank = Client(HTTP_X_POSTMARK_SERVER_TOKEN="  ").get(path)
    assert_error(blank, 401, 10)


@pytest.mark.django_db
def test_wrong_token_on_writes_is_401(server):
    bounce = make_bounce(server, inactive=True, can_activate=True)
    assert_error(Client().put(f"/bounces/{bounce.id}/activate"), 401, 10)
    bad = Client(HTTP_X_POSTMARK_SERVER_TOKEN="nope")
    assert_error(bad.put(f"/bounces/{bounce.id}/activate"), 401, 10)
    bounce.refresh_from_db()
    assert bounce.inactive is True


@pytest.mark.django_db
def test_account_token_is_refused_with_a_hint(server):
    from servers.models import AccountToken

    account = AccountToken.issue("ops")
    client = Client(HTTP_X_POSTMARK_ACCOUNT_TOKEN=account.token)
    assert "Server" in assert_error(client.get("/deliverystats"), 401, 10)


@pytest.mark.django_db
def test_tenant_isolation(server, other_server, api):
    mine = make_bounce(server, email="mine@example.com", tag="mine", inactive=True)
    theirs = make_bounce(
        other_server,
        email="theirs@example.com",
        tag="theirs",
        content="secret dump",
        inactive=True,
        can_activate=True,
    )
    body = listing(api)
    assert ids(body) == [mine.id] and body["TotalCount"] == 1
    assert listing(api, "count=10&offset=0&emailFilter=theirs")["TotalCount"] == 0
    assert listing(api, f"messageID={uuid.uuid4()}")["TotalCount"] == 0
    assert_error(api.get(f"/bounces/{theirs.id}"), 422, 1001)
    assert_error(api.get(f"/bounces/{theirs.id}/dump"), 422, 1001)
    assert_error(api.put(f"/bounces/{theirs.id}/activate"), 422, 1001)
    theirs.refresh_from_db()
    assert theirs.inactive is True
    assert api.get("/bounces/tags").json() == ["mine"]
    stats = api.get("/deliverystats").json()
    assert stats["InactiveMails"] == 1 and stats["Bounces"][0]["Count"] == 1
    # and the other way round
    other = client_for(other_server)
    assert other.get(f"/bounces/{theirs.id}/dump").json() == {"Body": "secret dump"}
    assert_error(other.get(f"/bounces/{mine.id}"), 422, 1001)
    assert Bounce.objects.count() == 2
