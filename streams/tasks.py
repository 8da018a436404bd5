import logging

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from .delivery import deliver_message, next_retry_in
from .models import MessageStream, OutboundMessage, Recipient, Submission
from .processing import process_submission

log = logging.getLogger(__name__)


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


@shared_task(
    name="streams.tasks.process_submissions",
    autoretry_for=(DatabaseError,),
    retry_backoff=2,
    retry_backoff_max=300,
    max_retries=None,
)
def process_submissions(message_ids: list[str]) -> int:
    """Process accepted submissions, named by MessageID (the gateway sends one task per
    committed batch). The batch commits once, each submission in a savepoint of its own: one
    fsync for the batch, and a submission that fails is retried without undoing the others."""
    pks = sorted(Submission.objects.filter(message_id__in=message_ids).values_list("pk", flat=True))
    failed = []
    with transaction.atomic():
        for submission_id in pks:
            try:
                process_submission(submission_id, queue_delivery=False)
            except DatabaseError:
                log.exception("processing submission %s failed; it will be retried", submission_id)
                failed.append(submission_id)
    # One delivery task for the batch's new messages (a message queued twice is harmless).
    enqueue_deliveries(
        list(
            OutboundMessage.objects.filter(
                submission_id__in=pks, status=OutboundMessage.Status.QUEUED, queued_at__isnull=True
            ).values_list("pk", flat=True)
        )
    )
    if failed:
        raise DatabaseError(f"{len(failed)} submission(s) of the batch failed")
    return len(message_ids)


def enqueue_processing(message_ids: list[str]) -> None:
    """Hand committed submissions to the workers. A broker failure loses nothing: the sweep
    finds submissions still 'accepted' and queues them again."""
    if not message_ids:
        return
    try:
        process_submissions.apply_async((message_ids,), retry=False)
    except Exception as exc:
        log.warning("could not queue %d submission(s) for processing: %s", len(message_ids), exc)


def requeue_stuck_submissions(older_than_seconds: float | None = None) -> int:
    """Queue again the submissions still waiting for processing after a while (a lost task, a
    crashed worker, a broker restart). Processing is idempotent, so a duplicate costs nothing."""
    age = settings.SWEEP_AFTER_SECONDS if older_than_seconds is None else older_than_seconds
    now = timezone.now()
    cutoff = now - timezone.timedelta(seconds=age)
    # Each submission is queued again at most once per SWEEP_AFTER_SECONDS, so a backlog that is
    # merely waiting in the queue is not multiplied by every sweep.
    rows = list(
        Submission.objects.filter(
            Q(queued_at__lt=cutoff) | Q(queued_at__isnull=True, received_at__lt=cutoff),
            status__in=[Submission.Status.ACCEPTED, Submission.Status.REJECTED],
        )
        .order_by("id")
        .values_list("id", "message_id")[:10_000]
    )
    Submission.objects.filter(pk__in=[pk for pk, _ in rows]).update(queued_at=now)
    ids = [str(message_id) for _, message_id in rows]
    for start in range(0, len(ids), 256):
        enqueue_processing(ids[start : start + 256])
    return len(ids)


@shared_task(
    name="streams.tasks.deliver",
    autoretry_for=(DatabaseError,),
    retry_backoff=2,
    retry_backoff_max=300,
    max_retries=None,
)
def deliver(outbound_id: int | list[int]) -> str:
    """Deliver one message's due recipients (or each of a list of messages'), and come back
    when deferred ones are due."""
    if isinstance(outbound_id, list):
        return ", ".join(deliver_one(one) for one in outbound_id)
    return deliver_one(outbound_id)


def deliver_one(outbound_id: int) -> str:
    status = deliver_message(outbound_id)
    message = OutboundMessage.objects.filter(pk=outbound_id).first()
    if message is not None and status == OutboundMessage.Status.QUEUED:
        delay = next_retry_in(message)
        if delay is not None:
            enqueue_delivery(outbound_id, countdown=delay)
    return status


def enqueue_deliveries(outbound_ids: list[int]) -> None:
    """Queue delivery of several messages, in tasks of up to 64 messages."""
    if not outbound_ids:
        return
    OutboundMessage.objects.filter(pk__in=outbound_ids).update(queued_at=timezone.now())
    for start in range(0, len(outbound_ids), 64):
        batch = outbound_ids[start : start + 64]
        try:
            deliver.apply_async((batch,), retry=False)
        except Exception as exc:  # the sweep will find them
            log.warning("could not queue delivery of %d message(s): %s", len(batch), exc)


def enqueue_delivery(outbound_id: int, countdown: float = 0) -> None:
    """Queue the delivery task, noting when it is due so that the sweep leaves it alone."""
    due = timezone.now() + timezone.timedelta(seconds=countdown)
    OutboundMessage.objects.filter(pk=outbound_id).update(queued_at=due)
    try:
        deliver.apply_async((outbound_id,), countdown=countdown, retry=False)
    except Exception as exc:  # the sweep will find it
        log.warning("could not queue delivery of message %s: %s", outbound_id, exc)


def requeue_due_deliveries(grace_seconds: float | None = None) -> int:
    """Queue delivery again for messages with recipients that should have been tried by now."""
    age = settings.SWEEP_AFTER_SECONDS if grace_seconds is None else grace_seconds
    now = timezone.now()
    cutoff = now - timezone.timedelta(seconds=age)
    waiting = Recipient.objects.filter(
        Q(status=Recipient.Status.DEFERRED, next_attempt_at__lt=cutoff)
        | Q(status__in=[Recipient.Status.PENDING, Recipient.Status.SENDING], updated_at__lt=cutoff)
    )
    # Only messages whose last queued task should have run by now: a backlog still waiting in
    # the queue is not queued again by every sweep.
    ids = sorted(
        OutboundMessage.objects.filter(
            Q(queued_at__isnull=True) | Q(queued_at__lt=cutoff),
            pk__in=waiting.values("message_id"),
        ).values_list("pk", flat=True)[:10_000]
    )
    for outbound_id in ids:
        enqueue_delivery(outbound_id)
    return len(ids)


@shared_task(name="streams.tasks.sweep")
def sweep() -> int:
    return requeue_stuck_submissions() + requeue_due_deliveries()
