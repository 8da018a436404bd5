"""The processing tasks: accepted submissions become outbound messages (``processing``), and
the sweep's half that finds submissions whose task was lost.

Celery's task names keep the ``outbound.tasks.`` prefix they were first published under, so that
a task queued before an upgrade still finds its function afterwards.
"""

import logging

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from core import leases, queues
from core.db import is_database_unavailable
from core.logcontext import about_message
from messages import metrics
from messages.models import OutboundMessage, Submission
from messages.processing import note_failure, prepare, process_batch, process_submission
from messages.retention import enforce_retention
from messages.signals import messages_queued

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
    prepared = {}
    try:
        # Read and parsed here, outside any transaction: no parsing runs while rows (or, on
        # SQLite, the database) are locked for other senders.
        prepared.update(prepare(pks))
        statuses = process_batch(pks, prepared)
    except Exception as exc:
        if is_database_unavailable(exc):
            log.exception("processing: the database failed; the batch will be retried")
            raise DatabaseError(
                f"{len(pks)} submission(s) of the batch could not be processed"
            ) from exc
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
                    status = process_submission(submission_id, prepared)
                    log.info("processed: %s", status)
            except Exception as exc:
                if is_database_unavailable(exc):
                    log.exception("processing %s: the database failed; retried", message_id)
                    unavailable.append(submission_id)
                else:
                    log.exception("processing %s failed", message_id)
                    broken.append((submission_id, exc))
    for submission_id, exc in broken:
        note_failure(submission_id, exc, prepared)
    # One delivery task for the batch's new messages (a message queued twice is harmless).
    messages_queued.send(
        sender=Submission,
        outbound_ids=list(
            OutboundMessage.objects.filter(
                submission_id__in=pks,
                status=OutboundMessage.Status.QUEUED,
                leased_until__isnull=True,
            ).values_list("pk", flat=True)
        ),
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
    # Each submission is taken (queued again) at most once per SWEEP_AFTER_SECONDS, and none
    # while the processing queue is busy (core.queues): a backlog that is merely waiting in the
    # queue is not multiplied by every sweep.
    limit = queues.requeue_budget(process_submissions.name)
    if not limit:
        return 0
    taken = leases.take_ids(
        Submission.objects.filter(
            received_at__lt=cutoff,
            status__in=[Submission.Status.ACCEPTED, Submission.Status.REJECTED],
        ),
        seconds=age,
        now=now,
        # Fresh rows first: a row that keeps failing never goes ahead of the others.
        order=("attempts", "pk"),
        limit=limit,
    )
    message_ids = dict(Submission.objects.filter(pk__in=taken).values_list("id", "message_id"))
    ids = [str(message_ids[pk]) for pk in taken]
    for start in range(0, len(ids), 256):
        enqueue_processing(ids[start : start + 256])
    return len(ids)


@shared_task(name="outbound.tasks.sample_queues")
def sample_queues() -> int:
    """The beat's sample of the queue gauges, for the admin's System page."""
    return metrics.take_sample().pk


@shared_task(name="outbound.retention.enforce_retention")
def retention() -> dict[str, int]:
    """The beat's daily retention run (``retention.enforce_retention``)."""
    return enforce_retention()
