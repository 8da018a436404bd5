"""What an operator may do to a message still being delivered: try its deferred recipients now,
or cancel the ones still waiting. The admin's actions on messages call these (``delivery.admin``).

Only recipients nobody holds are touched (``core.leases.free``): one a worker is sending to right
now finishes as it would have. A cancelled recipient ends ``failed`` with a SoftBounce that says
an operator cancelled it, as a recipient given up after its retries does, so the tenant sees it
through the bounce API, the webhooks and the message's status (``Processed`` once no recipient
waits)."""

from django.db import transaction
from django.utils import timezone

from bounces.types import SOFT_BOUNCE
from core import leases
from delivery.claims import WAITING
from delivery.connections import Transcript
from delivery.outcomes import _bounce, refresh_statuses
from delivery.tasks import enqueue_delivery
from messages.models import OutboundMessage, Recipient

CANCELLED = "Cancelled by an operator before delivery: not sent."


def _waiting(message_ids, now, statuses=WAITING):
    return leases.free(
        Recipient.objects.filter(message_id__in=message_ids, status__in=statuses), now
    )


def retry_now(message_ids: list[int], now=None) -> int:
    """Make the deferred recipients of these messages due now and queue their delivery; returns
    how many messages were queued (those with a deferred recipient nobody holds)."""
    now = now or timezone.now()
    due = _waiting(message_ids, now, [Recipient.Status.DEFERRED])
    queued = sorted(set(due.values_list("message_id", flat=True)))
    if not queued:
        return 0
    _waiting(queued, now, [Recipient.Status.DEFERRED]).update(next_attempt_at=now)
    for message_id in queued:
        enqueue_delivery(message_id)
    return len(queued)


def cancel(message_ids: list[int], now=None) -> int:
    """Stop delivery of these messages' waiting recipients (new, deferred, or in doubt with no
    worker holding them): each ends ``failed`` with a SoftBounce saying so. Returns how many
    recipients were cancelled."""
    now = now or timezone.now()
    cancelled = 0
    messages = {m.pk: m for m in OutboundMessage.objects.filter(pk__in=message_ids)
                .select_related("server", "stream")}  # fmt: skip
    for recipient in _waiting(list(messages), now).order_by("pk"):
        with transaction.atomic():
            # Conditional on the recipient still waiting and free: a worker may have taken it.
            taken = _waiting([recipient.message_id], now).filter(pk=recipient.pk).update(
                status=Recipient.Status.FAILED, next_attempt_at=None, last_reply=CANCELLED,
                updated_at=now,
            )  # fmt: skip
            if taken:
                _bounce(messages[recipient.message_id], recipient, SOFT_BOUNCE, CANCELLED,
                        Transcript())  # fmt: skip
                cancelled += 1
    refresh_statuses(list(messages.values()))
    return cancelled
