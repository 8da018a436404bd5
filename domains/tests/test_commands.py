"""The management commands createdomain, verifydomain, rotatedkim and createsender."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from delivery.tests.sinks import DnsServer
from domains.models import DkimKey, Domain, SenderSignature
from messages.models import Submission

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def dns(settings):
    settings.BOUNCE_DOMAIN = "bounces.mail.test"
    settings.SPF_INCLUDE_DOMAIN = "spf.mail.test"
    with DnsServer({}) as server:
        settings.OUTBOUND_DNS_SERVERS = [f"127.0.0.1:{server.port}"]
        yield server


def test_createdomain_prints_the_records_to_publish(dns):
    out = run("createdomain", "Shop.Test", "--return-path", "bounces.shop.test")
    domain = Domain.objects.get(name="shop.test")
    key = domain.keys.get()
    assert "Domain shop.test added" in out
    assert f"host:  {key.host}" in out and f"value: {key.text_value}" in out
    assert "host:  bounces.shop.test" in out and "value: bounces.mail.test" in out
    assert "v=spf1 a mx include:spf.mail.test ~all" in out
    assert "verifydomain shop.test" in out


def test_createdomain_json_has_postmarks_fields(dns):
    data = json.loads(run("createdomain", "shop.test", "--ed25519", "--json"))
    assert data["Name"] == "shop.test" and data["DKIMVerified"] is False
    assert data["DKIMHost"] == "" and data["DKIMUpdateStatus"] == "Pending"
    assert data["DKIMPendingHost"].endswith("pm._domainkey.shop.test")
    assert data["DKIMPendingTextValue"].startswith("k=rsa;p=")
    assert data["ReturnPathDomain"] == "pm-bounces.shop.test"
    assert data["ReturnPathDomainCNAMEValue"] == "bounces.mail.test"
    assert (data["SPFHost"], data["SPFTextValue"]) == (
        "shop.test", "v=spf1 a mx include:spf.mail.test ~all"
    )  # fmt: skip
    assert set(DkimKey.objects.values_list("algorithm", flat=True)) == {"rsa", "ed25519"}


def test_createdomain_refuses_bad_input(dns):
    run("createdomain", "shop.test")
    with pytest.raises(CommandError, match="This domain already exists."):
        run("createdomain", "SHOP.test")
    with pytest.raises(CommandError, match="not a valid domain name"):
        run("createdomain", "shop")
    with pytest.raises(CommandError, match="must be a subdomain of shop2.test"):
        run("createdomain", "shop2.test", "--return-path", "bounces.other.test")


def test_verifydomain_prints_each_records_status(dns):
    run("createdomain", "shop.test")
    out = run("verifydomain", "shop.test")
    assert "DKIM (pending key): missing" in out and "NXDOMAIN" in out
    assert "mail From @shop.test is refused (ErrorCode 400)" in out
    domain = Domain.objects.get(name="shop.test")
    key = domain.keys.get()
    dns.set(key.host, "TXT", [key.text_value])
    dns.set("pm-bounces.shop.test", "CNAME", ["bounces.mail.test."])
    out = run("verifydomain", "shop.test")
    assert "DKIM: verified" in out and "Return-Path: verified" in out and "SPF: missing" in out
    assert "DKIM verified: yes; Return-Path verified: yes; SPF verified: no" in out
    checks = json.loads(run("verifydomain", "shop.test", "--json"))
    assert [c["status"] for c in checks] == ["verified", "verified", "missing"]
    with pytest.raises(CommandError, match="No domain named 'nowhere.test'"):
        run("verifydomain", "nowhere.test")


def test_verifydomain_says_a_record_it_did_not_find_is_still_verified_for_now(dns):
    run("createdomain", "shop.test")
    key = Domain.objects.get(name="shop.test").keys.get()
    dns.set(key.host, "TXT", [key.text_value])
    run("verifydomain", "shop.test")
    dns.remove(key.host, "TXT")
    out = run("verifydomain", "shop.test")
    assert "DKIM: missing" in out and "DKIM verified: yes;" in out
    assert "DKIM of shop.test: 1 check failed since " in out
    assert "still verified, mail is signed and sent as before" in out
    assert "refused (ErrorCode 400)" not in out


def test_rotatedkim_prints_the_new_key(dns):
    run("createdomain", "shop.test")
    domain = Domain.objects.get(name="shop.test")
    first = domain.keys.get()
    dns.set(first.host, "TXT", [first.text_value])
    run("verifydomain", "shop.test")
    out = run("rotatedkim", "shop.test")
    new = domain.keys.get(state="pending")
    assert f"TXT {new.host}" in out and new.text_value in out
    data = json.loads(run("rotatedkim", "shop.test", "--json"))
    assert (data["DKIMPendingHost"], data["DKIMHost"]) == (new.host, first.host)
    dns.set(new.host, "TXT", [new.text_value])
    out = run("verifydomain", "shop.test")
    assert f"Revoked key {first.host}: keep its TXT record until " in out
    DkimKey.objects.filter(pk=first.pk).update(revoked_at=first.created_at.replace(year=2020))
    out = run("verifydomain", "shop.test")
    assert f"Revoked key {first.host}: its TXT record is safe to remove from DNS." in out
    table = run("createdomain", "other.test")  # a second domain prints only its own records
    assert new.host not in table


def test_createsender_sends_a_confirmation_unless_confirmed():
    out = run("createsender", "Owner@Shop.test", "--name", "Owner", "--reply-to", "help@shop.test")
    signature = SenderSignature.objects.get(email="owner@shop.test")
    assert (signature.email, signature.name, signature.reply_to) == (
        "owner@shop.test", "Owner", "help@shop.test"
    )  # fmt: skip
    assert not signature.confirmed and "confirmation message was sent" in out
    assert Submission.objects.get().rcpt_to == ["owner@shop.test"]

    data = json.loads(run("createsender", "ops@shop.test", "--confirmed", "--json"))
    assert data["Confirmed"] is True and data["EmailAddress"] == "ops@shop.test"
    assert Submission.objects.count() == 1  # no message for a confirmed signature
    with pytest.raises(CommandError, match="This signature already exists."):
        run("createsender", "ops@shop.test")
    with pytest.raises(CommandError, match="Invalid 'FromEmail' address"):
        run("createsender", "not an address")
