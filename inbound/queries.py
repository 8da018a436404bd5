"""Finding inbound messages the way a user asks (``GET /messages/inbound``, compat §13.3), and
what the listing and the details show of each. The Messages API and the admin's inbound list
both filter through these functions, so they always agree.

Postmark's statuses are ours (``InboundMessage.Status``) capitalized. ``sent`` is also taken,
because postmark.js offers it for inbound listings too: an inbound message is "sent" once it was
posted to the application, which Postmark calls ``processed``.

A listing reads a few columns and a few keys of the stored inbound JSON, never its bodies or
its attachments' content (``list_rows``): 500 items of a listing cost what their summaries cost.
"""

import logging
import uuid
from datetime import datetime

from django.db.models import F, Func, JSONField, Q, QuerySet

from inbound.models import InboundMessage
from inbound.parsing import post_body

log = logging.getLogger(__name__)
_S = InboundMessage.Status
SENT = "sent"
STATUSES = (*_S.values, SENT)  # blocked, processed, queued, failed, scheduled, sent
STATUS_MEMBERS = {**{value: (value,) for value in _S.values}, SENT: (_S.PROCESSED,)}


def postmark_status(status: str) -> str:
    """``Processed``, ``Blocked``, ``Failed``, ``Queued`` or ``Scheduled``."""
    return status.capitalize() if status in _S.values else "Queued"


def as_message_id(value) -> uuid.UUID | None:
    """``value`` as a MessageID (a UUID in any of its spellings), or None."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None


def with_sender(queryset: QuerySet, value: str) -> QuerySet:
    """Messages from ``value``: an address (with "@") is the sender's address in any letter
    case; anything else is a part of the sender's address or display name."""
    value = value.strip()
    if "@" in value:
        return queryset.filter(from_email__iexact=value.strip("<>"))
    return queryset.filter(Q(from_email__icontains=value) | Q(from_name__icontains=value))


def with_recipient(queryset: QuerySet, value: str) -> QuerySet:
    """Messages received for ``value``: the address it came in through (the envelope
    recipient), or an address in its To or Cc header."""
    value = value.strip().strip("<>")
    return queryset.filter(
        Q(original_recipient__iexact=value) | Q(to__icontains=value) | Q(cc__icontains=value)
    )


def filter_inbound(
    queryset: QuerySet,
    *,
    message_id: uuid.UUID | None = None,
    recipient: str | None = None,
    from_email: str | None = None,
    tag: str | None = None,
    subject: str | None = None,
    mailbox_hash: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet:
    """``queryset`` narrowed by every filter given (None: no filter). ``since`` is inclusive,
    ``until`` exclusive; ``subject`` matches a part in any letter case; ``tag`` and
    ``mailbox_hash`` match exactly; ``status`` is one of ``STATUSES``."""
    if message_id is not None:
        queryset = queryset.filter(message_id=message_id)
    if recipient:
        queryset = with_recipient(queryset, recipient)
    if from_email:
        queryset = with_sender(queryset, from_email)
    if tag:
        queryset = queryset.filter(tag=tag)
    if subject:
        queryset = queryset.filter(subject__icontains=subject)
    if mailbox_hash:
        queryset = queryset.filter(mailbox_hash=mailbox_hash)
    if status:
        queryset = queryset.filter(status__in=STATUS_MEMBERS[status])
    if since is not None:
        queryset = queryset.filter(received_at__gte=since)
    if until is not None:
        queryset = queryset.filter(received_at__lt=until)
    return queryset


def search_inbound(queryset: QuerySet, term: str) -> QuerySet:
    """The admin's search box: a MessageID finds that message; an address finds the messages
    from it or received for it; any other text finds messages whose subject holds it."""
    term = (term or "").strip()
    if not term:
        return queryset
    message_id = as_message_id(term)
    if message_id is not None:
        return queryset.filter(message_id=message_id)
    if "@" in term and " " not in term:
        address = term.strip("<>")
        return queryset.filter(
            Q(from_email__iexact=address) | Q(original_recipient__iexact=address)
        )
    return queryset.filter(subject__icontains=term)


# --- What the API shows ----------------------------------------------------------------------

# The columns a list item reads (the rest comes from the stored JSON's small keys).
LIST_COLUMNS = (
    "id", "message_id", "from_email", "from_name", "to", "cc", "original_recipient", "subject",
    "date", "mailbox_hash", "tag", "status", "stream__stream_id",
)  # fmt: skip
# The stored JSON's large keys, which no list item shows.
LARGE_KEYS = ("TextBody", "HtmlBody", "StrippedTextReply", "Headers", "RawEmail")


class PayloadSummary(Func):
    """The stored JSON without its ``LARGE_KEYS``, made by the database in one pass over it (one
    read of a PostgreSQL TOAST value, one parse of SQLite's text) rather than one per key read,
    and sent to Python without the bodies."""

    output_field = JSONField()

    def __init__(self):
        super().__init__(F("payload"))

    def as_postgresql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        return f"({sql} - %s::text[])", [*params, list(LARGE_KEYS)]

    def as_sqlite(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        paths = ", ".join(["%s"] * len(LARGE_KEYS))
        return f"json_remove({sql}, {paths})", [*params, *(f"$.{k}" for k in LARGE_KEYS)]

    def as_sql(self, compiler, connection, **extra):  # another database: the whole JSON
        return compiler.compile(self.source_expressions[0])


def list_rows(queryset: QuerySet) -> QuerySet:
    """``values()`` rows holding what a list item is made of (see ``list_item``)."""
    return queryset.values(*LIST_COLUMNS, summary=PayloadSummary())


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _people(value) -> list[dict]:
    if not isinstance(value, list):
        return []
    return [_person(p) for p in value if isinstance(p, dict)]


def _person(value) -> dict:
    value = value if isinstance(value, dict) else {}
    return {
        "Email": _text(value.get("Email")),
        "Name": _text(value.get("Name")),
        "MailboxHash": _text(value.get("MailboxHash")),
    }


def _attachment(value, content: bool) -> dict:
    length = value.get("ContentLength")
    found = {
        "Name": _text(value.get("Name")),
        "ContentType": _text(value.get("ContentType")) or "application/octet-stream",
        "ContentLength": length if isinstance(length, int) else 0,
        "ContentID": _text(value.get("ContentID")),
    }
    if content:
        found["Content"] = _text(value.get("Content"))
    return found


def _attachments(value, content: bool = False) -> list[dict]:
    if not isinstance(value, list):
        return []
    return [_attachment(a, content) for a in value if isinstance(a, dict)]


def list_item(row: dict) -> dict:
    """One item of ``GET /messages/inbound`` from a ``list_rows`` row. Every field is always
    there (strict clients require them), taken from the columns when the stored JSON lacks it
    (a message that could not be parsed)."""
    summary = row.get("summary")
    summary = summary if isinstance(summary, dict) else {}
    from_full = summary.get("FromFull")
    if not isinstance(from_full, dict):
        from_full = {"Email": row["from_email"], "Name": row["from_name"]}
    return {
        "MessageID": str(row["message_id"]),
        "From": row["from_email"] or "",
        "FromName": row["from_name"] or "",
        "FromFull": _person(from_full),
        "To": row["to"] or "",
        "ToFull": _people(summary.get("ToFull")),
        "Cc": row["cc"] or "",
        "CcFull": _people(summary.get("CcFull")),
        "Bcc": _text(summary.get("Bcc")),
        "BccFull": _people(summary.get("BccFull")),
        "ReplyTo": _text(summary.get("ReplyTo")),
        "OriginalRecipient": row["original_recipient"] or "",
        "Subject": row["subject"] or "",
        "Date": row["date"] or "",
        "MailboxHash": row["mailbox_hash"] or "",
        "Tag": row["tag"] or "",
        "Status": postmark_status(row["status"]),
        "MessageStream": row["stream__stream_id"] or "",
        "Attachments": _attachments(summary.get("Attachments")),
    }


def _headers(value) -> list[dict]:
    if not isinstance(value, list):
        return []
    return [
        {"Name": _text(h.get("Name")), "Value": _text(h.get("Value"))}
        for h in value
        if isinstance(h, dict)
    ]


def details(message: InboundMessage) -> dict:
    """``GET /messages/inbound/{id}/details``: the list item plus the bodies, the reply text,
    the headers, why it was blocked, the attachments with their content (read again from the
    raw source, as for the webhook) and, when the server's RawEmailEnabled is on, the source."""
    payload = message.payload if isinstance(message.payload, dict) else {}
    row = {column: getattr(message, column) for column in LIST_COLUMNS if "__" not in column}
    row.update(stream__stream_id=message.stream.stream_id, summary=payload)
    found = list_item(row)
    raw_email = message.server.raw_email_enabled
    try:
        posted = post_body(payload, bytes(message.raw or b""), raw_email=raw_email)
    except Exception:  # a stored JSON the webhook could not post either: shown as it is
        log.exception("inbound message %s: attachments not readable", message.message_id)
        posted = {"Attachments": payload.get("Attachments"), "RawEmail": raw_text(message)}
    found.update(
        {
            "TextBody": _text(payload.get("TextBody")),
            "HtmlBody": _text(payload.get("HtmlBody")),
            "StrippedTextReply": _text(payload.get("StrippedTextReply")),
            "Headers": _headers(payload.get("Headers")),
            "BlockedReason": message.blocked_reason or "",
            "Attachments": _attachments(posted.get("Attachments"), content=True),
        }
    )
    if raw_email:
        found["RawEmail"] = _text(posted.get("RawEmail"))
    return found


def raw_text(message: InboundMessage) -> str:
    return bytes(message.raw or b"").decode("utf-8", "replace")
