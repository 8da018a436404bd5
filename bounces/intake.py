"""Asynchronous bounces: what arrives at the bounce MX for a VERP address becomes a bounce.

Delivery status notifications, ARF spam complaints and auto-replies are classified by
``bounces.reports``; each becomes a bounce linked to the original message, with the report as its
dump. A hard bounce deactivates the recipient (reactivatable); a spam complaint deactivates it for
good; the other types are recorded and deactivate nothing.
"""

from django.db import transaction

from streams.events import record_bounce_event
from streams.mime import addresses, declared_charset, decode_bytes, split_message
from streams.models import OutboundMessage, Recipient, Suppression
from streams.suppressions import suppress

from .reports import message_id_from_verp, parse_report
from .services import record_bounce

DEACTIVATES = {
    "HardBounce": (Suppression.Reason.HARD_BOUNCE, True),
    "SpamComplaint": (Suppression.Reason.SPAM_COMPLAINT, False),
}


@transaction.atomic
def process_report(submission) -> str:
    """Record the bounce a received report describes; returns the new submission status."""
    raw = bytes(submission.raw)
    verp_id = next((message_id_from_verp(r) for r in submission.rcpt_to if r), "")
    report = parse_report(raw, verp_message_id=verp_id)
    message = (
        OutboundMessage.objects.select_related("stream", "server")
        .filter(message_id=report.message_id or verp_id)
        .first()
    )
    if message is None:  # purged since: nothing to link the report to
        return submission.Status.FAILED
    email = report.recipient or _only_recipient(message)
    deactivation = DEACTIVATES.get(report.type)
    bounce = record_bounce(
        server=message.server,
        stream=message.stream,
        message_stream=message.stream.stream_id,
        type=report.type,
        email=email,
        message_id=message.message_id,
        from_address=_first_address(message.from_address),
        subject=message.subject,
        tag=message.tag,
        metadata=message.metadata,
        details=report.diagnostic or report.type,
        content=decode_bytes(raw, declared_charset(split_message(raw)[0])),
        inactive=deactivation is not None,
        can_activate=bool(deactivation and deactivation[1]),
        bounced_at=submission.received_at,
    )
    if deactivation is not None and email:
        suppress(
            message.stream, email, deactivation[0], Suppression.Origin.RECIPIENT, bounce=bounce
        )
    if report.type in ("HardBounce", "SoftBounce", "BadEmailAddress", "Blocked", "DnsError"):
        Recipient.objects.filter(message=message, email__iexact=email).update(
            status=Recipient.Status.BOUNCED, last_reply=report.diagnostic[:1000]
        )
    record_bounce_event(bounce, outbound=message)
    return submission.Status.PROCESSED


def _only_recipient(message: OutboundMessage) -> str:
    return message.recipients[0] if len(message.recipients) == 1 else ""


def _first_address(value: str) -> str:
    found = addresses([value])
    return found[0] if found else value
