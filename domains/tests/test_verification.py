"""DNS verification against a real local DNS server (UDP): DKIM, Return-Path, SPF, rotation,
and the periodic re-check that notices what broke."""

import pytest
from django.utils import timezone

from core import dkim_keys as keys
from delivery.tests.sinks import DnsServer
from domains.details import domain_details
from domains.models import DkimKey, Domain
from domains.services import create_domain, rotate_dkim
from domains.tasks import due_domains, recheck_domains
from domains.verification import (
    MISMATCH,
    MISSING,
    TEMPORARY,
    VERIFIED,
    dkim_record_matches,
    verify_dkim,
    verify_domain,
    verify_return_path,
    verify_spf,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def dns(settings):
    settings.BOUNCE_DOMAIN = "bounces.mail.test"
    settings.SPF_INCLUDE_DOMAIN = "spf.mail.test"
    settings.DNS_VERIFY_TIMEOUT = 2.0
    with DnsServer({}) as server:
        settings.OUTBOUND_DNS_SERVERS = [f"127.0.0.1:{server.port}"]
        yield server


def publish(dns, key: DkimKey, value: str | None = None):
    dns.set(key.host, "TXT", [value or key.text_value])


def publish_all(dns, domain: Domain):
    for key in domain.keys.filter(state__in=["pending", "active"]):
        publish(dns, key)
    dns.set(domain.return_path_domain, "CNAME", ["bounces.mail.test."])
    dns.set(domain.name, "TXT", ["v=spf1 a mx include:spf.mail.test ~all"])


def test_a_new_domain_is_verified_once_its_records_are_published(dns):
    domain = create_domain("shop.test")
    details = domain_details(domain)
    assert details["DKIMHost"] == "" and details["DKIMUpdateStatus"] == "Pending"
    assert details["DKIMPendingHost"].endswith("pm._domainkey.shop.test")
    checks = verify_domain(domain)
    assert [(c.record, c.status) for c in checks] == [
        ("DKIM", MISSING), ("Return-Path", MISSING), ("SPF", MISSING)
    ]  # fmt: skip
    assert "NXDOMAIN" in checks[0].detail
    assert not domain.dkim_verified and domain.dkim_checked_at is not None
    assert domain.dns_problem == ""  # never published: not verified, but nothing broke

    publish_all(dns, domain)
    checks = verify_domain(domain)
    assert all(c.status == VERIFIED for c in checks), [c.detail for c in checks]
    domain.refresh_from_db()
    assert (domain.dkim_verified, domain.return_path_verified, domain.spf_verified) == (
        True, True, True
    )  # fmt: skip
    key = domain.keys.get()
    assert key.state == "active" and key.activated_at is not None
    details = domain_details(domain)
    assert details["DKIMHost"] == key.host and details["DKIMTextValue"] == key.text_value
    assert details["DKIMPendingHost"] == "" and details["DKIMUpdateStatus"] == "Verified"
    assert details["ReturnPathDomainCNAMEValue"] == "bounces.mail.test"


def test_dkim_records_are_read_tolerantly(dns):
    domain = create_domain("shop.test")
    key = domain.keys.get()
    half = len(key.public_key) // 2
    folded = f"v=DKIM1; p={key.public_key[:half]} {key.public_key[half:]} ;k=rsa ; t=s"
    assert dkim_record_matches(folded, key)
    assert dkim_record_matches(f'"k=rsa;p={key.public_key}"', key)  # quotes a DNS panel kept
    assert dkim_record_matches(f"p={key.public_key}", key)  # k=rsa is the default
    assert not dkim_record_matches(f"k=ed25519;p={key.public_key}", key)
    assert not dkim_record_matches(f"v=DKIM2;k=rsa;p={key.public_key}", key)
    assert not dkim_record_matches(f"k=rsa;p={key.public_key[:-4]}", key)
    publish(dns, key, folded)  # published in strings of 255 characters
    [check] = verify_dkim(domain)
    assert check.status == VERIFIED


def test_a_wrong_or_second_dkim_record_is_a_mismatch(dns):
    domain = create_domain("shop.test")
    key = domain.keys.get()
    other = DkimKey.generate(create_domain("other.test"))
    publish(dns, key, other.text_value)
    [check] = verify_dkim(domain)
    assert check.status == MISMATCH and "not this key" in check.detail
    assert check.expected == key.text_value and check.found == [other.text_value]
    dns.set(key.host, "TXT", [key.text_value, other.text_value])
    [check] = verify_dkim(domain)
    assert check.status == MISMATCH and "several DKIM records" in check.detail
    domain.refresh_from_db()
    assert not domain.dkim_verified and domain.keys.get().state == "pending"


def test_the_return_path_must_point_to_the_bounce_host(dns):
    domain = create_domain("shop.test", return_path="Bounces.Shop.test")
    dns.set("bounces.shop.test", "CNAME", ["elsewhere.test."])
    check = verify_return_path(domain)
    assert check.status == MISMATCH
    assert check.detail == "bounces.shop.test points to elsewhere.test, not to bounces.mail.test."
    dns.set("bounces.shop.test", "CNAME", ["BOUNCES.Mail.Test."])  # case and final dot
    assert verify_return_path(domain).status == VERIFIED
    assert Domain.objects.get(pk=domain.pk).return_path_verified


def test_a_domain_without_a_custom_return_path_is_not_looked_up(dns):
    domain = Domain.objects.create(name="service.test")  # as the service's own domain is made
    check = verify_return_path(domain)
    assert (check.status, check.detail) == (MISSING, "The domain has no custom Return-Path domain.")
    assert not Domain.objects.get(pk=domain.pk).return_path_verified


def test_spf_needs_the_include(dns):
    domain = create_domain("shop.test")
    dns.set("shop.test", "TXT", ["google-site-verification=x", "v=spf1 mx -all"])
    check = verify_spf(domain)
    assert check.status == MISMATCH and "include:spf.mail.test" in check.detail
    assert check.found == ["v=spf1 mx -all"]
    dns.set("shop.test", "TXT", ["v=spf1 mx include:SPF.mail.test -all"])
    assert verify_spf(domain).status == VERIFIED


def test_a_rotation_keeps_the_old_key_signing_until_the_new_record_is_seen(dns):
    domain = create_domain("shop.test", ed25519=True)
    publish_all(dns, domain)
    verify_domain(domain)
    old_rsa = domain.key("active", keys.RSA)
    old_ed = domain.key("active", keys.ED25519)
    assert old_rsa and old_ed

    new_rsa, new_ed = rotate_dkim(domain)
    assert rotate_dkim(domain) == [new_rsa, new_ed]  # asking twice publishes nothing new
    details = domain_details(domain)
    assert (details["DKIMUpdateStatus"], details["DKIMPendingHost"]) == ("Pending", new_rsa.host)
    assert details["DKIMHost"] == old_rsa.host

    verify_dkim(domain)  # the new records are not published yet: the old keys still sign
    assert {k.pk: k.state for k in domain.keys.all()} == {
        old_rsa.pk: "active", old_ed.pk: "active", new_rsa.pk: "pending", new_ed.pk: "pending"
    }  # fmt: skip
    assert Domain.objects.get(pk=domain.pk).dkim_verified

    publish(dns, new_rsa)
    publish(dns, new_ed)
    verify_dkim(domain)
    assert {k.pk: k.state for k in domain.keys.all()} == {
        old_rsa.pk: "revoked", old_ed.pk: "revoked", new_rsa.pk: "active", new_ed.pk: "active"
    }  # fmt: skip
    domain.refresh_from_db()
    assert domain.dkim_verified and domain.dns_problem == ""
    details = domain_details(domain)
    assert details["DKIMHost"] == new_rsa.host and details["DKIMUpdateStatus"] == "Verified"
    assert details["DKIMRevokedHost"] in (old_rsa.host, old_ed.host)
    assert details["SafeToRemoveRevokedKeyFromDNS"] is False  # messages it signed may be in flight

    long_ago = timezone.now() - timezone.timedelta(days=5)
    DkimKey.objects.filter(state="revoked").update(revoked_at=long_ago)
    assert domain_details(domain)["SafeToRemoveRevokedKeyFromDNS"] is True
    dns.remove(old_rsa.host, "TXT")
    dns.remove(old_ed.host, "TXT")
    verify_dkim(domain)  # revoked keys are no longer looked at
    domain.refresh_from_db()
    assert domain.dkim_verified and domain.dns_problem == ""


def test_the_recheck_notices_a_vanished_record_and_when_it_is_back(dns, settings):
    # Without a grace period (the default's is in test_dns_grace): one failed check un-verifies.
    settings.DNS_UNVERIFY_AFTER_FAILURES = 1
    settings.DNS_UNVERIFY_AFTER_HOURS = 0
    domain = create_domain("shop.test")
    publish_all(dns, domain)
    verify_domain(domain)
    key = domain.key("active")

    dns.remove(key.host, "TXT")
    Domain.objects.filter(pk=domain.pk).update(dkim_checked_at=None)
    assert recheck_domains() >= 1
    domain.refresh_from_db()
    assert not domain.dkim_verified and domain.return_path_verified
    assert domain.dns_problem.startswith(f"DKIM: {key.host}: Not found:")
    since = domain.dns_problem_since
    assert since is not None

    Domain.objects.filter(pk=domain.pk).update(dkim_checked_at=None)
    recheck_domains()  # still missing: the problem stays, since when unchanged
    domain.refresh_from_db()
    assert domain.dns_problem.startswith("DKIM: ") and domain.dns_problem_since == since

    publish(dns, key)
    dns.set(domain.return_path_domain, "CNAME", ["elsewhere.test."])
    verify_domain(domain)
    domain.refresh_from_db()
    assert domain.dkim_verified and not domain.return_path_verified
    assert domain.dns_problem == (
        f"Return-Path: {domain.return_path_domain}: {domain.return_path_domain} points to "
        "elsewhere.test, not to bounces.mail.test."
    )
    dns.set(domain.return_path_domain, "CNAME", ["bounces.mail.test."])
    verify_domain(domain)
    domain.refresh_from_db()
    assert domain.dns_problem == "" and domain.dns_problem_since is None


def test_a_temporary_failure_keeps_the_state_and_records_the_problem(dns):
    domain = create_domain("shop.test")
    publish_all(dns, domain)
    verify_domain(domain)
    key = domain.key("active")
    dns.servfail.add(key.host)
    dns.servfail.add(domain.return_path_domain)
    checks = verify_domain(domain)
    assert [c.status for c in checks[:2]] == [TEMPORARY, TEMPORARY]
    domain.refresh_from_db()
    assert domain.dkim_verified and domain.return_path_verified  # nothing is concluded
    assert "DKIM: temporary failure: " in domain.dns_problem
    assert "Return-Path: temporary failure: " in domain.dns_problem
    dns.servfail.clear()
    verify_domain(domain)
    domain.refresh_from_db()
    assert domain.dkim_verified and domain.dns_problem == ""


def test_which_domains_are_due(dns, settings):
    settings.DOMAIN_RECHECK_SECONDS = 3600
    settings.DOMAIN_PENDING_RECHECK_SECONDS = 6 * 3600
    now = timezone.now()
    ago = lambda hours: now - timezone.timedelta(hours=hours)  # noqa: E731
    new = create_domain("new.test")
    verified_fresh = create_domain("fresh.test")
    verified_old = create_domain("old.test")
    pending_2h = create_domain("pending2.test")
    pending_7h = create_domain("pending7.test")
    broken = create_domain("broken.test")
    Domain.objects.filter(pk=create_domain("demo.test").pk).update(periodic_checks=False)
    Domain.objects.filter(pk=verified_fresh.pk).update(dkim_verified=True, dkim_checked_at=ago(0.5))
    Domain.objects.filter(pk=verified_old.pk).update(dkim_verified=True, dkim_checked_at=ago(2))
    Domain.objects.filter(pk=pending_2h.pk).update(dkim_checked_at=ago(2))
    Domain.objects.filter(pk=pending_7h.pk).update(dkim_checked_at=ago(7))
    Domain.objects.filter(pk=broken.pk).update(dns_problem="DKIM: gone", dkim_checked_at=ago(2))
    due = {d.name for d in due_domains(now)}
    assert due == {"new.test", "old.test", "pending7.test", "broken.test"} | {
        d.name for d in Domain.objects.filter(dkim_checked_at__isnull=True, periodic_checks=True)
    }
    assert new.name in due and "demo.test" not in due


def test_the_beat_schedule_runs_the_recheck(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["domains.recheck"]
    assert entry["task"] == recheck_domains.name


def test_one_domain_failing_does_not_stop_the_recheck_of_the_others(dns, monkeypatch):
    from domains import tasks

    Domain.objects.all().delete()
    first, second = create_domain("first.test"), create_domain("second.test")
    real = tasks.verify_domain

    def verify(domain, now=None):
        if domain.pk == first.pk:
            raise RuntimeError("boom")
        return real(domain, now=now)

    monkeypatch.setattr(tasks, "verify_domain", verify)
    assert recheck_domains() == 1
    assert Domain.objects.get(pk=second.pk).dkim_checked_at is not None
    assert Domain.objects.get(pk=first.pk).dkim_checked_at is None


def test_a_name_server_that_never_answers_is_a_temporary_failure(settings):
    import socket

    from domains.verification import lookup

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        settings.OUTBOUND_DNS_SERVERS = [f"127.0.0.1:{silent.getsockname()[1]}"]
        settings.DNS_VERIFY_TIMEOUT = 0.5
        found = lookup("shop.test", "TXT")
    assert found.temporary and found.values == []
    assert found.error == "the look-up of shop.test timed out"
