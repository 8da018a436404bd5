"""``ensuredemo``: what ``make run`` prints for a first message."""

import json
import os
import stat
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from domains.identity import sender_refusal
from domains.models import Domain
from servers.models import Server
from streams.models import SmtpToken


def run():
    out = StringIO()
    call_command("ensuredemo", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_ensuredemo_creates_once_and_prints_the_same_credentials(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    first = run()
    creds = json.loads((tmp_path / "demo-credentials.json").read_text())
    assert stat.S_IMODE(os.stat(tmp_path / "demo-credentials.json").st_mode) == 0o600
    assert get_user_model().objects.filter(username="admin", is_superuser=True).exists()
    token = SmtpToken.objects.get(access_key=creds["smtp_access_key"])
    assert token.secret == creds["smtp_secret_key"]
    assert creds["smtp_secret_key"] in first
    assert "swaks --server 127.0.0.1:2525" in first
    assert "http://127.0.0.1:8000/admin/" in first

    assert "--from app@example.com" in first
    Domain.objects.filter(name="example.com").delete()  # the tests' own verified domain
    run()
    demo = Domain.objects.get(name="example.com")
    assert demo.dkim_verified and not demo.periodic_checks
    assert demo.keys.get().state == "active"  # something to sign with
    assert sender_refusal("app@example.com") is None

    second = run()
    assert second == first
    assert Server.objects.count() == 1
    assert SmtpToken.objects.count() == 1
    assert Domain.objects.filter(name="example.com").count() == 1
