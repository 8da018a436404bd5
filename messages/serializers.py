"""Outbound messages as Postmark's Messages API shows them (compat §7), as plain functions."""

import email.parser
import email.policy
import email.utils

from django.db.models import Q

from bounces.serializers import timestamp
from bounces.types import names_where
from messages.models import MessageEvent, OutboundMessage
from messages.queries import postmark_status

# Bounce records of a delay (the message is still being retried), not of a failure.
TRANSIENT_TYPES = names_where(lambda t: t.delay)
# Summaries of the events whose Details carry one, in Postmark's words.
OPENED_SUMMARY = "Email opened with {client}"
CLICKED_SUMMARY = "Link clicked with {client}"


def _names(header_values) -> dict[str, str]:
    """Lower-cased address → display name, from raw address header values."""
    names = {}
    for name, address in email.utils.getaddresses([str(v) for v in header_values]):
        if address and name:
            names.setdefault(address.lower(), name)
    return names


def _people(addresses, names: dict[str, str] | None = None) -> list[dict]:
    names = names or {}
    return [{"Email": a, "Name": names.get(a.lower(), "")} for a in addresses or []]


def _strings(values) -> dict:
    if not isinstance(values, dict):
        return {}
    return {str(k): "" if v is None else str(v) for k, v in values.items()}


# The columns a list item is made of (``values()`` of them is all ``GET /messages/outbound`` reads).
LIST_FIELDS = (
    "message_id", "tag", "to", "cc", "bcc", "recipients", "received_at", "from_address",
    "subject", "status", "track_opens", "track_links", "metadata", "stream_id",
)  # fmt: skip


def message_row_json(row: dict, stream_id: str, names=None, attachments=()) -> dict:
    """One item of ``GET /messages/outbound`` from the ``LIST_FIELDS`` of a message (a
    ``values()`` row), its stream's ID, and optionally the display names of its To and Cc
    addresses (lower-cased address → name) and its attachments' file names."""
    return {
        "MessageID": str(row["message_id"]),
        "Tag": row["tag"] or "",
        "To": _people(row["to"], names),
        "Cc": _people(row["cc"], names),
        "Bcc": _people(row["bcc"]),
        "Recipients": list(row["recipients"] or []),
        "ReceivedAt": timestamp(row["received_at"]),
        "From": row["from_address"] or "",
        "Subject": row["subject"] or "",
        "Attachments": list(attachments),
        "Status": postmark_status(row["status"]),
        "TrackOpens": bool(row["track_opens"]),
        "TrackLinks": row["track_links"] or "None",
        "Metadata": _strings(row["metadata"]),
        "MessageStream": stream_id,
        "Sandboxed": row["status"] == OutboundMessage.Status.SANDBOXED,
    }


def message_json(message: OutboundMessage, parsed=None) -> dict:
    """The list item of one message. ``parsed`` (its ``EmailMessage``, as ``parse_content``
    gives it) adds display names and attachments, as the details show them."""
    names, attachments = {}, []
    if parsed is not None:
        names = _names(parsed.get_all("to", []) + parsed.get_all("cc", []))
        attachments = [p.get_filename() for p in parsed.iter_attachments() if p.get_filename()]
    row = {name: getattr(message, name) for name in LIST_FIELDS}
    return message_row_json(row, message.stream.stream_id, names, attachments)


def parse_content(message: OutboundMessage):
    return email.parser.BytesParser(policy=email.policy.default).parsebytes(bytes(message.content))


def _body(parsed, subtype: str) -> str:
    try:
        part = parsed.get_body(preferencelist=(subtype,))
        return part.get_content() if part is not None else ""
    except (LookupError, ValueError, AttributeError, TypeError):
        return ""


def message_details_json(message: OutboundMessage) -> dict:
    """``GET /messages/outbound/{id}/details``: the list item plus the bodies, the raw message
    and its ``MessageEvents``, oldest first."""
    parsed = parse_content(message)
    return {
        **message_json(message, parsed),
        "TextBody": _body(parsed, "plain"),
        "HtmlBody": _body(parsed, "html"),
        "Body": bytes(message.content).decode("utf-8", "replace"),
        "MessageEvents": [event_json(e) for e in events_of(message)],
    }


def events_of(message: OutboundMessage) -> list[MessageEvent]:
    """The events of ``message``, oldest first: those that carry its MessageID (deliveries,
    bounces — SMTPApiErrors of its refused recipients included —, opens, clicks), and the
    subscription changes of its recipients on its stream since it was received (suppressions are
    per stream and address, so they name no message)."""
    recipients = [r.lower() for r in message.recipients or []]
    changes = Q(
        message_id__isnull=True,
        type=MessageEvent.Type.SUBSCRIPTION_CHANGE,
        stream_id=message.stream_id,
        recipient__in=recipients,
        occurred_at__gte=message.received_at,
    )
    return list(
        MessageEvent.objects.filter(server_id=message.server_id)
        .filter(Q(message_id=message.message_id) | changes)
        .select_related("bounce")
        .order_by("occurred_at", "id")
    )


def _client(data: dict) -> str:
    client = data.get("Client") if isinstance(data.get("Client"), dict) else {}
    return client.get("Name") or "an unknown client"


def event_json(event: MessageEvent) -> dict:
    """One of ``MessageEvents``: Postmark's Type and Details for our event."""
    data = event.data if isinstance(event.data, dict) else {}
    kind, details = "", {}
    if event.type == MessageEvent.Type.DELIVERY:
        kind = "Delivered"
        details = {
            "DeliveryMessage": event.details or "",
            "DestinationServer": data.get("DestinationServer") or "",
            "DestinationIP": data.get("DestinationIP") or "",
        }
    elif event.type in (MessageEvent.Type.BOUNCE, MessageEvent.Type.SPAM_COMPLAINT):
        bounce = event.bounce
        summary = event.details or (bounce.description if bounce is not None else "")
        if bounce is not None and bounce.type in TRANSIENT_TYPES and not bounce.inactive:
            kind, details = "Transient", {"Summary": summary}
        else:
            kind = "Bounced"
            details = {"Summary": summary, "BounceID": str(event.bounce_id or "")}
    elif event.type == MessageEvent.Type.OPEN:
        kind, details = "Opened", {"Summary": OPENED_SUMMARY.format(client=_client(data))}
    elif event.type == MessageEvent.Type.CLICK:
        kind = "LinkClicked"
        details = {
            "Summary": CLICKED_SUMMARY.format(client=_client(data)),
            "Link": data.get("OriginalLink") or "",
            "ClickLocation": data.get("ClickLocation") or "HTML",
        }
    elif event.type == MessageEvent.Type.SUBSCRIPTION_CHANGE:
        kind = "SubscriptionChanged"
        details = {
            "Origin": data.get("Origin") or "",
            "SuppressSending": str(bool(data.get("SuppressSending"))),
        }
    return {
        "Recipient": event.recipient,
        "Type": kind or event.type,
        "ReceivedAt": timestamp(event.occurred_at),
        "Details": details,
    }
