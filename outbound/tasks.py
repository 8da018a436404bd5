import logging

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from outbound.delivery import deliver_message, next_retry_in
from outbound.models import OutboundMessage, Recipient, Submission
from outbound.processing import process_submission
from postmark_site import leases

log = logging.getLogger(__name__)


@shared_task(
    name="outbound.tasks.process_submissions",
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
                process_submission(submission_id)
            except DatabaseError:
                log.exception("processing submission %s failed; it will be retried", submission_id)
                failed.append(submission_id)
    # One delivery task for the batch's new messages (a message queued twice is harmless).
    enqueue_deliveries(
        list(
            OutboundMessage.objects.filter(
                submission_id__in=pks,
                status=OutboundMessage.Status.QUEUED,
                leased_until__isnull=True,
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
    # Each submission is taken (queued again) at most once per SWEEP_AFTER_SECONDS, so a backlog
    # that is merely waiting in the queue is not multiplied by every sweep.
    taken = leases.take_ids(
        Submission.objects.filter(
            received_at__lt=cutoff,
            status__in=[Submission.Status.ACCEPTED, Submission.Status.REJECTED],
        ),
        seconds=age,
        now=now,
    )
    rows = Submission.objects.filter(pk__in=taken).order_by("id").values_list("id", "message_id")
    ids = [str(message_id) for _, message_id in rows]
    for start in range(0, len(ids), 256):
        enqueue_processing(ids[start : start + 256])
    return len(ids)


@shared_task(
    name="outbound.tasks.deliver",
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
    leases.lease(OutboundMessage.objects.filter(pk__in=outbound_ids), settings.SWEEP_AFTER_SECONDS)
    for start in range(0, len(outbound_ids), 64):
        batch = outbound_ids[start : start + 64]
        try:
            deliver.apply_async((batch,), retry=False)
        except Exception as exc:  # the sweep will find them
            log.warning("could not queue delivery of %d message(s): %s", len(batch), exc)


def enqueue_delivery(outbound_id: int, countdown: float = 0) -> None:
    """Queue the delivery task, noting when it is due so that the sweep leaves it alone."""
    leases.lease(
        OutboundMessage.objects.filter(pk=outbound_id), countdown + settings.SWEEP_AFTER_SECONDS
    )
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
    # Only messages whose last queued task should have run by now (their lease ran out): a
    # backlog still waiting in the queue is not queued again by every sweep.
    ids = leases.take_ids(
        OutboundMessage.objects.filter(pk__in=waiting.values("message_id")), seconds=age, now=now
    )
    for outbound_id in ids:
        enqueue_delivery(outbound_id)
    return len(ids)


@shared_task(name="outbound.tasks.sweep")
def sweep() -> int:
    return requeue_stuck_submissions() + requeue_due_deliveries()
