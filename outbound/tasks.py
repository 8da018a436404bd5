import logging

from celery import current_app, shared_task
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.utils import timezone

from outbound import metrics
from outbound.delivery import claimable, deliver_message, deliver_messages, next_retry_in
from outbound.models import OutboundMessage, Recipient, Submission
from outbound.processing import note_failure, process_batch, process_submission
from postmark_site import leases
from postmark_site.logcontext import about_message

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
    committed batch). The batch is processed as a set (``processing.process_batch``: one
    transaction, a fixed number of queries). Should that fail, the batch is processed again one
    submission at a time, each in a savepoint of its own, so that a submission that fails fails
    alone: an unexpected error is counted on its row (``processing.note_failure``); only an
    unreachable database retries the batch."""
    rows = sorted(
        Submission.objects.filter(message_id__in=message_ids).values_list(
            "pk", "message_id", "server_id", "stream__stream_id"
        )
    )
    pks = [row[0] for row in rows]
    unavailable, broken = [], []
    try:
        statuses = process_batch(pks)
    except (OperationalError, InterfaceError) as exc:
        log.exception("processing: the database failed; the batch will be retried")
        raise DatabaseError(
            f"{len(pks)} submission(s) of the batch could not be processed"
        ) from exc
    except Exception:
        log.exception("processing %d submission(s) as a set failed: one by one", len(pks))
        statuses = None
    if statuses is not None:
        for submission_id, message_id, server_id, stream_id in rows:
            with about_message(message_id, server_id, stream_id):
                log.info("processed: %s", statuses.get(submission_id, "missing"))
        rows = []
    with transaction.atomic():
        for submission_id, message_id, server_id, stream_id in rows:
            try:
                with about_message(message_id, server_id, stream_id):
                    status = process_submission(submission_id)
                    log.info("processed: %s", status)
            except (OperationalError, InterfaceError):
                log.exception("processing %s: the database failed; it will be retried", message_id)
                unavailable.append(submission_id)
            except Exception as exc:
                log.exception("processing %s failed", message_id)
                broken.append((submission_id, exc))
    for submission_id, exc in broken:
        note_failure(submission_id, exc)
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
    if unavailable:
        raise DatabaseError(f"{len(unavailable)} submission(s) of the batch could not be processed")
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
        # Fresh rows first: a row that keeps failing never goes ahead of the others.
        order=("attempts", "pk"),
    )
    message_ids = dict(Submission.objects.filter(pk__in=taken).values_list("id", "message_id"))
    ids = [str(message_ids[pk]) for pk in taken]
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
    when deferred ones are due. The list is delivered together (``delivery.deliver_messages``:
    one read, one claim, one status refresh); each message still fails alone: an error in one
    is logged and counted on its recipients, and the others still go. Should the set's own
    steps fail, each message is delivered on its own; only an unreachable database retries the
    task."""
    ids = outbound_id if isinstance(outbound_id, list) else [outbound_id]
    try:
        statuses = deliver_messages(ids)
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        log.exception("delivering %d message(s) together failed: one by one", len(ids))
        statuses = {}
        for one in ids:
            try:
                statuses[one] = deliver_message(one)
            except (OperationalError, InterfaceError):
                raise
            except Exception:
                log.exception("delivery of message %s failed", one)
                statuses[one] = "error"
    for one, status in statuses.items():
        if status == OutboundMessage.Status.QUEUED:
            schedule_next_delivery(one)
    return ", ".join(statuses.get(one, "missing") for one in ids)


def schedule_next_delivery(outbound_id: int) -> None:
    """Queue the message's next try when its next recipient is due within
    DELIVERY_MAX_COUNTDOWN; a later one waits in the database, where the sweep finds it once due.
    A broker holds a countdown task unacknowledged, and cancels or redelivers what it holds too
    long (RabbitMQ's consumer timeout, Redis's visibility timeout), so no countdown is longer."""
    delay = next_retry_in(outbound_id)
    if delay is None:
        return
    if delay <= settings.DELIVERY_MAX_COUNTDOWN and not current_app.conf.task_always_eager:
        enqueue_delivery(outbound_id, countdown=delay)
    else:
        leases.release(OutboundMessage.objects.filter(pk=outbound_id))


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
    countdown = min(max(countdown, 0.0), settings.DELIVERY_MAX_COUNTDOWN)
    leases.lease(
        OutboundMessage.objects.filter(pk=outbound_id), countdown + settings.SWEEP_AFTER_SECONDS
    )
    try:
        deliver.apply_async((outbound_id,), countdown=countdown or None, retry=False)
    except Exception as exc:  # the sweep will find it
        log.warning("could not queue delivery of message %s: %s", outbound_id, exc)


def requeue_due_deliveries(grace_seconds: float | None = None) -> int:
    """Queue delivery for messages with recipients due now that nobody holds (deferrals whose
    time came, recipients of a lost task, recipients in doubt after a worker died), unless a
    task queued for the message should still be on its way (the message's lease)."""
    age = settings.SWEEP_AFTER_SECONDS if grace_seconds is None else grace_seconds
    now = timezone.now()
    due = claimable(Recipient.objects.all(), now)
    # A message is taken (queued) at most once per ``age``: a backlog merely waiting in the
    # queue is not queued again by every sweep.
    ids = leases.take_ids(
        OutboundMessage.objects.filter(pk__in=due.values("message_id")), seconds=age, now=now
    )
    for outbound_id in ids:
        enqueue_delivery(outbound_id)
    return len(ids)


@shared_task(name="outbound.tasks.sweep")
def sweep() -> int:
    return requeue_stuck_submissions() + requeue_due_deliveries()


@shared_task(name="outbound.tasks.sample_queues")
def sample_queues() -> int:
    """The beat's sample of the queue gauges, for the admin's System page."""
    return metrics.take_sample().pk
