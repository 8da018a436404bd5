"""The pipeline's metrics: what the workers did with accepted mail, and gauges of what waits,
read from the database (the source of truth) when they are scraped.

Counters move only once the work they count is committed (``transaction.on_commit``), so a
rolled-back try or a task run twice counts nothing twice: ``accepted = processed + failed``
holds between the gateway's and the workers' counters.
"""

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min
from django.utils import timezone

from core.metrics import LATENCY_BUCKETS, Collector, Counter, Histogram
from messages.models import QueueSample, Recipient, Submission

log = logging.getLogger(__name__)

PROCESSED = Counter(
    "postmark_processing_submissions_total",
    "Accepted submissions processed, by result: processed (a message to deliver) or failed "
    "(SMTPApiError records only).",
    ["result"],
)
PROCESSING_LATENCY = Histogram(
    "postmark_processing_latency_seconds",
    "Seconds from the accept (the 250 or the API's answer) to the end of processing.",
    buckets=LATENCY_BUCKETS,
)
DELIVERY_OUTCOMES = Counter(
    "postmark_delivery_outcomes_total",
    "Final or interim delivery results per recipient: Delivered, or the bounce type recorded "
    "(HardBounce, SoftBounce, Transient, DnsError, ...).",
    ["outcome"],
)
DELIVERY_LATENCY = Histogram(
    "postmark_delivery_latency_seconds",
    "Seconds from the accept to the recipient's server taking the message.",
    buckets=LATENCY_BUCKETS,
)


def submission_processed(status: str, received_at) -> None:
    """Count a submission whose processing is being committed (call inside its transaction)."""
    result = "processed" if status == Submission.Status.PROCESSED else "failed"

    def count():
        PROCESSED.labels(result).inc()
        PROCESSING_LATENCY.observe(max((timezone.now() - received_at).total_seconds(), 0.0))

    transaction.on_commit(count)


def recipient_delivered(received_at) -> None:
    def count():
        DELIVERY_OUTCOMES.labels("Delivered").inc()
        DELIVERY_LATENCY.observe(max((timezone.now() - received_at).total_seconds(), 0.0))

    transaction.on_commit(count)


def bounce_recorded(bounce_type: str) -> None:
    transaction.on_commit(lambda: DELIVERY_OUTCOMES.labels(bounce_type).inc())


# --- gauges read from the database ----------------------------------------------------------------
WAITING_SUBMISSIONS = (Submission.Status.ACCEPTED, Submission.Status.REJECTED)

# Functions that return more gauge entries ({name: {count, oldest, oldest_age_seconds}}): apps
# above this one add theirs here in their ready() (webhooks: the deliveries pending).
GAUGE_SOURCES: list = []


def all_queue_states(now=None) -> dict:
    """Every queue gauge: this app's and those added to GAUGE_SOURCES."""
    now = now or timezone.now()
    states = queue_state(now)
    for source in GAUGE_SOURCES:
        states.update(source(now))
    return states


def take_sample(now=None) -> QueueSample:
    """Store the gauges now (for the System page's trend) and forget samples past retention."""
    now = now or timezone.now()
    values = {
        name: {"count": e["count"], "oldest_age_seconds": round(e["oldest_age_seconds"], 1)}
        for name, e in all_queue_states(now).items()
    }
    sample = QueueSample.objects.create(taken_at=now, values=values)
    keep = timezone.timedelta(days=settings.SYSTEM_SAMPLE_RETENTION_DAYS)
    QueueSample.objects.filter(taken_at__lt=now - keep).delete()
    return sample


def queue_state(now=None) -> dict:
    """What waits now: counts and the age (seconds) of the oldest, per queue."""
    now = now or timezone.now()
    submissions = Submission.objects.filter(status__in=WAITING_SUBMISSIONS).aggregate(
        oldest=Min("received_at"), count=Count("pk")
    )
    deferred = Recipient.objects.filter(status=Recipient.Status.DEFERRED).aggregate(
        oldest=Min("message__received_at"), count=Count("pk")
    )
    return {
        "submissions_waiting": _entry(submissions, now),
        "recipients_deferred": _entry(deferred, now),
    }


def _entry(row: dict, now) -> dict:
    oldest = row["oldest"]
    return {
        "count": row["count"],
        "oldest": oldest,
        "oldest_age_seconds": max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
    }


class QueueGauges(Collector):
    """Gauges computed from ``states()`` (a dict name -> {count, oldest_age_seconds}) at scrape."""

    HELP = {
        "submissions_waiting": "Accepted submissions not processed yet",
        "recipients_deferred": "Recipients waiting for a delivery retry",
        "webhook_deliveries_pending": "Webhook posts not made yet or waiting for a retry",
        "inbound_messages_waiting": "Inbound messages not posted yet or waiting for a retry",
    }

    def __init__(self, states):
        self._states = states

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        try:
            states = self._states()
        except Exception as exc:  # the database is down: the other metrics are still worth having
            log.warning("queue gauges could not be read: %s", exc)
            states = None
        yield GaugeMetricFamily(
            "postmark_queue_gauges_up",
            "1 when the queue gauges could be read from the database at this scrape, else 0.",
            0 if states is None else 1,
        )
        for name, entry in (states or {}).items():
            help_text = self.HELP.get(name, name)
            yield GaugeMetricFamily(f"postmark_queue_{name}", f"{help_text}.", entry["count"])
            yield GaugeMetricFamily(
                f"postmark_queue_{name}_oldest_age_seconds",
                f"Age of the oldest of the {help_text.lower()} (0 when none).",
                entry["oldest_age_seconds"],
            )
