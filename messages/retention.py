from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from bounces.models import Bounce, Dump
from messages.models import MessageEvent, OutboundMessage, Submission

RETENTION_BATCH = 1000


def enforce_retention(now=None, batch: int = RETENTION_BATCH) -> dict[str, int]:
    """Delete what is past its retention: bounces (BOUNCE_RETENTION_DAYS), bounce dumps
    (DUMP_RETENTION_DAYS: the record stays, DumpAvailable turns false), and messages, their
    envelopes and events with their webhook deliveries and attempts (MESSAGE_RETENTION_DAYS;
    never a message still waiting to be processed or sent). Everything goes in batches of
    ``batch`` rows, so no transaction ever spans millions of rows."""
    now = now or timezone.now()

    def days_ago(days):
        return now - timezone.timedelta(days=days)

    bounces = delete_in_batches(
        Bounce.objects.filter(bounced_at__lt=days_ago(settings.BOUNCE_RETENTION_DAYS)), batch
    )
    dumps = update_in_batches(
        Bounce.objects.filter(bounced_at__lt=days_ago(settings.DUMP_RETENTION_DAYS)).filter(
            ~Q(content="") | Q(source__isnull=False)
        ),
        batch,
        content="",
        source=None,
    )
    # Shared dumps no bounce refers to any more (a day's grace for one being written now).
    delete_in_batches(Dump.objects.filter(bounces__isnull=True, created_at__lt=days_ago(1)), batch)
    message_cutoff = days_ago(settings.MESSAGE_RETENTION_DAYS)
    events = delete_in_batches(MessageEvent.objects.filter(occurred_at__lt=message_cutoff), batch)
    messages = delete_in_batches(
        OutboundMessage.objects.filter(received_at__lt=message_cutoff).exclude(
            status=OutboundMessage.Status.QUEUED
        ),
        batch,
    )
    submissions = delete_in_batches(
        Submission.objects.filter(received_at__lt=message_cutoff).exclude(
            status__in=[Submission.Status.ACCEPTED, Submission.Status.REJECTED]
        ),
        batch,
    )
    return {
        "bounces": bounces,
        "dumps": dumps,
        "events": events,
        "messages": messages,
        "submissions": submissions,
    }


def delete_in_batches(queryset, batch: int) -> int:
    """Delete ``queryset``'s rows (and what cascades from them), ``batch`` rows per transaction;
    returns how many rows of its own model went."""
    model, total = queryset.model, 0
    while True:
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch])
        if not ids:
            return total
        _, per_model = model.objects.filter(pk__in=ids).delete()
        deleted = per_model.get(model._meta.label, 0)
        if not deleted:
            return total
        total += deleted


def update_in_batches(queryset, batch: int, **fields) -> int:
    """Set ``fields`` on ``queryset``'s rows, ``batch`` rows per statement; the queryset must stop
    matching a row once it is updated."""
    model, total = queryset.model, 0
    while True:
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch])
        if not ids:
            return total
        updated = model.objects.filter(pk__in=ids).update(**fields)
        if not updated:
            return total
        total += updated
