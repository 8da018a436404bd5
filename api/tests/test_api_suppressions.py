"""The suppressions API of a message stream: dump, create, delete."""

import json
import re
from datetime import UTC, datetime

import pytest
from django.test import Client

from bounces.models import Bounce
from bounces.services import record_bounce
from streams.models import Suppression
from streams.services import create_stream, get_stream
from streams.suppressions import suppress

JSON = "application/json; charset=utf-8"
BASE = "/message-streams/outbound/suppressions"


@pytest.fixture
def api(server):
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)


@pytest.fixture
def outbound(server):
    return get_stream(server, "outbound")


def post(api, path, body, content_type="application/json"):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return api.post(path, data=data, content_type=content_type)


def entries(*emails):
    return {"Suppressions": [{"EmailAddress": e} for e in emails]}


def assert_error(response, status: int, code: int) -> str:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == JSON
    body = response.json()
    assert set(body) == {"ErrorCode", "Message"} and body["ErrorCode"] == code
    return body["Message"]


def dump(api, query="", stream="outbound"):
    response = api.get(f"/message-streams/{stream}/suppressions/dump{query}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == JSON
    return response.json()["Suppressions"]


@pytest.mark.django_db
def test_dump_shape_and_fields(api, outbound):
    assert dump(api) == []
    suppress(outbound, "Hard@Example.com", "HardBounce", "Recipient")
    [row] = dump(api)
    assert set(row) == {"EmailAddress", "SuppressionReason", "Origin", "CreatedAt"}
    assert row["EmailAddress"] == "hard@example.com"
    assert row["SuppressionReason"] == "HardBounce"
    assert row["Origin"] == "Recipient"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", row["CreatedAt"])


@pytest.mark.django_db
def test_dump_filters(api, outbound):
    suppress(outbound, "hard@example.com", "HardBounce", "Recipient")
    suppress(outbound, "spam@example.com", "SpamComplaint", "Recipient")
    suppress(outbound, "manual@example.com", "ManualSuppression", "Customer")
    suppress(outbound, "admin@example.com", "ManualSuppression", "Admin")

    def emails(query):
        return sorted(row["EmailAddress"] for row in dump(api, query))

    assert emails("?SuppressionReason=HardBounce") == ["hard@example.com"]
    assert emails("?suppressionreason=manualsuppression") == [
        "admin@example.com",
        "manual@example.com",
    ]
    assert emails("?Origin=Customer") == ["manual@example.com"]
    assert emails("?origin=recipient&SuppressionReason=SpamComplaint") == ["spam@example.com"]
    assert emails("?EmailAddress=SPAM@example.com") == ["spam@example.com"]
    assert len(emails("?SuppressionReason=&Origin=&EmailAddress=&fromdate=&todate=")) == 4
    assert_error(
        api.get(f"{BASE}/dump?SuppressionReason=Whatever"), 422, 403
    )  # a clear error, not a silent empty list
    assert_error(api.get(f"{BASE}/dump?fromdate=soon"), 422, 403)


@pytest.mark.django_db
def test_dump_date_filters_are_inclusive_eastern(api, outbound):
    jan = suppress(outbound, "jan@example.com", "HardBounce", "Recipient")[0]
    feb = suppress(outbound, "feb@example.com", "HardBounce", "Recipient")[0]
    # 2021-01-31 23:30 in New York is 2021-02-01 04:30Z.
    Suppression.objects.filter(pk=jan.pk).update(created_at=datetime(2021, 2, 1, 4, 30, tzinfo=UTC))
    Suppression.objects.filter(pk=feb.pk).update(created_at=datetime(2021, 2, 1, 5, 30, tzinfo=UTC))

    def emails(query):
        return sorted(row["EmailAddress"] for row in dump(api, query))

    assert emails("?todate=2021-01-31") == ["jan@example.com"]
    assert emails("?fromdate=2021-02-01") == ["feb@example.com"]
    assert emails("?fromDate=2021-01-31&toDate=2021-02-01") == [
        "feb@example.com",
        "jan@example.com",
    ]


@pytest.mark.django_db
def test_create_suppressions(api, outbound):
    response = post(
        api, BASE, entries("Good@Example.com", "not-an-address", "", "good2@example.com")
    )
    assert response.status_code == 200
    assert response["Content-Type"] == JSON
    assert response.json() == {
        "Suppressions": [
            {"EmailAddress": "Good@Example.com", "Status": "Suppressed", "Message": None},
            {
                "EmailAddress": "not-an-address",
                "Status": "Failed",
                "Message": "An invalid email address was provided.",
            },
            {
                "EmailAddress": "",
                "Status": "Failed",
                "Message": "An invalid email address was provided.",
            },
            {"EmailAddress": "good2@example.com", "Status": "Suppressed", "Message": None},
        ]
    }
    rows = {s.email: s for s in Suppression.objects.filter(stream=outbound)}
    assert set(rows) == {"good@example.com", "good2@example.com"}
    assert all(s.reason == "ManualSuppression" and s.origin == "Customer" for s in rows.values())
    assert Bounce.objects.count() == 0  # manual suppressions are Suppression rows only
    # again: still fine, nothing duplicated
    again = post(api, BASE, entries("good@example.com")).json()["Suppressions"]
    assert again == [{"EmailAddress": "good@example.com", "Status": "Suppressed", "Message": None}]
    assert Suppression.objects.filter(stream=outbound).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_create_parses_json_whatever_the_content_type(api, outbound, content_type):
    body = json.dumps(entries("ct@example.com")).encode()
    if content_type:
        response = api.post(BASE, data=body, content_type=content_type)
    else:
        response = api.generic("POST", BASE, body, content_type="")
    assert response.status_code == 200, response.content
    assert response.json()["Suppressions"][0]["Status"] == "Suppressed"
    assert Suppression.objects.filter(stream=outbound, email="ct@example.com").exists()


@pytest.mark.django_db
def test_explicit_nulls_and_empty_bodies(api, outbound):
    assert post(api, BASE, {"Suppressions": None}).json() == {"Suppressions": []}
    assert post(api, BASE, {}).json() == {"Suppressions": []}
    assert api.generic("POST", BASE).json() == {"Suppressions": []}
    assert post(api, BASE, "", content_type="").json() == {"Suppressions": []}
    assert post(api, BASE, "null").json() == {"Suppressions": []}
    nulls = post(api, BASE, {"Suppressions": [{"EmailAddress": None}, None]}).json()
    assert [r["Status"] for r in nulls["Suppressions"]] == ["Failed", "Failed"]
    lowercase_keys = post(api, BASE, {"suppressions": [{"emailAddress": "k@example.com"}]})
    assert lowercase_keys.json()["Suppressions"][0]["Status"] == "Suppressed"


@pytest.mark.django_db
def test_invalid_json_and_wrong_shapes(api):
    assert assert_error(post(api, BASE, "{not json"), 422, 402) == "Received invalid JSON input."
    assert_error(post(api, BASE, b"\xff\xfe", content_type="text/plain"), 422, 402)
    assert_error(post(api, BASE, {"Suppressions": "a@example.com"}), 422, 403)
    assert_error(post(api, BASE, "42"), 422, 403)
    too_many = entries(*[f"u{i}@example.com" for i in range(51)])
    assert "50" in assert_error(post(api, BASE, too_many), 422, 403)


@pytest.mark.django_db
def test_delete_suppressions(server, api, outbound):
    hard = record_bounce(
        server=server,
        stream=outbound,
        message_stream="outbound",
        type="HardBounce",
        email="hard@example.com",
        inactive=True,
        can_activate=True,
    )
    suppress(outbound, "hard@example.com", "HardBounce", "Recipient", bounce=hard)
    suppress(outbound, "manual@example.com", "ManualSuppression", "Customer")
    suppress(outbound, "spam@example.com", "SpamComplaint", "Recipient")
    response = post(
        api,
        f"{BASE}/delete",
        entries("HARD@example.com", "manual@example.com", "spam@example.com", "never@example.com"),
    )
    assert response.status_code == 200
    assert response["Content-Type"] == JSON
    results = response.json()["Suppressions"]
    assert [(r["EmailAddress"], r["Status"]) for r in results] == [
        ("HARD@example.com", "Deleted"),
        ("manual@example.com", "Deleted"),
        ("spam@example.com", "Failed"),
        ("never@example.com", "Deleted"),
    ]
    assert results[0]["Message"] is None
    assert "spam complaint" in results[2]["Message"]
    assert list(Suppression.objects.filter(stream=outbound).values_list("email", flat=True)) == [
        "spam@example.com"
    ]
    hard.refresh_from_db()
    assert hard.inactive is False  # the bounce agrees with the suppression list
    bad = post(api, f"{BASE}/delete", entries("nope")).json()["Suppressions"]
    assert bad == [
        {
            "EmailAddress": "nope",
            "Status": "Failed",
            "Message": "An invalid email address was provided.",
        }
    ]


@pytest.mark.django_db
def test_unknown_stream_is_1235(server, other_server, api):
    create_stream(other_server, "theirs")
    for stream in ("nothing", "theirs"):
        expected = f"The stream provided: '{stream}' does not exist on this server."
        path = f"/message-streams/{stream}/suppressions"
        assert assert_error(api.get(f"{path}/dump"), 422, 1235) == expected
        assert assert_error(post(api, path, entries("a@example.com")), 422, 1235) == expected
        assert assert_error(post(api, f"{path}/delete", entries("a@example.com")), 422, 1235)
    assert not Suppression.objects.filter(email="a@example.com").exists()


@pytest.mark.django_db
def test_suppressions_are_per_server_and_stream(server, other_server, api):
    theirs = get_stream(other_server, "outbound")
    suppress(theirs, "theirs@example.com", "HardBounce", "Recipient")
    suppress(get_stream(server, "broadcast"), "bc@example.com", "HardBounce", "Recipient")
    assert dump(api) == []
    assert [r["EmailAddress"] for r in dump(api, stream="broadcast")] == ["bc@example.com"]
    # deleting through my server's API leaves the other server's suppression alone
    post(api, f"{BASE}/delete", entries("theirs@example.com"))
    assert Suppression.objects.filter(stream=theirs, email="theirs@example.com").exists()
    post(api, BASE, entries("mine@example.com"))
    assert not Suppression.objects.filter(stream=theirs, email="mine@example.com").exists()


@pytest.mark.django_db
def test_suppressions_need_a_server_token(server):
    assert_error(Client().get(f"{BASE}/dump"), 401, 10)
    assert_error(Client().post(BASE, entries("x@example.com"), "application/json"), 401, 10)
    assert_error(
        Client(HTTP_X_POSTMARK_SERVER_TOKEN="wrong").post(
            f"{BASE}/delete", entries("x@example.com"), "application/json"
        ),
        401,
        10,
    )
    assert not Suppression.objects.exists()


@pytest.mark.django_db
def test_oversized_bodies_are_413(api, settings):
    settings.API_MAX_REQUEST_SIZE = 1000
    body = json.dumps({"Suppressions": [{"EmailAddress": "a@example.com"}], "Pad": "x" * 2000})
    assert "larger" in assert_error(post(api, BASE, body), 413, 413)
