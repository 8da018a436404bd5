"""One try of a webhook delivery, its outcome, and the sweep that finds lost work.

``deliver`` claims the delivery row with a short lease, POSTs outside any transaction
(``webhooks.client``), then records a ``WebhookAttempt`` and the outcome:

- 2xx: delivered;
- 403: stopped at once (Postmark's rule);
- anything else, or no answer: retried after 1, 5, 10, 10, 10, 15, 30, 60, 120 and 360 minutes
  (``WEBHOOK_RETRY_DELAYS``), then failed.

Retries are queued with a ``countdown`` capped at ``WEBHOOK_MAX_COUNTDOWN`` (a task that wakes up
early queues itself again for the rest); the periodic ``sweep`` queues again every due delivery
whose task was lost and dispatches the events still marked for the fan-out (the event table is
the outbox: ``MessageEvent.webhooks_pending_since``). Every try is idempotent: it happens only if
the row is still pending, due, unleased and at the attempt count the task was queued for. Tasks
are queued through ``fanout.publish``.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import leases, queues
from core.db import is_database_unavailable
from core.logcontext import about_message
from messages.models import MessageEvent
from webhooks import fanout, metrics
from webhooks.client import RESPONSE_EXCERPT_BYTES, Result, http_post
from webhooks.fanout import create_deliveries, include_content
from webhooks.models import Webhook, WebhookAttempt, WebhookDelivery
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
    are not being tried (a lost task, a crashed worker, a broker restart): at most
    SWEEP_MAX_REQUEUE a run, and none while the webhooks queue is busy (``core.queues``)."""
    now = now or timezone.now()
    grace = settings.SWEEP_AFTER_SECONDS if grace_seconds is None else grace_seconds
    limit = queues.requeue_budget(fanout.POST_TASK)
    if not limit:
        return 0
    due = leases.free(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at__lte=now - timedelta(seconds=grace),
        ),
        now,
    )
    rows = list(due.order_by("next_attempt_at").values_list("pk", "attempts")[:limit])
    for delivery_id, attempts in rows:
        # Due "now" again, so that the next sweep leaves it alone for another grace period.
        WebhookDelivery.objects.filter(pk=delivery_id, attempts=attempts).update(
            next_attempt_at=now
        )
        fanout.publish(delivery_id, attempts)
    return len(rows)


def dispatch_missed_events(grace_seconds: float | None = None, now=None, batch: int = 1000) -> int:
    """Create the deliveries of every event still marked for the fan-out ``grace_seconds`` after
    it was recorded (the process died right after the commit, or the fan-out failed), oldest
    first, in up to 50 batches of ``batch`` a run, and clear their marks. No event is skipped
    whatever order the transactions committed in: each carries its own mark. A webhook created
    after the event (less the grace period) does not get it. Returns how many deliveries it
    created. They are queued at once, unless the webhooks queue is busy: then they wait, due, for
    ``requeue_due`` (``core.queues``)."""
    now = now or timezone.now()
    grace = settings.SWEEP_AFTER_SECONDS if grace_seconds is None else grace_seconds
    catch_up_new_webhooks(now, grace)
    cutoff = now - timedelta(seconds=grace)
    hooks_by_stream: dict[int, list] = {}
    for webhook in Webhook.objects.all():
        hooks_by_stream.setdefault(webhook.stream_id, []).append(webhook)
    made: list[int] = []
    for _ in range(50):
        rows = list(
            MessageEvent.objects.filter(webhooks_pending_since__lte=cutoff)
            .order_by("webhooks_pending_since", "id")
            .values_list("id", "stream_id", "occurred_at")[:batch]
        )
        for event_id, stream_id, occurred_at in rows:
            hooks = [
                w
                for w in hooks_by_stream.get(stream_id, [])
                if w.created_at <= now and occurred_at >= w.created_at - timedelta(seconds=grace)
            ]
            if hooks:
                made += _dispatch_one(event_id, hooks)
        fanout.mark_dispatched([row[0] for row in rows])
        if len(rows) < batch:
            break
    if made and queues.requeue_budget(fanout.POST_TASK):
        for delivery_id in made:
            fanout.publish(delivery_id, 0)
    return len(made)


def _dispatch_one(event_id: int, hooks: list) -> list[int]:
    """The new deliveries of one event. An event that breaks the fan-out (a bug it happens to
    trigger) is logged and given up, not retried by every sweep ahead of the others; a database
    that fails stops the sweep, and the event is taken again by the next one."""
    try:
        event = MessageEvent.objects.select_related("server", "bounce").get(pk=event_id)
        return create_deliveries(event, hooks, timezone.now())
    except Exception as exc:
        if is_database_unavailable(exc):
            raise
        log.exception("could not dispatch webhooks for event %s: given up", event_id)
        return []


def catch_up_new_webhooks(now, grace: float) -> int:
    """Mark again for the fan-out the events a new webhook may have missed: those its stream
    recorded from ``grace`` seconds before the webhook was created until other processes knew of
    it (``WEBHOOK_STREAMS_CACHE_SECONDS`` later, plus ``grace``): a process that did not know yet
    recorded them unmarked. Done once per webhook, after that window; an event that already has
    this webhook's delivery is left alone. Returns how many events it marked."""
    settle = timedelta(seconds=settings.WEBHOOK_STREAMS_CACHE_SECONDS + grace)
    marked = 0
    new = Webhook.objects.filter(events_caught_up=False, created_at__lte=now - settle)
    for webhook in new.select_related("stream"):
        missed = MessageEvent.objects.filter(
            # (server, type, occurred_at): the events index the APIs read.
            server_id=webhook.stream.server_id,
            type__in=MessageEvent.Type.values,
            occurred_at__gte=webhook.created_at - timedelta(seconds=grace),
            occurred_at__lte=webhook.created_at + settle,
            stream_id=webhook.stream_id,
            webhooks_pending_since__isnull=True,
        ).exclude(webhook_deliveries__webhook=webhook)
        marked += missed.update(webhooks_pending_since=now - timedelta(seconds=grace))
        Webhook.objects.filter(pk=webhook.pk).update(events_caught_up=True)
    return marked


def sweep(now=None) -> dict[str, int]:
    return {
        "requeued": requeue_due(now=now),
        "dispatched": dispatch_missed_events(now=now),
    }
