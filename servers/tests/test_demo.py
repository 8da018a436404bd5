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


@pytest.mark.django_db
def test_the_banner_is_made_from_the_real_settings(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.WEB_URL = "http://127.0.0.1:8080"
    settings.SMTP_LISTEN = [
        "transactional=127.0.0.1:1587",
        "transactional+tls=127.0.0.1:1465",
        "broadcast=127.0.0.1:1588",
        "bounce=127.0.0.1:1525",
    ]
    settings.SMTP_HTTP = "127.0.0.1:9125"
    settings.SMTP_HOSTNAME = "mail.example.org"
    settings.MESSAGE_ID_DOMAIN = settings.BOUNCE_DOMAIN = "mail.example.org"
    out = run()
    creds = json.loads((tmp_path / "demo-credentials.json").read_text())
    for text in (
        "Admin:          http://127.0.0.1:8080/admin/",
        "SMTP transactional: 127.0.0.1:1587 (STARTTLS)",
        "SMTP transactional: 127.0.0.1:1465 (implicit TLS)",
        "SMTP broadcast: 127.0.0.1:1588 (STARTTLS)",
        "127.0.0.1:1525 (bounce MX, STARTTLS)",
        f"self-signed, {tmp_path / 'tls' / 'selfsigned.crt'}",
        "http://127.0.0.1:8080/metrics (workers), http://127.0.0.1:9125/metrics (gateway)",
        "swaks --server 127.0.0.1:1587 --tls --auth PLAIN",
        f"--auth-user '{creds['smtp_access_key']}' --auth-password '{creds['smtp_secret_key']}'",
        "http://127.0.0.1:8080/admin/outbound/outboundmessage/",
        "python -m aiosmtpd -n -l 127.0.0.1:1025",
        "OUTBOUND_SMTP_RELAY=smtp://127.0.0.1:1025 make run",
        "Sandbox: mail is recorded, not delivered",
        ".env.ports.example",
    ):
        assert text in out, text
    assert "8000" not in out and "2525" not in out
    assert "only this machine knows" not in out
    assert (tmp_path / "tls" / "selfsigned.crt").exists()


@pytest.mark.django_db
def test_the_banner_names_local_names_and_the_live_switch(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.SMTP_HOSTNAME = "mail.example.org"
    settings.MESSAGE_ID_DOMAIN = "localhost"
    settings.BOUNCE_DOMAIN = "mail.example.org"
    settings.OUTBOUND_SMTP_RELAY = "smtp://user:secret@127.0.0.1:1025"
    out = run()
    assert "MESSAGE_ID_DOMAIN resolves to 'localhost', a loopback name" in out
    assert "Sandbox" in out
    live = StringIO()
    call_command("ensuredemo", "--live", stdout=live)
    assert Server.objects.get().delivery_type == "Live"
    assert "Live: relayed to 127.0.0.1:1025" in live.getvalue()
    assert "secret" not in live.getvalue()


def test_the_procfile_serves_the_gateway_metrics_where_the_banner_says():
    from pathlib import Path

    from smtpgw.quickstart import QUICKSTART_SMTP_HTTP

    procfile = (Path(__file__).resolve().parents[2] / "Procfile").read_text()
    assert f'runsmtp --http "${{SMTP_HTTP:-{QUICKSTART_SMTP_HTTP}}}"' in procfile


def test_the_web_url_follows_web_bind():
    from postmark_site.settings import _web_url

    assert _web_url("127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert _web_url("0.0.0.0:9000") == "http://127.0.0.1:9000"
    assert _web_url("[::]:9000") == "http://127.0.0.1:9000"
    assert _web_url("[::1]:9000") == "http://[::1]:9000"
    assert _web_url("unix:/run/web.sock") == "http://127.0.0.1:8000"


def test_the_other_ports_example_is_read_as_the_settings_read_it(monkeypatch):
    from pathlib import Path

    import environ

    from postmark_site.settings import _web_url
    from streams.listeners import Listener

    example = Path(__file__).resolve().parents[2] / ".env.ports.example"
    read: dict = {}
    monkeypatch.setattr(environ.Env, "ENVIRON", read)  # django-environ, as the settings read .env
    environ.Env.read_env(example)
    env = environ.Env()
    listeners = [Listener.parse(spec) for spec in env.list("SMTP_LISTEN")]
    assert {listener.endpoint for listener in listeners} == {"transactional", "broadcast", "bounce"}
    assert any(listener.implicit_tls for listener in listeners)
    assert _web_url(env.str("WEB_BIND")) == "http://127.0.0.1:8080"
    assert env.str("SMTP_HTTP").startswith("127.0.0.1:")
