"""Asynchronous bounces: what arrives at the bounce MX for a VERP address becomes a bounce.

Delivery status notifications, ARF spam complaints and auto-replies are classified by
``bounces.reports``; each becomes a bounce linked to the original message, with the report as its
dump. What it does to the recipient is its type's row in ``bounces.types``: a hard bounce about
the address deactivates the recipient (reactivatable), a spam complaint deactivates it for good,
the other types are recorded and deactivate nothing.
"""

import logging
from dataclasses import dataclass

from django.db import transaction

from bounces.replies import address_rejected
from bounces.reports import parse_report
from bounces.services import record_bounce
from bounces.types import Deactivation, bounce_type
from bounces.verp import message_id_from_verp
from core.mime import declared_charset, decode_bytes, first_address, split_message
from domains.signing import is_bounce_domain
from messages.events import record_bounce_event
from messages.models import OutboundMessage, Recipient
from streams.models import Suppression
from streams.suppressions import suppress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BouncedMessage:
    """The message a VERP bounce address stands for, as the bounce MX needs it."""

    message_id: str
    server_id: int
    server_name: str
    stream_pk: int
    stream_id: str


def message_for_bounce_address(address: str) -> BouncedMessage | None:
    """The message behind a VERP address of BOUNCE_DOMAIN or of a verified custom Return-Path
    domain (``domains.signing.is_bounce_domain``); None for any other address."""
    domain = address.rpartition("@")[2]
    message_id = message_id_from_verp(address)
    if not message_id or not is_bounce_domain(domain):
        return None
    found = (
        OutboundMessage.objects.filter(message_id=message_id)
        .values("server_id", "server__name", "stream_id", "stream__stream_id")
        .first()
    )
    if found is None:
        return None
    return BouncedMessage(
        message_id=message_id,
        server_id=found["server_id"],
        server_name=found["server__name"],
        stream_pk=found["stream_id"],
        stream_id=found["stream__stream_id"],
    )


def read_report(raw: bytes, rcpt_to: list[str]):
    """The report a bounce-MX submission holds, parsed, and its text (processing reads both
    before its transaction); None when no recipient is a VERP address."""
    verp_id = next((m for m in (message_id_from_verp(r) for r in rcpt_to) if m), "")
    if not verp_id:
        return None
    text = decode_bytes(raw, declared_charset(split_message(raw)[0]))
    return parse_report(raw, verp_message_id=verp_id), text


@transaction.atomic
def process_report(submission, read=None) -> str:
    """Record the bounce a received report describes; returns the new submission status.

    The report is about the message its VERP address stands for (checked at RCPT by its keyed
    tag), whatever its body claims, and may only affect that message's recipients: a report that
    names anyone else deactivates nobody and stays on the submission, ``failed``, for operators
    (anyone who received one message could otherwise suppress any address)."""
    raw = bytes(submission.raw)
    verp_id = next((m for m in (message_id_from_verp(r) for r in submission.rcpt_to) if m), "")
    if not verp_id:
        return submission.Status.FAILED
    # ``read``: read_report's answer, when the caller parsed the report before the transaction.
    report, text = read or read_report(raw, submission.rcpt_to)
    message = (
        OutboundMessage.objects.select_related("stream", "server")
        .filter(message_id=verp_id)
        .first()
    )
    if message is None:  # purged since: nothing to link the report to
        return submission.Status.FAILED
    email = report.recipient or _only_recipient(message)
    if report.recipient and not _is_recipient(message, report.recipient):
        log.warning(
            "report %s at the bounce MX names %s, not a recipient of message %s: ignored",
            submission.message_id, report.recipient, message.message_id,
        )  # fmt: skip
        return submission.Status.FAILED
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
        Recipient.objects.filter(message=message, email__iexact=email).update(
            status=Recipient.Status.BOUNCED, last_reply=report.diagnostic[:1000]
        )
    record_bounce_event(bounce, outbound=message)
    return submission.Status.PROCESSED


def _is_recipient(message: OutboundMessage, email: str) -> bool:
    wanted = email.strip().lower()
    return (
        wanted in {r.lower() for r in message.recipients}
        or message.deliveries.filter(email__iexact=wanted).exists()
    )


def _only_recipient(message: OutboundMessage) -> str:
    return message.recipients[0] if len(message.recipients) == 1 else ""
