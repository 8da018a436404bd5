"""Fan-out: from a committed message event to the webhook deliveries it asks for, queued.

``enqueue_event`` (called through ``messages.events.event_committed`` once the event's transaction
commits, see ``on_event_committed``) creates one ``WebhookDelivery`` row per webhook that wants the
event and queues a task carrying only that row's id (``publish``), then clears the event's outbox
mark (``MessageEvent.webhooks_pending_since``). The database is the source of truth: a lost task
or a lost dispatch is found by the sweep (``webhooks.deliveries``). The streams that have webhooks
are cached per process, so an event of a stream without any costs no query, and is recorded
without the mark (``fan_out_wanted``, in ``messages.events.FAN_OUT_WANTED``).

``publish`` queues the ``webhooks.post`` task (``webhooks.tasks``) by its name, so that the code
that queues a try needs no import of the task that runs it (which imports that code).
"""

from __future__ import annotations

import logging
import threading
import time

from celery import current_app
from django.conf import settings
from django.utils import timezone

from bounces.types import BOUNCE_EVENTS, BOUNCE_TYPES, SMTP_API_ERROR, SPAM_COMPLAINT
from messages.models import MessageEvent
from webhooks.models import Webhook, WebhookDelivery

log = logging.getLogger(__name__)

# The name of the task in webhooks.tasks that makes one try of a delivery.
POST_TASK = "webhooks.post"


# --- Which webhooks want an event ----------------------------------------------------------------


def wants(webhook, event) -> bool:
    kind = event.type
    if kind in BOUNCE_EVENTS:
        bounce = event.bounce
        if bounce is None:
            return False
        if _is_spam_complaint(event):
            return webhook.spam_complaint_enabled
        if bounce.type == SMTP_API_ERROR and not event.server.enable_smtp_api_error_hooks:
            return False
        return webhook.bounce_enabled
    if kind == "Delivery":
        return webhook.delivery_enabled
    if kind == "Open":
        if not webhook.open_enabled:
            return False
        data = event.data if isinstance(event.data, dict) else {}
        return bool(data.get("FirstOpen")) or not webhook.open_post_first_open_only
    if kind == "Click":
        return webhook.click_enabled
    if kind == "SubscriptionChange":
        return webhook.subscription_change_enabled
    return False


def _is_spam_complaint(event) -> bool:
    """Whether the event is a spam complaint: by its own type or its bounce's (the bounce-type
    table's ``event``)."""
    if event.type == SPAM_COMPLAINT:
        return True
    row = BOUNCE_TYPES.get(event.bounce.type) if event.bounce else None
    return row is not None and row.event == SPAM_COMPLAINT


def include_content(webhook, event) -> bool:
    if _is_spam_complaint(event):
        return webhook.spam_complaint_include_content
    return webhook.bounce_include_content


def create_deliveries(event, webhooks, now) -> list[int]:
    """Create the missing delivery rows of ``event`` for ``webhooks``; the ids of new ones."""
    hooks = [w for w in webhooks if wants(w, event)]
    if not hooks:
        return []
    existing = set(
        WebhookDelivery.objects.filter(event=event, webhook__in=hooks).values_list(
            "webhook_id", flat=True
        )
    )
    missing = [w for w in hooks if w.pk not in existing]
    if not missing:
        return []
    WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(webhook=w, event=event, next_attempt_at=now) for w in missing],
        ignore_conflicts=True,
    )
    return list(
        WebhookDelivery.objects.filter(
            event=event, webhook__in=missing, attempts=0, status=WebhookDelivery.Status.PENDING
        ).values_list("pk", flat=True)
    )


def fan_out_wanted(stream_id: int | None) -> bool:
    """Whether a webhook may want the events of the stream (``messages.events.FAN_OUT_WANTED``):
    it has one, as far as this process knows. A webhook created in another process meanwhile is
    caught up by the sweep (``webhooks.deliveries.catch_up_new_webhooks``)."""
    return stream_id is not None and stream_id in streams_with_webhooks()


def on_event_committed(sender, *, event_id: int, stream_id: int | None = None, **kwargs) -> None:
    """Receiver of ``messages.events.event_committed`` (connected in ``WebhooksConfig``). An
    event of a stream that has no webhook costs no query (``streams_with_webhooks``)."""
    if stream_id is not None and stream_id not in streams_with_webhooks():
        return
    enqueue_event(event_id)


_hooked_streams: tuple[float, frozenset[int]] = (0.0, frozenset())
_hooked_lock = threading.Lock()


def streams_with_webhooks() -> frozenset[int]:
    """The streams that have at least one webhook, read at most once per
    ``WEBHOOK_STREAMS_CACHE_SECONDS`` per process (at once after a change in this process).
    A webhook added in another process is seen within that time; the events it misses meanwhile
    are posted by the sweep (``catch_up_new_webhooks``)."""
    global _hooked_streams
    expires, streams = _hooked_streams
    now = time.monotonic()
    if now < expires:
        return streams
    streams = frozenset(Webhook.objects.values_list("stream_id", flat=True).distinct())
    with _hooked_lock:
        _hooked_streams = (now + settings.WEBHOOK_STREAMS_CACHE_SECONDS, streams)
    return streams


def forget_webhook_streams(*args, **kwargs) -> None:
    """Receiver of Webhook saves and deletes (connected in ``WebhooksConfig``)."""
    global _hooked_streams
    with _hooked_lock:
        _hooked_streams = (0.0, frozenset())


def enqueue_event(event_id: int) -> None:
    """Queue the webhook posts for an event (see ``messages.events``). Never raises: the sweep
    finds an event whose dispatch failed."""
    try:
        ids = dispatch_event(event_id)
    except Exception:
        log.exception("could not dispatch webhooks for event %s (the sweep will)", event_id)
        return
    for delivery_id in ids:
        publish(delivery_id, 0)


def dispatch_event(event_id: int, now=None) -> list[int]:
    """Create the event's delivery rows and mark it dispatched; returns the ids of the new rows
    (not yet queued: a crash before they are queued leaves them to ``requeue_due``)."""
    event = MessageEvent.objects.select_related("server", "bounce").filter(pk=event_id).first()
    if event is None:
        return []
    ids = []
    if event.stream_id is not None:
        webhooks = list(Webhook.objects.filter(stream_id=event.stream_id))
        ids = create_deliveries(event, webhooks, now or timezone.now()) if webhooks else []
    mark_dispatched([event_id])
    return ids


def mark_dispatched(event_ids: list[int]) -> None:
    """Clear the outbox mark of events whose deliveries exist (one UPDATE)."""
    if event_ids:
        MessageEvent.objects.filter(pk__in=event_ids, webhooks_pending_since__isnull=False).update(
            webhooks_pending_since=None
        )


# --- Queueing -------------------------------------------------------------------------------------


def publish(delivery_id: int, attempts: int | None, countdown: float = 0) -> None:
    """Queue a try of a delivery. A broker failure loses nothing: the sweep finds the row."""
    try:
        current_app.tasks[POST_TASK].apply_async(
            (delivery_id, attempts), countdown=countdown or None, retry=False
        )
    except Exception as exc:
        log.warning("could not queue webhook delivery %s: %s", delivery_id, exc)
