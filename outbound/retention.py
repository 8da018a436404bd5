from celery import shared_task
from django.conf import settings
from django.utils import timezone

from bounces.models import Bounce
from outbound.models import OutboundMessage, Submission


def enforce_retention(now=None) -> dict[str, int]:
    """Delete what is past its retention: bounces (BOUNCE_RETENTION_DAYS), bounce dumps
    (DUMP_RETENTION_DAYS: the record stays, DumpAvailable turns false) and messages with their
    raw source (MESSAGE_RETENTION_DAYS; never one still waiting to be processed or sent)."""
    now = now or timezone.now()

    def days_ago(days):
        return now - timezone.timedelta(days=days)

    bounces, _ = Bounce.objects.filter(
        bounced_at__lt=days_ago(settings.BOUNCE_RETENTION_DAYS)
    ).delete()
    dumps = (
        Bounce.objects.filter(bounced_at__lt=days_ago(settings.DUMP_RETENTION_DAYS))
        .exclude(content="")
        .update(content="")
    )
    message_cutoff = days_ago(settings.MESSAGE_RETENTION_DAYS)
    messages, _ = (
        OutboundMessage.objects.filter(received_at__lt=message_cutoff)
        .exclude(status=OutboundMessage.Status.QUEUED)
        .delete()
    )
    submissions, _ = (
        Submission.objects.filter(received_at__lt=message_cutoff)
        .exclude(status__in=[Submission.Status.ACCEPTED, Submission.Status.REJECTED])
        .delete()
    )
    return {"bounces": bounces, "dumps": dumps, "messages": messages, "submissions": submissions}


@shared_task(name="outbound.retention.enforce_retention")
def retention() -> dict[str, int]:
    return enforce_retention()


# --- Webhooks (routed to the "webhooks" queue by CELERY_TASK_ROUTES) ----------------------------
