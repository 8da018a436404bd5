"""One try of a webhook delivery, its outcome, and the sweep that finds lost work.

``deliver`` claims the delivery row with a short lease, POSTs outside any transaction
(``webhooks.client``), then records a ``WebhookAttempt`` and the outcome:

- 2xx: delivered;
- 403: stopped at once (Postmark's rule);
- anything else, or no answer: retried after 1, 5, 10, 10, 10, 15, 30, 60, 120 and 360 minutes
  (``WEBHOOK_RETRY_DELAYS``), then failed.

Retries are queued with a ``countdown`` capped at ``WEBHOOK_MAX_COUNTDOWN`` (a task that wakes up
early queues itself again for the rest); the periodic ``sweep`` queues again every due delivery
whose task was lost and dispatches events whose ``enqueue_event`` never ran (the event table is the
outbox). Every try is idempotent: it happens only if the row is still pending, due, unleased and at
the attempt count the task was queued for. Tasks are queued through ``fanout.publish``.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import leases
from core.logcontext import about_message
from messages.models import MessageEvent
from webhooks import fanout, metrics
from webhooks.client import RESPONSE_EXCERPT_BYTES, Result, http_post
from webhooks.fanout import create_deliveries, include_content
from webhooks.models import Webhook, WebhookAttempt, WebhookDelivery, WebhookSweepCursor
from webhooks.serializers import webhook_payload
from webhooks.signing import encode, request_headers

log = logging.getLogger(__name__)


DEFAULT_RETRY_DELAYS = (60, 300, 600, 600, 600, 900, 1800, 3600, 7200, 21600)


def retry_delays() -> tuple[int, ...]:
    return tuple(getattr(settings, "WEBHOOK_RETRY_DELAYS", DEFAULT_RETRY_DELAYS))


def _eager() -> bool:
    return bool(current_app.conf.task_always_eager)


# --- One try --------------------------------------------------------------------------------------


def _lease_seconds() -> float:
    return float(settings.WEBHOOK_TIMEOUT) * 2 + 30


def deliver(delivery_id: int, attempts: int | None = None) -> str:
    """Try a delivery once if it is due; returns its status afterwards, or "skipped".

    ``attempts`` is the attempt count the task was queued for: a stale task (the row moved on)
    does nothing; one that woke up before ``next_attempt_at`` queues itself again."""
    now = timezone.now()
    claim = WebhookDelivery.objects.filter(
        pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
    )
    if attempts is not None:
        claim = claim.filter(attempts=attempts)
    if not leases.take(claim, _lease_seconds(), now):
        _requeue_early_task(delivery_id, attempts, now)
        return "skipped"
    delivery = (
        WebhookDelivery.objects.select_related(
            "webhook", "event__stream", "event__outbound", "event__bounce"
        )
        .defer("event__outbound__content", "event__outbound__submission_id")
        .get(pk=delivery_id)
    )
    webhook, event = delivery.webhook, delivery.event
    stream_id = event.stream.stream_id if event.stream else None
    with about_message(event.message_id, event.server_id, stream_id):
        if delivery.payload:
            body = delivery.payload.encode("utf-8")
        else:
            body = encode(webhook_payload(event, include_content(webhook, event)))
        started_at = timezone.now()
        result = http_post(webhook.url, body, request_headers(webhook, body, delivery.pk))
        return _record(delivery, body, result, started_at)


def _record(delivery, body, result: Result, started_at) -> str:
    metrics.post_made(result.status_code)
    number = delivery.attempts + 1
    now = timezone.now()
    fields = {
        "attempts": number,
        "leased_until": None,
        "last_status_code": result.status_code,
        "last_error": result.error,
        "updated_at": now,
    }
    delay = None
    if result.ok:
        fields.update(status=WebhookDelivery.Status.DELIVERED, next_attempt_at=None, payload="")
    elif result.status_code == 403:
        fields.update(status=WebhookDelivery.Status.STOPPED, next_attempt_at=None)
    elif result.refused:  # the destination is not allowed: retrying cannot change that
        fields.update(status=WebhookDelivery.Status.FAILED, next_attempt_at=None)
    else:
        delays = retry_delays()
        if number <= len(delays):
            delay = delays[number - 1]
            fields["next_attempt_at"] = now + timedelta(seconds=delay)
        else:
            fields.update(status=WebhookDelivery.Status.FAILED, next_attempt_at=None)
    if not result.ok and not delivery.payload:
        fields["payload"] = body.decode("utf-8")
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery_id=delivery.pk,
            number=number,
            started_at=started_at,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            response_excerpt=result.excerpt[:RESPONSE_EXCERPT_BYTES],
            error=result.error,
        )
        WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)
    status = fields.get("status", WebhookDelivery.Status.PENDING)
    if delay is not None:
        log.info(
            "webhook delivery %s failed (%s), retry %d in %ss",
            delivery.pk,
            result.status_code or result.error,
            number,
            delay,
        )
        fanout.publish(delivery.pk, number, countdown=min(delay, settings.WEBHOOK_MAX_COUNTDOWN))
    return str(status)


def _requeue_early_task(delivery_id: int, attempts: int | None, now) -> None:
    """A countdown task capped below its retry delay wakes up early: queue it for the rest."""
    if attempts is None or _eager():
        return
    row = (
        WebhookDelivery.objects.filter(
            pk=delivery_id, status=WebhookDelivery.Status.PENDING, attempts=attempts
        )
        .values("next_attempt_at")
        .first()
    )
    if row and row["next_attempt_at"] and row["next_attempt_at"] > now:
        remaining = (row["next_attempt_at"] - now).total_seconds()
        fanout.publish(
            delivery_id, attempts, countdown=min(remaining, settings.WEBHOOK_MAX_COUNTDOWN)
        )


def retry_now(deliveries) -> int:
    """The admin's "retry now": make the deliveries pending and due now, and queue them."""
    ids = list(deliveries.values_list("pk", flat=True))
    WebhookDelivery.objects.filter(pk__in=ids).update(
        status=WebhookDelivery.Status.PENDING,
        next_attempt_at=timezone.now(),
        leased_until=None,
        updated_at=timezone.now(),
    )
    for delivery_id in ids:
        fanout.publish(delivery_id, None)
    return len(ids)


# --- The sweep ------------------------------------------------------------------------------------


def requeue_due(grace_seconds: float | None = None, now=None) -> int:
    """Queue again the pending deliveries that should have been tried ``grace_seconds`` ago and
    are not being tried (a lost task, a crashed worker, a broker restart)."""
    now = now or timezone.now()
    grace = settings.SWEEP_AFTER_SECONDS if grace_seconds is None else grace_seconds
    due = leases.free(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at__lte=now - timedelta(seconds=grace),
        ),
        now,
    )
    rows = list(due.order_by("next_attempt_at").values_list("pk", "attempts")[:10_000])
    for delivery_id, attempts in rows:
        # Due "now" again, so that the next sweep leaves it alone for another grace period.
        WebhookDelivery.objects.filter(pk=delivery_id, attempts=attempts).update(
            next_attempt_at=now
        )
        fanout.publish(delivery_id, attempts)
    return len(rows)


def dispatch_missed_events(grace_seconds: float | None = None, now=None, batch: int = 2000) -> int:
    """Create the deliveries of events whose ``enqueue_event`` never ran (the process died right
    after the commit). Walks the events after a cursor, leaving the youngest ``grace_seconds``
    for the normal path; returns how many deliveries it created."""
    now = now or timezone.now()
    grace = settings.SWEEP_AFTER_SECONDS if grace_seconds is None else grace_seconds
    cutoff = now - timedelta(seconds=grace)
    cursor = WebhookSweepCursor.objects.filter(pk=1).first()
    if cursor is None:
        # The first sweep starts from now: history is not posted to webhooks.
        last = MessageEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
        WebhookSweepCursor.objects.get_or_create(pk=1, defaults={"last_event_id": last})
        return 0
    hooks_by_stream: dict[int, list] = {}
    for webhook in Webhook.objects.all():
        hooks_by_stream.setdefault(webhook.stream_id, []).append(webhook)
    position, created = cursor.last_event_id, 0
    for _ in range(50):
        rows = list(
            MessageEvent.objects.filter(id__gt=position)
            .order_by("id")
            .values_list("id", "stream_id", "occurred_at")[:batch]
        )
        young = False
        for event_id, stream_id, occurred_at in rows:
            if occurred_at > cutoff:
                young = True
                break
            position = event_id
            hooks = [w for w in hooks_by_stream.get(stream_id, []) if w.created_at <= now]
            hooks = [w for w in hooks if occurred_at >= w.created_at - timedelta(seconds=grace)]
            if not hooks:
                continue
            event = MessageEvent.objects.select_related("server", "bounce").get(pk=event_id)
            for delivery_id in create_deliveries(event, hooks, timezone.now()):
                created += 1
                fanout.publish(delivery_id, 0)
        if young or len(rows) < batch:
            break
    WebhookSweepCursor.objects.filter(pk=1).update(last_event_id=position, updated_at=now)
    return created


def sweep(now=None) -> dict[str, int]:
    return {
        "requeued": requeue_due(now=now),
        "dispatched": dispatch_missed_events(now=now),
    }
