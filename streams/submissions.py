"""Durable accept: the records the gateway commits before it answers 250."""

from django.db import transaction
from django.utils import timezone

from .models import SmtpToken, Submission


@transaction.atomic
def save_submissions(submissions: list[Submission]) -> None:
    """Commit a batch of accepted SMTP transactions in one transaction (one fsync per batch)."""
    Submission.objects.bulk_create(submissions)
    access_keys = {s.credential for s in submissions if s.credential_kind == "smtp_token"}
    if access_keys:
        latest = max(submissions, key=lambda s: s.received_at)
        SmtpToken.objects.filter(access_key__in=access_keys).update(
            last_used_at=timezone.now(), last_used_from=latest.client_address
        )
