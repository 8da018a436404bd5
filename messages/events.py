"""Message events: the one way events are recorded, so that every one reaches the webhooks.

Each event is committed with the change that caused it; once the transaction commits, the signal
``event_committed`` carries its id to whoever listens (the webhook dispatcher, which this app does
not import: ``webhooks`` connects itself when it loads). The event row is the outbox: it is
recorded marked ``webhooks_pending_since`` (now), the fan-out clears the mark once the event's
webhook deliveries exist, and the sweep takes every event still marked after a grace period, so
a lost dispatch is found again whatever order transactions commit in. An event no webhook can
want (``FAN_OUT_WANTED`` says none of its stream's) is recorded unmarked: it costs no UPDATE.

Suppressions are kept by ``streams``, below this app: it announces each change with
``streams.signals.subscription_changed``, and ``record_subscription_change`` turns that into a
SubscriptionChange event in the same transaction.
"""

from functools import cache, partial

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.dispatch import Signal
from django.utils import timezone

from bounces.types import BOUNCE_TYPES
from messages.models import MessageEvent
from messages.submissions import insert_rows, model_row

# Sent once an event's transaction has committed, with ``event_id`` and ``stream_id``.
event_committed = Signal()

# Functions of a stream's id (or None) that say whether some fan-out may want the stream's events;
# apps above this one add theirs in their ready() (webhooks: whether the stream has a webhook).
# An event that none wants is recorded already dispatched.
FAN_OUT_WANTED: list = []


def _pending_since(stream_id: int | None):
    """The outbox mark of a new event: now, or None when no fan-out can want it."""
    return timezone.now() if any(wanted(stream_id) for wanted in FAN_OUT_WANTED) else None


def _row(
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
) -> dict:
    """An event's column values (by attribute name), its defaults filled in."""
    if message_id is None:
        message_id = getattr(outbound, "message_id", None)
    return {
        "server_id": server_id,
        "stream_id": stream_id,
        "outbound_id": getattr(outbound, "pk", None),
        "message_id": message_id,
        "type": type,
        "recipient": recipient,
        "bounce_id": getattr(bounce, "pk", None),
        "details": details,
        "data": data or {},
        "occurred_at": occurred_at or timezone.now(),
        "webhooks_pending_since": _pending_since(stream_id),
    }


def _event(**fields) -> MessageEvent:
    event = MessageEvent(**_row(**fields))
    for related in ("outbound", "bounce"):  # already at hand: no query when a caller reads them
        if fields.get(related) is not None:
            setattr(event, related, fields[related])
    return event


def record_event(**fields) -> MessageEvent:
    """Record an event (the fields of ``MessageEvent``) in the caller's transaction; once that
    commits, ``event_committed`` announces it."""
    event = _event(**fields)
    # One prepared INSERT (an event is written for every recipient delivered).
    event.pk = insert_rows(MessageEvent, [model_row(event)], returning=True)[0]
    event._state.adding = False
    transaction.on_commit(partial(_notify, event.pk, event.stream_id))
    return event


def record_event_with(change: tuple[str, list], **fields) -> int | None:
    """Make ``change`` (an UPDATE of at most one row, as SQL and parameters) and record the
    event that reports it, only if it changed a row; returns the event's id, or None when it
    changed nothing. On PostgreSQL both are one statement (the UPDATE a data-modifying WITH
    clause the INSERT selects from), committed on its own outside a transaction: a single round
    trip, where a transaction of two statements takes four. Elsewhere, two statements in a
    transaction."""
    connection = connections[DEFAULT_DB_ALIAS]
    change_sql, change_params = change
    if connection.vendor != "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(change_sql, change_params)
            return record_event(**fields).pk if cursor.rowcount else None
    import psycopg

    row = _row(**fields)
    insert_sql, columns = _insert_selecting()
    params = [f.get_db_prep_save(row[f.attname], connection) for f in columns]
    connection.ensure_connection()
    # The driver's errors become Django's, as through a Django cursor (core.db).
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            f"WITH changed AS ({change_sql} RETURNING 1) {insert_sql}", change_params + params
        )
        found = cursor.fetchone()
    if found is None:
        return None
    transaction.on_commit(partial(_notify, found[0], row["stream_id"]))
    return found[0]


@cache
def _insert_selecting() -> tuple[str, tuple]:
    """An INSERT of one MessageEvent whose values are parameters, made once per changed row."""
    quote, meta = connections[DEFAULT_DB_ALIAS].ops.quote_name, MessageEvent._meta
    columns = tuple(f for f in meta.concrete_fields if not f.primary_key)
    names = ", ".join(quote(f.column) for f in columns)
    values = ", ".join("%s" for _ in columns)
    # Only names from the model's own metadata go into the statement; values are parameters.
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({names}) "  # noqa: S608
        f"SELECT {values} FROM changed RETURNING {quote(meta.pk.column)}"
    )
    return sql, columns


def record_message_event(message, type: str, recipient: str, **fields) -> MessageEvent:
    """An event about an outbound message."""
    return record_event(**_about(message, type, recipient), **fields)


def record_message_event_with(change, message, type: str, recipient: str, **fields) -> bool:
    """``record_event_with`` for an event about an outbound message; returns whether ``change``
    changed a row (and so the event was recorded)."""
    return record_event_with(change, **_about(message, type, recipient), **fields) is not None


def _about(message, type: str, recipient: str) -> dict:
    return {
        "server_id": message.server_id,
        "stream_id": message.stream_id,
        "outbound": message,
        "message_id": message.message_id,
        "type": type,
        "recipient": recipient,
    }


def record_bounce_event(bounce, outbound=None) -> MessageEvent:
    """The Bounce (or SpamComplaint) event of a bounce record."""
    kind = BOUNCE_TYPES.get(bounce.type)
    event_type = MessageEvent.Type(kind.event) if kind else MessageEvent.Type.BOUNCE
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
