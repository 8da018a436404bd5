"""API tokens: random, found by an indexed digest, never stored in clear text."""

import pytest
from django.db import connection

from core import crypto
from servers.models import ServerToken
from streams.services import create_server


@pytest.mark.django_db
def test_every_new_server_has_a_token_and_the_three_default_streams():
    server = create_server("Shop")
    streams = {s.stream_id: s.message_stream_type for s in server.streams.all()}
    assert streams == {
        "outbound": "Transactional",
        "inbound": "Inbound",
        "broadcast": "Broadcasts",
    }
    assert len(server.api_tokens) == 1


@pytest.mark.django_db
def test_tokens_are_unique_random_uuids():
    tokens = {create_server(f"S{i}").api_tokens[0] for i in range(20)}
    assert len(tokens) == 20
    assert all(len(t) == 36 and t.count("-") == 4 for t in tokens)


@pytest.mark.django_db
def test_find_by_token(server, other_server):
    token = server.api_tokens[0]
    assert ServerToken.find(token).server == server
    assert ServerToken.find(other_server.api_tokens[0]).server == other_server
    assert ServerToken.find(token.upper()) is None
    altered = token[:-1] + ("1" if token[-1] != "1" else "2")
    assert ServerToken.find(altered) is None
    assert ServerToken.find("") is None


@pytest.mark.django_db
def test_the_token_is_stored_only_as_digest_and_ciphertext(server):
    token = server.api_tokens[0]
    row = ServerToken.objects.filter(server=server).values().get()
    assert token not in str(row)
    assert row["token_digest"] == crypto.digest(token)
    assert crypto.decrypt(row["token_encrypted"]) == token


@pytest.mark.django_db
def test_token_lookup_is_indexed():
    index_columns = [
        info["columns"]
        for info in connection.introspection.get_constraints(
            connection.cursor(), ServerToken._meta.db_table
        ).values()
        if info["index"] or info["unique"]
    ]
    assert ["token_digest"] in index_columns


def test_smtp_secrets_are_letters_and_digits():
    """Command-line clients take a secret starting with '-' for an option."""
    from core.crypto import new_secret_key

    keys = {new_secret_key() for _ in range(200)}
    assert len(keys) == 200
    assert all(len(k) == 40 and k.isalnum() and k.isascii() for k in keys)
