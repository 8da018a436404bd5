"""Message stream rules (Postmark compat §6) and SMTP tokens."""

import json
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from streams.models import MessageStream, SmtpToken
from streams.services import StreamError, create_smtp_token, create_stream, get_stream


@pytest.mark.parametrize(
    "stream_id", ["a", "transactional-2", "news_letter", "x" * 30, "b2b", "abc-def_ghi"]
)
@pytest.mark.django_db
def test_valid_stream_ids(server, stream_id):
    assert create_stream(server, stream_id).stream_id == stream_id


@pytest.mark.parametrize(
    ("stream_id", "reason"),
    [
        ("", "required"),
        ("1abc", "start with a letter"),
        ("-abc", "start with a letter"),
        ("x" * 31, "too long"),
        ("pm-reserved", "'pm-' is reserved"),
        ("has space", "only lower-case letters"),
        ("Upper", "only lower-case letters"),
        ("dot.ted", "only lower-case letters"),
        ("ünicode", "only lower-case letters"),
    ],
)
@pytest.mark.django_db
def test_invalid_stream_ids_get_clear_errors(server, stream_id, reason):
    with pytest.raises(StreamError, match=reason):
        create_stream(server, stream_id)


@pytest.mark.django_db
def test_duplicate_stream_id(server):
    with pytest.raises(StreamError, match="already exists"):
        create_stream(server, "outbound")


@pytest.mark.django_db
def test_the_same_id_on_two_servers_is_fine(server, other_server):
    create_stream(server, "news")
    create_stream(other_server, "news")


@pytest.mark.django_db
def test_at_most_ten_streams_per_server(server):
    for i in range(7):  # plus outbound, inbound, broadcast
        create_stream(server, f"s{i}")
    assert server.streams.count() == 10
    with pytest.raises(StreamError, match="already has 10 message streams"):
        create_stream(server, "eleventh")
    assert server.streams.count() == 10


@pytest.mark.django_db
def test_model_validation_applies_the_same_rules(server):
    stream = MessageStream(server=server, stream_id="Bad Id", name="x")
    with pytest.raises(ValidationError):
        stream.full_clean()


@pytest.mark.django_db
def test_invalid_stream_type(server):
    with pytest.raises(StreamError, match="type 'Bulk' is invalid"):
        create_stream(server, "bulk", "Bulk")


@pytest.mark.django_db
def test_get_stream_unknown_gives_the_postmark_1235_text(server):
    with pytest.raises(StreamError) as info:
        get_stream(server, "nope")
    assert info.value.error_code == 1235
    assert info.value.message == "The stream provided: 'nope' does not exist on this server."


def _createsmtptoken(*args):
    out = StringIO()
    call_command("createsmtptoken", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_createsmtptoken_json(server):
    data = json.loads(
        _createsmtptoken("--server", str(server.id), "--stream", "outbound", "--json")
    )
    assert set(data) == {"AccessKey", "SecretKey", "MessageStream", "ServerID"}
    assert data["MessageStream"] == "outbound"
    assert data["ServerID"] == server.id
    token = SmtpToken.objects.get(access_key=data["AccessKey"])
    assert token.stream == get_stream(server, "outbound")
    assert token.secret == data["SecretKey"]
    assert len(data["SecretKey"]) >= 32


@pytest.mark.django_db
def test_createsmtptoken_errors(server):
    with pytest.raises(CommandError, match="does not exist on this server"):
        _createsmtptoken("--server", str(server.id), "--stream", "nope")
    with pytest.raises(CommandError, match="inbound stream cannot have one"):
        _createsmtptoken("--server", str(server.id), "--stream", "inbound")
    with pytest.raises(CommandError, match="No server"):
        _createsmtptoken("--server", "999", "--stream", "outbound")


@pytest.mark.django_db
def test_the_secret_appears_in_no_database_column_in_clear_text(server):
    token, secret = create_smtp_token(get_stream(server, "outbound"))
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - table names from the schema
            for row in cursor.fetchall():
                text = " ".join(
                    bytes(v).decode("latin-1") if isinstance(v, bytes | memoryview) else str(v)
                    for v in row
                )
                assert secret not in text, f"secret found in clear text in table {table}"
    assert token.secret == secret  # still recoverable with the key from the environment


@pytest.mark.django_db
def test_revoke(server):
    token, _ = create_smtp_token(get_stream(server, "outbound"))
    assert not token.revoked
    token.revoke()
    token.refresh_from_db()
    assert token.revoked
    first = token.revoked_at
    token.revoke()
    assert token.revoked_at == first


@pytest.mark.django_db
def test_archived_stream_gets_no_token(server):
    stream = get_stream(server, "broadcast")
    stream.archived_at = timezone.now()
    stream.save()
    with pytest.raises(StreamError, match="archived"):
        create_smtp_token(stream)
