"""One message's timeline, as plain data: accepted (where and how), processed, then every event
of the message (delivered, bounced, opened, clicked, …) and the webhook posts made for them,
oldest first. The admin's message page shows it; three or four queries per message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.urls import reverse

from messages.models import MessageEvent, OutboundMessage
from streams.models import Endpoint
from webhooks.models import WebhookAttempt


@dataclass
class TimelineEntry:
    at: datetime
    label: str
    detail: str = ""
    kind: str = ""
    recipient: str = ""
    link: str = ""


def webhook_attempts(events) -> list[TimelineEntry]:
    """The webhook POSTs made for ``events`` (WebhookAttempt → WebhookDelivery → MessageEvent)."""
    rows = (
        WebhookAttempt.objects.filter(delivery__event__in=events)
        .select_related("delivery")
        .order_by("started_at", "id")
    )
    entries = []
    for attempt in rows:
        status = attempt.status_code
        outcome = f"HTTP {status}" if status else (attempt.error or "no answer")
        entries.append(
            TimelineEntry(
                attempt.started_at,
                f"Webhook attempt {attempt.number}",
                f"{outcome} (webhook {attempt.delivery.webhook_id})",
                "webhook",
            )
        )
    return entries


def accepted_how(submission) -> str:
    """Where and how a message came in, for its timeline."""
    tls = ", " + submission.tls_version if submission.tls_version else ", no TLS"
    if submission.endpoint == Endpoint.API:
        return f"through the HTTP send API from {submission.client_address} (Server API token{tls})"
    return (
        f"over SMTP from {submission.client_address} ({submission.get_endpoint_display()}"
        f" endpoint, {submission.get_credential_kind_display()}{tls})"
    )


def reader_detail(event) -> str:
    """An open's or a click's reader: client, platform and system, and a click's link."""
    if event.type not in (MessageEvent.Type.OPEN, MessageEvent.Type.CLICK):
        return ""
    data = event.data if isinstance(event.data, dict) else {}

    def name(key):
        value = data.get(key)
        return value.get("Name", "") if isinstance(value, dict) else ""

    parts = [f"{name('Client') or 'Unknown client'} on {name('OS') or 'an unknown system'}",
             f"{data.get('Platform') or 'Unknown'} platform"]  # fmt: skip
    if event.type == MessageEvent.Type.CLICK:
        parts.append(f"{data.get('ClickLocation') or 'a'} link {data.get('OriginalLink', '')}")
    elif data.get("FirstOpen"):
        parts.append("first open")
    return "; ".join(parts)


def message_timeline(message: OutboundMessage) -> list[TimelineEntry]:
    """Accepted, processed, then every event of the message (delivered, bounced, opened, clicked,
    …) and its webhook attempts; oldest first. Three or four queries."""
    entries: list[TimelineEntry] = []
    submission = message.submission
    if submission is not None:
        entries.append(
            TimelineEntry(
                submission.received_at,
                "Accepted",
                accepted_how(submission),
                "accepted",
            )
        )
    else:
        entries.append(TimelineEntry(message.received_at, "Accepted", "", "accepted"))
    entries.append(
        TimelineEntry(
            message.processed_at,
            "Processed",
            f"{len(message.recipients)} recipient(s), {message.size} bytes",
            "processed",
        )
    )
    events = list(
        MessageEvent.objects.filter(
            server_id=message.server_id, message_id=message.message_id
        ).order_by("occurred_at", "id")
    )
    for event in events:
        link = ""
        if event.bounce_id:
            link = reverse("admin:bounces_bounce_change", args=[event.bounce_id])
        entries.append(
            TimelineEntry(
                event.occurred_at,
                event.get_type_display(),
                reader_detail(event) or event.details,
                event.type.lower(),
                event.recipient,
                link,
            )
        )
    if events:
        entries.extend(webhook_attempts(events))
    entries.sort(key=lambda e: e.at)
    return entries
