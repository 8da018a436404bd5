"""What the API and the admin do to one inbound message: ``bypass`` a Blocked one (post it after
all), ``retry`` a Failed one (start the retry schedule over). Both queue the post once their
change is committed and return whether the message was in a state that allows it. And the
retention of inbound messages (MESSAGE_RETENTION_DAYS, as for outbound ones)."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inbound import posting
from inbound.models import InboundMessage
from messages.retention import delete_in_batches


def bypass(message: InboundMessage) -> bool:
    """Blocked → Queued, posted now (Postmark's ``PUT /messages/inbound/{id}/bypass``)."""
    return _queue_again(message, InboundMessage.Status.BLOCKED)


def retry(message: InboundMessage) -> bool:
    """Failed → Queued, the retry schedule started over (``PUT …/retry``)."""
    return _queue_again(message, InboundMessage.Status.FAILED)


def _queue_again(message: InboundMessage, expected: str) -> bool:
    now = timezone.now()
    with transaction.atomic():
        changed = InboundMessage.objects.filter(pk=message.pk, status=expected).update(
            status=InboundMessage.Status.QUEUED,
            attempts=0,
            leased_until=None,
            next_attempt_at=now,
            updated_at=now,
        )
        if changed:
            pk = message.pk
            transaction.on_commit(lambda: posting.publish(pk, 0))
    if changed:
        message.refresh_from_db()
    return bool(changed)


def enforce_retention(now=None, batch: int = 1000) -> int:
    """Delete the inbound messages received more than MESSAGE_RETENTION_DAYS ago, in batches;
    never one still waiting to be posted. Returns how many went."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.MESSAGE_RETENTION_DAYS)
    old = InboundMessage.objects.filter(received_at__lt=cutoff).exclude(status__in=posting.WAITING)
    return delete_in_batches(old, batch)
