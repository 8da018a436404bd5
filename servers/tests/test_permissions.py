"""A staff user limited to some servers sees nothing of the others, whatever the URL: change
pages, lists, counts, filters, search, raw sources, the dashboard, and the POST views."""

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from messages.models import Submission
from postmark_site.tests.test_dashboard import DUMP, make_bounce, make_message
from servers.models import StaffServerAccess
from streams.models import Suppression
from streams.services import create_server, create_smtp_token, get_stream
from streams.suppressions import suppress

APPS = ("servers", "streams", "bounces", "outbound", "webhooks")


@pytest.fixture(autouse=True)
def _fresh_dashboard_cache():
    """The dashboard caches finished days; every test starts without them."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def staff_user(username, *servers, limited=True, view_only=False):
    user = User.objects.create_user(username, password="pw", is_staff=True)
    permissions = Permission.objects.filter(content_type__app_label__in=APPS)
    if view_only:
        permissions = permissions.filter(codename__startswith="view_")
    user.user_permissions.set(permissions)
    access = StaffServerAccess.objects.create(user=user, all_servers=not limited)
    access.servers.set(servers)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def world(db):
    """Two servers with one of everything; the second one's names are distinctive."""
    mine = create_server("Mine")
    theirs = create_server("Theirs-secret-server")
    data = {}
    for key, server, email in (("mine", mine, "me@example.net"),
                               ("theirs", theirs, "their-secret@example.net")):  # fmt: skip
        stream = get_stream(server, "outbound")
        token, _ = create_smtp_token(stream)
        message = make_message(server, to=email, subject=f"subject-{key}", tag=f"tag-{key}",
                               submission=True, delivered=True)  # fmt: skip
        error = make_bounce(server, "SMTPApiError", email=email, content=DUMP + key)
        hard = make_bounce(server, "HardBounce", email=email, content="dump " + key)
        suppress(stream, email, Suppression.Reason.HARD_BOUNCE, "Recipient", bounce=hard)
        data[key] = {
            "server": server,
            "stream": stream,
            "token": token,
            "message": message,
            "submission": Submission.objects.get(message_id=message.message_id),
            "error": error,
            "hard": hard,
        }
    return data


def change_urls(d):
    return [
        reverse("admin:servers_server_change", args=[d["server"].pk]),
        reverse("admin:servers_servertoken_change", args=[d["server"].tokens.first().pk]),
        reverse("admin:streams_messagestream_change", args=[d["stream"].pk]),
        reverse("admin:streams_smtptoken_change", args=[d["token"].pk]),
        reverse("admin:outbound_outboundmessage_change", args=[d["message"].pk]),
        reverse("admin:outbound_submission_change", args=[d["submission"].pk]),
        reverse("admin:bounces_bounce_change", args=[d["error"].pk]),
        reverse("admin:bounces_bounce_change", args=[d["hard"].pk]),
        reverse("admin:servers_server_history", args=[d["server"].pk]),
    ]


def source_urls(d):
    return [
        reverse("admin:bounces_bounce_dump", args=[d["error"].pk]),
        reverse("admin:bounces_bounce_dump", args=[d["hard"].pk]),
        reverse("admin:outbound_outboundmessage_source", args=[d["message"].pk]),
        reverse("admin:streams_messagestream_suppressions", args=[d["stream"].pk]),
        reverse("admin:streams_messagestream_suppressions_csv", args=[d["stream"].pk]),
    ]


LISTS = [
    "admin:servers_server_changelist",
    "admin:servers_servertoken_changelist",
    "admin:streams_messagestream_changelist",
    "admin:streams_smtptoken_changelist",
    "admin:outbound_submission_changelist",
    "admin:outbound_outboundmessage_changelist",
    "admin:bounces_bounce_changelist",
    "admin:dashboard",
]
SECRETS = ("Theirs-secret-server", "their-secret@example.net", "subject-theirs", "tag-theirs")


@pytest.mark.django_db
def test_limited_staff_cannot_reach_other_servers_by_url(world):
    client = staff_user("limited", world["mine"]["server"])
    theirs = world["theirs"]
    for url in change_urls(theirs):
        response = client.get(url, follow=True)
        page = response.content.decode()
        assert not any(s in page for s in SECRETS), url
        assert response.redirect_chain or response.status_code == 404, url
    for url in source_urls(theirs):
        assert client.get(url).status_code == 404, url
    # Their own objects work.
    for url in change_urls(world["mine"]) + source_urls(world["mine"]):
        assert client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_limited_staff_lists_counts_filters_and_search_hide_other_servers(world):
    client = staff_user("limited", world["mine"]["server"])
    for name in LISTS:
        page = client.get(reverse(name)).content.decode()
        assert not any(s in page for s in SECRETS), name
    # Search for their data finds nothing; filtering by their server shows nothing.
    theirs = world["theirs"]
    for name, query in [
        ("admin:bounces_bounce_changelist", "q=their-secret"),
        ("admin:bounces_bounce_changelist", f"q={theirs['error'].message_id or ''}"),
        ("admin:bounces_bounce_changelist", f"server__id__exact={theirs['server'].pk}"),
        ("admin:outbound_outboundmessage_changelist", f"q={theirs['message'].message_id}"),
        ("admin:outbound_outboundmessage_changelist", "q=tag-theirs"),
        ("admin:outbound_outboundmessage_changelist", f"stream__id__exact={theirs['stream'].pk}"),
        ("admin:servers_server_changelist", "q=Theirs"),
        ("admin:outbound_submission_changelist", "q=app@example.com"),
    ]:
        page = client.get(reverse(name) + "?" + query).content.decode()
        hidden = [s for s in SECRETS if s not in query]  # the search box echoes the query
        assert not any(s in page for s in hidden), (name, query)
    page = client.get(reverse("admin:bounces_bounce_changelist")).content.decode()
    assert "me@example.net" in page  # their own is there
    # The dashboard: only their numbers, and no way to ask for the other server.
    assert (
        client.get(reverse("admin:dashboard") + f"?server={theirs['server'].pk}").status_code == 404
    )
    # Account-level and access records are not for limited users.
    assert client.get(reverse("admin:servers_accounttoken_changelist")).status_code == 403
    assert client.get(reverse("admin:servers_staffserveraccess_changelist")).status_code == 403
    index = client.get(reverse("admin:index")).content.decode()
    assert "Account API tokens" not in index and "Staff server access" not in index


@pytest.mark.django_db
def test_limited_staff_cannot_post_to_other_servers(world):
    client = staff_user("limited", world["mine"]["server"])
    theirs = world["theirs"]
    posts = [
        (reverse("admin:servers_server_smtp", args=[theirs["server"].pk]), {"enabled": "off"}),
        (
            reverse(
                "admin:streams_messagestream_token_revoke",
                args=[theirs["stream"].pk, theirs["token"].pk],
            ),
            {},
        ),  # fmt: skip
        (
            reverse("admin:streams_messagestream_suppression_add", args=[theirs["stream"].pk]),
            {"email": "x@example.net"},
        ),  # fmt: skip
        (
            reverse("admin:streams_messagestream_suppression_remove", args=[theirs["stream"].pk]),
            {"email": "their-secret@example.net"},
        ),  # fmt: skip
        (reverse("admin:bounces_bounce_reactivate", args=[theirs["hard"].pk]), {}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 404, url
    # Nor through the admin's own actions and forms.
    client.post(reverse("admin:servers_server_changelist"),
                {"action": "disable_smtp", "_selected_action": [theirs["server"].pk]})  # fmt: skip
    client.post(reverse("admin:bounces_bounce_changelist"),
                {"action": "reactivate", "_selected_action": [theirs["hard"].pk]})  # fmt: skip
    form = client.get(reverse("admin:streams_smtptoken_add")).content.decode()
    assert "Theirs-secret-server" not in form
    response = client.post(reverse("admin:streams_smtptoken_add"), {"stream": theirs["stream"].pk})
    assert b"Select a valid choice" in response.content
    theirs["server"].refresh_from_db()
    theirs["token"].refresh_from_db()
    theirs["hard"].refresh_from_db()
    assert theirs["server"].smtp_api_activated and not theirs["token"].revoked
    assert theirs["hard"].inactive
    assert set(
        Suppression.objects.filter(stream=theirs["stream"]).values_list("email", flat=True)
    ) == {"their-secret@example.net"}


@pytest.mark.django_db
def test_access_record_with_no_servers_sees_nothing(world):
    client = staff_user("nobody")
    for name in LISTS:
        page = client.get(reverse(name)).content.decode()
        assert not any(s in page for s in (*SECRETS, "me@example.net", "subject-mine")), name
    for url in change_urls(world["mine"]):
        response = client.get(url, follow=True)
        assert response.redirect_chain or response.status_code == 404, url
    for url in source_urls(world["mine"]):
        assert client.get(url).status_code == 404


@pytest.mark.django_db
def test_deleting_their_server_does_not_widen_access(world):
    client = staff_user("limited", world["mine"]["server"])
    world["mine"]["server"].delete()
    page = client.get(reverse("admin:servers_server_changelist")).content.decode()
    assert "Theirs-secret-server" not in page


@pytest.mark.django_db
def test_unlimited_staff_and_superusers_see_everything(world, admin_client):
    unlimited = staff_user("unlimited", limited=False)
    for client in (unlimited, admin_client):
        page = client.get(reverse("admin:bounces_bounce_changelist")).content.decode()
        assert "their-secret@example.net" in page and "me@example.net" in page
        dashboard = client.get(reverse("admin:dashboard")).content.decode()
        assert "Theirs-secret-server" in dashboard and "Mine" in dashboard
        for url in source_urls(world["theirs"]):
            assert client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_non_staff_get_the_login_page(world):
    user = User.objects.create_user("plain", password="pw")
    client = Client()
    client.force_login(user)
    for url in [reverse("admin:dashboard"), *source_urls(world["mine"])]:
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"], url


@pytest.mark.django_db
def test_a_staff_user_without_a_grant_sees_no_server(world):
    user = User.objects.create_user("new-staff", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=APPS))
    client = Client()
    client.force_login(user)
    page = client.get(reverse("admin:servers_server_changelist")).content.decode()
    assert "Mine" not in page and "Theirs-secret-server" not in page
    dashboard = client.get(reverse("admin:dashboard")).content.decode()
    assert "Theirs-secret-server" not in dashboard and "Mine" not in dashboard
    # An explicit grant of all servers opens everything.
    StaffServerAccess.objects.create(user=user, all_servers=True)
    client.force_login(User.objects.get(pk=user.pk))
    page = client.get(reverse("admin:servers_server_changelist")).content.decode()
    assert "Mine" in page and "Theirs-secret-server" in page


# Every admin action with what it would change, for a view-only staff user who must not run it.
ACTIONS = [
    ("admin:servers_server_changelist", "disable_smtp", lambda w: w["server"]),
    ("admin:servers_server_changelist", "generate_api_token", lambda w: w["server"]),
    ("admin:streams_messagestream_changelist", "archive", lambda w: w["stream"]),
    ("admin:streams_smtptoken_changelist", "revoke", lambda w: w["token"]),
    ("admin:streams_ipcredential_changelist", "revoke", lambda w: w["credential"]),
    ("admin:bounces_bounce_changelist", "reactivate", lambda w: w["hard"]),
    ("admin:webhooks_webhook_changelist", "regenerate_signing_secret", lambda w: w["webhook"]),
    ("admin:webhooks_webhookdelivery_changelist", "retry_now", lambda w: w["delivery"]),
]


@pytest.fixture
def everything(world):
    from messages.events import record_event
    from streams.models import IpCredential
    from webhooks.models import Webhook, WebhookDelivery

    mine = world["mine"]
    stream = mine["stream"]
    webhook = Webhook.objects.create(stream=stream, url="https://hooks.example/x")
    event = record_event(
        server_id=mine["server"].pk, stream_id=stream.pk, type="Delivery", recipient="a@b.example"
    )
    return {
        **mine,
        "credential": IpCredential.objects.create(stream=stream, cidr="192.0.2.0/24"),
        "webhook": webhook,
        "delivery": WebhookDelivery.objects.create(
            webhook=webhook, event=event, status="failed", attempts=10
        ),
    }


def snapshot(obj):
    """Every column of the row as stored, plus what hangs off a server (its API tokens)."""
    row = type(obj).objects.filter(pk=obj.pk).values().first()
    if hasattr(obj, "tokens"):
        row["tokens"] = obj.tokens.count()
    return row


@pytest.mark.django_db
@pytest.mark.parametrize(("changelist", "action", "target"), ACTIONS)
def test_a_view_only_staff_user_runs_no_action(everything, changelist, action, target):
    obj = target(everything)
    viewer = staff_user(f"viewer-{action}", everything["server"], view_only=True)
    listing = viewer.get(reverse(changelist))
    assert listing.status_code == 200
    assert f'value="{action}"' not in listing.content.decode()  # not even offered
    before = snapshot(obj)
    viewer.post(reverse(changelist), {"action": action, "_selected_action": [obj.pk]})
    assert snapshot(obj) == before


@pytest.mark.django_db
def test_the_webhook_password_is_never_rendered_back(everything, admin_client):
    webhook = everything["webhook"]
    webhook.http_auth_username, webhook.http_auth_password = "hook-user", "s3cret-Passw0rd"
    webhook.save()
    url = reverse("admin:webhooks_webhook_change", args=[webhook.pk])
    assert "s3cret-Passw0rd" not in admin_client.get(url).content.decode()
    # Saving the form with the password left blank keeps it.
    form = {
        "stream": webhook.stream_id, "url": webhook.url, "http_auth_username": "hook-user",
        "http_auth_password": "", "http_headers": "[]", "delivery_enabled": "on",
    }  # fmt: skip
    assert admin_client.post(url, form).status_code == 302
    webhook.refresh_from_db()
    assert webhook.http_auth_password == "s3cret-Passw0rd"
    admin_client.post(url, {**form, "clear_http_auth_password": "on"})
    webhook.refresh_from_db()
    assert webhook.http_auth_password == ""
