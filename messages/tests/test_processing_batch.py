"""Processing a set of submissions at once (``processing.process_batch``): the same outcome as
one at a time, in a number of queries that does not grow with the batch."""

import pytest

from bounces.models import Bounce
from conftest import accepted_submission
from messages.models import OutboundMessage, Recipient, Submission
from messages.processing import process_batch, process_submission
from streams.services import get_stream
from streams.suppressions import suppress

pytestmark = pytest.mark.django_db


def message(sender: str = "app@example.com", *headers: bytes) -> bytes:
    return (
        f"From: App <{sender}>\r\nTo: ann@example.net\r\nSubject: Hi\r\n".encode()
        + b"".join(h + b"\r\n" for h in headers)
        + b"\r\nHello.\r\n"
    )


def mixed_batch(server):
    """One of every kind: plain, two recipients one of them inactive, all inactive, an unknown
    stream, an unverified sender, an unconfirmed metadata problem, a tag."""
    suppress(get_stream(server, "outbound"), "gone@example.net", "HardBounce", "Recipient")
    return [
        accepted_submission(server, message(), ["ann@example.net"]),
        accepted_submission(server, message(), ["bob@example.net", "Gone@example.net"]),
        accepted_submission(server, message(), ["gone@example.net"]),
        accepted_submission(
            server, message("app@example.com", b"X-PM-Message-Stream: nope"), ["cat@example.net"]
        ),  # fmt: skip
        accepted_submission(server, message("news@unverified.test"), ["dan@example.net"]),
        accepted_submission(
            server, message("app@example.com", b"X-PM-TrackOpens: maybe"), ["eve@example.net"]
        ),  # fmt: skip
        accepted_submission(
            server, message("app@example.com", b"X-PM-Tag: welcome"), ["fay@example.net"]
        ),  # fmt: skip
    ]


def outcome(submissions):
    def key(pk):
        return Submission.objects.get(pk=pk).message_id

    result = []
    for s in submissions:
        s.refresh_from_db()
        message = OutboundMessage.objects.filter(submission=s).first()
        result.append((
            s.status, bytes(s.raw),
            sorted(Recipient.objects.filter(message=message).values_list("email", flat=True))
            if message else None,
            message and (message.tag, message.from_address, message.subject, message.size),
            sorted(Bounce.objects.filter(message_id=key(s.pk)).values_list("email", "details")),
        ))  # fmt: skip
    return result


def test_a_batch_ends_as_one_by_one_does(server, other_server):
    one_by_one = mixed_batch(server)
    for submission in one_by_one:
        process_submission(submission.pk)
    as_a_set = mixed_batch(other_server)
    statuses = process_batch([s.pk for s in as_a_set])
    assert outcome(as_a_set) == outcome(one_by_one)
    assert list(statuses.values()) == [s.status for s in as_a_set]
    assert [s.status for s in as_a_set] == [
        "processed", "processed", "failed", "failed", "failed", "failed", "processed",
    ]  # fmt: skip


def test_processing_again_changes_nothing(server):
    batch = mixed_batch(server)
    process_batch([s.pk for s in batch])
    before = outcome(batch)
    assert set(process_batch([s.pk for s in batch]).values()) == {"processed", "failed"}
    assert outcome(batch) == before


@pytest.mark.parametrize("size", [1, 50])
def test_the_queries_do_not_grow_with_the_batch(server, size, django_assert_max_num_queries):
    batch = [
        accepted_submission(server, message(), [f"u{i}@example.net", f"v{i}@example.net"])
        for i in range(size)
    ]
    # The bytes read before the transaction (parsed outside it), then the lock, stream,
    # suppressions, sender (domain), two inserts, one update, and savepoints.
    with django_assert_max_num_queries(11):
        process_batch([s.pk for s in batch])
    assert Recipient.objects.count() == 2 * size


@pytest.mark.parametrize("size", [1, 50])
def test_the_task_queries_do_not_grow_with_the_batch(
    server, size, monkeypatch, django_assert_max_num_queries
):
    """The task around ``process_batch`` (whose 11 include the bytes read) adds three: the rows
    with their sizes, the try taken (one UPDATE), the new messages for delivery."""
    from delivery import tasks as delivery_tasks
    from messages import tasks

    monkeypatch.setattr(delivery_tasks, "enqueue_deliveries", lambda ids: None)
    batch = [
        accepted_submission(server, message(), [f"u{i}@example.net", f"v{i}@example.net"])
        for i in range(size)
    ]
    with django_assert_max_num_queries(14):
        tasks.process_submissions([str(s.message_id) for s in batch])
    assert set(Submission.objects.values_list("status", flat=True)) == {"processed"}
    assert set(Submission.objects.values_list("attempts", flat=True)) == {1}
