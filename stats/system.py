"""Where mail waits now and how that changed, as plain functions: the queue gauges (the ones
``/metrics`` exposes, read from the database) with their trend from the samples the beat stores
(``outbound.tasks.sample_queues``), the oldest waiting item of each queue, deferred recipients by
destination domain, pending webhook posts by URL, unfinished recipients by status and the domains
whose DNS records broke. The admin's System page shows them (``postmark_site.system``)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from django.db.models import Count, Max, Min
from django.utils import timezone

from domains import grace
from domains.grace import DKIM
from domains.models import Domain
from messages.metrics import WAITING_SUBMISSIONS, all_queue_states
from messages.models import QueueSample, Recipient, Submission
from servers.scoping import change_url
from webhooks.models import WebhookDelivery

TREND_HOURS = 24
LABELS = {
    "submissions_waiting": "Submissions waiting for processing",
    "recipients_deferred": "Recipients deferred (waiting for a retry)",
    "webhook_deliveries_pending": "Webhook posts pending",
    "inbound_messages_waiting": "Inbound messages waiting to be posted",
}
BREAKDOWN_ROWS = 20
DEFERRED_SCAN_LIMIT = 20000


@dataclass
class Gauge:
    name: str
    label: str
    count: int
    oldest_age_seconds: float
    oldest_url: str = ""
    hour_ago: int | None = None
    points: list[tuple] = field(default_factory=list)  # (taken_at, count)

    @property
    def change(self) -> int | None:
        return None if self.hour_ago is None else self.count - self.hour_ago

    @property
    def oldest_age(self) -> str:
        return duration(self.oldest_age_seconds) if self.count else "—"


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


def gauges(now=None) -> list[Gauge]:
    now = now or timezone.now()
    states = all_queue_states(now)
    samples = list(
        QueueSample.objects.filter(taken_at__gte=now - timedelta(hours=TREND_HOURS))
        .order_by("taken_at")
        .values_list("taken_at", "values")
    )
    hour_ago = [values for taken_at, values in samples if taken_at <= now - timedelta(hours=1)]
    oldest = oldest_items()
    result = []
    for name, state in states.items():
        gauge = Gauge(name, LABELS.get(name, name), state["count"], state["oldest_age_seconds"])
        gauge.points = [(t, v.get(name, {}).get("count", 0)) for t, v in samples]
        if hour_ago:
            gauge.hour_ago = hour_ago[-1].get(name, {}).get("count")
        gauge.oldest_url = oldest.get(name, "")
        result.append(gauge)
    return result


def oldest_items() -> dict[str, str]:
    """Admin links to the oldest waiting item of each queue."""
    links = {}
    submission = (
        Submission.objects.filter(status__in=WAITING_SUBMISSIONS)
        .order_by("received_at")
        .only("pk")
        .first()
    )
    if submission:
        links["submissions_waiting"] = change_url(submission)
    recipient = (
        Recipient.objects.filter(status=Recipient.Status.DEFERRED)
        .select_related("message")
        .only("message__id")
        .order_by("message__received_at")
        .first()
    )
    if recipient:
        links["recipients_deferred"] = change_url(recipient.message)
    delivery = (
        WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING)
        .order_by("created_at")
        .only("pk")
        .first()
    )
    if delivery:
        links["webhook_deliveries_pending"] = change_url(delivery)
    return links


@dataclass
class Destination:
    domain: str
    recipients: int = 0
    oldest_received_at: object = None
    next_attempt_at: object = None
    last_reply: str = ""


def deferred_by_destination() -> list[Destination]:
    """Deferred recipients grouped by the domain they go to, most first (the domain is read
    in Python from the addresses: at most DEFERRED_SCAN_LIMIT, oldest first)."""
    rows = (
        Recipient.objects.filter(status=Recipient.Status.DEFERRED)
        .order_by("message__received_at")
        .values_list("email", "message__received_at", "next_attempt_at", "last_reply")[
            :DEFERRED_SCAN_LIMIT
        ]
    )
    by_domain: dict[str, Destination] = {}
    for email, received_at, next_attempt_at, last_reply in rows:
        domain = email.rpartition("@")[2].lower()
        entry = by_domain.setdefault(domain, Destination(domain))
        entry.recipients += 1
        if entry.oldest_received_at is None:
            entry.oldest_received_at = received_at
            entry.last_reply = last_reply
        if next_attempt_at and (
            entry.next_attempt_at is None or next_attempt_at < entry.next_attempt_at
        ):
            entry.next_attempt_at = next_attempt_at
    return sorted(by_domain.values(), key=lambda d: (-d.recipients, d.domain))[:BREAKDOWN_ROWS]


def webhook_backlog_by_url() -> list[dict]:
    """Pending webhook posts grouped by URL (shown without any user:password it holds)."""
    rows = list(
        WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING)
        .values("webhook_id", "webhook__url", "webhook__stream__server__name")
        .annotate(
            pending=Count("pk"),
            oldest=Min("created_at"),
            last_try=Max("updated_at"),
            last_status=Max("last_status_code"),
        )
        .order_by("-pending", "webhook__url")[:BREAKDOWN_ROWS]
    )
    for row in rows:
        row["url"] = without_credentials(row["webhook__url"])
    return rows


def without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def recipients_by_status() -> dict[str, int]:
    """Recipients not finished yet, by status (pending, sending, deferred)."""
    counts = defaultdict(int)
    unfinished = [Recipient.Status.PENDING, Recipient.Status.SENDING, Recipient.Status.DEFERRED]
    for status, n in (
        Recipient.objects.filter(status__in=unfinished)
        .values_list("status")
        .annotate(n=Count("pk"))
    ):
        counts[status] = n
    return {
        str(label): counts[value]
        for value, label in Recipient.Status.choices
        if value in unfinished
    }


def broken_domains(limit: int = 50) -> list[Domain]:
    """Domains whose DNS records broke at their last check (``Domain.dns_problem``), the longest
    broken first: their mail is refused or goes out unaligned until the records are fixed, or,
    while a verified record's grace period lasts, goes on as before (``domain.failing``: what
    fails since when, ``domain.dkim_grace``: DKIM still verified although it failed)."""
    found = list(grace.failing_domains(limit))
    for domain in found:
        domain.failing = grace.failing(domain)
        domain.dkim_grace = next(
            (f for f in domain.failing if f.in_grace and f.record == DKIM), None
        )
    return found


def samples_taken(now=None) -> int:
    """How many samples the trend is drawn from (those of the last TREND_HOURS hours)."""
    now = now or timezone.now()
    return QueueSample.objects.filter(taken_at__gte=now - timedelta(hours=TREND_HOURS)).count()
