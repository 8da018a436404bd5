"""Finding outbound messages the way a user asks: by MessageID, recipient, sender, subject, tag,
status, date, stream and metadata. The Messages API (``GET /messages/outbound``) and the admin's
activity list both filter through these functions, so they always agree.

Postmark's three statuses are read from ours (``OutboundMessage.Status``):

- ``queued``    — still being delivered (``queued``);
- ``sent``      — handed to the receiving servers (``sent``; also ``bounced``: it was sent, the
  bounce is an event of the message);
- ``processed`` — processed but never sent: a Sandbox server's message (``sandboxed``) or one
  whose delivery was given up (``failed``).

A message refused by processing (every recipient an SMTPApiError) never became an outbound
message: like Postmark, which lists no rejected message, it is not found here; its SMTPApiError
bounces carry its MessageID (``GET /bounces?messageID=``).
"""

import uuid
from datetime import datetime

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.fields.json import KT, KeyTransform

from bounces.queries import as_message_id
from messages.models import MessageEvent, OutboundMessage, Recipient

QUEUED, SENT, PROCESSED = "queued", "sent", "processed"
STATUSES = (QUEUED, SENT, PROCESSED)
_S = OutboundMessage.Status
STATUS_MEMBERS = {
    QUEUED: (_S.QUEUED,),
    SENT: (_S.SENT, _S.BOUNCED),
    PROCESSED: (_S.SANDBOXED, _S.FAILED),
}
_POSTMARK_STATUS = {ours: theirs for theirs, members in STATUS_MEMBERS.items() for ours in members}


def postmark_status(status: str) -> str:
    """``Queued``, ``Sent`` or ``Processed``: the Status the API reports for a message whose
    status (``OutboundMessage.Status``) is ``status``."""
    return _POSTMARK_STATUS.get(status, QUEUED).capitalize()


def with_status(queryset: QuerySet, status: str) -> QuerySet:
    """Messages in Postmark status ``status`` (``queued``, ``sent`` or ``processed``)."""
    return queryset.filter(status__in=STATUS_MEMBERS[status])


def with_recipient(queryset: QuerySet, email: str) -> QuerySet:
    """Messages delivered (or to be delivered) to ``email``, in any letter case."""
    return queryset.filter(
        Exists(Recipient.objects.filter(message=OuterRef("pk"), email__iexact=email.strip()))
    )


def with_sender(queryset: QuerySet, value: str) -> QuerySet:
    """Messages from ``value``: an address (with "@") is the From address, in any letter case;
    anything else is a part of the From header (e.g. its display name)."""
    value = value.strip()
    if "@" in value:
        return queryset.filter(from_email=value.strip("<>").lower())
    return queryset.filter(from_address__icontains=value)


def with_metadata(queryset: QuerySet, key: str, value: str) -> QuerySet:
    """Messages whose metadata ``key`` is ``value``. On PostgreSQL a JSON containment test (the
    GIN index on metadata answers it); elsewhere the key's text."""
    if connection.vendor == "postgresql":
        return queryset.filter(metadata__contains={key: value})
    return queryset.alias(_metadata_value=KeyTransform(key, "metadata")).filter(
        _metadata_value=value
    )


def filter_messages(
    queryset: QuerySet,
    *,
    message_id: uuid.UUID | None = None,
    recipient: str | None = None,
    from_email: str | None = None,
    tag: str | None = None,
    status: str | None = None,
    subject: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    stream=None,
    metadata: dict[str, str] | None = None,
) -> QuerySet:
    """``queryset`` narrowed by every filter given (None: no filter). ``since`` is inclusive,
    ``until`` exclusive; ``subject`` matches a part, in any letter case; ``tag``
    matches exactly; ``stream`` is a MessageStream (or its primary key); ``from_email`` as
    ``with_sender``."""
    if message_id is not None:
        queryset = queryset.filter(message_id=message_id)
    if stream is not None:
        queryset = queryset.filter(stream=stream)
    if recipient:
        queryset = with_recipient(queryset, recipient)
    if from_email:
        queryset = with_sender(queryset, from_email)
    if tag:
        queryset = queryset.filter(tag=tag)
    if status:
        queryset = with_status(queryset, status)
    if subject:
        queryset = queryset.filter(subject__icontains=subject)
    if since is not None:
        queryset = queryset.filter(received_at__gte=since)
    if until is not None:
        queryset = queryset.filter(received_at__lt=until)
    for key, value in (metadata or {}).items():
        queryset = with_metadata(queryset, key, value)
    return queryset


# The admin's search by address finds at most this many (the newest) messages sent to it;
# messages from it are not limited.
MAX_SEARCH_RECIPIENT_MESSAGES = 10_000


def search_messages(queryset: QuerySet, term: str) -> QuerySet:
    """The admin's search box: a MessageID finds that message; an address finds the messages to
    it or from it; any other text finds messages whose subject holds it or whose tag it is."""
    term = (term or "").strip()
    if not term:
        return queryset
    message_id = as_message_id(term)
    if message_id is not None:
        return filter_messages(queryset, message_id=message_id)
    if "@" in term and " " not in term:
        # The recipient's messages as ids first (the recipients' index finds them), so that the
        # database can join both sides of the OR from indexes rather than test every message.
        to_them = Recipient.objects.filter(email__iexact=term).order_by("-message_id")
        ids = list(to_them.values_list("message_id", flat=True)[:MAX_SEARCH_RECIPIENT_MESSAGES])
        return queryset.filter(Q(pk__in=ids) | Q(from_email=term.strip("<>").lower()))
    return queryset.filter(Q(subject__icontains=term) | Q(tag=term))


# --- opens and clicks -----------------------------------------------------------------------------

OPEN, CLICK = MessageEvent.Type.OPEN, MessageEvent.Type.CLICK
# Query parameter → the key of the event's data it filters, compared exactly (case-insensitive).
AGENT_FILTERS = {
    "client_name": ("Client", "Name"),
    "client_company": ("Client", "Company"),
    "client_family": ("Client", "Family"),
    "os_name": ("OS", "Name"),
    "os_family": ("OS", "Family"),
    "os_company": ("OS", "Company"),
    "platform": ("Platform",),
    "country": ("Geo", "Country"),
    "region": ("Geo", "Region"),
    "city": ("Geo", "City"),
}


def filter_reader_events(
    queryset: QuerySet,
    *,
    kind: str,
    message_id: uuid.UUID | None = None,
    recipient: str | None = None,
    tag: str | None = None,
    stream=None,
    agent: dict[str, str] | None = None,
) -> QuerySet:
    """Open or Click events (``kind``) narrowed by the filters of ``/messages/outbound/opens``
    and ``/clicks``; ``agent`` maps names of ``AGENT_FILTERS`` to values."""
    queryset = queryset.filter(type=kind)
    if message_id is not None:
        queryset = queryset.filter(message_id=message_id)
    if stream is not None:
        queryset = queryset.filter(stream=stream)
    if recipient:
        queryset = queryset.filter(recipient__iexact=recipient.strip())
    if tag:
        queryset = queryset.filter(outbound__tag=tag)
    for name, value in (agent or {}).items():
        path = "__".join(("data", *AGENT_FILTERS[name]))
        queryset = queryset.alias(**{f"_{name}": KT(path)}).filter(**{f"_{name}__iexact": value})
    return queryset
