"""Rotating SECRETS_KEY: several keys (newest first), every stored secret moved to the newest by
``manage.py rotatesecrets`` while credentials keep working, then the old key dropped."""

import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection

from conftest import start_gateway
from servers.models import ServerToken
from streams.models import SmtpToken
from streams.services import create_server, create_smtp_token, get_stream
from webhooks.models import Webhook

OLD, NEW = "old-key-" + "o" * 40, "new-key-" + "n" * 40


def everything_with_secrets():
    server = create_server("Rotating")
    smtp_token, secret = create_smtp_token(get_stream(server, "outbound"))
    webhook = Webhook(stream=get_stream(server, "outbound"), url="https://hooks.example/")
    webhook.http_auth_password = "hook-password"
    webhook.save()
    webhook.signing_secret_then = webhook.signing_secret
    return server, server.api_tokens[0], smtp_token, secret, webhook


def check_all(server_token, smtp_token, secret, webhook):
    assert ServerToken.find(server_token) is not None
    assert SmtpToken.objects.get(pk=smtp_token.pk).secret == secret
    fresh = Webhook.objects.get(pk=webhook.pk)
    assert fresh.http_auth_password == "hook-password"
    assert fresh.signing_secret == webhook.signing_secret_then


@pytest.mark.django_db
def test_rotation_moves_every_secret_to_the_newest_key(settings):
    settings.SECRETS_KEY = OLD
    _, server_token, smtp_token, secret, webhook = everything_with_secrets()
    before = ServerToken.objects.get().token_digest

    settings.SECRETS_KEY = f"{NEW},{OLD}"  # the new key is added: nothing stops working
    check_all(server_token, smtp_token, secret, webhook)
    out = io.StringIO()
    call_command("rotatesecrets", stdout=out)
    assert "servers.ServerToken: 1 row(s)" in out.getvalue()
    assert ServerToken.objects.get().token_digest != before

    settings.SECRETS_KEY = NEW  # the old key is dropped
    check_all(server_token, smtp_token, secret, webhook)


@pytest.mark.django_db(transaction=True)
def test_the_gateway_keeps_authenticating_through_a_rotation(settings, tmp_path):
    settings.SECRETS_KEY = OLD
    server, server_token, smtp_token, secret, _ = everything_with_secrets()

    def logins(keys: str):
        gateway = start_gateway(tmp_path / f"runsmtp-{len(keys)}.log", SECRETS_KEY=keys)
        try:
            for user, password in ((server_token, server_token), (smtp_token.access_key, secret)):
                client = gateway.smtp()
                assert client.login(user, password)[0] == 235
                client.quit()
        finally:
            gateway.process.stop()

    settings.SECRETS_KEY = f"{NEW},{OLD}"
    logins(settings.SECRETS_KEY)
    call_command("rotatesecrets", stdout=io.StringIO())
    connection.close()
    settings.SECRETS_KEY = NEW
    logins(NEW)


@pytest.mark.django_db
def test_rotatesecrets_says_until_when_the_old_key_must_stay(settings):
    """The VERP return paths of mail sent before the rotation carry tags made under the old key
    and take reports for DELIVERY_GIVE_UP_AFTER + VERP_ACCEPT_DAYS: the old key may go only
    then, and the command says when."""
    settings.SECRETS_KEY = f"{NEW},{OLD}"
    settings.DELIVERY_GIVE_UP_AFTER = 72 * 3600.0
    settings.VERP_ACCEPT_DAYS = 30
    before = datetime.now(UTC).replace(second=0, microsecond=0)
    out = io.StringIO()
    call_command("rotatesecrets", stdout=out)
    after = datetime.now(UTC)
    match = re.search(r"Keep the older key\(s\) in SECRETS_KEY until (\S+ \S+) UTC", out.getvalue())
    assert match, out.getvalue()
    until = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    assert before + timedelta(days=33) <= until <= after + timedelta(days=33)

    settings.SECRETS_KEY = NEW  # one key: nothing to keep
    out = io.StringIO()
    call_command("rotatesecrets", stdout=out)
    assert "Keep the older key" not in out.getvalue()
