"""Secrets on admin pages: a staff user who may only view sees a masked form (its ends) of server
API tokens, account tokens and webhook signing secrets; one who may change what the secret belongs
to sees it whole."""

import pytest
from django.urls import reverse

from servers.access import masked
from servers.models import AccountToken
from servers.tests.test_permissions import staff_user
from streams.services import create_server, get_stream
from webhooks.models import Webhook


@pytest.fixture
def secrets_world(db):
    server = create_server("Shop")
    webhook = Webhook.objects.create(
        stream=get_stream(server, "outbound"), url="https://hooks.example/x"
    )
    account = AccountToken.issue("ops")
    token = server.tokens.get()
    return {
        "server": (reverse("admin:servers_server_change", args=[server.pk]), token.token),
        "server token": (reverse("admin:servers_servertoken_change", args=[token.pk]), token.token),
        "account token": (
            reverse("admin:servers_accounttoken_change", args=[account.pk]),
            account.token,
        ),
        "webhook": (
            reverse("admin:webhooks_webhook_change", args=[webhook.pk]),
            webhook.signing_secret,
        ),  # fmt: skip
        "server list": (reverse("admin:servers_server_changelist"), token.token),
        "token list": (reverse("admin:servers_servertoken_changelist"), token.token),
    }


# page -> whether it shows the whole secret to those who may change it (lists never do).
PAGES = {"server": True, "server token": True, "account token": True, "webhook": True,
         "server list": False, "token list": False}  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize(
    ("who", "in_full"),
    [("viewer", False), ("limited viewer", False), ("changer", True), ("superuser", True)],
)
def test_a_secret_is_whole_only_for_those_who_may_change_it(
    secrets_world, admin_client, page, who, in_full
):
    url, secret = secrets_world[page]
    client = {
        "viewer": lambda: staff_user("viewer", limited=False, view_only=True),
        "limited viewer": lambda: staff_user(
            "limited-viewer", *_servers(), limited=True, view_only=True
        ),
        "changer": lambda: staff_user("changer", limited=False),
        "superuser": lambda: admin_client,
    }[who]()
    response = client.get(url)
    if who == "limited viewer" and page == "account token":
        assert response.status_code in (302, 403, 404)  # account-wide: not for limited staff
        return
    assert response.status_code == 200, (page, who)
    html = response.content.decode()
    assert (secret in html) is (in_full and PAGES[page]), (page, who)
    if not in_full and PAGES[page]:
        assert masked(secret) in html, (page, who)


def _servers():
    from servers.models import Server

    return list(Server.objects.all())


def test_masked_keeps_the_ends_of_long_secrets_only():
    assert masked("0123456789abcdef0123") == "0123…0123"
    assert masked("short-secret") == "…"
    assert masked("") == "…"
