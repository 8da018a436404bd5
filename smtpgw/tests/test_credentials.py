"""Credential look-up rules, called directly (the gateway tests go through real SMTP)."""

import pytest

from servers.models import AccountToken
from servers.services import set_smtp_access
from smtpgw import credentials
from streams.models import IpCredential
from streams.services import create_smtp_token, get_stream


@pytest.fixture(autouse=True)
def no_cache(settings):
    settings.SMTP_AUTH_CACHE_SECONDS = 0
    credentials.clear_cache()
    yield
    credentials.clear_cache()


@pytest.mark.django_db
def test_server_token_is_its_own_password(server):
    token = server.api_tokens[0]
    found = credentials.lookup(token)
    assert found.secret == token
    assert found.refusal == ""
    assert found.identity.kind == "server_token"
    assert found.identity.server_id == server.id
    assert found.identity.stream_pk is None
    assert token not in found.identity.credential  # only the tail is logged and stored


@pytest.mark.django_db
def test_smtp_token_is_bound_to_its_stream(server):
    token, secret = create_smtp_token(get_stream(server, "broadcast"))
    found = credentials.lookup(token.access_key)
    assert found.secret == secret
    assert found.identity.stream_id == "broadcast"
    assert found.identity.stream_type == "Broadcasts"


@pytest.mark.django_db
def test_unknown_user():
    assert credentials.lookup("nobody") is None
    assert credentials.lookup("") is None


@pytest.mark.django_db
def test_refusals_are_specific(server):
    token, _ = create_smtp_token(get_stream(server, "outbound"))
    account = AccountToken.issue("ops")
    assert credentials.lookup(account.token).refusal == credentials.ACCOUNT_TOKEN
    token.revoke()
    assert credentials.lookup(token.access_key).refusal == credentials.TOKEN_REVOKED
    set_smtp_access(server, False)
    assert credentials.lookup(server.api_tokens[0]).refusal == credentials.SMTP_DISABLED


@pytest.mark.django_db
def test_lookups_are_cached_for_the_configured_time(server, settings):
    settings.SMTP_AUTH_CACHE_SECONDS = 60
    token, _ = create_smtp_token(get_stream(server, "outbound"))
    assert credentials.lookup(token.access_key).refusal == ""
    token.revoke()
    assert credentials.lookup(token.access_key).refusal == ""  # still cached
    credentials.clear_cache()
    assert credentials.lookup(token.access_key).refusal == credentials.TOKEN_REVOKED


@pytest.mark.django_db
def test_ip_credentials_most_specific_network_wins(server, other_server):
    wide = IpCredential.objects.create(stream=get_stream(server, "outbound"), cidr="10.0.0.0/8")
    narrow = IpCredential.objects.create(
        stream=get_stream(other_server, "broadcast"), cidr="10.1.2.0/24"
    )
    assert credentials.identity_for_address("10.9.9.9").credential == wide.cidr
    found = credentials.identity_for_address("10.1.2.3")
    assert found.credential == narrow.cidr
    assert found.server_id == other_server.id
    assert found.stream_id == "broadcast"
    assert credentials.identity_for_address("::ffff:10.1.2.3").credential == narrow.cidr
    assert credentials.identity_for_address("192.0.2.1") is None
    assert credentials.identity_for_address("not an ip") is None


@pytest.mark.django_db
def test_ip_credentials_respect_revocation_and_the_smtp_switch(server):
    cred = IpCredential.objects.create(stream=get_stream(server, "outbound"), cidr="127.0.0.1/32")
    assert credentials.identity_for_address("127.0.0.1") is not None
    set_smtp_access(server, False)
    assert credentials.identity_for_address("127.0.0.1") is None
    set_smtp_access(server, True)
    cred.revoked_at = cred.created_at
    cred.save()
    assert credentials.identity_for_address("127.0.0.1") is None


def _identity(stream_type, stream_id="s"):
    return credentials.Identity(
        kind="smtp_token",
        server_id=1,
        server_name="x",
        stream_id=stream_id,
        stream_type=stream_type,
    )


def test_endpoint_rules():
    assert credentials.endpoint_refusal(_identity("Transactional"), "transactional") == ""
    assert credentials.endpoint_refusal(_identity("Broadcasts"), "broadcast") == ""
    assert "broadcast SMTP endpoint" in credentials.endpoint_refusal(
        _identity("Broadcasts", "news"), "transactional"
    )
    assert "transactional SMTP endpoint" in credentials.endpoint_refusal(
        _identity("Transactional"), "broadcast"
    )
    assert "Inbound" in credentials.endpoint_refusal(_identity("Inbound"), "transactional")
    server_token = credentials.Identity(kind="server_token", server_id=1, server_name="x")
    assert credentials.endpoint_refusal(server_token, "broadcast") == ""
