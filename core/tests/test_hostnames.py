"""No silent localhost: the rule for the service's own mail names, and each place that shows it
(the System page, the domain page, the gateway's start-up log)."""

import sys

import pytest
from django.urls import reverse

from conftest import Process, free_port, subprocess_env
from core import hostnames
from core.hostnames import local_name_warnings, why_local


@pytest.mark.parametrize(
    "name, why",
    [
        ("mail.example.com", ""),
        ("mail.example.com.", ""),
        ("MX1.Example.NET", ""),
        ("localhost", "a loopback name"),
        ("LocalHost.", "a loopback name"),
        ("localhost.localdomain", "a loopback name"),
        ("box.localhost", "a loopback name"),
        ("mailhost", "a single-label name"),
        ("a1b2c3d4e5f6", "a single-label name"),
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("[::1]", "a loopback address"),
        ("192.0.2.7", "an IP address, not a name"),
        ("", "empty"),
        ("  ", "empty"),
    ],
)
def test_why_a_name_is_local(name, why):
    assert why_local(name) == why


@pytest.fixture
def public_names(settings):
    settings.SMTP_HOSTNAME = "mail.example.com"
    settings.MESSAGE_ID_DOMAIN = "mail.example.com"
    settings.BOUNCE_DOMAIN = "bounces.example.com"
    return settings


def test_public_names_give_no_warning(public_names):
    assert local_name_warnings() == []


def test_each_local_setting_is_named_with_its_value(public_names):
    public_names.MESSAGE_ID_DOMAIN = "localhost"
    public_names.BOUNCE_DOMAIN = "mailhost"
    found = local_name_warnings()
    assert [(n.setting, n.value, n.why) for n in found] == [
        ("MESSAGE_ID_DOMAIN", "localhost", "a loopback name"),
        ("BOUNCE_DOMAIN", "mailhost", "a single-label name"),
    ]
    assert found[0].sentence.startswith("MESSAGE_ID_DOMAIN resolves to 'localhost', a loopback")
    assert "Set MESSAGE_ID_DOMAIN to a public domain name" in found[0].sentence
    assert "Return-Path CNAME" in found[1].sentence


def test_an_empty_smtp_hostname_is_judged_by_the_machine_name(public_names, monkeypatch):
    public_names.SMTP_HOSTNAME = ""
    monkeypatch.setattr(hostnames, "machine_name", lambda: "c0ffee42")
    assert [(n.setting, n.value) for n in local_name_warnings()] == [("SMTP_HOSTNAME", "c0ffee42")]
    monkeypatch.setattr(hostnames, "machine_name", lambda: "host.example.org")
    assert local_name_warnings() == []


@pytest.mark.django_db
def test_the_system_page_names_the_setting(admin_client, public_names):
    page = admin_client.get(reverse("admin:system")).content.decode()
    assert 'id="local-names"' not in page
    public_names.MESSAGE_ID_DOMAIN = "localhost"
    page = admin_client.get(reverse("admin:system")).content.decode()
    assert 'id="local-name-MESSAGE_ID_DOMAIN"' in page
    assert "MESSAGE_ID_DOMAIN resolves to &#x27;localhost&#x27;" in page


@pytest.mark.django_db
def test_the_domain_page_names_the_setting(admin_client, public_names):
    from domains.models import Domain

    domain = Domain.objects.create(name="shop.example.com")
    url = reverse("admin:domains_domain_change", args=[domain.pk])
    assert 'id="local-names"' not in admin_client.get(url).content.decode()
    public_names.BOUNCE_DOMAIN = "localhost"
    page = admin_client.get(url).content.decode()
    assert 'id="local-name-BOUNCE_DOMAIN"' in page and "Return-Path CNAME" in page


@pytest.mark.django_db(transaction=True)
def test_the_gateway_logs_each_local_name_at_start(tmp_path):
    env = subprocess_env(SMTP_HOSTNAME="gateway", MESSAGE_ID_DOMAIN="", BOUNCE_DOMAIN="")
    args = [sys.executable, "manage.py", "runsmtp", "--listen",
            f"transactional=127.0.0.1:{free_port()}"]  # fmt: skip
    process = Process(args, env, tmp_path / "runsmtp.log")
    try:
        process.wait_for("SMTP gateway ready")
    finally:
        process.stop()
    log = process.output()
    assert "WARNING smtpgw SMTP_HOSTNAME resolves to 'gateway', a single-label name" in log
    # MESSAGE_ID_DOMAIN and BOUNCE_DOMAIN fall back on SMTP_HOSTNAME: each is named.
    assert "MESSAGE_ID_DOMAIN resolves to 'gateway'" in log
    assert "BOUNCE_DOMAIN resolves to 'gateway'" in log
