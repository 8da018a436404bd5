"""Postmark's Webhooks API: GET/POST /webhooks, GET/PUT/DELETE /webhooks/{id}."""

import json

import pytest
from django.test import Client

from streams.services import get_stream
from webhooks.models import Webhook

JSON = "application/json; charset=utf-8"
PUBLIC = "https://hooks.example.com/postmark"
BODY = {
    "Url": PUBLIC,
    "MessageStream": "outbound",
    "HttpAuth": {"Username": "user", "Password": "pass"},
    "HttpHeaders": [{"Name": "X-Name", "Value": "value"}],
    "Triggers": {
        "Open": {"Enabled": True, "PostFirstOpenOnly": True},
        "Click": {"Enabled": True},
        "Delivery": {"Enabled": True},
        "Bounce": {"Enabled": True, "IncludeContent": True},
        "SpamComplaint": {"Enabled": False, "IncludeContent": False},
        "SubscriptionChange": {"Enabled": True},
    },
}


@pytest.fixture(autouse=True)
def no_dns(monkeypatch):
    """hooks.example.com resolves to a public address (no DNS in the test machine)."""
    from webhooks import guard

    real = guard.resolve

    def resolve(host, port):
        if host.endswith("example.com"):
            return ["93.184.216.34"]
        return real(host, port)

    monkeypatch.setattr(guard, "resolve", resolve)


@pytest.fixture
def api(server):
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)


@pytest.fixture
def other_api(other_server):
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=other_server.tokens.first().token)


def call(api, method, path, body=None):
    data = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
    kwargs = {"content_type": "application/json"} if data is not None else {}
    response = (
        getattr(api, method)(path, data=data, **kwargs)
        if data is not None
        else getattr(api, method)(path)
    )
    assert response["Content-Type"] == JSON, response.content
    return response


def assert_error(response, status: int, code: int | None = None) -> str:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"ErrorCode", "Message"}
    if code is not None:
        assert body["ErrorCode"] == code
    return body["Message"]


@pytest.mark.django_db
def test_crud_with_postmark_field_names(api, server):
    created = call(api, "post", "/webhooks", BODY)
    assert created.status_code == 200, created.content
    hook = created.json()
    assert set(hook) == {
        "ID", "Url", "MessageStream", "HttpAuth", "HttpHeaders", "Triggers", "SigningSecret",
    }  # fmt: skip
    expected = {k: v for k, v in BODY.items()}
    assert {k: hook[k] for k in expected} == expected
    assert hook["SigningSecret"].startswith("whsec_")
    webhook_id = hook["ID"]

    got = call(api, "get", f"/webhooks/{webhook_id}").json()
    assert got == hook
    listed = call(api, "get", "/webhooks").json()
    assert listed == {"Webhooks": [hook]}
    assert call(api, "get", "/webhooks?MessageStream=outbound").json() == {"Webhooks": [hook]}
    assert call(api, "get", "/webhooks?messagestream=broadcast").json() == {"Webhooks": []}
    message = assert_error(call(api, "get", "/webhooks?MessageStream=nope"), 422, 1235)
    assert "nope" in message

    # PUT changes only what it names.
    changed = call(
        api,
        "put",
        f"/webhooks/{webhook_id}",
        {"Url": "https://other.example.com/x", "Triggers": {"Open": {"Enabled": False}}},
    ).json()
    assert changed["Url"] == "https://other.example.com/x"
    assert changed["Triggers"]["Open"] == {"Enabled": False, "PostFirstOpenOnly": True}
    assert changed["Triggers"]["Bounce"] == {"Enabled": True, "IncludeContent": True}
    assert changed["HttpAuth"] == {"Username": "user", "Password": "pass"}
    assert changed["HttpHeaders"] == BODY["HttpHeaders"]
    assert changed["SigningSecret"] == hook["SigningSecret"]
    cleared = call(api, "put", f"/webhooks/{webhook_id}", {"HttpHeaders": None}).json()
    assert cleared["HttpHeaders"] == []
    # A PUT with no body, or junk-free empty object, changes nothing.
    assert call(api, "put", f"/webhooks/{webhook_id}", {}).json() == cleared

    deleted = call(api, "delete", f"/webhooks/{webhook_id}")
    assert deleted.status_code == 200
    assert deleted.json() == {"ErrorCode": 0, "Message": f"Webhook {webhook_id} removed."}
    assert not Webhook.objects.exists()
    assert_error(call(api, "get", f"/webhooks/{webhook_id}"), 404, 404)


@pytest.mark.django_db
def test_liberal_paths_and_defaults(api, server):
    hook = call(api, "post", "/Webhooks//", {"Url": PUBLIC}).json()
    assert hook["MessageStream"] == "outbound"
    assert hook["HttpAuth"] == {"Username": "", "Password": ""} and hook["HttpHeaders"] == []
    assert all(not t["Enabled"] for t in hook["Triggers"].values())
    assert call(api, "get", f"/WEBHOOKS//{hook['ID']}/").json()["ID"] == hook["ID"]
    on_broadcast = call(
        api, "post", "/webhooks", {"url": PUBLIC, "messageStream": "broadcast",
                                   "triggers": {"delivery": {"enabled": "true"}}}
    ).json()  # fmt: skip
    assert on_broadcast["MessageStream"] == "broadcast"
    assert on_broadcast["Triggers"]["Delivery"]["Enabled"] is True


@pytest.mark.django_db
def test_credentials_in_the_url_become_http_auth(api):
    hook = call(api, "post", "/webhooks", {"Url": "https://bob:s%40cret@hooks.example.com/x"})
    body = hook.json()
    assert body["Url"] == "https://hooks.example.com/x"
    assert body["HttpAuth"] == {"Username": "bob", "Password": "s@cret"}
    stored = Webhook.objects.get()
    assert "bob" not in stored.url and "s@cret" not in stored.http_auth_password_encrypted


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body, words",
    [
        ({}, "Url is required"),
        ({"Url": ""}, "Url"),
        ({"Url": "ftp://example.com/x"}, "http"),
        ({"Url": "http://127.0.0.1/hook"}, "public addresses"),
        ({"Url": "http://localhost:8080/hook"}, "a loopback address"),
        ({"Url": "http://[::1]/hook"}, "public addresses"),
        ({"Url": "http://[::ffff:169.254.169.254]/"}, "public addresses"),
        ({"Url": "http://10.0.0.1/"}, "public addresses"),
        ({"Url": PUBLIC, "HttpHeaders": "x"}, "HttpHeaders"),
        ({"Url": PUBLIC, "HttpHeaders": [{"Name": "Bad Name", "Value": "x"}]}, "header name"),
        ({"Url": PUBLIC, "HttpHeaders": [{"Name": "X-A", "Value": "a\r\nB: c"}]}, "header value"),
        ({"Url": PUBLIC, "HttpHeaders": [{"Name": "Host", "Value": "x"}]}, "cannot be set"),
        ({"Url": PUBLIC, "Triggers": {"Open": {"Enabled": "maybe"}}}, "true or false"),
        ({"Url": PUBLIC, "Triggers": []}, "Triggers"),
    ],
)
def test_validation_errors_are_422_in_postmark_shape(api, settings, body, words):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    message = assert_error(call(api, "post", "/webhooks", body), 422, 403)
    assert words in message
    assert not Webhook.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["http://127.0.0.1/hook", "http://localhost:8080/hook"])
def test_a_private_url_refused_names_the_setting_that_allows_it(api, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    message = assert_error(call(api, "post", "/webhooks", {"Url": url}), 422, 403)
    assert "WEBHOOK_ALLOW_PRIVATE_URLS=true" in message


@pytest.mark.django_db
def test_private_urls_allowed_by_the_operator_setting(api, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    assert call(api, "post", "/webhooks", {"Url": "http://localhost:9/h"}).status_code == 200
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    hook_id = Webhook.objects.get().pk
    assert_error(call(api, "put", f"/webhooks/{hook_id}", {"Url": "http://127.0.0.1/"}), 422, 403)


@pytest.mark.django_db
def test_errors_unknown_stream_bad_json_no_token(api, server):
    assert_error(call(api, "post", "/webhooks", {"Url": PUBLIC, "MessageStream": "x"}), 422, 1235)
    assert_error(call(api, "post", "/webhooks", "{nope"), 422, 402)
    assert_error(call(Client(), "get", "/webhooks"), 401, 10)
    assert_error(call(api, "get", "/webhooks/abc"), 404, 404)
    assert_error(call(api, "patch", "/webhooks/1", {}), 405, 405)


@pytest.mark.django_db
def test_tenant_isolation(api, other_api, server, other_server):
    mine = call(api, "post", "/webhooks", {"Url": PUBLIC}).json()
    theirs = call(other_api, "post", "/webhooks", {"Url": PUBLIC}).json()
    assert [h["ID"] for h in call(api, "get", "/webhooks").json()["Webhooks"]] == [mine["ID"]]
    assert [h["ID"] for h in call(other_api, "get", "/webhooks").json()["Webhooks"]] == [
        theirs["ID"]
    ]
    for method, body in (("get", None), ("put", {"Url": "https://evil.example.com/"}),
                         ("delete", None)):  # fmt: skip
        assert_error(call(api, method, f"/webhooks/{theirs['ID']}", body), 404, 404)
    assert Webhook.objects.get(pk=theirs["ID"]).url == PUBLIC
    assert Webhook.objects.get(pk=theirs["ID"]).stream == get_stream(other_server, "outbound")
