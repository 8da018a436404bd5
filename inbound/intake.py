"""Inbound submissions, taken over from processing (``messages.intake``): parsed before the
transaction (``read``), stored as an ``InboundMessage`` inside it (``store``), its webhook queued
once it is committed. Every message ends Queued (then Processed or Failed by the webhook),
Processed (no InboundHookUrl: stored, shown by the API), Blocked (an inbound rule, or a spam score
above the server's InboundSpamThreshold), or Failed (it could not be parsed)."""

import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from inbound import posting
from inbound.addresses import mailbox_hash
from inbound.models import InboundMessage
from inbound.parsing import Inbound, parse
from inbound.rules import matching_rule
from messages.models import Submission
from streams.models import MessageStream, StreamType

log = logging.getLogger(__name__)


@dataclass
class Unreadable:
    """A message the parser failed on (a bug, or input nothing else caught)."""

    reason: str


def read(raw: bytes, rcpt_to: list[str], mail_from: str) -> Inbound | Unreadable:
    """Parse outside any transaction; never raises for what the message holds."""
    recipient = rcpt_to[0] if rcpt_to else ""
    try:
        return parse(raw, recipient, mail_from)
    except Exception as exc:
        log.exception("inbound message could not be parsed")
        return Unreadable(f"{type(exc).__name__}: {exc}"[:200])


def store(submission: Submission, raw: bytes, reading: Inbound | Unreadable) -> str:
    """The InboundMessage of ``submission`` (locked by the caller), once; returns the
    submission's new status."""
    if InboundMessage.objects.filter(submission=submission).exists():
        return Submission.Status.PROCESSED
    message = _new_message(submission, raw)
    if isinstance(reading, Unreadable):
        message.status = InboundMessage.Status.FAILED
        message.last_response = f"The message could not be parsed ({reading.reason})."
        message.save()
        return Submission.Status.FAILED
    server = submission.server
    payload = dict(reading.payload)
    payload["MessageID"] = str(submission.message_id)
    payload["MessageStream"] = message.stream.stream_id
    message.payload = payload
    message.spam_score = reading.spam_score
    _summarise(message, payload)
    message.status, message.blocked_reason = _verdict(server, payload["From"], reading.spam_score)
    if message.status == InboundMessage.Status.QUEUED and not server.inbound_hook_url:
        message.status = InboundMessage.Status.PROCESSED
        message.last_response = "No InboundHookUrl is set: stored without posting."
    if message.status == InboundMessage.Status.QUEUED:
        message.next_attempt_at = timezone.now()
    message.save()
    if message.status == InboundMessage.Status.QUEUED:
        pk = message.pk
        transaction.on_commit(lambda: posting.publish(pk, 0))
    return Submission.Status.PROCESSED


def fail(submission: Submission, error_name: str, raw: bytes | None) -> None:
    """Every try of processing ``submission`` failed (``error_name``): a Failed inbound message
    that says so, its source kept when it could be read."""
    if InboundMessage.objects.filter(submission=submission).exists():
        return
    message = _new_message(submission, raw or b"")
    message.status = InboundMessage.Status.FAILED
    message.last_response = f"The message could not be processed ({error_name})."
    message.save()


def _verdict(server, sender: str, score: float | None) -> tuple[str, str]:
    rule = matching_rule(server.pk, sender)
    if rule:
        return InboundMessage.Status.BLOCKED, f"The sender matches the inbound rule '{rule}'."
    threshold = server.inbound_spam_threshold
    if threshold and score is not None and score > threshold:
        return (
            InboundMessage.Status.BLOCKED,
            f"Its spam score {score:g} is above the InboundSpamThreshold {threshold}.",
        )
    return InboundMessage.Status.QUEUED, ""


def _new_message(submission: Submission, raw: bytes) -> InboundMessage:
    """The message with what the envelope says (enough to list it even if nothing else can be
    read), and the minimal JSON of the same."""
    recipient = submission.rcpt_to[0] if submission.rcpt_to else ""
    stream = submission.stream or _inbound_stream(submission.server_id)
    message = InboundMessage(
        message_id=submission.message_id,
        server_id=submission.server_id,
        stream=stream,
        submission=submission,
        received_at=submission.received_at,
        raw=raw,
        from_email=submission.mail_from[:320],
        original_recipient=recipient[:320],
        mailbox_hash=mailbox_hash(recipient)[:320],
    )
    message.payload = envelope_payload(message, stream.stream_id)
    return message


def envelope_payload(message: InboundMessage, stream_id: str) -> dict:
    """The inbound JSON of a message whose content could not be read: its envelope only."""
    sender = {"Email": message.from_email, "Name": "", "MailboxHash": ""}
    return {
        "From": message.from_email,
        "FromName": "",
        "FromFull": sender,
        "To": "",
        "ToFull": [],
        "Cc": "",
        "CcFull": [],
        "Bcc": "",
        "BccFull": [],
        "OriginalRecipient": message.original_recipient,
        "ReplyTo": "",
        "Subject": "",
        "MessageID": str(message.message_id),
        "Date": "",
        "MailboxHash": message.mailbox_hash,
        "TextBody": "",
        "HtmlBody": "",
        "StrippedTextReply": "",
        "Tag": "",
        "MessageStream": stream_id,
        "Headers": [],
        "Attachments": [],
    }


def _summarise(message: InboundMessage, payload: dict) -> None:
    message.from_email = payload["From"][:320]
    message.from_name = payload["FromName"][:998]
    message.to = payload["To"]
    message.cc = payload["Cc"]
    message.subject = payload["Subject"]
    message.date = payload["Date"][:998]
    message.mailbox_hash = payload["MailboxHash"][:320]


def _inbound_stream(server_id: int) -> MessageStream:
    return (
        MessageStream.objects.filter(server_id=server_id, message_stream_type=StreamType.INBOUND)
        .order_by("pk")
        .first()
    )
