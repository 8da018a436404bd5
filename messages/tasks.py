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
from messages import metrics, tries
from messages.models import OutboundMessage, Submission
from messages.processing import WAITING, prepare, process_batch, process_submission
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
    committed batch). The fresh ones are processed as sets (``processing.process_batch``: one
    transaction, a fixed number of queries), in sub-batches of at most PROCESSING_BATCH_BYTES
    of raw messages (``tries.sub_batches``), each try counted when it is taken (``tries.take``).
    Should a set fail, it is processed again one submission at a time, so that a submission that
    fails fails alone: an unexpected error is noted on its row (``tries.note_failure``). Then the
    submissions taken before and still waiting (their try raised, or killed its worker) are
    processed one by one, each try counted and alone in this process (``tries.gate``), and those
    out of tries fail (``tries.fail_out_of_tries``). Only an unavailable database retries the
    task."""
    rows = Submission.objects.filter(message_id__in=message_ids).values_list(
        "pk", "message_id", "server_id", "stream__stream_id", "size", "attempts", "status"
    )
    about, done, fresh, again = {}, [], [], []
    for pk, message_id, server_id, stream_id, size, attempts, status in sorted(rows):
        about[pk] = (message_id, server_id, stream_id)
        if status not in WAITING:
            done.append(pk)  # by an earlier delivery of this task, perhaps cut short
            with about_message(message_id, server_id, stream_id):
                log.info("processed: %s", status)
        elif attempts:
            again.append((attempts, pk))
        else:
            fresh.append((pk, size))
    unavailable = []
    for pks in tries.sub_batches(fresh):
        with tries.gate.together():
            unavailable += _process_set(pks, about)
        _queue_deliveries(pks)
    # Fewest tries first: a submission that keeps failing never goes ahead of the others.
    for attempts, pk in sorted(again):
        with about_message(*about[pk]), tries.gate.alone():
            if _process_alone(pk, out_of_tries=attempts >= settings.PROCESSING_ATTEMPTS):
                unavailable.append(pk)
    _queue_deliveries(done + [pk for _, pk in again])
    if unavailable:
        raise DatabaseError(f"{len(unavailable)} submission(s) of the batch could not be processed")
    return len(message_ids)


def _unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database is unavailable (retried later, counted against no
    submission) rather than something about the work itself (``core.db``)."""
    return is_database_unavailable(error)


def _process_set(pks: list[int], about: dict) -> list[int]:
    """Take and process fresh submissions as a set, or one by one should the set fail. Returns
    those whose processing met an unavailable database (their tries given back)."""
    tries.take(pks)
    prepared = {}
    try:
        # Read and parsed here, outside any transaction: no parsing runs while rows (or, on
        # SQLite, the database) are locked for other senders.
        prepared.update(prepare(pks))
        statuses = process_batch(pks, prepared)
    except Exception as exc:
        if _unavailable(exc):
            log.exception("processing: the database failed; the batch will be retried")
            tries.give_back(pks)
            raise DatabaseError(
                f"{len(pks)} submission(s) of the batch could not be processed"
            ) from exc
        log.exception("processing %d submission(s) as a set failed: one by one", len(pks))
    else:
        for pk in pks:
            with about_message(*about[pk]):
                log.info("processed: %s", statuses.get(pk, "missing"))
        return []
    unavailable, broken = [], []
    try:
        with transaction.atomic():
            for pk in pks:
                try:
                    with about_message(*about[pk]):
                        status = process_submission(pk, prepared)
                        log.info("processed: %s", status)
                except Exception as exc:
                    if _unavailable(exc):
                        log.exception("processing %s: the database failed; retried", about[pk][0])
                        unavailable.append(pk)
                    else:
                        log.exception("processing %s failed", about[pk][0])
                        broken.append((pk, exc))
    except Exception as exc:  # the commit of them all
        if not _unavailable(exc):
            raise
        tries.give_back(pks)
        raise DatabaseError(
            f"{len(pks)} submission(s) of the batch could not be processed"
        ) from exc
    for pk, exc in broken:
        with about_message(*about[pk]):
            tries.note_failure(pk, exc, prepared)
    if unavailable:
        tries.give_back(unavailable)
    return unavailable


def _process_alone(pk: int, out_of_tries: bool) -> bool:
    """Take and process one submission whose earlier try did not end it, or, once it is
    ``out_of_tries``, record its failure (``tries.fail_out_of_tries``). True when the database was
    unavailable (the try given back)."""
    tries.take([pk], fresh=not out_of_tries)
    prepared = {}
    try:
        if out_of_tries:
            log.info("processed: %s", tries.fail_out_of_tries(pk))
            return False
        prepared.update(prepare([pk]))
        log.info("processed: %s", process_submission(pk, prepared))
    except Exception as exc:
        if _unavailable(exc):
            log.exception("processing: the database failed; it will be retried")
            tries.give_back([pk])
            return True
        log.exception("processing failed")
        if not out_of_tries:
            tries.note_failure(pk, exc, prepared)
    return False


def _queue_deliveries(pks: list[int]) -> None:
    """One delivery task for the new messages of ``pks`` (a message queued twice is harmless)."""
    if not pks:
        return
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
