"""The message streams API (compat §6) through real HTTP: the test client for the rules, and
postmark.js against live_server."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from streams.models import MessageStream

JSON = "application/json; charset=utf-8"
STREAM_FIELDS = {
    "ID",
    "ServerID",
    "Name",
    "Description",
    "MessageStreamType",
    "CreatedAt",
    "UpdatedAt",
    "ArchivedAt",
    "ExpectedPurgeDate",
    "SubscriptionManagementConfiguration",
}


def token_of(server) -> str:
    return server.tokens.first().token


@pytest.fixture
def api(server):
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=token_of(server))


def post(api, path, body=None):
    return api.post(
        path, json.dumps(body) if body is not None else "", content_type="application/json"
    )


def patch(api, path, body):
    return api.patch(path, json.dumps(body), content_type="application/json")


def assert_error(response, status: int, code: int) -> str:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == JSON
    body = response.json()
    assert set(body) == {"ErrorCode", "Message"}
    assert body["ErrorCode"] == code
    return body["Message"]


@pytest.mark.django_db
def test_list_default_streams_and_filters(api, server, other_server):
    body = api.get("/message-streams").json()
    assert body["TotalCount"] == 3
    assert [s["ID"] for s in body["MessageStreams"]] == ["outbound", "inbound", "broadcast"]
    first = body["MessageStreams"][0]
    assert set(first) == STREAM_FIELDS
    assert first["ServerID"] == server.pk and first["MessageStreamType"] == "Transactional"
    assert first["ArchivedAt"] is None and first["ExpectedPurgeDate"] is None
    assert first["SubscriptionManagementConfiguration"] == {"UnsubscribeHandlingType": "None"}
    broadcast = body["MessageStreams"][2]
    assert broadcast["SubscriptionManagementConfiguration"]["UnsubscribeHandlingType"] == (
        "Postmark"
    )
    only = api.get("/message-streams?MessageStreamType=broadcasts").json()
    assert [s["ID"] for s in only["MessageStreams"]] == ["broadcast"]
    assert api.get("/message-streams?messagestreamtype=All").json()["TotalCount"] == 3
    assert_error(api.get("/message-streams?MessageStreamType=Bulk"), 422, 403)


@pytest.mark.django_db
def test_create_get_edit(api, server):
    response = post(
        api,
        "/message-streams",
        {
            "ID": "newsletters",
            "Name": "Newsletters",
            "MessageStreamType": "Broadcasts",
            "Description": "Monthly",
            "SubscriptionManagementConfiguration": {"UnsubscribeHandlingType": "Custom"},
        },
    )
    assert response.status_code == 200, response.content
    created = response.json()
    assert created["ID"] == "newsletters" and created["Description"] == "Monthly"
    assert created["SubscriptionManagementConfiguration"] == {"UnsubscribeHandlingType": "Custom"}
    assert MessageStream.objects.filter(server=server, stream_id="newsletters").exists()
    assert api.get("/message-streams/newsletters").json()["Name"] == "Newsletters"
    edited = patch(api, "/message-streams/newsletters", {"Name": "News", "Description": None})
    assert edited.status_code == 200, edited.content
    assert edited.json()["Name"] == "News" and edited.json()["Description"] == "Monthly"
    message = assert_error(
        patch(
            api,
            "/message-streams/outbound",
            {"SubscriptionManagementConfiguration": {"UnsubscribeHandlingType": "Postmark"}},
        ),
        422,
        403,
    )
    assert "must be None" in message


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"ID": "Bad Id", "Name": "x", "MessageStreamType": "Transactional"}, "invalid"),
        ({"ID": "pm-mine", "Name": "x", "MessageStreamType": "Transactional"}, "'pm-'"),
        ({"ID": "a" * 31, "Name": "x", "MessageStreamType": "Transactional"}, "too long"),
        ({"ID": "outbound", "Name": "x", "MessageStreamType": "Transactional"}, "already"),
        ({"ID": "ok", "MessageStreamType": "Transactional"}, "'Name'"),
        ({"ID": "ok", "Name": "x"}, "'MessageStreamType'"),
        ({"ID": "ok", "Name": "x", "MessageStreamType": "Inbound"}, "cannot be created"),
        ({"ID": "ok", "Name": 5, "MessageStreamType": "Transactional"}, "must be a str"),
        ({"Name": "x", "MessageStreamType": "Transactional"}, "required"),
    ],
)
def test_create_refusals(api, body, words):
    assert words in assert_error(post(api, "/message-streams", body), 422, 403)


@pytest.mark.django_db
def test_at_most_ten_streams(api, server, settings):
    for n in range(7):
        body = {"ID": f"s{n}", "Name": f"S{n}", "MessageStreamType": "Transactional"}
        assert post(api, "/message-streams", body).status_code == 200
    refused = post(
        api, "/message-streams", {"ID": "s7", "Name": "S7", "MessageStreamType": "Transactional"}
    )
    assert "10 message streams" in assert_error(refused, 422, 403)


@pytest.mark.django_db
def test_archive_and_unarchive(api, server, other_server):
    before = timezone.now()
    response = post(api, "/message-streams/broadcast/archive")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"ID", "ServerID", "ExpectedPurgeDate"}
    assert body["ID"] == "broadcast" and body["ServerID"] == server.pk
    stream = MessageStream.objects.get(server=server, stream_id="broadcast")
    assert stream.archived_at >= before
    assert body["ExpectedPurgeDate"].startswith(
        (stream.archived_at + timedelta(days=45)).strftime("%Y-%m-%dT%H:%M")
    )
    listed = api.get("/message-streams").json()
    assert "broadcast" not in [s["ID"] for s in listed["MessageStreams"]]
    archived = api.get("/message-streams?IncludeArchivedStreams=TRUE").json()["MessageStreams"]
    assert archived[-1]["ArchivedAt"] and archived[-1]["ExpectedPurgeDate"]
    restored = post(api, "/Message-Streams/broadcast/Unarchive")
    assert restored.status_code == 200
    assert restored.json()["ArchivedAt"] is None
    for default in ("outbound", "inbound"):
        refused = post(api, f"/message-streams/{default}/archive")
        assert "cannot be archived" in assert_error(refused, 422, 403)
    assert_error(api.get("/message-streams/nope"), 422, 1226)
    assert_error(post(api, "/message-streams/nope/archive"), 422, 1226)
    assert_error(patch(api, "/message-streams/nope", {"Name": "x"}), 422, 1226)
    # Another server's stream is not there.
    other = MessageStream.objects.create(server=other_server, stream_id="theirs", name="Theirs")
    assert_error(api.get(f"/message-streams/{other.stream_id}"), 422, 1226)
    assert_error(Client().get("/message-streams"), 401, 10)


@pytest.mark.django_db(transaction=True)
def test_postmark_js_manages_streams(live_server, postmark_js, server):
    token = token_of(server)

    def call(method, *args):
        return postmark_js(live_server.url, "Server", token, method, *args)

    listed = call("getMessageStreams", {"messageStreamType": "All", "includeArchivedStreams": True})
    assert listed["ok"], listed
    assert listed["result"]["TotalCount"] == 3
    created = call(
        "createMessageStream",
        {"ID": "product-news", "Name": "Product news", "MessageStreamType": "Broadcasts"},
    )
    assert created["ok"], created
    assert created["result"]["ID"] == "product-news"
    edited = call("editMessageStream", "product-news", {"Name": "Product updates"})
    assert edited["ok"] and edited["result"]["Name"] == "Product updates"
    got = call("getMessageStream", "product-news")
    assert got["ok"] and got["result"]["MessageStreamType"] == "Broadcasts"
    archived = call("archiveMessageStream", "product-news")
    assert archived["ok"] and archived["result"]["ExpectedPurgeDate"]
    unarchived = call("unarchiveMessageStream", "product-news")
    assert unarchived["ok"] and unarchived["result"]["ArchivedAt"] is None
    refused = call("archiveMessageStream", "outbound")
    assert not refused["ok"] and refused["statusCode"] == 422 and refused["code"] == 403
    missing = call("getMessageStream", "nope")
    assert not missing["ok"] and missing["code"] == 1226
