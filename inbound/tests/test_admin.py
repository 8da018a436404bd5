"""The inbound admin: the activity list and a message's page (parsed JSON and raw source escaped
and capped), Retry and Bypass as buttons and as actions, the inbound rules, the server page's
inbound panel — and a staff user limited to one server sees nothing of another's."""

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from api.tests.test_inbound_api import make_inbound
from inbound import admin as inbound_admin
from inbound.models import InboundMessage, InboundRule
from servers.models import StaffServerAccess

S = InboundMessage.Status


def staff(*servers, may_act=True):
    user = User.objects.create_user(f"staff{User.objects.count()}", password="pw", is_staff=True)
    permissions = Permission.objects.filter(content_type__app_label__in=("inbound", "servers"))
    if not may_act:
        permissions = permissions.filter(codename__startswith="view_")
    user.user_permissions.set(permissions)
    access = StaffServerAccess.objects.create(user=user)
    access.servers.set(servers)
    client = Client()
    client.force_login(user)
    return client


def page(client, url, status=200) -> str:
    response = client.get(url)
    assert response.status_code == status, response.content[:500]
    return response.content.decode()


def change_url(message) -> str:
    return reverse("admin:inbound_inboundmessage_change", args=[message.pk])


LIST = "/admin/inbound/inboundmessage/"


@pytest.mark.django_db
def test_the_list_shows_status_sender_subject_and_received_time(admin_client, server):
    make_inbound(server, status=S.BLOCKED, sender="bob@example.com", from_name="Bob <b>",
                 subject="<script>alert(1)</script>")  # fmt: skip
    html = page(admin_client, LIST)
    assert "Blocked" in html and "bob@example.com" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert "Bob &lt;b&gt;" in html
    for query in ("?q=bob@example.com", "?q=script", "?status__exact=blocked", "?received=1d"):
        assert "bob@example.com" in page(admin_client, LIST + query), query
    assert "bob@example.com" not in page(admin_client, LIST + "?status__exact=failed")


@pytest.mark.django_db
def test_a_message_page_shows_the_json_and_the_source_escaped_and_capped(
    admin_client, server, monkeypatch
):
    message = make_inbound(server, raw=b"Subject: <b>raw</b>\r\n\r\n" + b"x" * 5000)
    monkeypatch.setattr(inbound_admin, "MAX_SHOWN_SOURCE", 1000)
    html = page(admin_client, change_url(message))
    assert "&quot;StrippedTextReply&quot;: &quot;Thanks!&quot;" in html  # pretty, escaped JSON
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert "JVBERi0xLjQK" not in html  # attachments are described, their content not shown
    assert "Subject: &lt;b&gt;raw&lt;/b&gt;" in html and 'id="raw-cut"' in html
    assert "x" * 2000 not in html
    assert 'id="retry"' not in html and 'id="bypass"' not in html  # processed: nothing to do
    source = admin_client.get(reverse("admin:inbound_inboundmessage_source", args=[message.pk]))
    assert source["Content-Type"] == "message/rfc822"
    assert b"".join(source.streaming_content if source.streaming else [source.content]).endswith(
        b"x" * 5000
    )


@pytest.mark.django_db
def test_retry_and_bypass_buttons(admin_client, server):
    failed = make_inbound(server, status=S.FAILED, last_response_code=500,
                          last_response="Internal Server Error", attempts=11)  # fmt: skip
    blocked = make_inbound(server, status=S.BLOCKED, blocked_reason="Sender blocked: example.com")
    html = page(admin_client, change_url(failed))
    assert 'id="retry"' in html and "Internal Server Error" in html and 'id="bypass"' not in html
    html = page(admin_client, change_url(blocked))
    assert 'id="bypass"' in html and "Sender blocked: example.com" in html
    response = admin_client.post(reverse("admin:inbound_inboundmessage_retry", args=[failed.pk]))
    assert response.status_code == 302
    failed.refresh_from_db()
    assert failed.status == S.QUEUED
    admin_client.post(reverse("admin:inbound_inboundmessage_bypass", args=[blocked.pk]))
    blocked.refresh_from_db()
    assert blocked.status == S.QUEUED
    # Not in that state any more: said so, nothing done.
    again = admin_client.post(
        reverse("admin:inbound_inboundmessage_bypass", args=[blocked.pk]), follow=True
    )
    assert "not bypassed" in again.content.decode()
    retry = reverse("admin:inbound_inboundmessage_retry", args=[failed.pk])
    assert admin_client.get(retry).status_code == 405


@pytest.mark.django_db
def test_retry_and_bypass_actions_take_only_messages_in_their_state(admin_client, server):
    failed = make_inbound(server, status=S.FAILED)
    blocked = make_inbound(server, status=S.BLOCKED)
    done = make_inbound(server)
    ids = [str(m.pk) for m in (failed, blocked, done)]
    response = admin_client.post(
        LIST, {"action": "retry_selected", "_selected_action": ids}, follow=True
    )
    text = response.content.decode()
    assert "1 message(s) retried." in text and "2 message(s) skipped" in text
    admin_client.post(LIST, {"action": "bypass_selected", "_selected_action": ids})
    statuses = dict(InboundMessage.objects.values_list("pk", "status"))
    assert statuses == {failed.pk: S.QUEUED, blocked.pk: S.QUEUED, done.pk: S.PROCESSED}


@pytest.mark.django_db
def test_rules_are_added_normalised_and_checked(admin_client, server):
    add = reverse("admin:inbound_inboundrule_add")
    html = page(admin_client, add + f"?server={server.pk}")
    assert f'<option value="{server.pk}" selected>' in html
    response = admin_client.post(add, {"server": server.pk, "rule": " Spam@Example.COM "})
    assert response.status_code == 302
    assert InboundRule.objects.get().rule == "spam@example.com"
    duplicate = admin_client.post(add, {"server": server.pk, "rule": "spam@example.com"})
    assert "already blocks spam@example.com" in duplicate.content.decode()
    invalid = admin_client.post(add, {"server": server.pk, "rule": "not a domain"})
    assert "not a valid email address or domain" in invalid.content.decode()
    assert InboundRule.objects.count() == 1
    assert "spam@example.com" in page(admin_client, reverse("admin:inbound_inboundrule_changelist"))


@pytest.mark.django_db
def test_the_server_page_shows_the_inbound_panel(admin_client, server):
    server.inbound_domain = "mail.example.org"
    server.inbound_hook_url = "https://app.example.org/inbound?a=<b>"
    server.save()
    make_inbound(server, status=S.FAILED)
    html = page(admin_client, reverse("admin:servers_server_change", args=[server.pk]))
    assert f'<code id="inbound-address">{server.inbound_hash}@' in html
    assert 'data-copy-target="inbound-address"' in html
    assert f"{server.inbound_hash}+ticket-42@" in html
    assert "mail.example.org" in html and "https://app.example.org/inbound?a=&lt;b&gt;" in html
    assert 'id="inbound-failed"' in html and "1 failed" in html
    assert 'name="inbound_hook_url"' in html  # editable in the form


@pytest.mark.django_db
def test_the_server_form_refuses_a_hook_url_that_is_not_a_web_address(admin_client, server):
    url = reverse("admin:servers_server_change", args=[server.pk])
    form = {"name": server.name, "delivery_type": server.delivery_type, "color": "purple",
            "track_links": "None", "inbound_hook_url": "ftp://example.org/x",
            "inbound_spam_threshold": 0,
            "streams-TOTAL_FORMS": 0, "streams-INITIAL_FORMS": 0}  # fmt: skip
    response = admin_client.post(url, form)
    assert response.status_code == 200 and "Enter a valid URL." in response.content.decode()
    server.refresh_from_db()
    assert server.inbound_hook_url == ""


@pytest.mark.django_db
def test_a_limited_staff_user_sees_only_their_servers_inbound(server, other_server):
    mine = make_inbound(server, status=S.FAILED, subject="mine")
    theirs = make_inbound(other_server, status=S.FAILED, subject="theirs-secret")
    their_rule = InboundRule.objects.create(server=other_server, rule="their-secret.example")
    client = staff(server)
    html = page(client, LIST)
    assert "mine" in html and "theirs-secret" not in html
    assert "theirs-secret" not in page(client, LIST + "?q=" + str(theirs.message_id))
    page(client, change_url(theirs), status=302)  # Django's "does not exist" redirect
    for name in ("source", "retry", "bypass"):
        url = reverse(f"admin:inbound_inboundmessage_{name}", args=[theirs.pk])
        response = client.post(url) if name != "source" else client.get(url)
        assert response.status_code == 404, name
    client.post(LIST, {"action": "retry_selected", "_selected_action": [theirs.pk, mine.pk]})
    theirs.refresh_from_db()
    mine.refresh_from_db()
    assert theirs.status == S.FAILED and mine.status == S.QUEUED
    assert "their-secret" not in page(client, reverse("admin:inbound_inboundrule_changelist"))
    page(client, reverse("admin:inbound_inboundrule_change", args=[their_rule.pk]), status=302)
    add = client.post(
        reverse("admin:inbound_inboundrule_add"), {"server": other_server.pk, "rule": "x.example"}
    )
    assert add.status_code == 200 and not InboundRule.objects.filter(rule="x.example").exists()


@pytest.mark.django_db
def test_view_only_staff_may_not_retry_or_bypass(server):
    failed = make_inbound(server, status=S.FAILED)
    client = staff(server, may_act=False)
    assert 'id="retry"' not in page(client, change_url(failed))
    url = reverse("admin:inbound_inboundmessage_retry", args=[failed.pk])
    assert client.post(url).status_code == 403
    assert "retry_selected" not in page(client, LIST)
    failed.refresh_from_db()
    assert failed.status == S.FAILED
