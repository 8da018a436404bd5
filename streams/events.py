"""Message events: the one way events are recorded, so that every one reaches the webhooks.

Each event is committed with the change that caused it; once the transaction commits, it is handed
to the webhook dispatcher (``bounces.webhooks.enqueue_event``), which decides which webhooks want
it. The event row is the outbox: a lost dispatch is found again by the sweep.
"""

from functools import partial

from django.db import transaction
from django.utils import timezone

from .models import MessageEvent


def record_event(
    *,
    server_id: int,
    type: str,
    recipient: str,
    stream_id: int | None = None,
    outbound=None,
    message_id=None,
    bounce=None,
    details: str = "",
    data: dict | None = None,
    occurred_at=None,
) -> MessageEvent:
    event = MessageEvent.objects.create(
        server_id=server_id,
        stream_id=stream_id,
        outbound=outbound,
        message_id=message_id if message_id is not None else getattr(outbound, "message_id", None),
        type=type,
        recipient=recipient,
        bounce=bounce,
        details=details,
        data=data or {},
        occurred_at=occurred_at or timezone.now(),
    )
    transaction.on_commit(partial(_notify, event.pk))
    return event


def record_message_event(message, type: str, recipient: str, **fields) -> MessageEvent:
    """An event about an outbound message."""
    return record_event(
        server_id=message.server_id,
        stream_id=message.stream_id,
        outbound=message,
        message_id=message.message_id,
        type=type,
        recipient=recipient,
        **fields,
    )


def record_bounce_event(bounce, outbound=None) -> MessageEvent:
    """The Bounce (or SpamComplaint) event of a bounce record."""
    event_type = (
        MessageEvent.Type.SPAM_COMPLAINT
        if bounce.type == "SpamComplaint"
        else MessageEvent.Type.BOUNCE
    )
    return record_event(
        server_id=bounce.server_id,
        stream_id=bounce.stream_id,
        outbound=outbound,
        message_id=bounce.message_id,
        type=event_type,
        recipient=bounce.email,
        bounce=bounce,
        details=bounce.details,
        occurred_at=bounce.bounced_at,
    )


def _notify(event_id: int) -> None:
    from bounces.webhooks import enqueue_event

    enqueue_event(event_id)
