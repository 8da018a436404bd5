"""Asynchronous bounces: what arrives at the bounce MX for a VERP address becomes a bounce.

Delivery status notifications, ARF spam complaints and auto-replies are classified by
``bounces.reports``; each becomes a bounce linked to the original message, with the report as its
dump. What it does to the recipient is its type's row in ``bounces.types``: a hard bounce about
the address deactivates the recipient (reactivatable), a spam complaint deactivates it for good,
the other types are recorded and deactivate nothing.

A report speaks only for the recipient whose return path it arrived at (``bounces.verp``: one
per recipient and message), whatever its body names, and only once: the same type of report
about the same recipient of the same message records nothing new (a replay, or a second delay
notice). Return paths take reports for ``core.crypto.tag_lifetime()`` after the message came in
(DELIVERY_GIVE_UP_AFTER + VERP_ACCEPT_DAYS), the per-message ones of mail sent before return
paths were per recipient included.
"""

import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from bounces.models import Bounce
from bounces.replies import address_rejected
from bounces.reports import Report, parse_report
from bounces.services import record_bounce
from bounces.types import Deactivation, bounce_type
from bounces.verp import Verp, read_verp
from core import crypto
from core.mime import declared_charset, decode_bytes, first_address, split_message
from domains.signing import is_bounce_domain
from messages.events import record_bounce_event
from messages.models import OutboundMessage, Recipient
from streams.models import Suppression
from streams.suppressions import suppress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BouncedMessage:
    """The message (and recipient) a VERP bounce address stands for, as the bounce MX needs it."""

    message_id: str
    server_id: int
    server_name: str
    stream_pk: int
    stream_id: str
    recipient_id: int | None = None  # None: a per-message return path (mail sent before)
    recipient: str = ""

    @property
    def reference(self) -> str:
        """Names the return path on the submission (the bounce MX takes one per transaction):
        the MessageID, then the Recipient row's id for a per-recipient one."""
        return f"{self.message_id}/{self.recipient_id}" if self.recipient_id else self.message_id


_MESSAGE_FIELDS = ("server_id", "server__name", "stream_id", "stream__stream_id", "received_at")


def message_for_bounce_address(address: str) -> BouncedMessage | None:
    """The message (and recipient) behind a VERP address of BOUNCE_DOMAIN or of a verified
    custom Return-Path domain (``domains.signing.is_bounce_domain``) that still takes reports;
    None for any other address."""
    domain = address.rpartition("@")[2]
    verp = read_verp(address)
    if verp is None or not is_bounce_domain(domain):
        return None
    if verp.recipient_id is None:
        found = (
            OutboundMessage.objects.filter(message_id=verp.message_id)
            .values(*_MESSAGE_FIELDS)
            .first()
        )
        email = ""
    else:
        row = (
            Recipient.objects.filter(pk=verp.recipient_id, message__message_id=verp.message_id)
            .values("email", *(f"message__{name}" for name in _MESSAGE_FIELDS))
            .first()
        )
        found = {name: row[f"message__{name}"] for name in _MESSAGE_FIELDS} if row else None
        email = row["email"] if row else ""
    if found is None or not takes_reports(found["received_at"]):
        return None
    return BouncedMessage(
        message_id=verp.message_id,
        server_id=found["server_id"],
        server_name=found["server__name"],
        stream_pk=found["stream_id"],
        stream_id=found["stream__stream_id"],
        recipient_id=verp.recipient_id,
        recipient=email,
    )


def takes_reports(received_at, now=None) -> bool:
    """Whether the return paths of a message received then still take reports: for the
    longest it is retried plus the report window (``core.crypto.tag_lifetime``), which is also
    how long the key that tagged them stays configured after a rotation."""
    return received_at + crypto.tag_lifetime() > (now or timezone.now())


def read_report(raw: bytes, rcpt_to: list[str]):
    """The report a bounce-MX submission holds, parsed, and its text (processing reads both
    before its transaction); None when no recipient is a VERP address."""
    verp = next((v for v in map(read_verp, rcpt_to) if v), None)
    if verp is None:
        return None
    text = decode_bytes(raw, declared_charset(split_message(raw)[0]))
    return parse_report(raw, verp_message_id=verp.message_id), text


@transaction.atomic
def process_report(submission, read=None) -> str:
    """Record the bounce a received report describes; returns the new submission status.

    The report is about the message and recipient its VERP address stands for (checked at RCPT
    by its keyed tag), whatever its body claims: a report naming another recipient of that
    message records nothing and stays on the submission, ``failed``, for operators (it
    contradicts the address it came to); one naming nobody, or an address that received nothing
    (where the recipient forwards to), is the recipient's own. A per-message return path (mail
    sent before they were per recipient) may affect only a recipient of that message the report
    names. A report of a type already recorded for that recipient of that message records
    nothing new (a replay)."""
    verp = next((v for v in map(read_verp, submission.rcpt_to) if v), None)
    if verp is None:
        return submission.Status.FAILED
    # ``read``: read_report's answer, when the caller parsed the report before the transaction.
    report, text = read or read_report(bytes(submission.raw), submission.rcpt_to)
    message = (
        OutboundMessage.objects.select_for_update(of=("self",))  # one report at a time
        .select_related("stream", "server")
        .filter(message_id=verp.message_id)
        .first()
    )
    if message is None:  # purged since: nothing to link the report to
        return submission.Status.FAILED
    email = _reported_recipient(submission, message, verp, report)
    if email is None:
        return submission.Status.FAILED
    if Bounce.objects.filter(
        server_id=message.server_id,
        message_id=message.message_id,
        email__iexact=email,
        type=report.type,
    ).exists():
        log.info(
            "report %s at the bounce MX: a %s for %s of message %s is already recorded",
            submission.message_id, report.type, email, message.message_id,
        )  # fmt: skip
        return submission.Status.PROCESSED
    kind = bounce_type(report.type)
    # A failure that is not of the address (policy, content…) deactivates nothing.
    deactivates = kind.deactivation == Deactivation.ALWAYS or (
        kind.deactivation == Deactivation.ADDRESS
        and address_rejected(0, report.status, report.diagnostic or report.status)
    )
    bounce = record_bounce(
        server=message.server,
        stream=message.stream,
        message_stream=message.stream.stream_id,
        type=report.type,
        email=email,
        message_id=message.message_id,
        from_address=first_address(message.from_address) or message.from_address,
        subject=message.subject,
        tag=message.tag,
        metadata=message.metadata,
        details=report.diagnostic or report.type,
        content=text,
        inactive=deactivates,
        can_activate=deactivates and kind.can_activate,
        bounced_at=submission.received_at,
    )
    if deactivates and email:
        reason = Suppression.Reason(kind.suppression)
        suppress(message.stream, email, reason, Suppression.Origin.RECIPIENT, bounce=bounce)
    if kind.terminal:
        rows = message.deliveries.filter(email__iexact=email)
        if verp.recipient_id is not None:
            rows = rows.filter(pk=verp.recipient_id)
        rows.update(status=Recipient.Status.BOUNCED, last_reply=report.diagnostic[:1000])
    record_bounce_event(bounce, outbound=message)
    return submission.Status.PROCESSED


def _reported_recipient(submission, message, verp: Verp, report: Report) -> str | None:
    """The address the report may affect ("" for none in particular), or None when it may
    affect nobody."""
    if verp.recipient_id is None:  # a per-message return path: the recipient the report names
        if report.recipient and not _is_recipient(message, report.recipient):
            log.warning(
                "report %s at the bounce MX names %s, not a recipient of message %s: ignored",
                submission.message_id, report.recipient, message.message_id,
            )  # fmt: skip
            return None
        return report.recipient or _only_recipient(message)
    own = message.deliveries.filter(pk=verp.recipient_id).values_list("email", flat=True).first()
    if own is None:
        return None
    named = report.recipient if report.recipient_stated else ""
    if named and named.lower() != own.lower() and _is_recipient(message, named):
        log.warning(
            "report %s at the return path of %s names %s, another recipient of message %s: "
            "ignored", submission.message_id, own, named, message.message_id,
        )  # fmt: skip
        return None
    return own


def _is_recipient(message: OutboundMessage, email: str) -> bool:
    wanted = email.strip().lower()
    return (
        wanted in {r.lower() for r in message.recipients}
        or message.deliveries.filter(email__iexact=wanted).exists()
    )


def _only_recipient(message: OutboundMessage) -> str:
    return message.recipients[0] if len(message.recipients) == 1 else ""
