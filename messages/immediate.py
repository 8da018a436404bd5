"""Immediate processing, for the HTTP send API: the same rules as after an SMTP ``250``
(``processing.examine``), applied while the client waits, so that it hears the answer.

The difference between the two entry points is only in what becomes of a problem. Over SMTP the
message was already accepted, so each problem is recorded as an SMTPApiError bounce. Over HTTP the
client is told at once, as Postmark's API does: a message with a problem that concerns it as a
whole (stream, sender, limits, headers), or whose recipients are all inactive, is **rejected** —
nothing is stored, no bounce is recorded, nothing is delivered; a message with only some inactive
recipients is **accepted** (ErrorCode 0, with Postmark's sentence naming them) and delivered to
the others, again without a bounce for the ones left out: the answer already told the client.

Accepted messages are stored processed, in bulk: their submissions (the durable accept record,
as the gateway writes it, already ``processed``), their outbound messages and recipients, in
three inserts whatever the size of the batch (``messages.submissions.insert_rows``). Delivery is
queued once the caller's transaction commits (``messages.signals.messages_queued``), as
``messages.tasks.process_submissions`` does after processing.
"""

import logging
from dataclasses import dataclass

import psycopg
from django.db import DataError, IntegrityError, transaction

from messages import processing
from messages.headers import Problem, parse_headers
from messages.models import OutboundMessage, Recipient, Submission
from messages.signals import messages_queued
from messages.submissions import insert_rows, model_row
from streams.rules import StreamError, validate_stream_id
from streams.suppressions import normalise

log = logging.getLogger(__name__)

OK = "OK"
# Errors about the values inserted (not the database's availability).
REFUSED_VALUES = (DataError, IntegrityError, ValueError, psycopg.DataError, psycopg.IntegrityError)
# An item the database refused although every rule passed (a bug, or input nothing caught).
NOT_STORED = "The message could not be stored ({error}), so it was not sent."


@dataclass
class Outcome:
    """The answer for one submission: ErrorCode 0 when it was accepted."""

    error_code: int
    message: str
    submission: Submission | None = None
    stream: str = ""  # the stream ID the message was filed under (for the accept log line)

    @property
    def accepted(self) -> bool:
        return self.error_code == 0


@dataclass
class _Accepted:
    submission: Submission
    message: OutboundMessage
    active: list[str]
    outcome: Outcome


def verdict(problems: list[Problem], recipients: list[str]) -> tuple[int, str, list]:
    """(ErrorCode, Message, recipients to deliver to) for a message with ``problems``, as the
    HTTP API answers: the first problem of the message as a whole rejects it; per-recipient
    problems reject it when they leave nobody to send to, and otherwise only inactive recipients
    are left out (any other per-recipient problem rejects the message)."""
    for problem in problems:
        if problem.recipients is None:
            return problem.error_code, problem.message, []
    failed = {r for p in problems for r in p.recipients}
    active = [r for r in recipients if r not in failed]
    if not problems:
        return 0, OK, active
    if not active or any(p.error_code != 406 for p in problems):
        first = next(p for p in problems if p.error_code != 406) if active else problems[0]
        return first.error_code, first.message, []
    inactive = sorted({normalise(r) for r in failed})
    return 0, processing.PARTLY_INACTIVE_MESSAGE.format(addresses=", ".join(inactive)), active


def judge(submission: Submission, lookups: processing.Lookups):
    """Examine one submission: its Outcome, and for an accepted one the outbound message it
    becomes (unsaved) and its active recipients."""
    parsed, stream, _, problems = processing.examine(submission, lookups)
    recipients = processing.unique_recipients(submission.rcpt_to)
    error_code, message, active = verdict(problems, recipients)
    if error_code:
        return Outcome(error_code, message), None
    outcome = Outcome(0, message, submission, stream.stream_id if stream else "")
    raw = bytes(submission.raw)
    outbound = processing.outbound_message(submission, stream, parsed, raw, active)
    return outcome, _Accepted(submission, outbound, active, outcome)


def judge_without_server(raw: bytes, rcpt_to: list[str]) -> Outcome:
    """Postmark's test token, which names no server: every rule that needs no server's data —
    the headers' own (metadata, tag, tracking values), the recipient limit, the lengths of From
    and Message-ID, and a stream ID no server can have (not one a stream may be created with),
    answered as an unknown stream is (1235). A well-formed stream ID, the sender's identity and
    inactive recipients need a server: they pass."""
    parsed = parse_headers(raw)
    problems = list(parsed.problems)
    if parsed.stream_id:
        try:
            validate_stream_id(parsed.stream_id)
        except StreamError:
            text = f"The stream provided: '{parsed.stream_id}' does not exist on this server."
            problems.insert(0, Problem(1235, text, text))
    recipients = processing.unique_recipients(rcpt_to)
    problems += processing.message_problems(recipients, parsed)
    error_code, message, _ = verdict(problems, recipients)
    return Outcome(error_code, message)


def accept(submissions: list[Submission], *, store: bool = True) -> list[Outcome]:
    """Judge each submission, then store the accepted ones, processed, in one transaction;
    their delivery is queued when it commits. Returns one Outcome per submission, in order.
    With ``store=False`` (Postmark's test token) nothing is written. The judging (parsing
    included) writes nothing: call this outside any transaction, so that no parsing runs while
    the database (SQLite) or rows are locked for other senders.

    Batching is for speed, never for failure: should the database refuse the bulk insert, each
    accepted submission is stored again in a savepoint of its own, so only the one at fault
    fails."""
    lookups = processing.Lookups(r for s in submissions for r in s.rcpt_to)
    outcomes, accepted = [], []
    for submission in submissions:
        outcome, ok = judge(submission, lookups)
        outcomes.append(outcome)
        if ok is not None:
            accepted.append(ok)
    if not store or not accepted:
        return outcomes
    try:
        with transaction.atomic():
            _store(accepted)
    except REFUSED_VALUES as exc:
        log.warning("storing %d message(s) at once failed (%r): one by one", len(accepted), exc)
        for one in accepted:
            try:
                with transaction.atomic():
                    _store([one])
            except REFUSED_VALUES as error:
                log.exception("message %s could not be stored", one.submission.message_id)
                one.outcome.error_code = processing.PROCESSING_ERROR_CODE
                one.outcome.message = NOT_STORED.format(error=type(error).__name__)
                one.outcome.submission = None
    return outcomes


def _store(accepted: list[_Accepted]) -> None:
    """Three inserts, whatever the number of messages: submissions, messages, recipients."""
    for one in accepted:
        one.submission.status = Submission.Status.PROCESSED
        # As after processing: the message is kept once, as the outbound message.
        one.submission.raw = b""
    ids = insert_rows(Submission, [model_row(one.submission) for one in accepted], returning=True)
    for one, pk in zip(accepted, ids, strict=True):
        one.submission.pk = one.message.submission_id = pk
    ids = insert_rows(OutboundMessage, [model_row(one.message) for one in accepted], returning=True)
    for one, pk in zip(accepted, ids, strict=True):
        one.message.pk = pk
    recipients = [
        {"message_id": one.message.pk, "email": e} for one in accepted for e in one.active
    ]
    insert_rows(Recipient, recipients)
    transaction.on_commit(lambda: messages_queued.send(sender=OutboundMessage, outbound_ids=ids))
