"""Processing: from an accepted submission to an outbound message, or SMTPApiError bounces.

The rules of Postmark's SMTP API live here: which stream, the ``X-PM-*`` headers, the recipient
limit, inactive recipients. Problems found after the ``250`` cannot be told to the client, so each
becomes an ``SMTPApiError`` bounce per affected recipient, whose dump holds the long error message
and the message as received.
"""

import logging
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from bounces.models import Dump
from bounces.services import record_bounce
from bounces.types import SMTP_API_ERROR
from core import mime
from domains.from_rule import FromProblem, Sender
from domains.identity import from_refusal
from messages import metrics
from messages.bounce_intake import process_report, read_report
from messages.events import record_bounce_event
from messages.headers import (
    MAX_ADDRESS_LENGTH,
    MAX_HEADER_VALUE_LENGTH,
    MAX_TAG_LENGTH,
    ParsedMessage,
    Problem,
    invalid,
    parse_headers,
)
from messages.intake import intake_for
from messages.models import OutboundMessage, Recipient, Submission
from messages.submissions import insert_rows, model_row
from messages.system import is_system_sender
from servers.models import Server
from streams.models import Endpoint, MessageStream, StreamType
from streams.services import sending_refusal
from streams.suppressions import inactive_among, normalise

log = logging.getLogger(__name__)

DEFAULT_STREAM = "outbound"
# Processing failed for a reason of the service's own (a bug, or input nothing else caught).
PROCESSING_ERROR_CODE = 500
PROCESSING_FAILED = (
    "The message could not be processed ({error}), so it was not sent. The service's operators "
    "find the details in its logs under this MessageID."
)

INACTIVE_MESSAGE = (
    "You tried to send to recipient(s) that have been marked as inactive. "
    "Found inactive addresses: {addresses}. Inactive recipients are ones that have generated "
    "a hard bounce, a spam complaint, or a manual suppression."
)
# The HTTP send API's answer when some recipients are inactive and the others are sent to.
PARTLY_INACTIVE_MESSAGE = (
    "Message OK, but will not deliver to these inactive addresses: {addresses}. Inactive "
    "recipients are ones that have generated a hard bounce or a spam complaint."
)
# Addresses per suppression query when a batch's recipients are looked up together.
LOOKUP_CHUNK = 5000


class Lookups:
    """The database look-ups of processing, memoised for submissions processed together (the
    HTTP send API's batches): each stream is read once, and the suppressions of all of the
    batch's ``recipients`` in one query per stream. With no batch given, every look-up is the
    query a single submission needs."""

    def __init__(self, recipients=()):
        self._batch = {normalise(r) for r in recipients if r}
        self._known: dict[tuple, object] = {}
        self._inactive: dict[int, set[str]] = {}

    def once(self, key: tuple, look_up):
        """``look_up()``, called once per ``key`` for the whole batch (any rule whose answer
        depends only on the key: a stream, a sender)."""
        if key not in self._known:
            self._known[key] = look_up()
        return self._known[key]

    def stream(self, server: Server, stream_id: str) -> MessageStream | None:
        return self.once(
            ("stream", server.pk, stream_id),
            lambda: MessageStream.objects.filter(server=server, stream_id=stream_id).first(),
        )

    def inactive_among(self, stream: MessageStream, emails) -> set[str]:
        wanted = {normalise(e) for e in emails if e}
        if not wanted <= self._batch:
            return inactive_among(stream, wanted)
        if stream.pk not in self._inactive:
            batch = sorted(self._batch)
            self._inactive[stream.pk] = set().union(
                *(inactive_among(stream, batch[i : i + LOOKUP_CHUNK])
                  for i in range(0, len(batch), LOOKUP_CHUNK))
            )  # fmt: skip
        return self._inactive[stream.pk] & wanted


def resolve_stream(
    server: Server,
    submission_stream: MessageStream | None,
    header_stream: str,
    endpoint: str,
    lookups: Lookups | None = None,
) -> tuple[MessageStream | None, str, Problem | None]:
    """The stream a message goes to, the stream ID to report, and the problem if any.

    SMTP tokens and IP credentials fix the stream; server tokens (over SMTP or HTTP) name it in
    X-PM-Message-Stream (default ``outbound``)."""
    stream = submission_stream
    stream_id = stream.stream_id if stream else (header_stream or DEFAULT_STREAM)
    if stream is None:
        stream = (lookups or Lookups()).stream(server, stream_id)
        if stream is None:
            text = f"The stream provided: '{stream_id}' does not exist on this server."
            return None, stream_id, Problem(1235, text, text)
    if stream.archived:
        text = f"The stream provided: '{stream_id}' is archived and cannot send."
        return stream, stream_id, Problem(1236, text, text)
    refusal = sending_refusal(stream.message_stream_type, stream_id, endpoint)
    if refusal:
        return stream, stream_id, Problem(1236, refusal, refusal)
    return stream, stream_id, None


def find_problems(
    submission: Submission,
    parsed: ParsedMessage,
    stream,
    stream_problem,
    lookups: Lookups | None = None,
):
    """Every problem with a submission: message-level ones first, then inactive recipients and
    addresses that cannot be stored (these fail alone)."""
    problems = list(parsed.problems)
    if stream_problem:
        problems.insert(0, stream_problem)
    recipients = unique_recipients(submission.rcpt_to)
    own = message_problems(recipients, parsed)
    sender = parsed.sender
    if isinstance(sender, FromProblem):
        problems = own[:1] + problems + own[1:]  # the From first, as Postmark answers
    else:
        problems += own
    if (
        not isinstance(sender, FromProblem)
        and not problems
        and not is_system_sender(submission.server, sender.address)
    ):
        lookups = lookups or Lookups()
        problems.extend(lookups.once(("sender", sender.addr_spec), lambda: sender_problems(sender)))
    per_recipient = []
    for recipient in recipients:
        if len(recipient) > MAX_ADDRESS_LENGTH or "\x00" in recipient:
            problem = invalid(
                f"The recipient address '{recipient[:80]}…' is not a valid address: at most "
                f"{MAX_ADDRESS_LENGTH} characters, and no NUL."
            )
            problem.recipients = [recipient]
            per_recipient.append(problem)
    if stream is not None and not problems:
        unstorable = {r for p in per_recipient for r in p.recipients}
        inactive = (lookups or Lookups()).inactive_among(
            stream, [r for r in recipients if r not in unstorable]
        )
        if inactive:
            listed = ", ".join(sorted(inactive))
            problems.append(
                Problem(
                    406,
                    INACTIVE_MESSAGE.format(addresses=listed),
                    f"Inactive recipient: {listed}",
                    recipients=[r for r in recipients if normalise(r) in inactive],
                )
            )
    return problems + per_recipient


def message_problems(recipients: list[str], parsed: ParsedMessage) -> list[Problem]:
    """The problems of a message that no server's data decides (with the header's own, in
    ``parsed.problems``): what Postmark's test token is checked for too. A From the From rule
    refuses comes first."""
    problems = []
    sender = parsed.sender
    if isinstance(sender, FromProblem):
        problems.append(Problem(sender.error_code, sender.message, sender.details))
    if len(recipients) > settings.SMTP_MAX_RECIPIENTS:
        problems.append(too_many_recipients(len(recipients)))
    if len(parsed.from_address) > MAX_HEADER_VALUE_LENGTH:
        problems.append(
            invalid(f"The From header is longer than {MAX_HEADER_VALUE_LENGTH} characters.")
        )
    if parsed.keep_id and len(parsed.message_id_header) > MAX_HEADER_VALUE_LENGTH:
        problems.append(
            invalid(f"The Message-ID header is longer than {MAX_HEADER_VALUE_LENGTH} characters.")
        )
    return problems


def too_many_recipients(count: int) -> Problem:
    return invalid(
        f"A message may have at most {settings.SMTP_MAX_RECIPIENTS} recipients, this one has "
        f"{count}."
    )


def sender_problems(sender: Sender) -> list[Problem]:
    """The sender-identity problem of a From mailbox (``domains.identity``), if any."""
    refusal = from_refusal(sender)
    if refusal is None:
        return []
    code, message = refusal
    details = (
        message if code != 400 else f"'{sender.addr_spec}' is not a confirmed Sender Signature."
    )
    return [Problem(code, message, details)]


def delivered_content(
    raw: bytes, message_id_header: str, keep_id: bool, message_id: uuid.UUID
) -> tuple[bytes, str]:
    """The message as it will be delivered: no X-PM-* or Bcc header, and a Message-ID derived
    from the MessageID unless the client asked to keep its own. Returns the bytes and the
    Message-ID header value."""
    if keep_id and message_id_header:
        return mime.rewrite(raw, _drop_private, []), message_id_header
    new_id = f"<{message_id}@{settings.MESSAGE_ID_DOMAIN}>"
    content = mime.rewrite(
        raw,
        lambda name: _drop_private(name) or name == "message-id",
        [f"Message-ID: {new_id}".encode()],
    )
    return content, new_id


def _drop_private(name: str) -> bool:
    return name.startswith("x-pm-") or name == "bcc"


def dump_head(problems: list[Problem]) -> str:
    """The head of an SMTPApiError dump: each long error message with its code, then a blank
    line; the message as received follows (the shared ``Dump``)."""
    return (
        "".join(f"ErrorCode: {p.error_code}\r\nMessage: {p.message}\r\n" for p in problems) + "\r\n"
    )


def examine(
    submission: Submission, lookups: Lookups | None = None, parsed: ParsedMessage | None = None
):
    """Parse a submission (unless ``parsed`` is given) and find its problems, writing nothing:
    (parsed headers, stream, stream ID, problems). Strict mode runs this in the SMTP session
    before answering, and the HTTP send API before it answers (``messages.immediate``)."""
    if parsed is None:
        parsed = parse_headers(bytes(submission.raw))
    stream, stream_id, stream_problem = resolve_stream(
        submission.server, submission.stream, parsed.stream_id, submission.endpoint, lookups
    )
    problems = find_problems(submission, parsed, stream, stream_problem, lookups)
    return parsed, stream, stream_id, problems


# --- reading the bytes, before any transaction -------------------------------------------------


@dataclass
class Prepared:
    """What processing reads from a submission's bytes, read before its transaction begins, so
    that no parsing runs while rows (or, on SQLite, the database) are locked for other senders:
    the parsed header and the content as delivered, or the report of a bounce-MX submission."""

    raw: bytes
    parsed: ParsedMessage | None = None
    delivered: tuple[bytes, str] | None = None  # delivered_content's (bytes, Message-ID)
    report: tuple | None = None  # bounce_intake.read_report's, for the bounce MX
    intake: object = None  # an Intake's reading, for the endpoints apps above take over


def prepare(submission_ids: list[int]) -> dict[int, Prepared]:
    """Read and parse the submissions still waiting for processing, outside any transaction
    (the rows are not locked: the bytes of a waiting submission never change, and one that is
    processed meanwhile is skipped under its lock). A submission whose reading fails is left out:
    processing then reads it in its own turn, where it fails alone."""
    prepared = {}
    rows = Submission.objects.filter(pk__in=submission_ids, status__in=WAITING).values_list(
        "pk", "raw", "endpoint", "rcpt_to", "message_id", "mail_from"
    )
    for pk, raw, endpoint, rcpt_to, message_id, mail_from in rows.iterator(chunk_size=64):
        raw = bytes(raw)
        try:
            intake = intake_for(endpoint)
            if intake is not None:
                prepared[pk] = Prepared(raw, intake=intake.read(raw, rcpt_to, mail_from))
                continue
            if endpoint == Endpoint.BOUNCE:
                prepared[pk] = Prepared(raw, report=read_report(raw, rcpt_to))
                continue
            parsed = parse_headers(raw)
            delivered = delivered_content(raw, parsed.message_id_header, parsed.keep_id, message_id)
            prepared[pk] = Prepared(raw, parsed, delivered)
        except Exception:
            log.exception("reading submission %s failed; it is processed on its own", message_id)
    return prepared


def _prepared_for(submission: Submission, prepared: dict[int, Prepared] | None) -> Prepared:
    """The submission's prepared reading, its bytes put back on the row (loaded without them)."""
    item = (prepared or {}).get(submission.pk)
    if item is None:  # its reading failed beforehand: read the bytes now (parsed by examine)
        raw = bytes(Submission.objects.filter(pk=submission.pk).values_list("raw", flat=True)[0])
        item = Prepared(raw)
    submission.raw = item.raw
    return item


def process_submission(submission_id: int, prepared: dict[int, Prepared] | None = None) -> str:
    """Process one accepted submission, once: returns its new status (or the old one when it was
    already processed). Database errors propagate so the task is retried. Queuing the delivery
    of what it made is the caller's (``messages.tasks.process_submissions``). The bytes are read
    and parsed before the transaction (``prepare``), unless the caller did (``prepared``)."""
    if prepared is None:
        prepared = prepare([submission_id])
    with transaction.atomic():
        submission = waiting_submission(submission_id)
        if submission is None or submission.status not in WAITING:
            return submission.status if submission else "missing"
        item = _prepared_for(submission, prepared)
        if submission.endpoint == Endpoint.BOUNCE:
            return _process_report(submission, item)
        if intake_for(submission.endpoint) is not None:
            return _process_intake(submission, item)
        raw = item.raw
        parsed, stream, stream_id, problems = examine(submission, parsed=item.parsed)
        recipients = unique_recipients(submission.rcpt_to)
        failed = record_problems(submission, parsed, stream, stream_id, problems, raw, recipients)
        active = [r for r in recipients if r not in failed]
        if active and submission.status == Submission.Status.ACCEPTED:
            _create_outbound(submission, stream, parsed, raw, active, item.delivered)
            submission.status = Submission.Status.PROCESSED
        else:
            submission.status = Submission.Status.FAILED
        finish(submission)
        metrics.submission_processed(submission.status, submission.received_at)
        return submission.status


WAITING = (Submission.Status.ACCEPTED, Submission.Status.REJECTED)


def process_batch(
    submission_ids: list[int], prepared: dict[int, Prepared] | None = None
) -> dict[int, str]:
    """Process many accepted submissions at once, by the same rules as ``process_submission``,
    in one transaction and a number of queries that does not grow with the batch: the rows are
    locked in one query, streams, suppressions and senders are looked up once for the batch
    (``Lookups``), the outbound messages and their recipients are inserted in one statement
    each, and the submissions are marked in one UPDATE per outcome. Problems still become
    SMTPApiError bounces one by one (they are rare). Returns each submission's status.

    The bytes are read and parsed before the transaction begins (``prepare``, unless the caller
    did: ``prepared``), so that no parsing runs while the rows are locked.

    Any error propagates and rolls the whole batch back: the caller then processes the batch
    one submission at a time, where a submission that fails fails alone."""
    statuses: dict[int, str] = {}
    if prepared is None:
        prepared = prepare(submission_ids)
    with transaction.atomic():
        submissions = list(
            Submission.objects.select_for_update(of=("self",))
            .select_related("server", "stream")
            .defer("raw")
            .filter(pk__in=submission_ids)
            .order_by("pk")
        )
        lookups = Lookups(r for s in submissions if s.status in WAITING for r in s.rcpt_to)
        made, done = [], {Submission.Status.PROCESSED: [], Submission.Status.FAILED: []}
        for submission in submissions:
            if submission.status not in WAITING:
                statuses[submission.pk] = submission.status
                continue
            item = _prepared_for(submission, prepared)
            if submission.endpoint == Endpoint.BOUNCE:
                statuses[submission.pk] = _process_report(submission, item)
                continue
            if intake_for(submission.endpoint) is not None:
                statuses[submission.pk] = _process_intake(submission, item)
                continue
            raw = item.raw
            parsed, stream, stream_id, problems = examine(submission, lookups, item.parsed)
            recipients = unique_recipients(submission.rcpt_to)
            failed = record_problems(
                submission, parsed, stream, stream_id, problems, raw, recipients
            )
            active = [r for r in recipients if r not in failed]
            if active and submission.status == Submission.Status.ACCEPTED:
                message = outbound_message(submission, stream, parsed, raw, active, item.delivered)
                made.append((message, active))
                status = Submission.Status.PROCESSED
            else:
                status = Submission.Status.FAILED
            done[status].append(submission.pk)
            statuses[submission.pk] = status
            metrics.submission_processed(status, submission.received_at)
        _insert_outbound(made)
        for status, pks in done.items():
            if pks:
                Submission.objects.filter(pk__in=pks).update(
                    status=status, raw=b"", leased_until=None
                )
    return statuses


def _insert_outbound(made: list[tuple[OutboundMessage, list[str]]]) -> None:
    """One INSERT for the messages, one for their recipients."""
    if not made:
        return
    ids = insert_rows(OutboundMessage, [model_row(message) for message, _ in made], returning=True)
    insert_rows(
        Recipient,
        [{"message_id": pk, "email": email} for pk, (_, active) in zip(ids, made, strict=True)
         for email in active],
    )  # fmt: skip


def _process_report(submission: Submission, item: Prepared) -> str:
    """A submission of the bounce MX: a report about an earlier message."""
    submission.status = process_report(submission, item.report)
    # A report linked to no message stays as it came, for operators to look at.
    finish(submission, keep_raw=submission.status == Submission.Status.FAILED)
    metrics.submission_processed(submission.status, submission.received_at)
    return submission.status


def _process_intake(submission: Submission, item: Prepared) -> str:
    """A submission an app above takes over (``messages.intake``): it keeps the bytes it needs."""
    intake = intake_for(submission.endpoint)
    read = item.intake
    if read is None:  # its reading failed beforehand: read it now
        read = intake.read(item.raw, submission.rcpt_to, submission.mail_from)
    submission.status = intake.store(submission, item.raw, read)
    finish(submission)
    metrics.submission_processed(submission.status, submission.received_at)
    return submission.status


def waiting_submission(submission_id: int) -> Submission | None:
    """The submission, locked for this transaction (another worker's try waits for it), without
    its bytes (``_prepared_for`` puts back those read before the transaction)."""
    return (
        Submission.objects.select_for_update(of=("self",))
        .select_related("server", "stream")
        .defer("raw")
        .filter(pk=submission_id)
        .first()
    )


def finish(submission: Submission, *fields: str, keep_raw: bool = False) -> None:
    """Save the submission's final status and drop its raw bytes: from here on the message is
    kept once, as the outbound message (what is delivered) or as the dump of its SMTPApiErrors.
    With ``keep_raw`` the bytes stay as they are in the database (never loaded for this)."""
    if not keep_raw:
        submission.raw = b""
        fields += ("raw",)
    submission.leased_until = None
    submission.save(update_fields=["status", "leased_until", *fields])


def unique_recipients(rcpt_to: list[str]) -> list[str]:
    """The envelope recipients, each address once (in any letter case), in their order."""
    seen: set[str] = set()
    unique = []
    for recipient in rcpt_to:
        if normalise(recipient) not in seen:
            seen.add(normalise(recipient))
            unique.append(recipient)
    return unique


def record_problems(submission, parsed, stream, stream_id, problems, raw, recipients) -> set[str]:
    """One SMTPApiError per affected recipient, listing all of its problems; the message as
    received is stored once, as the shared rest of their dumps. Returns the failed recipients."""
    by_recipient: dict[str, list[Problem]] = {}
    for problem in problems:
        for recipient in problem.recipients if problem.recipients is not None else recipients:
            listed = by_recipient.setdefault(recipient, [])
            if all((p.error_code, p.message) != (problem.error_code, problem.message)
                   for p in listed):  # fmt: skip
                listed.append(problem)
    if not by_recipient:
        return set()
    report_stream, report_stream_id = where_errors_go(submission.server, stream, stream_id)
    source = Dump.objects.create(text=mime.decode_bytes(raw, parsed.charset))
    for recipient, its_problems in by_recipient.items():
        bounce = record_bounce(
            server=submission.server,
            stream=report_stream,
            message_stream=report_stream_id,
            type=SMTP_API_ERROR,
            email=recipient,
            message_id=submission.message_id,
            from_address=recorded_sender(parsed, submission),
            subject=parsed.subject,
            tag=parsed.tag[:MAX_TAG_LENGTH],
            metadata=parsed.metadata,
            details="; ".join(p.details for p in its_problems),
            content=dump_head(its_problems),
            source=source,
            bounced_at=submission.received_at,
        )
        record_bounce_event(bounce)
    return set(by_recipient)


def recorded_sender(parsed: ParsedMessage, submission: Submission) -> str:
    """The From address an SMTP API error records: the From rule's mailbox; for a From the
    rule refused, the envelope sender (a label only: it never stands in for the rule)."""
    if isinstance(parsed.sender, Sender):
        return parsed.sender.addr_spec
    return submission.mail_from


def where_errors_go(server: Server, stream: MessageStream | None, stream_id: str):
    """The stream an SMTPApiError is filed under, and its ID: the message's own stream, unless it
    does not exist, is archived or is inbound; then the server's default transactional stream
    (``outbound``), where the default bounce query, the dashboard and its webhooks show it. The
    error's text names the stream that was asked for."""
    if (
        stream is not None
        and not stream.archived
        and stream.message_stream_type != (StreamType.INBOUND)
    ):
        return stream, stream_id
    default = MessageStream.objects.filter(server=server, stream_id=DEFAULT_STREAM).first()
    return default, DEFAULT_STREAM


def _create_outbound(submission, stream, parsed: ParsedMessage, raw: bytes, active, delivered):
    message = outbound_message(submission, stream, parsed, raw, active, delivered)
    message.save()
    Recipient.objects.bulk_create([Recipient(message=message, email=email) for email in active])


def outbound_message(
    submission,
    stream,
    parsed: ParsedMessage,
    raw: bytes,
    active: list[str],
    delivered: tuple[bytes, str] | None = None,
) -> OutboundMessage:
    """The outbound message a submission becomes (not saved): what is delivered to the
    ``active`` recipients, and what the API reports about it. ``delivered`` is
    ``delivered_content``'s answer when it was computed beforehand (``prepare``)."""
    server = submission.server
    content, message_id_header = delivered or delivered_content(
        raw, parsed.message_id_header, parsed.keep_id, submission.message_id
    )
    header_recipients = {a.lower() for a in parsed.to + parsed.cc}
    track_opens = stream.message_stream_type == StreamType.TRANSACTIONAL and (
        server.track_opens or bool(parsed.track_opens)
    )
    return OutboundMessage(
        message_id=submission.message_id,
        # By id: the instance would put the two in a reference cycle, and keep the batch's
        # bytes (the submission's, the message's content) alive until a garbage collection.
        submission_id=submission.pk,
        server=server,
        stream=stream,
        from_address=parsed.from_address,
        # Set here, not only by save(): the send API and batch processing insert in bulk.
        from_email=recorded_sender(parsed, submission).lower()[:MAX_ADDRESS_LENGTH],
        to=parsed.to,
        cc=parsed.cc,
        bcc=[
            r for r in unique_recipients(submission.rcpt_to) if r.lower() not in header_recipients
        ],  # fmt: skip
        recipients=active,
        subject=parsed.subject,
        tag=parsed.tag,
        metadata=parsed.metadata,
        track_opens=track_opens,
        track_links=parsed.track_links or server.track_links,
        message_id_header=message_id_header,
        size=len(content),
        content=content,
        received_at=submission.received_at,
    )
