"""Inbound submissions through processing: the InboundMessage, its status (Queued, Processed,
Blocked, Failed), idempotence, and one broken message among good ones."""

import pytest

from inbound import intake, posting
from inbound.models import InboundMessage, InboundRule
from inbound.tests.helpers import Queue, inbound_address, inbound_submission
from messages import tries
from messages.models import Submission
from messages.processing import process_batch, process_submission
from messages.tasks import process_submissions

pytestmark = pytest.mark.django_db


@pytest.fixture
def queue(monkeypatch):
    q = Queue()
    monkeypatch.setattr(posting, "publish", q)
    return q


@pytest.fixture
def hooked(server):
    server.inbound_hook_url = "https://hooks.example.com/inbound"
    server.save()
    return server


def test_a_reply_becomes_a_queued_inbound_message(
    hooked, queue, django_capture_on_commit_callbacks
):
    submission = inbound_submission(hooked)
    with django_capture_on_commit_callbacks(execute=True):
        assert process_submission(submission.pk) == Submission.Status.PROCESSED
    message = InboundMessage.objects.get()
    assert message.message_id == submission.message_id
    assert message.status == InboundMessage.Status.QUEUED
    assert message.stream.stream_id == "inbound"
    assert message.from_email == "jane@customer.example"
    assert message.from_name == "Jane Customer"
    assert message.subject == "Re: Your ticket #42"
    assert message.mailbox_hash == "ticket42"
    assert message.original_recipient == inbound_address(hooked, "ticket42")
    assert message.date == "Fri, 1 Aug 2014 16:45:32 -0400"
    assert bytes(message.raw) == bytes(submission.raw)
    payload = message.payload
    assert payload["MessageID"] == str(submission.message_id)
    assert payload["MessageStream"] == "inbound"
    assert payload["StrippedTextReply"] == "Thanks, that fixed it."
    assert payload["Headers"][0] == {"Name": "Return-Path", "Value": "<bounces@customer.example>"}
    assert queue.calls == [(message.pk, 0, 0)]
    submission.refresh_from_db()
    assert bytes(submission.raw) == b""  # kept once, on the inbound message


def test_processing_twice_makes_one_message(hooked, queue):
    submission = inbound_submission(hooked)
    process_submission(submission.pk)
    Submission.objects.filter(pk=submission.pk).update(status=Submission.Status.ACCEPTED)
    process_submission(submission.pk)
    assert InboundMessage.objects.count() == 1


def test_without_a_hook_url_the_message_is_stored_as_processed(server, queue):
    process_submission(inbound_submission(server).pk)
    message = InboundMessage.objects.get()
    assert message.status == InboundMessage.Status.PROCESSED
    assert "No InboundHookUrl" in message.last_response
    assert queue.calls == []


def test_an_inbound_rule_blocks_the_sender(hooked, queue):
    InboundRule.objects.create(server=hooked, rule="customer.example")
    process_submission(inbound_submission(hooked).pk)
    message = InboundMessage.objects.get()
    assert message.status == InboundMessage.Status.BLOCKED
    assert "customer.example" in message.blocked_reason
    assert queue.calls == []


def test_a_rule_of_another_server_blocks_nothing(hooked, other_server, queue):
    InboundRule.objects.create(server=other_server, rule="jane@customer.example")
    process_submission(inbound_submission(hooked).pk)
    assert InboundMessage.objects.get().status == InboundMessage.Status.QUEUED


@pytest.mark.parametrize(
    ("threshold", "score", "status"),
    [(5, "7.5", "blocked"), (5, "4.9", "queued"), (0, "25", "queued"), (5, "", "queued")],
)
def test_the_spam_threshold(hooked, queue, threshold, score, status):
    hooked.inbound_spam_threshold = threshold
    hooked.save()
    rcpt = inbound_address(hooked)
    raw = f"From: a@b.example\r\nTo: {rcpt}\r\nX-Spam-Score: {score}\r\nSubject: s\r\n\r\nhi\r\n"
    process_submission(inbound_submission(hooked, raw.encode(), rcpt).pk)
    message = InboundMessage.objects.get()
    assert message.status == status
    if score:
        assert message.spam_score == float(score)


def test_a_parser_crash_is_a_failed_message_with_the_reason(hooked, queue, monkeypatch):
    def broken(*args):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(intake, "parse", broken)
    submission = inbound_submission(hooked)
    assert process_submission(submission.pk) == Submission.Status.FAILED
    message = InboundMessage.objects.get()
    assert message.status == InboundMessage.Status.FAILED
    assert "RecursionError" in message.last_response
    assert message.payload["OriginalRecipient"] == inbound_address(hooked, "ticket42")
    assert message.payload["From"] == "bounces@customer.example"
    assert bytes(message.raw)  # the source is kept for the operators
    assert queue.calls == []


def test_one_broken_message_does_not_stop_the_others_of_its_batch(hooked, queue, monkeypatch):
    good = [inbound_submission(hooked) for _ in range(3)]
    bad = inbound_submission(hooked, b"From: x@y.example\r\nSubject: crash\r\n\r\nboom\r\n")
    real = intake.parse

    def sometimes(raw, *args):
        if b"crash" in raw:
            raise ValueError("bad input")
        return real(raw, *args)

    monkeypatch.setattr(intake, "parse", sometimes)
    statuses = process_batch([s.pk for s in [*good, bad]])
    assert sorted(statuses.values()) == ["failed", "processed", "processed", "processed"]
    by_status = {m.message_id: m.status for m in InboundMessage.objects.all()}
    assert by_status[bad.message_id] == "failed"
    assert all(by_status[s.message_id] == "queued" for s in good)


def test_the_processing_task_takes_inbound_submissions(hooked, queue):
    submissions = [inbound_submission(hooked) for _ in range(4)]
    process_submissions([str(s.message_id) for s in submissions])
    assert InboundMessage.objects.filter(status="queued").count() == 4


def test_a_submission_out_of_tries_becomes_a_failed_inbound_message(hooked, queue, settings):
    submission = inbound_submission(hooked)
    Submission.objects.filter(pk=submission.pk).update(
        attempts=settings.PROCESSING_ATTEMPTS + 1, last_error="MemoryError"
    )
    assert tries.fail_out_of_tries(submission.pk) == Submission.Status.FAILED
    message = InboundMessage.objects.get()
    assert message.status == InboundMessage.Status.FAILED
    assert "MemoryError" in message.last_response
    assert not Submission.objects.filter(pk=submission.pk, status="accepted").exists()
