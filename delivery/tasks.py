"""The delivery tasks: deliver a set of messages (``relay``), come back when deferred
recipients are due, and the periodic sweep that queues again what a lost task left behind.

Celery's task names keep the ``outbound.tasks.`` prefix they were first published under, so that
a task queued before an upgrade still finds its function afterwards.
"""

import logging

from celery import current_app, shared_task
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from core import leases, queues
from core.db import raise_if_unavailable
from delivery.claims import claimable
from delivery.outcomes import next_retry_in
from delivery.relay import deliver_message, deliver_messages
from messages.models import OutboundMessage, Recipient
from messages.tasks import requeue_stuck_submissions

log = logging.getLogger(__name__)


@shared_task(
    name="outbound.tasks.deliver",
    autoretry_for=(DatabaseError,),
    retry_backoff=2,
    retry_backoff_max=300,
    max_retries=None,
)
def deliver(outbound_id: int | list[int]) -> str:
    """Deliver one message's due recipients (or each of a list of messages'), and come back
    when deferred ones are due. The list is delivered together (``delivery.relay.deliver_messages``:
    one read, one claim, one status refresh); each message still fails alone: an error in one
    is logged and counted on its recipients, and the others still go. Should the set's own
    steps fail, each message is delivered on its own; only an unreachable database retries the
    task."""
    ids = outbound_id if isinstance(outbound_id, list) else [outbound_id]
    try:
        statuses = deliver_messages(ids)
    except Exception as exc:
        raise_if_unavailable(exc)
        log.exception("delivering %d message(s) together failed: one by one", len(ids))
        statuses = {}
        for one in ids:
            try:
                statuses[one] = deliver_message(one)
            except Exception as exc:
                raise_if_unavailable(exc)
                log.exception("delivery of message %s failed", one)
                statuses[one] = "error"
    for one, status in statuses.items():
        if status == OutboundMessage.Status.QUEUED:
            schedule_next_delivery(one)
    return ", ".join(statuses.get(one, "missing") for one in ids)


def schedule_next_delivery(outbound_id: int) -> None:
    """Queue the message's next try when its next recipient is due within
    DELIVERY_MAX_COUNTDOWN; a later one waits in the database, where the sweep finds it once due.
    A broker holds a countdown task unacknowledged, and cancels or redelivers what it holds too
    long (RabbitMQ's consumer timeout, Redis's visibility timeout), so no countdown is longer."""
    delay = next_retry_in(outbound_id)
    if delay is None:
        return
    if delay <= settings.DELIVERY_MAX_COUNTDOWN and not current_app.conf.task_always_eager:
        enqueue_delivery(outbound_id, countdown=delay)
    else:
        leases.release(OutboundMessage.objects.filter(pk=outbound_id))


def enqueue_deliveries(outbound_ids: list[int]) -> None:
    """Queue delivery of several messages, in tasks of up to 64 messages."""
    if not outbound_ids:
        return
    leases.lease(OutboundMessage.objects.filter(pk__in=outbound_ids), settings.SWEEP_AFTER_SECONDS)
    for start in range(0, len(outbound_ids), 64):
        batch = outbound_ids[start : start + 64]
        try:
            deliver.apply_async((batch,), retry=False)
        except Exception as exc:  # the sweep will find them
            log.warning("could not queue delivery of %d message(s): %s", len(batch), exc)


def enqueue_delivery(outbound_id: int, countdown: float = 0) -> None:
    """Queue the delivery task, noting when it is due so that the sweep leaves it alone."""
    countdown = min(max(countdown, 0.0), settings.DELIVERY_MAX_COUNTDOWN)
    leases.lease(
        OutboundMessage.objects.filter(pk=outbound_id), countdown + settings.SWEEP_AFTER_SECONDS
    )
    try:
        deliver.apply_async((outbound_id,), countdown=countdown or None, retry=False)
    except Exception as exc:  # the sweep will find it
        log.warning("could not queue delivery of message %s: %s", outbound_id, exc)


def requeue_due_deliveries(grace_seconds: float | None = None) -> int:
    """Queue delivery for messages with recipients due now that nobody holds (deferrals whose
    time came, recipients of a lost task, recipients in doubt after a worker died), unless a
    task queued for the message should still be on its way (the message's lease)."""
    age = settings.SWEEP_AFTER_SECONDS if grace_seconds is None else grace_seconds
    now = timezone.now()
    due = claimable(Recipient.objects.all(), now)
    # A message is taken (queued) at most once per ``age``, and none while the delivery queue is
    # busy (core.queues): a backlog merely waiting in the queue is not queued again by every sweep.
    limit = queues.requeue_budget(deliver.name)
    if not limit:
        return 0
    ids = leases.take_ids(
        OutboundMessage.objects.filter(pk__in=due.values("message_id")),
        seconds=age,
        now=now,
        limit=limit,
    )
    for outbound_id in ids:
        enqueue_delivery(outbound_id)
    return len(ids)


@shared_task(name="outbound.tasks.sweep")
def sweep() -> int:
    return requeue_stuck_submissions() + requeue_due_deliveries()


def queue_new_messages(sender, *, outbound_ids, **kwargs) -> None:
    """``messages.signals.messages_queued``: processing made new messages; deliver them."""
    enqueue_deliveries(outbound_ids)
