from celery import shared_task
from django.conf import settings
from django.utils import timezone

from streams.models import MessageStream


def purge_archived_streams_now(now=None) -> int:
    """Delete streams archived more than STREAM_PURGE_DAYS ago, with everything filed under them.
    Returns how many streams were purged."""
    now = now or timezone.now()
    cutoff = now - timezone.timedelta(days=settings.STREAM_PURGE_DAYS)
    deleted, per_model = MessageStream.objects.filter(archived_at__lt=cutoff).delete()
    return per_model.get("streams.MessageStream", 0)


@shared_task(name="streams.tasks.purge_archived_streams")
def purge_archived_streams() -> int:
    return purge_archived_streams_now()
