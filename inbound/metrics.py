"""Inbound metrics: webhook posts by result, and the inbound messages waiting to be posted
(read from the database at scrape time, and sampled for the System page's trend)."""

from django.db.models import Count, Min
from django.utils import timezone

from core.metrics import Counter
from inbound.models import InboundMessage

POSTS = Counter(
    "postmark_inbound_posts_total",
    "Inbound webhook posts made, by the receiver's HTTP status code ('error' when none came back).",
    ["status"],
)
WAITING = (InboundMessage.Status.QUEUED, InboundMessage.Status.SCHEDULED)


def post_made(status_code: int | None) -> None:
    POSTS.labels(str(status_code) if status_code else "error").inc()


def backlog(now=None) -> dict:
    now = now or timezone.now()
    row = InboundMessage.objects.filter(status__in=WAITING).aggregate(
        oldest=Min("received_at"), count=Count("pk")
    )
    oldest = row["oldest"]
    return {
        "inbound_messages_waiting": {
            "count": row["count"],
            "oldest": oldest,
            "oldest_age_seconds": max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
        }
    }
