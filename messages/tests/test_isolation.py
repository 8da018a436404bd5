"""One submission's failure is its own: a poison message never holds up, fails or multiplies the
work of the messages processed beside it, and every submission reaches a terminal state the
sender can see."""

import threading
import time

import pytest

from bounces.models import Bounce, Dump
from conftest import MESSAGE, accepted_submission, send
from delivery import tasks as delivery_tasks
from messages import processing, tasks, tries
from messages.models import OutboundMessage, Recipient, Submission

NORMAL = 20
TERMINAL = {Submission.Status.PROCESSED, Submission.Status.FAILED}


def message(*headers: bytes, body: bytes = b"Hello.\r\n") -> bytes:
    return (
        b"From: App <app@example.com>\r\nTo: ann@example.net\r\nSubject: Hello\r\n"
        + b"".join(h + b"\r\n" for h in headers)
        + b"\r\n"
        + body
    )


# --- In the worker: unexpected errors are counted, then the submission fails visibly -------------


@pytest.fixture
def batch(server):
    normal = [accepted_submission(server, message(), [f"n{i}@example.net"]) for i in range(NORMAL)]
    poison = accepted_submission(server, message(b"X-PM-Tag: poison"), ["p@example.net"])
    return normal, poison


def poisoned(monkeypatch, poison):
    """Processing raises for the poison submission only (a bug it happens to trigger), whether
    the batch is processed as a set or one by one."""
    original = processing.outbound_message

    def outbound_message(submission, *args):
        if submission.pk == poison.pk:
            raise RuntimeError("unexpected")
        return original(submission, *args)

    monkeypatch.setattr(processing, "outbound_message", outbound_message)


@pytest.mark.django_db
def test_an_unexpected_error_fails_one_submission_not_its_batch(batch, monkeypatch, settings):
    settings.PROCESSING_ATTEMPTS = 3
    normal, poison = batch
    poisoned(monkeypatch, poison)
    monkeypatch.setattr(delivery_tasks, "enqueue_deliveries", lambda ids: None)
    ids = [str(s.message_id) for s in [poison, *normal]]

    assert tasks.process_submissions(ids) == NORMAL + 1  # no exception: nothing to retry
    assert Submission.objects.filter(status="processed").count() == NORMAL
    poison.refresh_from_db()
    assert (poison.status, poison.attempts) == ("accepted", 1)
    assert not Bounce.objects.exists()

    tasks.process_submissions([str(poison.message_id)])
    tasks.process_submissions([str(poison.message_id)])
    poison.refresh_from_db()
    assert (poison.status, poison.attempts) == ("failed", 3)
    error = Bounce.objects.get(message_id=poison.message_id)
    assert error.type == "SMTPApiError" and error.email == "p@example.net"
    assert error.message_stream == "outbound" and error.tag == "poison"
    assert "could not be processed (RuntimeError)" in error.details
    assert error.dump_text.startswith("ErrorCode: 500\r\n")
    assert "X-PM-Tag: poison" in error.dump_text  # the message, as received
    # Failed is terminal: the sweep never takes it again.
    assert tasks.requeue_stuck_submissions(older_than_seconds=0) == 0


def failing_error_records(monkeypatch, times: int) -> list:
    """Recording the processing error (ErrorCode 500) fails ``times`` times, as a bug in it or
    a value the database refuses would; the other records are made as usual."""
    original, failures = tries.record_problems, []

    def record_problems(submission, parsed, stream, stream_id, problems, *args):
        if any(p.error_code == 500 for p in problems) and len(failures) < times:
            failures.append(submission.pk)
            raise ValueError("the error could not be recorded")
        return original(submission, parsed, stream, stream_id, problems, *args)

    monkeypatch.setattr(tries, "record_problems", record_problems)
    return failures


@pytest.mark.parametrize(
    "record_failures, whole_dump",
    [
        (1, True),  # the retry records the error as it should have been
        (99, False),  # the retry records it without the message, which cannot fail the same way
    ],
)
@pytest.mark.django_db
def test_an_error_that_could_not_be_recorded_is_recorded_on_the_retry(
    server, monkeypatch, settings, record_failures, whole_dump
):
    settings.PROCESSING_ATTEMPTS = 3
    poison = accepted_submission(server, message(b"X-PM-Tag: poison"), ["p@example.net"])
    poisoned(monkeypatch, poison)
    failures = failing_error_records(monkeypatch, record_failures)
    monkeypatch.setattr(delivery_tasks, "enqueue_deliveries", lambda ids: None)
    for _ in range(3):
        tasks.process_submissions([str(poison.message_id)])
    poison.refresh_from_db()
    assert failures == [poison.pk]
    assert (poison.status, poison.attempts) == ("accepted", 3)  # not failed without a bounce
    assert not Bounce.objects.exists()

    queued = []
    monkeypatch.setattr(tasks, "enqueue_processing", lambda ids: queued.extend(ids))
    assert tasks.requeue_stuck_submissions(older_than_seconds=0) == 1
    tasks.process_submissions(queued)
    poison.refresh_from_db()
    assert (poison.status, poison.attempts) == ("failed", 4)
    error = Bounce.objects.get(message_id=poison.message_id)
    assert (error.type, error.email, error.message_stream) == (
        "SMTPApiError", "p@example.net", "outbound"
    )  # fmt: skip
    assert "could not be processed (RuntimeError)" in error.details
    assert error.dump_text.startswith("ErrorCode: 500\r\n")
    assert ("X-PM-Tag: poison" in error.dump_text) is whole_dump  # the message, as received
    assert (bytes(poison.raw) != b"") is not whole_dump  # else it stays for the operators
    assert tasks.requeue_stuck_submissions(older_than_seconds=0) == 0  # terminal


@pytest.mark.django_db
def test_the_sweep_queues_fresh_work_ahead_of_a_row_that_keeps_failing(batch, monkeypatch):
    normal, poison = batch
    Submission.objects.filter(pk=poison.pk).update(attempts=2)
    queued = []
    monkeypatch.setattr(tasks, "enqueue_processing", lambda ids: queued.extend(ids))
    assert tasks.requeue_stuck_submissions(older_than_seconds=0) == NORMAL + 1
    assert queued[-1] == str(poison.message_id)


@pytest.mark.django_db
def test_a_database_outage_retries_the_batch_and_counts_nothing(batch, monkeypatch):
    from django.db import OperationalError

    normal, poison = batch

    def unavailable(submission_ids, prepared=None):
        raise OperationalError("the database went away")

    monkeypatch.setattr(tasks, "process_batch", unavailable)
    monkeypatch.setattr(tasks, "process_submission", unavailable)
    with pytest.raises(Exception, match="could not be processed"):
        tasks.process_submissions([str(poison.message_id)])
    poison.refresh_from_db()
    assert (poison.status, poison.attempts) == ("accepted", 0)


@pytest.mark.django_db
def test_one_smtp_api_error_per_recipient_however_many_problems(server):
    headers = [f"X-PM-Metadata-k{i}: {'v' * 10}".encode() for i in range(100)]
    body = b"x" * 76 + b"\r\n"
    raw = message(b"X-PM-TrackOpens: maybe", *headers, body=body * 6000)  # about 0.5 MB
    submission = accepted_submission(server, raw, ["a@example.net", "b@example.net"])
    assert processing.process_submission(submission.pk) == "failed"
    bounces = list(Bounce.objects.order_by("email"))
    assert [b.email for b in bounces] == ["a@example.net", "b@example.net"]
    assert Dump.objects.count() == 1  # the message, stored once for both
    first = bounces[0]
    assert "X-PM-TrackOpens must be true or false" in first.details
    assert "at most 10 metadata fields" in first.details
    assert first.details.count("at most 10 metadata fields") == 1
    assert first.dump_text.count("ErrorCode: 300") == 2
    assert sum(len(b.content) for b in bounces) < 2000  # no copy of the message per bounce


@pytest.mark.django_db
def test_duplicate_recipients_are_merged(server):
    rcpts = ["ann@example.net", "ANN@example.net", "bob@example.net"]
    submission = accepted_submission(server, message(), rcpts)
    assert processing.process_submission(submission.pk) == "processed"
    out = OutboundMessage.objects.get()
    assert out.recipients == ["ann@example.net", "bob@example.net"]
    assert Recipient.objects.count() == 2


@pytest.mark.django_db
def test_values_no_column_can_hold_become_precise_errors(server):
    long_stream = b"X-PM-Message-Stream: " + b"s" * 300
    long_from = b"From: " + b"a" * 1000 + b"@example.com"
    # (A NUL in an address cannot even be stored on PostgreSQL: the gateway refuses it at RCPT.)
    rcpts = ["ok@example.net", "x" * 370 + "@example.net", "y" * 330 + "@example.net"]
    first = accepted_submission(server, message(long_stream), ["ann@example.net"])
    second = accepted_submission(server, long_from + b"\r\n" + message(), ["ann@example.net"])
    third = accepted_submission(server, message(), rcpts)
    assert processing.process_submission(first.pk) == "failed"
    assert processing.process_submission(second.pk) == "failed"
    assert processing.process_submission(third.pk) == "processed"
    stream_error = Bounce.objects.get(message_id=first.message_id)
    assert stream_error.message_stream == "outbound"
    assert "s" * 300 in stream_error.details
    assert (
        "From header is longer than 998" in Bounce.objects.get(message_id=second.message_id).details
    )
    errors = Bounce.objects.filter(message_id=third.message_id)
    assert errors.count() == 2 and all("not a valid address" in b.details for b in errors)
    assert OutboundMessage.objects.get(message_id=third.message_id).recipients == ["ok@example.net"]


@pytest.mark.django_db
def test_nul_and_unknown_charsets_in_headers_never_stop_processing(server):
    raw = (
        b"From: App <app@example.com>\r\nTo: ann@example.net\r\n"
        b"Subject: Caf\xe9 =?utf-8?q?a=00b?=\r\n"
        b"Content-Type: text/plain; charset=undefined\r\n\r\nCaf\xe9\r\n"
    )
    submission = accepted_submission(server, raw, ["ann@example.net"])
    assert processing.process_submission(submission.pk) == "processed"
    assert "\x00" not in OutboundMessage.objects.get().subject


# --- Through the real gateway and a real worker --------------------------------------------------


POISON = {
    "undefined charset, 8-bit subject": (
        b"Content-Type: text/plain; charset=undefined\r\n" + MESSAGE.replace(
            b"Subject: Hello", b"Subject: Caf\xe9"
        ),
        ["user@example.net"],
        "processed",
    ),
    "the same recipient twice": (MESSAGE, ["twice@example.net", "twice@example.net"],
                                 "processed"),
    "a 300-character stream": (b"X-PM-Message-Stream: " + b"s" * 300 + b"\r\n" + MESSAGE,
                               ["user@example.net"], "failed"),
    "100 metadata keys": (
        b"".join(f"X-PM-Metadata-k{i}: v\r\n".encode() for i in range(100)) + MESSAGE,
        ["user@example.net"],
        "failed",
    ),
    "NUL in an encoded word": (MESSAGE.replace(b"Subject: Hello", b"Subject: =?utf-8?q?a=00?="),
                               ["user@example.net"], "processed"),
}  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_poison_beside_twenty_normal_messages(gateway, creds, worker):  # noqa: F811
    results: dict[str, str] = {}

    def session(key, raw, rcpts):
        client = gateway.smtp()
        client.login(creds.server_token, creds.server_token)  # it names the stream itself
        results[key] = send(client, raw, rcpts=rcpts)
        client.quit()

    threads = [
        threading.Thread(target=session, args=(f"normal {i}", MESSAGE, [f"u{i}@example.net"]))
        for i in range(NORMAL)
    ]
    threads += [
        threading.Thread(target=session, args=(name, raw, rcpts))
        for name, (raw, rcpts, _) in POISON.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == NORMAL + len(POISON)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not Submission.objects.exclude(status__in=TERMINAL).exists():
            break
        time.sleep(0.2)
    statuses = dict(Submission.objects.values_list("message_id", "status"))
    for key, message_id in results.items():
        expected = POISON[key][2] if key in POISON else "processed"
        assert statuses[message_id_of(message_id)] == expected, key
    twice = OutboundMessage.objects.get(message_id=results["the same recipient twice"])
    assert twice.recipients == ["twice@example.net"]
    for key in ("a 300-character stream", "100 metadata keys"):
        errors = Bounce.objects.filter(message_id=results[key])
        assert errors.count() == 1 and errors.get().type == "SMTPApiError", key
        assert errors.get().message_stream == "outbound"


def message_id_of(text: str):
    import uuid

    return uuid.UUID(text)


# --- No parsing inside the transaction other senders wait on ---------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["as a set", "one by one"])
def test_no_message_is_parsed_inside_the_batch_transaction(server, monkeypatch, settings, path):
    """Processing parsed every message (and rewrote it, and parsed bounce reports) inside the
    batch's transaction: on SQLite the database's write lock, which every gateway's commit waits
    for (honest senders got 451), on PostgreSQL the rows' locks. Now every parse runs before the
    transaction begins, as a set and one by one."""
    from django.db import connection

    from bounces import reports
    from conftest import BOUNCE_DOMAIN
    from core import mime
    from messages import bounce_intake, headers
    from smtpgw.tests.test_bounce_mx import sent_message, verp

    settings.BOUNCE_DOMAIN = BOUNCE_DOMAIN
    monkeypatch.setattr(delivery_tasks, "enqueue_deliveries", lambda ids: None)
    inside: list[str] = []

    def watched(module, name):
        original = getattr(module, name)

        def call(*args, **kwargs):
            if connection.in_atomic_block:
                inside.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, call)

    watched(processing, "parse_headers")
    watched(headers, "parse_headers")
    watched(mime, "fields")
    watched(bounce_intake, "parse_report")
    watched(reports, "parse_report")
    if path == "one by one":
        monkeypatch.setattr(tasks, "process_batch", lambda *args: 1 / 0)
    sent = sent_message(server, ["gone@example.org"])
    report = (
        b"Subject: Undelivered Mail\r\nContent-Type: text/plain\r\n\r\n"
        b"<gone@example.org>: 550 5.1.1 user unknown\r\n"
    )
    submissions = [
        accepted_submission(server, message(b"X-Folded: a\r\n" + b" b\r\n" * 1000), ["a@x.net"]),
        accepted_submission(
            server, message(b"X-PM-Tag: t"), [f"n{i}@example.net" for i in range(3)]
        ),
        accepted_submission(server, report, [verp(sent)], endpoint="bounce", mail_from=""),
    ]
    tasks.process_submissions([str(s.message_id) for s in submissions])

    assert inside == []
    statuses = Submission.objects.filter(pk__in=[s.pk for s in submissions])
    assert set(statuses.values_list("status", flat=True)) == {"processed"}
    assert Bounce.objects.filter(email="gone@example.org", type="HardBounce").exists()


# --- One huge folded header beside twenty honest senders, through the gateway and a worker -------

FOLD = b" " + b"a" * 70 + b"\r\n"
FOLDED = {
    # Over the field cap: refused at DATA, nothing stored.
    "a 2 MB folded field": (b"X-Folded: a\r\n" + FOLD * 30_000, 552),
    # Just below both caps (ten fields of 99 kB): accepted, and processed in time linear in it.
    "ten 99 kB folded fields": (
        b"".join(b"X-Folded-%d: a\r\n" % i + FOLD * 1390 for i in range(10)), 250
    ),
    "a 99 kB folded Subject of encoded words": (
        b"Subject: =?utf-8?q?a?=\r\n" + b" =?utf-8?q?=C3=A9?=\r\n" * 4500, 250
    ),
}  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_folded_headers_beside_twenty_honest_senders(gateway, creds, worker):  # noqa: F811
    """One header folded over many lines stalled everyone: processing it took minutes (quadratic)
    inside the batch's transaction, and honest senders got 451 or waited. Now a header over the
    caps is refused at DATA (552 5.3.4), one below them is processed in time linear in its size,
    and the twenty honest senders beside them all get 250 at once and are processed."""
    import smtplib

    honest: dict[str, tuple[str, float]] = {}
    hostile: dict[str, tuple[int, str]] = {}

    def honest_session(key):
        client = gateway.smtp()
        client.login(creds.access_key, creds.secret)
        started = time.monotonic()
        message_id = send(client, MESSAGE, rcpts=[f"{key}@example.net"])
        honest[key] = (message_id, time.monotonic() - started)
        client.quit()

    def hostile_session(name, header):
        client = gateway.smtp()
        client.login(creds.access_key, creds.secret)
        client.mail("app@example.com")
        client.rcpt("victim@example.net")
        try:
            code, reply = client.data(header + MESSAGE)
        except smtplib.SMTPDataError as error:
            code, reply = error.smtp_code, error.smtp_error
        hostile[name] = (code, reply.decode())
        client.quit()

    threads = [threading.Thread(target=hostile_session, args=(name, header))
               for name, (header, _) in FOLDED.items()]  # fmt: skip
    threads += [threading.Thread(target=honest_session, args=(f"h{i}",)) for i in range(NORMAL)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(honest) == NORMAL and len(hostile) == len(FOLDED)
    for name, (_, code) in FOLDED.items():
        assert hostile[name][0] == code, (name, hostile[name])
    assert "5.3.4 Message header field too long" in hostile["a 2 MB folded field"][1]
    slowest = max(seconds for _, seconds in honest.values())
    assert slowest < 10, f"an honest sender waited {slowest:.1f} s"

    accepted = [message_id_of(m) for m, _ in honest.values()]
    accepted += [message_id_of(reply.rsplit("queued as ", 1)[1]) for code, reply in
                 hostile.values() if code == 250]  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (
            not Submission.objects.filter(message_id__in=accepted)
            .exclude(status__in=TERMINAL)
            .exists()
        ):
            break
        time.sleep(0.2)
    statuses = dict(Submission.objects.filter(message_id__in=accepted).values_list(
        "message_id", "status"))  # fmt: skip
    assert statuses == {message_id: "processed" for message_id in accepted}
    reply = hostile["a 99 kB folded Subject of encoded words"][1]
    message = OutboundMessage.objects.get(message_id=message_id_of(reply.rsplit(" ", 1)[1]))
    assert message.subject == "a" + "é" * 4500
