"""Backups as docs/operations/backups.md tells operators to make them: a filled installation is
backed up with ``manage.py backup``, its data directory wiped, restored with ``manage.py
restore``, and read back by a new process, secrets included; then each refusal."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from conftest import ROOT, subprocess_env
from core.backup import BackupError, backup, restore

pytestmark = pytest.mark.once_sqlite

FILL = """
import json
from django.test import Client
from domains.models import Domain
from servers.models import Server, ServerToken
from streams.models import MessageStream
from streams.services import create_smtp_token

server = Server.objects.get(name="Demo server")
token = server.api_tokens[0]
outbound = MessageStream.objects.get(server=server, stream_id="outbound")
smtp_token, secret = create_smtp_token(outbound)
client = Client(SERVER_NAME="127.0.0.1")
ids = []
for n in range(5):
    answer = client.post(
        "/email",
        {"From": "app@example.com", "To": f"user{n}@example.net", "Subject": f"Hello {n}",
         "TextBody": "Kept through a backup"},
        content_type="application/json",
        headers={"X-Postmark-Server-Token": token},
    ).json()
    assert answer["ErrorCode"] == 0, answer
    ids.append(answer["MessageID"])
key = Domain.objects.get(name="example.com").keys.filter(state="active").first()
print(json.dumps({"token": token, "access_key": smtp_token.access_key, "secret": secret,
                  "ids": ids, "dkim_public": key.public_key}))
"""

READ_BACK = """
import json
from cryptography.fernet import InvalidToken
from domains.models import Domain
from messages.models import OutboundMessage
from servers.models import ServerToken
from streams.models import SmtpToken

facts = json.loads(input())
found = sorted(str(m) for m in OutboundMessage.objects.values_list("message_id", flat=True))
result = {"ids": found, "token_found": ServerToken.find(facts["token"]) is not None}
try:
    result["secret"] = SmtpToken.objects.get(access_key=facts["access_key"]).secret
    key = Domain.objects.get(name="example.com").keys.filter(state="active").first()
    key.private_key()
    result["dkim_public"] = key.public_key
except InvalidToken:
    result["secret"] = result["dkim_public"] = "undecryptable"
print(json.dumps(result))
"""


def last_json(output: str):
    return json.loads(output.strip().splitlines()[-1])


def manage(env, *args, stdin=None) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def installation_env(tmp_path):
    def env_for(data_dir):
        env = subprocess_env(DATA_DIR=data_dir, DATABASE_URL=f"sqlite:///{data_dir}/db.sqlite3")
        for name in ("SECRET_KEY", "SECRETS_KEY", "SMTP_TLS_CERT", "SMTP_TLS_KEY"):
            env.pop(name, None)
        return env

    return env_for


def test_backup_wipe_restore_and_read_back(tmp_path, installation_env):
    data = tmp_path / "data"
    env = installation_env(data)
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "ensuredemo")
    facts = last_json(manage(env, "shell", "-c", FILL))
    (data / "tls").mkdir(exist_ok=True)  # ensuredemo may have made the self-signed pair
    (data / "tls" / "selfsigned.crt").write_text("certificate")
    (data / "tls" / "selfsigned.key").write_text("private key")
    secrets_key = (data / "secrets.key").read_text()

    saved = manage(env, "backup", str(tmp_path / "backup"), "--keys", str(tmp_path / "keys"))
    assert "saved" in saved and (tmp_path / "backup" / "db.sqlite3").exists()
    assert not (tmp_path / "backup" / "secrets.key").exists()  # the keys are kept apart
    assert oct((tmp_path / "keys" / "secrets.key").stat().st_mode & 0o777) == "0o600"

    for path in sorted(data.rglob("*"), reverse=True):  # wipe the data directory
        path.unlink() if path.is_file() or path.is_symlink() else path.rmdir()
    data.rmdir()

    manage(env, "restore", str(tmp_path / "backup"), "--keys", str(tmp_path / "keys"))
    assert (data / "secrets.key").read_text() == secrets_key
    assert (data / "tls" / "selfsigned.key").read_text() == "private key"
    read = last_json(manage(env, "shell", "-c", READ_BACK, stdin=json.dumps(facts)))
    assert read == {
        "ids": sorted(facts["ids"]),
        "token_found": True,
        "secret": facts["secret"],
        "dkim_public": facts["dkim_public"],
    }

    # Without the keys the rows come back but no secret in them can be used.
    other = tmp_path / "other"
    other_env = installation_env(other)
    manage(other_env, "restore", str(tmp_path / "backup"))
    read = last_json(manage(other_env, "shell", "-c", READ_BACK, stdin=json.dumps(facts)))
    assert read["ids"] == sorted(facts["ids"])
    assert read["token_found"] is False
    assert read["secret"] == read["dkim_public"] == "undecryptable"


def sqlite_database(path):
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (1)")
    db.close()
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}


def test_refusals(tmp_path, settings):
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    settings.SMTP_TLS_CERT = ""
    database = sqlite_database(tmp_path / "db.sqlite3")
    with pytest.raises(BackupError, match="another directory"):
        backup(tmp_path / "b", tmp_path / "b", database)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(BackupError, match="not an empty directory"):
        backup(tmp_path / "full", None, database)
    with pytest.raises(BackupError, match="no SQLite database"):
        backup(tmp_path / "b1", None, {**database, "NAME": str(tmp_path / "missing.sqlite3")})

    outcome = backup(tmp_path / "b2", None, database)
    assert any("key files were not saved" in note for note in outcome.notes)
    with pytest.raises(BackupError, match="already holds data"):
        restore(tmp_path / "b2", None, database, replace=False)
    assert restore(tmp_path / "b2", None, database, replace=True).written
    postgres = {"ENGINE": "django.db.backends.postgresql", "NAME": "postmark"}
    with pytest.raises(BackupError, match="DATABASE_URL names another database"):
        restore(tmp_path / "b2", None, postgres, replace=True)

    (tmp_path / "b2" / "db.sqlite3").write_bytes(b"damaged")
    with pytest.raises(BackupError, match="does not match its checksum"):
        restore(tmp_path / "b2", None, database, replace=True)
    with pytest.raises(BackupError, match="is not a backup"):
        restore(tmp_path / "full", None, database, replace=True)


def test_postgresql_is_left_to_pg_dump_and_keys_from_the_environment_are_named(
    tmp_path, settings, monkeypatch
):
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    (settings.DATA_DIR / "django-secret.key").write_text("django")
    (settings.DATA_DIR / "secrets.key").write_text("stale file, not in use")
    monkeypatch.setitem(os.environ, "SECRETS_KEY", "from-the-environment")
    postgres = {"ENGINE": "django.db.backends.postgresql", "NAME": "postmark"}
    outcome = backup(tmp_path / "b", tmp_path / "k", postgres)
    assert any("pg_dump --format=custom" in note for note in outcome.notes)
    assert any("SECRETS_KEY is set in the environment" in note for note in outcome.notes)
    assert [path.name for path in outcome.written] == ["django-secret.key"]
    outcome = restore(tmp_path / "b", tmp_path / "k", postgres, replace=False)
    assert any("pg_restore" in note for note in outcome.notes)
