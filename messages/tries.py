"""Tries of processing: how the processing task takes its submissions, and how one that keeps
failing ends.

A try is counted when it is taken, by one UPDATE committed before any of its work (``take``), so
a try that kills its worker (the kernel's OOM killer, a crash, a SIGKILL) counts as surely as one
that raises. Submissions are taken in sub-batches whose raw sizes add up to at most
``PROCESSING_BATCH_BYTES`` (``sub_batches``): a worker never holds more than that of raw messages
at once, however large the batch the gateway handed over. A submission still waiting although
taken before (its try ended in an error, or never ended) is taken again on its own, after the
fresh ones, so that the rest of its batch goes on without it; after ``PROCESSING_ATTEMPTS`` tries
it fails with an SMTPApiError (ErrorCode 500) for each recipient (``note_failure``,
``fail_out_of_tries``), and no sweep takes it again. A try that met an unavailable database is
given back (``give_back``): that fault is not the submission's.

A worker with a pool of threads dies whole: a try cut short in one thread by another thread's
killer would count against an innocent submission. So a submission taken again is processed
alone in its process (``gate``): while it is, no other thread there processes anything, and
should the process die then, the try counted is that submission's own.
"""

import logging
import threading
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import F
from django.utils import timezone

from bounces.services import record_bounce
from bounces.types import SMTP_API_ERROR
from core.db import is_database_unavailable
from messages import metrics
from messages.events import record_bounce_event
from messages.headers import Problem, parse_headers
from messages.intake import intake_for
from messages.models import Submission
from messages.processing import (
    DEFAULT_STREAM,
    PROCESSING_ERROR_CODE,
    PROCESSING_FAILED,
    WAITING,
    Prepared,
    dump_head,
    finish,
    record_problems,
    unique_recipients,
    waiting_submission,
    where_errors_go,
)

log = logging.getLogger(__name__)

# Submissions in one sub-batch at most (the gateway hands over SMTP_COMMIT_BATCH, 256 by default).
MAX_BATCH = 256
# The error a submission fails with when its tries ended with their worker (Celery's name for it).
WORKER_LOST = "WorkerLostError"


class Gate:
    """Work of this process's threads, ``together`` (fresh submissions) or ``alone`` (one taken
    again): ``alone`` waits until no other work runs, and while it runs, or waits, no other
    starts."""

    def __init__(self):
        self._changed = threading.Condition()
        self._together = 0
        self._alone = False
        self._waiting_alone = 0

    @contextmanager
    def together(self):
        with self._changed:
            self._changed.wait_for(lambda: not self._alone and not self._waiting_alone)
            self._together += 1
        try:
            yield
        finally:
            with self._changed:
                self._together -= 1
                self._changed.notify_all()

    @contextmanager
    def alone(self):
        with self._changed:
            self._waiting_alone += 1
            try:
                self._changed.wait_for(lambda: not self._alone and not self._together)
            finally:
                self._waiting_alone -= 1
            self._alone = True
        try:
            yield
        finally:
            with self._changed:
                self._alone = False
                self._changed.notify_all()


gate = Gate()


def sub_batches(
    sizes: list[tuple[int, int]], max_bytes: int | None = None, max_count: int = MAX_BATCH
) -> list[list[int]]:
    """The primary keys of ``sizes`` (``(pk, raw size)`` pairs, in order) in consecutive groups
    of at most ``max_count`` whose sizes add up to at most ``max_bytes``
    (``PROCESSING_BATCH_BYTES``); a submission larger than that is a group of its own."""
    limit = settings.PROCESSING_BATCH_BYTES if max_bytes is None else max_bytes
    groups: list[list[int]] = []
    group: list[int] = []
    total = 0
    for pk, size in sizes:
        if group and (total + size > limit or len(group) >= max_count):
            groups.append(group)
            group, total = [], 0
        group.append(pk)
        total += size
    if group:
        groups.append(group)
    return groups


def take(pks: list[int], *, fresh: bool = True) -> int:
    """Count a try of processing of each waiting submission of ``pks``, and hold it for
    SWEEP_AFTER_SECONDS (the sweep leaves it alone meanwhile), in one UPDATE: called outside any
    transaction, so that the count is committed before the work begins and a try that kills its
    worker counts too. A ``fresh`` try clears the error of the one before (``note_failure`` notes
    its own; a try whose worker stopped leaves none). Returns how many were taken."""
    fields = {"last_error": ""} if fresh else {}
    return Submission.objects.filter(pk__in=pks, status__in=WAITING).update(
        attempts=F("attempts") + 1,
        leased_until=timezone.now() + timedelta(seconds=settings.SWEEP_AFTER_SECONDS),
        **fields,
    )


def give_back(pks: list[int]) -> None:
    """Take back the tries of ``pks`` counted by ``take``, which met an unavailable database:
    not the submissions' fault. Should the database still not answer, the tries stay counted."""
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()  # reconnect, should it be broken
        Submission.objects.filter(pk__in=pks, status__in=WAITING, attempts__gt=0).update(
            attempts=F("attempts") - 1
        )
    except Exception as exc:
        log.warning("%d try(s) of processing stay counted: %s", len(pks), exc)


def readable(submission_id: int, prepared: dict[int, Prepared] | None = None) -> Prepared | None:
    """What recording a submission's failure needs of its message, read and parsed before the
    transaction: ``prepared``'s reading, or a new one (``parsed`` is None when the header could
    not be parsed). None once the submission is no longer waiting."""
    item = (prepared or {}).get(submission_id)
    if item is not None and item.parsed is not None:
        return item
    raw = (
        Submission.objects.filter(pk=submission_id, status__in=WAITING)
        .values_list("raw", flat=True)
        .first()
    )
    if raw is None:
        return None
    raw = bytes(raw)
    try:
        return Prepared(raw, parse_headers(raw))
    except Exception:
        log.exception("the header of submission %s could not be parsed", submission_id)
        return Prepared(raw)


def note_failure(
    submission_id: int, error: BaseException, prepared: dict[int, Prepared] | None = None
) -> str:
    """A try of processing failed unexpectedly (``error``, already logged; the try was counted
    when it was taken). Before PROCESSING_ATTEMPTS tries the submission waits for the sweep to
    take it again, the error's name noted on it; at the last, it becomes ``failed`` (``fail``).
    Should recording that fail, the submission waits (the sweep takes it again, and
    ``fail_out_of_tries`` records the error). Returns the submission's status."""
    name = type(error).__name__[:100]
    with transaction.atomic():
        submission = waiting_submission(submission_id)
        if submission is None or submission.status not in WAITING:
            return submission.status if submission else "missing"
        if submission.attempts < settings.PROCESSING_ATTEMPTS:
            _wait(submission, name)
            return submission.status
    item = readable(submission_id, prepared)
    with transaction.atomic():
        submission = waiting_submission(submission_id)
        if submission is None or submission.status not in WAITING:
            return submission.status if submission else "missing"
        return fail(submission, name, item, may_wait=True)


def _wait(submission: Submission, error_name: str) -> None:
    """The try is over, ended by ``error_name``: the submission waits for the sweep to take it
    again (its lease released), the error noted for the operators."""
    submission.last_error = error_name
    submission.leased_until = None
    submission.save(update_fields=["last_error", "leased_until"])


def fail_out_of_tries(submission_id: int) -> str:
    """End a submission whose PROCESSING_ATTEMPTS tries all ended without an outcome: their
    worker stopped (the OOM killer, a crash), or the error of the last could not be recorded.
    Recording its failure is a try too, taken by the caller first (``take``, not ``fresh``): the
    error with the message as received (``fail``), or, once such a try has stopped its worker,
    the error alone, which reads nothing of the message (``record_plain_failure``). Returns the
    submission's status."""
    attempts = (
        Submission.objects.filter(pk=submission_id).values_list("attempts", flat=True).first()
    )
    item = None
    if attempts is not None and attempts <= settings.PROCESSING_ATTEMPTS + 1:
        item = readable(submission_id)
    with transaction.atomic():
        submission = waiting_submission(submission_id)
        if submission is None or submission.status not in WAITING:
            return submission.status if submission else "missing"
        name = submission.last_error or WORKER_LOST
        log.error(
            "submission %s: %d tries of processing ended without an outcome (the last: %s); it "
            "fails",
            submission.message_id,
            submission.attempts - 1,
            name,
        )
        return fail(submission, name, item, may_wait=False)


def fail(submission: Submission, error_name: str, item: Prepared | None, *, may_wait: bool) -> str:
    """Fail ``submission`` (locked by the caller's transaction) for ``error_name``: for each
    recipient an SMTPApiError (ErrorCode 500) that says so and holds the message as received in
    its dump (``item``, read before the transaction), so the sender sees it through the bounce API
    and webhooks. Should that record fail: with ``may_wait`` the submission waits for another try
    of it; else (or with no ``item``) the error is recorded alone (``record_plain_failure``) and
    the message as received stays on the submission for the operators."""
    intake = intake_for(submission.endpoint)
    if intake is not None:  # not mail to send: the app that takes it over records the failure
        submission.last_error = error_name
        intake.fail(submission, error_name, item.raw if item is not None else None)
        submission.status = Submission.Status.FAILED
        finish(submission, "last_error")
        metrics.submission_processed(submission.status, submission.received_at)
        return submission.status
    text = PROCESSING_FAILED.format(error=error_name)
    problem = Problem(PROCESSING_ERROR_CODE, text, text)
    submission.last_error = error_name
    recorded = False
    if item is not None and item.parsed is not None:
        try:
            with transaction.atomic():
                stream_id = submission.stream.stream_id if submission.stream else DEFAULT_STREAM
                record_problems(
                    submission,
                    item.parsed,
                    submission.stream,
                    stream_id,
                    [problem],
                    item.raw,
                    unique_recipients(submission.rcpt_to),
                )
            recorded = True
        except Exception:
            log.exception("could not record the failure of submission %s", submission.message_id)
            if may_wait:
                _wait(submission, error_name)
                return submission.status
    if not recorded:
        try:
            with transaction.atomic():
                record_plain_failure(submission, problem)
        except Exception as exc:
            if is_database_unavailable(exc):
                raise  # the database is unavailable, not the record at fault: retried
            # A bug: still a terminal state, never an endless retry.
            log.exception("no SMTPApiError for submission %s", submission.message_id)
    submission.status = Submission.Status.FAILED
    finish(submission, "last_error", keep_raw=not recorded)
    metrics.submission_processed(submission.status, submission.received_at)
    return submission.status


def record_plain_failure(submission: Submission, problem: Problem) -> None:
    """The SMTPApiError of a submission whose error could not be recorded with its message: no
    header is parsed and no dump is stored, only the envelope's recipients and sender and the
    error, so that nothing of the message can make it fail again. A database error propagates
    (the task is retried)."""
    stream, stream_id = where_errors_go(
        submission.server,
        submission.stream,
        submission.stream.stream_id if submission.stream else DEFAULT_STREAM,
    )
    for recipient in unique_recipients(submission.rcpt_to):
        bounce = record_bounce(
            server=submission.server,
            stream=stream,
            message_stream=stream_id,
            type=SMTP_API_ERROR,
            email=recipient,
            message_id=submission.message_id,
            from_address=submission.mail_from,
            details=problem.details,
            content=dump_head([problem]),
            bounced_at=submission.received_at,
        )
        record_bounce_event(bounce)
