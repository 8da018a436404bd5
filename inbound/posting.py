"""The inbound webhook: the message's JSON POSTed to the server's InboundHookUrl.

``post`` claims the message with a short lease, POSTs outside any transaction through the
webhooks' HTTP client (its SSRF guard: the same as every webhook's), credentials in the URL sent
as Basic auth, then records the outcome (compat §13.2):

- 2xx: Processed;
- 403: Failed at once (no retry);
- a URL the SSRF guard refuses: Failed at once (retrying cannot change it);
- anything else, a timeout or no answer: Scheduled, retried after 1, 5, 10, 10, 10, 15, 30, 60,
  120 and 360 minutes (INBOUND_RETRY_DELAYS); after the last, Failed, recorded as an
  InboundError bounce (100008).

Tasks carry only the row's id and the attempt count they were queued for; the periodic ``sweep``
queues again every due message whose task was lost (a countdown is capped at
WEBHOOK_MAX_COUNTDOWN, so long waits live in the database).
"""

import base64
import logging
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bounces.services import record_bounce
from core import leases, queues
from core.logcontext import about_message
from inbound import metrics
from inbound.models import InboundMessage
from inbound.parsing import post_body
from messages.events import record_bounce_event
from webhooks.client import Result, http_post
from webhooks.guard import split_credentials
from webhooks.signing import encode

log = logging.getLogger(__name__)

POST_TASK = "inbound.post"
WAITING = (InboundMessage.Status.QUEUED, InboundMessage.Status.SCHEDULED)
RESPONSE_EXCERPT = 500
INBOUND_ERROR = "InboundError"


def publish(message_pk: int, attempts: int | None, countdown: float = 0) -> None:
    """Queue a try. A broker failure loses nothing: the sweep finds the row."""
    try:
        current_app.tasks[POST_TASK].apply_async(
            (message_pk, attempts), countdown=countdown or None, retry=False
        )
    except Exception as exc:
        log.warning("could not queue inbound message %s: %s", message_pk, exc)


def _lease_seconds() -> float:
    return float(settings.INBOUND_WEBHOOK_TIMEOUT) * 2 + 30


def post(message_pk: int, attempts: int | None = None) -> str:
    """One try of posting a message if it is due; returns its status afterwards, or
    "skipped" (not waiting, not due, taken by another worker, or a stale task)."""
    now = timezone.now()
    claim = InboundMessage.objects.filter(
        pk=message_pk, status__in=WAITING, next_attempt_at__lte=now
    )
    if attempts is not None:
        claim = claim.filter(attempts=attempts)
    if not leases.take(claim, _lease_seconds(), now):
        _requeue_early_task(message_pk, attempts, now)
        return "skipped"
    message = InboundMessage.objects.select_related("server", "stream").get(pk=message_pk)
    with about_message(message.message_id, message.server_id, message.stream.stream_id):
        url = message.server.inbound_hook_url
        if not url:
            return _finish(
                message,
                InboundMessage.Status.PROCESSED,
                last_response="No InboundHookUrl is set: stored without posting.",
            )
        raw_email = message.server.raw_email_enabled
        try:
            body = encode(post_body(message.payload, bytes(message.raw), raw_email=raw_email))
        except Exception as exc:  # a bug: the message fails with the reason, never loops
            log.exception("the inbound webhook's body could not be made")
            reason = f"The webhook's body could not be made ({type(exc).__name__})."
            return _finish(message, InboundMessage.Status.FAILED, last_response=reason)
        target, user, password = split_credentials(url)
        headers = {"Content-Type": "application/json", "User-Agent": settings.WEBHOOK_USER_AGENT}
        if user or password:
            pair = f"{user}:{password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        result = http_post(target, body, headers, timeout=settings.INBOUND_WEBHOOK_TIMEOUT)
        return record(message, result)


def record(message: InboundMessage, result: Result) -> str:
    """The outcome of one try (see the module's note); returns the new status."""
    metrics.post_made(result.status_code)
    number = message.attempts + 1
    response = _response(result)
    if result.ok:
        return _finish(message, InboundMessage.Status.PROCESSED, number, result, response)
    if result.status_code == 403 or result.refused:
        return _failed(message, number, result, response)
    delays = settings.INBOUND_RETRY_DELAYS
    if number > len(delays):
        return _failed(message, number, result, response)
    delay = delays[number - 1]
    InboundMessage.objects.filter(pk=message.pk).update(
        status=InboundMessage.Status.SCHEDULED,
        attempts=number,
        leased_until=None,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        last_response_code=result.status_code,
        last_response=response,
        updated_at=timezone.now(),
    )
    log.info("inbound webhook failed (%s), retry %d in %ss", response[:80], number, delay)
    publish(message.pk, number, countdown=min(delay, settings.WEBHOOK_MAX_COUNTDOWN))
    return InboundMessage.Status.SCHEDULED


def _response(result: Result) -> str:
    if result.status_code is not None:
        return f"HTTP {result.status_code}: {result.excerpt[:RESPONSE_EXCERPT]}".strip()
    return result.error[:RESPONSE_EXCERPT]


def _finish(message, status, number=None, result=None, last_response="") -> str:
    InboundMessage.objects.filter(pk=message.pk).update(
        status=status,
        attempts=message.attempts if number is None else number,
        leased_until=None,
        next_attempt_at=None,
        last_response_code=result.status_code if result else None,
        last_response=last_response,
        updated_at=timezone.now(),
    )
    return status


def _failed(message: InboundMessage, number: int, result: Result, response: str) -> str:
    """Failed for good: recorded as an InboundError bounce (Postmark's "Inbound Error")."""
    with transaction.atomic():
        _finish(message, InboundMessage.Status.FAILED, number, result, response)
        bounce = record_bounce(
            server=message.server,
            stream=message.stream,
            message_stream=message.stream.stream_id,
            type=INBOUND_ERROR,
            email=message.original_recipient,
            message_id=message.message_id,
            from_address=message.from_email,
            subject=message.subject,
            details=f"The inbound webhook failed after {number} tries: {response}"[:1000],
            bounced_at=timezone.now(),
        )
        record_bounce_event(bounce)
    log.warning("inbound webhook failed for good after %d tries: %s", number, response[:200])
    return InboundMessage.Status.FAILED


def _requeue_early_task(message_pk: int, attempts: int | None, now) -> None:
    """A countdown capped below its retry delay wakes up early: queue it for the rest."""
    if attempts is None or current_app.conf.task_always_eager:
        return
    row = (
        InboundMessage.objects.filter(pk=message_pk, status__in=WAITING, attempts=attempts)
        .values("next_attempt_at")
        .first()
    )
    if row and row["next_attempt_at"] and row["next_attempt_at"] > now:
        remaining = (row["next_attempt_at"] - now).total_seconds()
        publish(message_pk, attempts, countdown=min(remaining, settings.WEBHOOK_MAX_COUNTDOWN))


def sweep(grace_seconds: float | None = None, now=None) -> int:
    """Queue again the waiting messages due ``grace_seconds`` ago that nobody is posting (a lost
    task, a crashed worker, a broker restart), at most SWEEP_MAX_REQUEUE a run and none while
    the queue is busy (``core.queues``)."""
    now = now or timezone.now()
    grace = settings.SWEEP_AFTER_SECONDS if grace_seconds is None else grace_seconds
    limit = queues.requeue_budget(POST_TASK)
    if not limit:
        return 0
    due = leases.free(
        InboundMessage.objects.filter(
            status__in=WAITING, next_attempt_at__lte=now - timedelta(seconds=grace)
        ),
        now,
    )
    rows = list(due.order_by("next_attempt_at").values_list("pk", "attempts")[:limit])
    for pk, attempts in rows:
        # Due "now" again, so that the next sweep leaves it alone for another grace period.
        InboundMessage.objects.filter(pk=pk, attempts=attempts).update(next_attempt_at=now)
        publish(pk, attempts)
    return len(rows)
