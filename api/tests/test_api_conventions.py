"""Postmark's HTTP conventions (compat §2): liberal routing, JSON with charset everywhere, every
error as {"ErrorCode", "Message"}, no redirects for API paths, the admin untouched, the OpenAPI
schema; and the same over a real socket with a live server."""

import http.client
import json
from urllib.parse import urlsplit

import pytest
from django.test import Client

from api import routing
from bounces.services import record_bounce
from streams.models import Suppression

JSON = "application/json; charset=utf-8"


@pytest.fixture
def token(server):
    return server.tokens.first().token


@pytest.fixture
def api(token):
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=token)


@pytest.fixture
def bounce(server):
    return record_bounce(
        server=server,
        stream=server.streams.get(stream_id="outbound"),
        message_stream="outbound",
        type="HardBounce",
        email="user@example.com",
        content="the dump",
        inactive=True,
        can_activate=True,
        tag="t",
    )


def assert_error(response, status: int, code: int) -> str:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == JSON
    body = json.loads(response.content)
    assert set(body) == {"ErrorCode", "Message"}, body
    assert body["ErrorCode"] == code
    assert isinstance(body["Message"], str) and body["Message"]
    return body["Message"]


# --- path normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("/bounces", "/bounces"),
        ("/bounces/", "/bounces"),
        ("//bounces//12//", "/bounces/12"),
        ("/Bounces/12/DUMP", "/bounces/12/dump"),
        ("/deliveryStats/", "/deliverystats"),
        ("/BOUNCES/TAGS", "/bounces/tags"),
        ("/Message-Streams/Mine/Suppressions/Delete/", "/message-streams/Mine/suppressions/delete"),
        ("/message-streams/dump/suppressions/dump", "/message-streams/dump/suppressions/dump"),
        ("/", "/"),
    ],
)  # fmt: skip
def test_canonical_path(given, canonical):
    assert routing.canonical_path(given) == canonical


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/deliverystats",
        "/deliverystats/",
        "/deliveryStats",
        "/DeliveryStats/",
        "/DELIVERYSTATS",
        "/deliverystats//",
    ],
)
def test_delivery_stats_paths(api, bounce, path):
    response = api.get(path)
    assert response.status_code == 200, (path, response.status_code, response.content)
    assert response["Content-Type"] == JSON
    assert response.json()["Bounces"][0] == {"Name": "All", "Count": 1}


@pytest.mark.django_db
def test_bounce_paths_in_every_spelling(api, bounce):
    for path in (
        "/bounces?count=1&offset=0",
        "/bounces/?count=1&offset=0",
        "/Bounces?count=1&offset=0",
        "/BOUNCES/?count=1&offset=0",
    ):
        response = api.get(path)
        assert response.status_code == 200, path
        assert response.json()["TotalCount"] == 1
    for path in (f"/bounces/{bounce.id}", f"/bounces/{bounce.id}/", f"/Bounces//{bounce.id}"):
        assert api.get(path).json()["ID"] == bounce.id, path
    for path in (f"/bounces/{bounce.id}/dump", f"/Bounces/{bounce.id}/Dump/"):
        assert api.get(path).json() == {"Body": "the dump"}, path
    for path in ("/bounces/tags", "/bounces/tags/", "/Bounces/Tags"):
        assert api.get(path).json() == ["t"], path
    response = api.put(f"/BOUNCES/{bounce.id}/Activate/")
    assert response.status_code == 200 and response.json()["Message"] == "OK"


@pytest.mark.django_db
def test_posts_with_trailing_slash_are_not_redirected(api, server):
    body = json.dumps({"Suppressions": [{"EmailAddress": "slash@example.com"}]})
    for path in (
        "/message-streams/outbound/suppressions/",
        "/Message-Streams/outbound/Suppressions",
        "/message-streams//outbound/suppressions//",
    ):
        response = api.post(path, body, content_type="application/json")
        assert response.status_code == 200, (path, response.status_code)
        assert response.json()["Suppressions"][0]["Status"] == "Suppressed"
    response = api.post(
        "/message-streams/outbound/suppressions/delete/", body, content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json()["Suppressions"][0]["Status"] == "Deleted"
    assert not Suppression.objects.filter(email="slash@example.com").exists()
    dump = api.get("/Message-Streams/outbound/Suppressions/Dump/")
    assert dump.status_code == 200 and dump.json() == {"Suppressions": []}


# --- error bodies -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/nothing-here",
        "/bounces/1/unknown",
        "/message-streams/outbound/unknown",
        "/bounces/tags/x",
        "/api/x",
    ],
)
def test_unknown_paths_are_404_in_postmark_shape(api, path):
    assert "not" in assert_error(api.get(path), 404, 404).lower()
    assert_error(api.post(path, "{}", content_type="application/json"), 404, 404)
    # no token needed to learn that a path does not exist, and no redirect either
    assert_error(Client().get(path), 404, 404)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("delete", "/bounces"),
        ("post", "/bounces"),
        ("post", "/deliverystats"),
        ("get", "/bounces/{id}/activate"),
        ("post", "/bounces/{id}/activate"),
        ("put", "/bounces/{id}"),
        ("get", "/message-streams/outbound/suppressions"),
        ("get", "/message-streams/outbound/suppressions/delete"),
        ("post", "/message-streams/outbound/suppressions/dump"),
    ],
)
def test_wrong_method_is_405_in_postmark_shape(api, bounce, method, path):
    response = getattr(api, method)(path.format(id=bounce.id))
    assert_error(response, 405, 405)
    assert response["Allow"]


@pytest.mark.django_db
def test_unexpected_exception_is_500_in_postmark_shape(api, monkeypatch, caplog):
    from api.views import stats as views

    def boom(self, request):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(views.DeliveryStatsView, "get", boom)
    client = Client(raise_request_exception=False, HTTP_X_POSTMARK_SERVER_TOKEN=api.defaults[
        "HTTP_X_POSTMARK_SERVER_TOKEN"
    ])  # fmt: skip
    message = assert_error(client.get("/deliverystats"), 500, 500)
    assert "kaboom" not in message  # no internals leak
    assert any("kaboom" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


@pytest.mark.django_db
def test_no_detail_key_ever(api):
    for response in (
        Client().get("/bounces"),
        api.get("/bounces"),
        api.get("/bounces/999"),
        api.delete("/bounces"),
        api.get("/zzz"),
        api.post("/message-streams/outbound/suppressions", "{", content_type="application/json"),
    ):
        assert "detail" not in response.json()
        assert "ErrorCode" in response.json()


# --- content negotiation ------------------------------------------------------------------------


@pytest.mark.django_db
def test_json_whatever_the_accept_header_and_no_browsable_api(api, bounce):
    for accept in ("text/html", "application/xml", "*/*", "application/json", ""):
        response = api.get("/deliverystats", HTTP_ACCEPT=accept)
        assert response.status_code == 200, accept
        assert response["Content-Type"] == JSON
    for query in ("?format=api", "?format=html", "?format=xml"):
        response = api.get(f"/deliverystats{query}")
        assert response.status_code == 200, query
        assert response["Content-Type"] == JSON
        assert response.json()["InactiveMails"] == 1


@pytest.mark.django_db
def test_a_logged_in_admin_session_is_not_a_credential(admin_client):
    assert_error(admin_client.get("/deliverystats"), 401, 10)


@pytest.mark.django_db
def test_csrf_does_not_apply_to_token_requests(token):
    client = Client(enforce_csrf_checks=True, HTTP_X_POSTMARK_SERVER_TOKEN=token)
    response = client.post(
        "/message-streams/outbound/suppressions",
        json.dumps({"Suppressions": [{"EmailAddress": "csrf@example.com"}]}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content


# --- the admin and static files are untouched ---------------------------------------------------


@pytest.mark.django_db
def test_admin_and_static_keep_their_behaviour(client, admin_client):
    response = client.get("/admin")
    assert response.status_code == 301 and response["Location"] == "/admin/"
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert admin_client.get("/admin/").status_code == 200
    missing = client.get("/static/no-such-file.css")
    assert missing.status_code == 404
    assert not missing["Content-Type"].startswith("application/json")
    assert client.get("/").status_code == 302


# --- OpenAPI schema -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_openapi_schema(client):
    for path in ("/openapi.json", "/OpenAPI.json/"):
        response = client.get(path)
        assert response.status_code == 200, path
        schema = json.loads(response.content)
        assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for expected in (
        "/deliverystats",
        "/bounces",
        "/bounces/{bounce_id}",
        "/bounces/{bounce_id}/dump",
        "/bounces/{bounce_id}/activate",
        "/bounces/tags",
        "/message-streams/{stream_id}/suppressions/dump",
        "/message-streams/{stream_id}/suppressions",
        "/message-streams/{stream_id}/suppressions/delete",
    ):
        assert expected in paths, expected
    assert "put" in paths["/bounces/{bounce_id}/activate"]
    params = {p["name"] for p in paths["/bounces"]["get"]["parameters"]}
    assert {"count", "offset", "type", "inactive", "messageID", "fromdate"} <= params
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ServerToken"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-Postmark-Server-Token",
    }


# --- over a real socket -------------------------------------------------------------------------


def raw_request(live_server, method, path, body=None, headers=None):
    parts = urlsplit(live_server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)  # path sent exactly as given
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        data = body.encode() if isinstance(body, str) else body
        conn.putheader("Content-Length", str(len(data or b"")))
        conn.endheaders(data)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


@pytest.mark.django_db(transaction=True)
def test_over_the_wire(live_server, server, bounce, token):
    auth = {"X-Postmark-Server-Token": token}

    status, ctype, body = raw_request(live_server, "GET", f"//bounces//{bounce.id}/", None, auth)
    assert (status, ctype) == (200, JSON)
    assert json.loads(body)["ID"] == bounce.id
    assert json.loads(body)["Content"] == "the dump"

    status, ctype, body = raw_request(live_server, "GET", "/deliveryStats/", None, auth)
    assert (status, ctype) == (200, JSON)
    assert json.loads(body)["InactiveMails"] == 1

    status, ctype, body = raw_request(
        live_server, "GET", "//Bounces/?COUNT=10&Offset=0&Inactive=TRUE", None, auth
    )
    assert (status, ctype) == (200, JSON)
    assert json.loads(body)["TotalCount"] == 1

    # a POST with a JSON body, a text/plain content type and a trailing slash: no redirect
    status, ctype, body = raw_request(
        live_server,
        "POST",
        "/message-streams/outbound/suppressions/",
        json.dumps({"Suppressions": [{"EmailAddress": "wire@example.com"}]}),
        {**auth, "Content-Type": "text/plain"},
    )
    assert (status, ctype) == (200, JSON), body
    assert json.loads(body)["Suppressions"][0]["Status"] == "Suppressed"

    # PUT activate with a junk body and no content type
    status, ctype, body = raw_request(
        live_server, "PUT", f"/bounces/{bounce.id}/activate", "junk!", auth
    )
    assert (status, ctype) == (200, JSON), body
    assert json.loads(body)["Bounce"]["Inactive"] is False

    # errors
    status, ctype, body = raw_request(live_server, "GET", "/bounces?count=1&offset=0")
    assert (status, ctype) == (401, JSON)
    assert json.loads(body)["ErrorCode"] == 10
    status, ctype, body = raw_request(live_server, "GET", "/no/such/path", None, auth)
    assert (status, ctype) == (404, JSON)
    assert json.loads(body)["ErrorCode"] == 404
    status, ctype, body = raw_request(live_server, "DELETE", "/bounces/", None, auth)
    assert (status, ctype) == (405, JSON)
    status, ctype, body = raw_request(
        live_server, "POST", "/message-streams/outbound/suppressions", "{oops", auth
    )
    assert (status, ctype) == (422, JSON)
    assert json.loads(body) == {"ErrorCode": 402, "Message": "Received invalid JSON input."}

    status, ctype, body = raw_request(live_server, "GET", "/openapi.json")
    assert status == 200
    assert "/bounces" in json.loads(body)["paths"]


@pytest.mark.django_db(transaction=True)
def test_postmark_js_reads_bounces_and_stats(live_server, postmark_js, bounce, token):
    """Postmark's Node.js client, pointed at this service, reads bounces and delivery stats."""
    page = {"count": 10, "offset": 0}
    bounces = postmark_js(live_server.url, "Server", token, "getBounces", page)
    assert bounces["ok"], bounces
    assert bounces["result"]["TotalCount"] == 1
    assert bounces["result"]["Bounces"][0]["Email"] == "user@example.com"
    stats = postmark_js(live_server.url, "Server", token, "getDeliveryStatistics")
    assert stats["ok"] and stats["result"]["InactiveMails"] == 1, stats
    wrong = postmark_js(live_server.url, "Server", "not-a-token", "getBounces")
    assert (wrong["ok"], wrong["code"], wrong["statusCode"]) == (False, 10, 401), wrong
