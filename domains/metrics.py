"""Gauges of the domains whose DNS records fail, read from the database when ``/metrics`` is
scraped (the web app's endpoint, beside the queue gauges): what fails, since when, and whether it
still counts as verified (``domains.grace``). An alert on
``postmark_domain_dns_unverify_after_timestamp_seconds - time() < 6 * 3600`` warns before a
flapping or removed record stops a domain's mail."""

import logging

from core.metrics import Collector
from domains import grace

log = logging.getLogger(__name__)

MAX_DOMAINS = 1000  # series per scrape stay bounded however many domains break


class DnsGauges(Collector):
    def __init__(self, limit: int = MAX_DOMAINS):
        self._limit = limit

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        try:
            domains = [(d.name, grace.failing(d)) for d in grace.failing_domains(self._limit)]
        except Exception as exc:  # the database is down: the other metrics are still worth having
            log.warning("domain DNS gauges could not be read: %s", exc)
            domains = None
        yield GaugeMetricFamily(
            "postmark_domain_dns_gauges_up",
            "1 when the domain DNS gauges could be read from the database at this scrape, else 0.",
            0 if domains is None else 1,
        )
        if domains is None:
            return
        yield GaugeMetricFamily(
            "postmark_domains_dns_failing",
            "Domains with a DNS record that their last check did not find as expected.",
            sum(1 for _, failing in domains if failing),
        )
        since = GaugeMetricFamily(
            "postmark_domain_dns_failing_since_timestamp_seconds",
            "When a record of a domain began to fail (Unix time), by answer (definite: not there "
            "or another value; temporary: timeout, SERVFAIL) and whether it is still verified.",
            labels=["domain", "record", "answer", "verified"],
        )
        checks = GaugeMetricFamily(
            "postmark_domain_dns_failed_checks",
            "Checks in a row that did not find a record (definite answers only).",
            labels=["domain", "record", "verified"],
        )
        deadline = GaugeMetricFamily(
            "postmark_domain_dns_unverify_after_timestamp_seconds",
            "While a verified record's grace period lasts: the time from which a failed check "
            "un-verifies it (Unix time).",
            labels=["domain", "record"],
        )
        for name, failing in domains:
            for f in failing:
                verified = "true" if f.verified else "false"
                answer = "temporary" if f.temporary else "definite"
                if f.since is not None:
                    since.add_metric([name, f.record, answer, verified], f.since.timestamp())
                checks.add_metric([name, f.record, verified], f.failed_checks)
                if f.unverify_after is not None:
                    deadline.add_metric([name, f.record], f.unverify_after.timestamp())
        yield since
        yield checks
        yield deadline
