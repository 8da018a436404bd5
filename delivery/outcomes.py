"""Outcomes: what happened to each recipient, recorded while the worker still holds it, and
the message's status and next retry that follow from them.

Per recipient: 2xx → Delivery event; 4xx or no connection → retried on a backoff schedule, with a
Transient (or DnsError) bounce at the first deferral and a SoftBounce when giving up; 5xx → a
bounce, by the stage that refused (``bounces.replies.classify_smtp_failure``): at RCPT of the
type the reply gives, deactivating the address only when the reply is about the address; at MAIL
FROM or DATA for every recipient of the transaction, deactivating no one. A domain that does not
exist or publishes a null MX bounces at once; so does a non-ASCII address when the next hop does
not offer SMTPUTF8. An unexpected error is the message's own: counted on its recipients, retried,
and after ``DELIVERY_ERROR_LIMIT`` of them the recipients are ``failed`` with a SoftBounce.

An unavailable database is never the message's fault (``core.db``). A delivery (the remote 250 in
hand) is recorded as soon as the database answers again, waiting up to
``DELIVERY_DATABASE_PATIENCE`` seconds: a result to record, never a reason to send again. Any other
work cut short by the database gives its recipients back (``give_back``) and the task is retried.
"""

import logging
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bounces.replies import SmtpFailure, classify_smtp_failure
from bounces.services import record_bounce, storable
from bounces.types import DNS_ERROR, HARD_BOUNCE, SOFT_BOUNCE, TRANSIENT, bounce_type
from core.db import is_database_unavailable, retry_while_unavailable
from core.mime import first_address
from delivery.claims import TERMINAL, WAITING, Claim
from delivery.connections import Transcript
from delivery.transport import Host
from messages import metrics
from messages.events import record_bounce_event
from messages.models import MessageEvent, OutboundMessage, Recipient
from streams.models import Suppression
from streams.suppressions import suppress

log = logging.getLogger(__name__)


# --- results --------------------------------------------------------------------------------------


def _one_line(code: int, text: bytes | str) -> str:
    reply = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return storable(f"{code} {' '.join(reply.split())}")


def apply_reply(claim, recipient: Recipient, stage: str, code: int, text, transcript) -> None:
    reply = _one_line(code, text)
    if 200 <= code < 300:
        delivered(claim, recipient, reply)
        return
    enhanced = reply.split(" ", 2)[1] if reply.count(" ") >= 1 else ""
    failure = classify_smtp_failure(stage, code, enhanced if enhanced[:1].isdigit() else "", reply)
    if failure.permanent:
        bounced(claim, recipient, failure, reply, transcript)
    else:
        defer(claim, recipient, reply, transcript)


def delivered(claim: Claim, recipient: Recipient, reply: str) -> None:
    """The next hop took the message: its Delivery event and the result, recorded as soon as the
    database answers (the recipient must never be sent to again because of the database)."""
    fields = {"status": Recipient.Status.DELIVERED, "last_reply": reply,
              "updated_at": timezone.now()}  # fmt: skip
    try:
        recorded = retry_while_unavailable(
            lambda: claim.finish(recipient, MessageEvent.Type.DELIVERY, **fields),
            settings.DELIVERY_DATABASE_PATIENCE,
            f"recording the delivery to {recipient.email}",
        )
    except Exception as exc:
        if is_database_unavailable(exc):
            log.error("the delivery to %s could not be recorded: %s", recipient.email, exc)
            claim.in_doubt(recipient)
        raise
    if recorded:
        metrics.recipient_delivered(claim.message.received_at)
        log.info("delivered to %s: %s", recipient.email, reply)


def _bounce(message, recipient, bounce_type: str, details: str, transcript, **extra):
    dump = transcript.text() + "\r\n\r\n" + bytes(message.content).decode("utf-8", "replace")
    bounce = record_bounce(
        server=message.server,
        stream=message.stream,
        message_stream=message.stream.stream_id,
        type=bounce_type,
        email=recipient.email,
        message_id=message.message_id,
        from_address=first_address(message.from_address) or message.from_address,
        subject=message.subject,
        tag=message.tag,
        metadata=message.metadata,
        details=storable(details),
        content=storable(dump),
        **extra,
    )
    record_bounce_event(bounce, outbound=message)
    metrics.bounce_recorded(bounce_type)
    log.info("%s for %s: %s", bounce_type, recipient.email, " ".join(details.split())[:300])
    return bounce


def bounced(claim: Claim, recipient: Recipient, failure: SmtpFailure, reply: str, transcript):
    """A permanent failure: a bounce of the failure's type, never retried; the address is
    deactivated (HardBounce suppression, can be reactivated) only when the failure says so."""
    with transaction.atomic():
        if not claim.finish(recipient, status=Recipient.Status.BOUNCED, last_reply=reply):
            return
        kind = bounce_type(failure.type)
        bounce = _bounce(
            claim.message, recipient, failure.type, reply, transcript,
            inactive=failure.deactivates, can_activate=failure.deactivates and kind.can_activate,
        )  # fmt: skip
        if failure.deactivates:
            suppress(claim.message.stream, recipient.email, Suppression.Reason(kind.suppression),
                     Suppression.Origin.RECIPIENT, bounce=bounce)  # fmt: skip


def no_smtputf8(claim: Claim, recipient: Recipient, host: Host, transcript) -> None:
    """A non-ASCII local part needs SMTPUTF8 (RFC 6531), which the next hop does not offer."""
    reason = (
        f"Not sent: the address {recipient.email} needs SMTPUTF8 (RFC 6531), which the mail "
        f"server {host.host} does not offer"
    )
    transcript.append(f"-- {reason}")
    bounced(claim, recipient, SmtpFailure(HARD_BOUNCE, True, False), reason, transcript)


def retry_delay(attempts: int) -> float:
    """Seconds before attempt number ``attempts + 1``: RETRY_BASE doubling up to RETRY_MAX."""
    return min(
        settings.DELIVERY_RETRY_BASE * (2 ** max(attempts - 1, 0)), settings.DELIVERY_RETRY_MAX
    )


def defer(claim: Claim, recipient: Recipient, reason: str, transcript, dns: bool = False) -> None:
    message = claim.message
    now = timezone.now()
    reason = storable(reason)
    with transaction.atomic():
        if (now - message.received_at).total_seconds() >= settings.DELIVERY_GIVE_UP_AFTER:
            if claim.finish(recipient, status=Recipient.Status.FAILED, last_reply=reason):
                details = f"Gave up after {recipient.attempts} attempts: {reason}"
                _bounce(message, recipient, SOFT_BOUNCE, details, transcript)
            return
        first = not recipient.delayed_reported
        recorded = claim.finish(
            recipient,
            status=Recipient.Status.DEFERRED,
            last_reply=reason,
            delayed_reported=True,
            next_attempt_at=now + timedelta(seconds=retry_delay(recipient.attempts)),
        )
        if recorded and first:
            _bounce(message, recipient, DNS_ERROR if dns else TRANSIENT, reason, transcript)


# --- unexpected errors, and the database's -------------------------------------------------------


def _failed_by_errors(claim: Claim, recipient: Recipient, **fields) -> None:
    details = (
        f"The message could not be delivered: {recipient.errors} tries failed with an unexpected "
        f"error or were cut short, so delivery to this recipient stopped. Last: "
        f"{fields.get('last_reply') or recipient.last_reply or 'nothing recorded'}"
    )
    with transaction.atomic():
        if claim.finish(recipient, status=Recipient.Status.FAILED, **fields):
            _bounce(claim.message, recipient, SOFT_BOUNCE, details, Transcript())


def give_up_on_repeated_errors(claim: Claim) -> None:
    """Recipients whose earlier tries kept failing unexpectedly (or whose workers kept dying)
    are not tried again: they end ``failed``, with a bounce that says why."""
    for recipient in claim.recipients():
        if recipient.errors >= settings.DELIVERY_ERROR_LIMIT:
            _failed_by_errors(claim, recipient)


def unexpected_error(claim: Claim, exc: Exception) -> None:
    """Count an unexpected error on the recipients still held: retried on the backoff schedule,
    or ``failed`` once they reached DELIVERY_ERROR_LIMIT errors."""
    error = storable(f"{exc.__class__.__name__}: {exc}"[:1000])
    now = timezone.now()
    claim.reload()
    for recipient in claim.recipients():
        recipient.errors += 1
        fields = {
            "errors": recipient.errors,
            "last_reply": f"Unexpected error while delivering: {error}",
        }
        if recipient.errors >= settings.DELIVERY_ERROR_LIMIT:
            _failed_by_errors(claim, recipient, **fields)
        else:
            claim.finish(
                recipient,
                status=Recipient.Status.DEFERRED,
                next_attempt_at=now + timedelta(seconds=retry_delay(recipient.attempts)),
                **fields,
            )


def give_back(claims: list[Claim]) -> None:
    """The database failed while the claims' recipients were being sent to: once it answers
    (waiting up to DELIVERY_DATABASE_PATIENCE), those without a result are given back, with no
    error counted, for the retried task to take at once. Should it stay unavailable, their lease
    runs out instead (and the message the task was on counts an error)."""

    def release() -> int:
        return sum(claim.release() for claim in claims)

    try:
        released = retry_while_unavailable(
            release, settings.DELIVERY_DATABASE_PATIENCE, "giving back recipients"
        )
    except Exception as exc:
        log.error("recipients of %d message(s) not given back: %s", len(claims), exc)
        return
    log.warning("database unavailable: %d recipient(s) given back for the retry", released)


# --- status refresh -------------------------------------------------------------------------------


def refresh_status(message: OutboundMessage) -> str:
    return refresh_statuses([message])[message.pk]


def refresh_statuses(messages: list[OutboundMessage]) -> dict[int, str]:
    """Bring each message's status in line with its recipients' (one read for all of them,
    one UPDATE per status that changed); returns the statuses."""
    if not messages:
        return {}
    seen: dict[int, set[str]] = defaultdict(set)
    rows = Recipient.objects.filter(message__in=[m.pk for m in messages]).values_list(
        "message_id", "status"
    )
    for message_id, status in rows:
        seen[message_id].add(status)
    statuses, changed = {}, defaultdict(list)
    for message in messages:
        status = status_of(seen[message.pk])
        statuses[message.pk] = status
        if status != message.status:
            message.status = status
            changed[status].append(message.pk)
    for status, pks in changed.items():
        OutboundMessage.objects.filter(pk__in=pks).update(status=status)
    return statuses


def status_of(recipient_statuses: set[str]) -> str:
    """A message's status from its recipients': queued while any is waiting."""
    if recipient_statuses - TERMINAL:
        return OutboundMessage.Status.QUEUED
    if Recipient.Status.DELIVERED in recipient_statuses:
        return OutboundMessage.Status.SENT
    if recipient_statuses == {Recipient.Status.SANDBOXED}:
        return OutboundMessage.Status.SANDBOXED
    if Recipient.Status.BOUNCED in recipient_statuses:
        return OutboundMessage.Status.BOUNCED
    return OutboundMessage.Status.FAILED


# --- what comes next ------------------------------------------------------------------------------


def next_retry_in(message: OutboundMessage | int, now=None) -> float | None:
    """Seconds until the message's next waiting recipient is due (its next attempt, or the end
    of the lease of the worker holding it), if any waits."""
    now = now or timezone.now()
    message_id = message if isinstance(message, int) else message.pk
    waiting = Recipient.objects.filter(message_id=message_id, status__in=WAITING)
    due = [
        max([t for t in times if t is not None], default=now)
        for times in waiting.values_list("next_attempt_at", "leased_until")
    ]
    if not due:
        return None
    return max((min(due) - now).total_seconds(), 0.0)
