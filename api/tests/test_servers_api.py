"""The Server API (``/server``, server token) and the Servers API (``/servers``, account token),
compat §12: every field always present, Postmark's error codes, hook URLs that are the outbound
stream's webhooks; and both through Postmark's own clients (postmark.js, postmarker) over HTTP."""

import json

import pytest
from django.test import Client
from postmarker.core import PostmarkClient

from servers.models import AccountToken, Server
from streams.models import MessageStream
from webhooks.models import Webhook

JSON = "application/json; charset=utf-8"
HOOK = "https://hooks.example.com/postmark"
SERVER_FIELDS = {
    "ID", "Name", "ApiTokens", "ServerLink", "Color", "SmtpApiActivated", "RawEmailEnabled",
    "DeliveryType", "InboundAddress", "InboundHash", "InboundDomain", "InboundHookUrl",
    "BounceHookUrl", "OpenHookUrl", "DeliveryHookUrl", "ClickHookUrl", "PostFirstOpenOnly",
    "InboundSpamThreshold", "TrackOpens", "TrackLinks", "IncludeBounceContentInHook",
    "EnableSmtpApiErrorHooks",
}  # fmt: skip


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
def account_token(db):
    return AccountToken.issue("ops").token


@pytest.fixture
def account(account_token):
    return Client(HTTP_X_POSTMARK_ACCOUNT_TOKEN=account_token)


@pytest.fixture
def api(server):
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)


def call(client, method, path, body=None):
    data = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
    if data is None:
        return getattr(client, method)(path)
    return getattr(client, method)(path, data=data, content_type="application/json")


def ok(response) -> dict:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == JSON
    return json.loads(response.content)


def error(response, code: int, status: int = 422) -> str:
    assert response.status_code == status, response.content
    body = json.loads(response.content)
    assert set(body) == {"ErrorCode", "Message"} and body["ErrorCode"] == code, body
    assert body["Message"]
    return body["Message"]


def webhooks_of(server):
    return list(Webhook.objects.filter(stream__server=server).order_by("id"))


# --- /server -----------------------------------------------------------------------------------


def test_get_server_has_every_field_with_unset_strings_empty(api, server):
    body = ok(call(api, "get", "/server"))
    assert set(body) == SERVER_FIELDS
    assert body["ID"] == server.pk and body["Name"] == "Test server"
    assert body["ApiTokens"] == [server.tokens.first().token]
    assert body["Color"] == "purple" and body["DeliveryType"] == "Sandbox"
    for name in ("InboundDomain", "InboundHookUrl", "BounceHookUrl", "OpenHookUrl",
                 "DeliveryHookUrl", "ClickHookUrl"):  # fmt: skip
        assert body[name] == "", name
    assert len(body["InboundHash"]) == 32 and int(body["InboundHash"], 16) >= 0
    assert body["InboundAddress"] == f"{body['InboundHash']}@{_inbound_domain()}"
    assert body["InboundSpamThreshold"] == 0
    assert body["ServerLink"].endswith(f"/admin/servers/server/{server.pk}/change/")


def _inbound_domain():
    from django.conf import settings

    return settings.INBOUND_DOMAIN


def test_put_server_changes_only_the_fields_given(api, server):
    body = ok(call(api, "put", "/server", {"TrackOpens": True}))
    assert body["TrackOpens"] is True and body["Name"] == "Test server"
    body = ok(
        call(api, "put", "/server", {
            "Name": "Renamed", "Color": "Turqoise", "RawEmailEnabled": True,
            "SmtpApiActivated": False, "TrackLinks": "HtmlOnly", "InboundSpamThreshold": 9,
            "EnableSmtpApiErrorHooks": True, "InboundDomain": "In.Example.org",
            "DeliveryType": "Live", "TrackOpens": None,
        })
    )  # fmt: skip
    assert body["Name"] == "Renamed" and body["Color"] == "turquoise"
    assert body["RawEmailEnabled"] is True and body["SmtpApiActivated"] is False
    assert body["TrackLinks"] == "HtmlOnly" and body["InboundSpamThreshold"] == 9
    assert body["EnableSmtpApiErrorHooks"] is True and body["InboundDomain"] == "in.example.org"
    assert body["TrackOpens"] is True  # null: not given
    assert body["DeliveryType"] == "Sandbox"  # fixed after creation
    server.refresh_from_db()
    assert server.name == "Renamed" and server.smtp_api_activated is False


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, 609),
        ("", 609),
        ({"Name": None}, 609),
        ({"Color": "ggrey"}, 607),
        ({"Color": 3}, 607),
        ({"Name": ""}, 608),
        ({"Name": "x" * 101}, 608),
        ({"Name": "Other server"}, 603),
        ({"Name": "OTHER SERVER"}, 603),
        ({"Name": "System"}, 603),
        ({"TrackLinks": "HtmlAndTextTracking"}, 612),
        ({"InboundSpamThreshold": 31}, 611),
        ({"InboundSpamThreshold": -1}, 611),
        ({"InboundSpamThreshold": "many"}, 611),
        ({"BounceHookUrl": "ftp://hooks.example.com/"}, 606),
        ({"OpenHookUrl": "http://127.0.0.1/hook"}, 606),
        ({"ClickHookUrl": "http://10.0.0.1/hook"}, 606),
        ({"InboundHookUrl": "http://localhost/hook"}, 606),
        ({"DeliveryHookUrl": 5}, 606),
        ({"TrackOpens": "yes"}, 403),
    ],
)
def test_put_server_refusals(api, server, other_server, body, code):
    before = Server.objects.get(pk=server.pk)
    error(call(api, "put", "/server", body), code)
    after = Server.objects.get(pk=server.pk)
    assert (after.name, after.color, after.track_links) == (
        before.name, before.color, before.track_links,
    )  # fmt: skip
    assert webhooks_of(server) == []


def test_inbound_domain_is_unique_across_servers(api, other_server):
    other_server.inbound_domain = "in.example.org"
    other_server.save()
    error(call(api, "put", "/server", {"InboundDomain": "IN.example.org"}), 602)
    assert ok(call(api, "put", "/server", {"InboundDomain": ""}))["InboundDomain"] == ""


def test_a_hook_url_is_the_outbound_streams_webhook_of_its_kind(api, server):
    body = ok(call(api, "put", "/server", {
        "BounceHookUrl": HOOK, "IncludeBounceContentInHook": True, "PostFirstOpenOnly": True,
    }))  # fmt: skip
    assert body["BounceHookUrl"] == HOOK and body["IncludeBounceContentInHook"] is True
    [hook] = webhooks_of(server)
    assert hook.stream.stream_id == "outbound" and hook.url == HOOK
    assert hook.bounce_enabled and hook.bounce_include_content
    assert not (hook.open_enabled or hook.click_enabled or hook.delivery_enabled)

    # The Webhooks API sees it, and a change there is what /server reads.
    listed = ok(call(api, "get", "/webhooks"))["Webhooks"]
    assert [w["Url"] for w in listed] == [HOOK]
    ok(call(api, "put", f"/webhooks/{hook.pk}", {"Url": HOOK + "/v2"}))
    assert ok(call(api, "get", "/server"))["BounceHookUrl"] == HOOK + "/v2"

    # Other hooks on the same URL share one webhook; the open flag goes to the open webhook.
    body = ok(call(api, "put", "/server", {"OpenHookUrl": HOOK + "/v2", "ClickHookUrl": HOOK}))
    assert body["OpenHookUrl"] == HOOK + "/v2" and body["ClickHookUrl"] == HOOK
    assert body["PostFirstOpenOnly"] is True
    shared, clicks = webhooks_of(server)
    assert shared.bounce_enabled and shared.open_enabled and shared.open_post_first_open_only
    assert clicks.url == HOOK and clicks.click_enabled and not clicks.bounce_enabled

    # Moving one hook off a shared webhook leaves the others; "" clears it, and a webhook left
    # with no trigger goes.
    body = ok(call(api, "put", "/server", {"BounceHookUrl": "https://b.example.com/x"}))
    assert (
        body["OpenHookUrl"] == HOOK + "/v2" and body["BounceHookUrl"] == "https://b.example.com/x"
    )
    body = ok(call(api, "put", "/server", {"ClickHookUrl": "", "BounceHookUrl": ""}))
    assert body["ClickHookUrl"] == body["BounceHookUrl"] == ""
    [left] = webhooks_of(server)
    assert left.pk == shared.pk and left.open_enabled and not left.bounce_enabled
    body = ok(call(api, "put", "/server", {"PostFirstOpenOnly": False}))
    left.refresh_from_db()
    assert body["PostFirstOpenOnly"] is False and not left.open_post_first_open_only


def test_credentials_in_a_hook_url_become_basic_auth(api, server):
    body = ok(
        call(api, "put", "/server", {"DeliveryHookUrl": "https://u:p%40ss@hooks.example.com/d"})
    )
    assert body["DeliveryHookUrl"] == "https://hooks.example.com/d"
    [hook] = webhooks_of(server)
    assert (hook.http_auth_username, hook.http_auth_password) == ("u", "p@ss")
    # Sending back what was read keeps them.
    ok(call(api, "put", "/server", {"DeliveryHookUrl": body["DeliveryHookUrl"]}))
    hook.refresh_from_db()
    assert hook.http_auth_password == "p@ss"


def test_server_token_cannot_see_another_server(api, other_server):
    assert ok(call(api, "get", "/server"))["ID"] != other_server.pk


# --- /servers ----------------------------------------------------------------------------------


def test_servers_list_get_create_edit(account, server, other_server):
    listed = ok(call(account, "get", "/servers?count=1&offset=0"))
    assert listed["TotalCount"] == 2 and [s["Name"] for s in listed["Servers"]] == ["Test server"]
    assert set(listed["Servers"][0]) == SERVER_FIELDS
    listed = ok(call(account, "get", "/servers?count=10&offset=0&name=other"))
    assert [s["ID"] for s in listed["Servers"]] == [other_server.pk]
    error(call(account, "get", "/servers?count=501&offset=0"), 600)
    error(call(account, "get", "/servers?count=x&offset=0"), 600)

    created = ok(call(account, "post", "/servers", {
        "Name": "Shop", "Color": "RED", "BounceHookUrl": HOOK, "TrackLinks": "HtmlAndText",
    }))  # fmt: skip
    assert set(created) == SERVER_FIELDS and created["DeliveryType"] == "Live"
    assert created["Color"] == "red" and created["BounceHookUrl"] == HOOK
    new = Server.objects.get(pk=created["ID"])
    assert new.tokens.first().token == created["ApiTokens"][0] and len(created["ApiTokens"]) == 1
    assert set(MessageStream.objects.filter(server=new).values_list("stream_id", flat=True)) == {
        "outbound", "inbound", "broadcast",
    }  # fmt: skip
    assert ok(call(account, "get", f"/Servers/{new.pk}/"))["Name"] == "Shop"
    sandbox = ok(call(account, "post", "/servers", {"Name": "Box", "DeliveryType": "sandbox"}))
    assert sandbox["DeliveryType"] == "Sandbox"

    edited = ok(call(account, "put", f"/servers/{new.pk}", {"Name": "Shop 2", "TrackOpens": True}))
    assert edited["Name"] == "Shop 2" and edited["TrackOpens"] is True

    error(call(account, "post", "/servers", {"Name": "shop 2"}), 603)
    error(call(account, "post", "/servers", {"Color": "red"}), 608)
    error(call(account, "post", "/servers", {"Name": "X", "DeliveryType": "Test"}), 613)
    error(call(account, "post", "/servers", {}), 609)
    for path in ("/servers/999999", "/servers/abc", "/servers/-1"):
        error(call(account, "get", path), 601)
        error(call(account, "put", path, {"Name": "Y"}), 601)
        error(call(account, "delete", path), 601)


def test_deleting_a_server_is_refused_unless_allowed(account, settings, server):
    settings.ALLOW_SERVER_DELETION_BY_API = False
    error(call(account, "delete", f"/servers/{server.pk}"), 604)
    assert Server.objects.filter(pk=server.pk).exists()
    settings.ALLOW_SERVER_DELETION_BY_API = True
    body = ok(call(account, "delete", f"/servers/{server.pk}"))
    assert body["ErrorCode"] == 0 and not Server.objects.filter(pk=server.pk).exists()


def test_the_system_server_keeps_its_name_and_cannot_be_deleted(account, settings):
    from messages.system import system_stream

    system = system_stream().server
    settings.ALLOW_SERVER_DELETION_BY_API = True
    error(call(account, "put", f"/servers/{system.pk}", {"Name": "Mine"}), 608)
    error(call(account, "delete", f"/servers/{system.pk}"), 605)


def test_tokens_of_the_wrong_kind_are_refused(api, account, server):
    error(call(api, "get", "/servers?count=1&offset=0"), 10, status=401)
    error(call(account, "get", "/server"), 10, status=401)


# --- Postmark's clients over HTTP ----------------------------------------------------------------


def test_postmark_js_server_and_servers(live_server, postmark_js, server, account_token):
    token = server.tokens.first().token

    def js(kind, key, method, *args):
        outcome = postmark_js(live_server.url, kind, key, method, *args)
        assert outcome["ok"], outcome
        return outcome["result"]

    assert js("Server", token, "getServer")["Name"] == "Test server"
    edited = js("Server", token, "editServer", {"Color": "red", "BounceHookUrl": HOOK})
    assert edited["Color"] == "red" and edited["BounceHookUrl"] == HOOK

    listed = js("Account", account_token, "getServers", {"count": 10, "offset": 0})
    assert listed["TotalCount"] == 1 and listed["Servers"][0]["ID"] == server.pk
    created = js("Account", account_token, "createServer", {"Name": "JS server", "Color": "blue"})
    assert created["Color"] == "blue" and created["ApiTokens"]
    assert js("Account", account_token, "getServer", created["ID"])["Name"] == "JS server"
    edited = js("Account", account_token, "editServer", created["ID"], {"Name": "JS 2"})
    assert edited["Name"] == "JS 2"
    refused = postmark_js(live_server.url, "Account", account_token, "deleteServer", created["ID"])
    assert not refused["ok"] and refused["code"] == 604


def test_postmarker_server_get_and_edit(live_server, server):
    client = PostmarkClient(server_token=server.tokens.first().token, root_api_url=live_server.url)
    got = client.server.get()
    assert got.Name == "Test server" and server.pk == got.ID
    got.edit(Color="green", OpenHookUrl=HOOK, TrackOpens=True)
    again = client.server.get()
    assert again.Color == "green" and again.OpenHookUrl == HOOK and again.TrackOpens is True
    assert Webhook.objects.get(stream__server=server).open_enabled
