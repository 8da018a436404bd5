"""Webhook metrics: posts by result, and the backlog read from the database at scrape time."""

from django.db.models import Count, Min
from django.utils import timezone

from core.metrics import Counter
from webhooks.models import WebhookDelivery

POSTS = Counter(
    "postmark_webhook_posts_total",
    "Webhook posts made, by the receiver's HTTP status code (or 'error' when none came back).",
    ["status"],
)


def post_made(status_code: int | None) -> None:
    POSTS.labels(str(status_code) if status_code else "error").inc()


def backlog(now=None) -> dict:
    now = now or timezone.now()
    row = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING).aggregate(
        oldest=Min("created_at"), count=Count("pk")
    )
    oldest = row["oldest"]
    return {
        "webhook_deliveries_pending": {
            "count": row["count"],
            "oldest": oldest,
            "oldest_age_seconds": max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
        }
    }
