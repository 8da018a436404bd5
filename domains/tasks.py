"""The periodic re-check of domains' DNS records (beat entry ``domains.recheck``)."""

import logging

from celery import shared_task
from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from domains.models import Domain
from domains.verification import verify_domain

log = logging.getLogger(__name__)


def due_domains(now=None):
    """The domains whose records are due for a check, longest waiting first: verified ones (and
    any with a DNS problem) every DOMAIN_RECHECK_SECONDS, so a record that vanished or changed
    is noticed; the others (records not yet published, a rotation's pending key) every
    DOMAIN_PENDING_RECHECK_SECONDS, so a new record is picked up without anyone asking."""
    now = now or timezone.now()
    often = now - timezone.timedelta(seconds=settings.DOMAIN_RECHECK_SECONDS)
    seldom = now - timezone.timedelta(seconds=settings.DOMAIN_PENDING_RECHECK_SECONDS)
    in_service = Q(dkim_verified=True) | Q(return_path_verified=True) | ~Q(dns_problem="")
    return (
        Domain.objects.filter(periodic_checks=True)
        .filter(
            Q(dkim_checked_at__isnull=True)
            | (in_service & Q(dkim_checked_at__lt=often))
            | (~in_service & Q(dkim_checked_at__lt=seldom))
        )
        .order_by(F("dkim_checked_at").asc(nulls_first=True), "pk")
    )


@shared_task(name="domains.tasks.recheck_domains")
def recheck_domains(now=None) -> int:
    """Check the domains that are due (at ``now``: tests pass a time); one domain's failure
    never stops the others. A verified record that a check does not find keeps its flag for a
    grace period (``domains.grace``)."""
    checked = 0
    for domain in due_domains(now)[: settings.DOMAIN_RECHECK_BATCH]:
        try:
            verify_domain(domain, now=now)
            checked += 1
        except Exception:
            log.exception("checking the DNS records of %s failed", domain.name)
    return checked
