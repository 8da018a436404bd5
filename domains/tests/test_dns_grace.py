"""A DNS flap does not stop a verified domain's mail: a verified DKIM or Return-Path record that
a check does not find (NXDOMAIN, no such record, another value) stays verified, signing and
sending, until checks in a row have failed over the grace period (``domains.grace``); a record
never verified has no grace; a temporary failure neither counts nor ends the failures. Real DNS
over UDP from a local server, and the time passed to each check."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from core import dkim_keys as keys
from delivery.tests.sinks import DnsServer
from domains import grace, signing
from domains.identity import NOT_A_SENDER_SIGNATURE, sender_refusal
from domains.models import Domain
from domains.services import create_domain
from domains.tasks import recheck_domains
from domains.verification import MISMATCH, MISSING, TEMPORARY, verify_domain

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)
BOUNCES = "bounces.mail.test"


@pytest.fixture
def dns(settings):
    settings.BOUNCE_DOMAIN = BOUNCES
    settings.SPF_INCLUDE_DOMAIN = "spf.mail.test"
    settings.DNS_VERIFY_TIMEOUT = 2.0
    settings.DOMAIN_RECHECK_SECONDS = 1800  # a check an hour later is due
    settings.DNS_UNVERIFY_AFTER_FAILURES = 3
    settings.DNS_UNVERIFY_AFTER_HOURS = 24
    settings.DKIM_KEY_CACHE_SECONDS = 0
    Domain.objects.all().delete()  # only the domains of the test are checked
    with DnsServer({}) as server:
        settings.OUTBOUND_DNS_SERVERS = [f"127.0.0.1:{server.port}"]
        yield server


def publish_all(dns, domain: Domain) -> None:
    for key in domain.keys.filter(state__in=["pending", "active"]):
        dns.set(key.host, "TXT", [key.text_value])
    dns.set(domain.return_path_domain, "CNAME", [f"{BOUNCES}."])
    dns.set(domain.name, "TXT", ["v=spf1 a mx include:spf.mail.test ~all"])


def verified_domain(dns, now=None) -> Domain:
    domain = create_domain("shop.test")
    publish_all(dns, domain)
    if now is None:
        verify_domain(domain)
    else:
        verify_domain(domain, now)
    domain.refresh_from_db()
    assert domain.dkim_verified and domain.return_path_verified
    return domain


# How a flaky authoritative server answers for a record that is still published.
def dkim_nxdomain(dns, domain):
    dns.remove(domain.key("active").host, "TXT")  # the name has no record left: NXDOMAIN


def dkim_no_txt(dns, domain):
    host = domain.key("active").host
    dns.remove(host, "TXT")
    dns.set(host, "A", ["192.0.2.1"])  # the name exists, without a TXT record


def dkim_other_key(dns, domain):
    _, public = keys.generate(keys.RSA)
    dns.set(domain.key("active").host, "TXT", [keys.txt_value(keys.RSA, public)])


def return_path_nxdomain(dns, domain):
    dns.remove(domain.return_path_domain, "CNAME")


def return_path_elsewhere(dns, domain):
    dns.set(domain.return_path_domain, "CNAME", ["elsewhere.test."])


FLAPS = [
    ("DKIM", dkim_nxdomain, MISSING, "does not exist (NXDOMAIN)"),
    ("DKIM", dkim_no_txt, MISSING, "has no TXT record"),
    ("DKIM", dkim_other_key, MISMATCH, "not this key"),
    ("Return-Path", return_path_nxdomain, MISSING, "does not exist (NXDOMAIN)"),
    ("Return-Path", return_path_elsewhere, MISMATCH, "points to elsewhere.test"),
]


def sending_state(domain: Domain, record: str):
    """What a message From the domain gets now: refused (ErrorCode) or its signer / return path."""
    signing.forget()
    if record == "DKIM":
        refusal = sender_refusal(f"news@{domain.name}")
        if refusal:
            return refusal[0]
        return [s.domain for s in signing.signers_for(f"news@{domain.name}")]
    return signing.return_path_domain_for(f"news@{domain.name}")


def gauges(client: Client) -> dict:
    body = client.get("/metrics").content.decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name.startswith("postmark_domain")
    }


def test_one_definite_answer_does_not_unverify_a_domain(dns):
    """The review's reproduction: one NXDOMAIN at the periodic check."""
    domain = verified_domain(dns)
    dkim_nxdomain(dns, domain)
    Domain.objects.filter(pk=domain.pk).update(dkim_checked_at=None)  # due now
    assert recheck_domains() == 1
    domain.refresh_from_db()
    assert domain.dkim_verified and domain.return_path_verified
    assert sender_refusal("news@shop.test") is None
    assert domain.dns_problem.startswith(f"DKIM: {domain.key('active').host}: Not found:")


@pytest.mark.parametrize(("record", "flap", "status", "found"), FLAPS)
def test_a_verified_record_is_unverified_only_after_the_grace_period(
    dns, record, flap, status, found
):
    t0 = timezone.now().replace(microsecond=0)
    domain = verified_domain(dns, t0)
    as_verified = sending_state(domain, record)
    assert as_verified in (["shop.test"], "pm-bounces.shop.test")

    flap(dns, domain)  # one flaky answer at the hourly check
    recheck_domains(now=t0 + HOUR)
    domain.refresh_from_db()
    assert getattr(domain, grace.FLAGS[record]) is True
    assert sending_state(domain, record) == as_verified
    assert found in grace.problems(domain.dns_problem)[record]
    [failing] = grace.failing(domain)
    assert (failing.record, failing.since, failing.failed_checks) == (record, t0 + HOUR, 1)
    assert failing.in_grace and failing.unverify_after == t0 + HOUR + 24 * HOUR

    publish_all(dns, domain)  # the server answers right again: the failures end
    recheck_domains(now=t0 + 2 * HOUR)
    domain.refresh_from_db()
    assert domain.dns_problem == "" and grace.failing(domain) == []
    assert (domain.dkim_failed_checks, domain.return_path_failed_checks) == (0, 0)

    flap(dns, domain)  # now it stays broken: three checks in three hours are not enough
    for hours in (3, 4, 5, 3 + 23):
        recheck_domains(now=t0 + hours * HOUR)
        domain.refresh_from_db()
        assert getattr(domain, grace.FLAGS[record]) is True, hours
        assert sending_state(domain, record) == as_verified
    [failing] = grace.failing(domain)
    assert (failing.since, failing.failed_checks, failing.in_grace) == (t0 + 3 * HOUR, 4, True)

    recheck_domains(now=t0 + (3 + 24) * HOUR)  # 5 failed checks over 24 hours: un-verified
    domain.refresh_from_db()
    assert getattr(domain, grace.FLAGS[record]) is False
    if record == "DKIM":
        assert sending_state(domain, record) == NOT_A_SENDER_SIGNATURE
        assert domain.return_path_verified
    else:
        assert sending_state(domain, record) == BOUNCES
        assert domain.dkim_verified and sender_refusal("news@shop.test") is None
    [failing] = grace.failing(domain)
    assert not failing.in_grace and failing.failed_checks == 5
    assert "un-verified after the grace period" in failing.sentence

    publish_all(dns, domain)  # seen again: verified at once
    recheck_domains(now=t0 + 28 * HOUR)
    domain.refresh_from_db()
    assert getattr(domain, grace.FLAGS[record]) is True and domain.dns_problem == ""
    assert sending_state(domain, record) == as_verified


def test_a_domain_never_verified_stays_unverified_until_its_records_are_seen(dns):
    t0 = timezone.now()
    domain = create_domain("shop.test")
    for hours in (0, 1, 30, 80):
        verify_domain(domain, t0 + hours * HOUR)
        domain.refresh_from_db()
        assert not domain.dkim_verified and not domain.return_path_verified
        assert (domain.dkim_failed_checks, domain.dkim_failing_since) == (0, None)
        assert domain.dns_problem == "" and grace.failing(domain) == []
    assert sender_refusal("news@shop.test")[0] == NOT_A_SENDER_SIGNATURE
    publish_all(dns, domain)
    verify_domain(domain, t0 + 81 * HOUR)
    domain.refresh_from_db()
    assert domain.dkim_verified and domain.return_path_verified


def test_temporary_failures_neither_count_nor_end_the_failures(dns):
    t0 = timezone.now()
    domain = verified_domain(dns, t0)
    key = domain.key("active")
    dkim_nxdomain(dns, domain)
    verify_domain(domain, t0 + HOUR)  # failed check 1
    dns.servfail.add(key.host)
    for hours in range(2, 40):  # SERVFAIL for a day and a half: nothing is concluded
        checks = verify_domain(domain, t0 + hours * HOUR)
        assert checks[0].status == TEMPORARY
    domain.refresh_from_db()
    assert domain.dkim_verified and domain.dkim_failed_checks == 1
    assert domain.dkim_failing_since == t0 + HOUR
    assert domain.dns_problem.startswith("DKIM: temporary failure: ")
    [failing] = grace.failing(domain)
    assert failing.in_grace and failing.temporary
    dns.servfail.clear()
    verify_domain(domain, t0 + 40 * HOUR)  # failed check 2: over 24 h, but only two
    domain.refresh_from_db()
    assert domain.dkim_verified and domain.dkim_failed_checks == 2
    verify_domain(domain, t0 + 41 * HOUR)  # check 3
    domain.refresh_from_db()
    assert not domain.dkim_verified


def test_a_check_asked_for_verifies_at_once_and_says_when_it_fails(admin_client, dns):
    """Verify now is one more check: it verifies a record it sees at once, but a record it does
    not see is un-verified only once the grace is over, and the page says so."""
    domain = verified_domain(dns)
    url = reverse("admin:domains_domain_change", args=[domain.pk])
    dkim_nxdomain(dns, domain)
    page = admin_client.post(url + "verify/", follow=True).content.decode()
    domain.refresh_from_db()
    assert domain.dkim_verified and domain.dkim_failed_checks == 1
    assert "DKIM of shop.test: 1 check failed since " in page
    assert "still verified, mail is signed and sent as before" in page
    assert "allowed (DKIM verified; its record is failing" in page  # the status line
    assert 'id="dns-problem"' in page and "does not exist (NXDOMAIN)" in page

    system = admin_client.get(reverse("admin:system")).content.decode()
    assert "shop.test" in system and "allowed (grace period: DKIM failing" in system

    found = gauges(Client())
    labels = (("domain", "shop.test"), ("record", "DKIM"), ("verified", "true"))
    assert found[("postmark_domain_dns_failed_checks", labels)] == 1
    assert found[
        ("postmark_domain_dns_failing_since_timestamp_seconds", (("answer", "definite"), *labels))
    ] == pytest.approx(domain.dkim_failing_since.timestamp())
    assert found[("postmark_domains_dns_failing", ())] == 1

    publish_all(dns, domain)
    page = admin_client.post(url + "verify/", follow=True).content.decode()
    domain.refresh_from_db()
    assert domain.dkim_verified and domain.dkim_failed_checks == 0 and domain.dns_problem == ""
    assert "failed since" not in page
    assert found != gauges(Client()) and ("postmark_domains_dns_failing", ()) in gauges(Client())
