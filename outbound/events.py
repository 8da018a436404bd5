"""Message events: the one way events are recorded, so that every one reaches the webhooks.

Each event is committed with the change that caused it; once the transaction commits, the signal
``event_committed`` carries its id to whoever listens (the webhook dispatcher, which this app does
not import: ``webhooks`` connects itself when it loads). The event row is the outbox: a lost
dispatch is found again by the sweep.

Suppressions are kept by ``streams``, below this app: it announces each change with
``streams.signals.subscription_changed``, and ``record_subscription_change`` turns that into a
SubscriptionChange event in the same transaction.
"""

from functools import partial

from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from outbound.models import MessageEvent
from outbound.submissions import insert_rows, model_row

# Sent once an event's transaction has committed, with ``event_id`` and ``stream_id``.
event_committed = Signal()


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
    event = MessageEvent(
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
    # One prepared INSERT (an event is written for every recipient delivered).
    event.pk = insert_rows(MessageEvent, [model_row(event)], returning=True)[0]
    event._state.adding = False
    transaction.on_commit(partial(_notify, event.pk, stream_id))
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


def _notify(event_id: int, stream_id: int | None = None) -> None:
    event_committed.send(sender=MessageEvent, event_id=event_id, stream_id=stream_id)


def record_subscription_change(sender, *, stream, email, suppress_sending, reason, origin, **kw):
    """Receiver of ``streams.signals.subscription_changed`` (connected in ``OutboundConfig``)."""
    record_event(
        server_id=stream.server_id,
        stream_id=stream.pk,
        type=MessageEvent.Type.SUBSCRIPTION_CHANGE,
        recipient=email,
        data={"SuppressSending": suppress_sending, "SuppressionReason": reason, "Origin": origin},
    )
