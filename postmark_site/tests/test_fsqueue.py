"""The embedded broker never hands a worker half a message, and a file it cannot read does not
stop the worker (core.fsqueue)."""

import uuid

import pytest
from django.conf import settings

from conftest import accepted_submission, wait_for
from messages.models import Submission
from messages.tasks import enqueue_processing
from postmark_site.celery import app


def queue_dir():
    return settings.DATA_DIR / "queue"


def unreadable_file(queue: str):
    """What kombu's own transport leaves when a publisher dies mid-write, and what a consumer
    saw when it listed the folder while a publisher was still writing: a message file with no
    message in it."""
    path = queue_dir() / f"1_{uuid.uuid4()}.{queue}.msg"
    path.write_bytes(b"")
    return path


def test_a_message_appears_complete_or_not_at_all():
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        channel.queue_declare("fsqueue-test")
        channel._put("fsqueue-test", {"body": "x" * 100_000})
        names = [p.name for p in queue_dir().iterdir() if "fsqueue-test" in p.name]
        assert len(names) == 1 and names[0].endswith(".fsqueue-test.msg")  # no partial left
        assert channel._get("fsqueue-test")["body"] == "x" * 100_000


def test_an_unreadable_file_is_skipped_not_fatal():
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        unreadable_file("fsqueue-test2")
        channel._put("fsqueue-test2", {"body": "after"})
        assert channel._get("fsqueue-test2")["body"] == "after"


@pytest.mark.django_db(transaction=True)
def test_a_worker_goes_on_past_an_unreadable_file(server, worker):
    unreadable_file("processing")
    submission = accepted_submission(
        server, b"From: app@example.com\r\nTo: a@example.net\r\n\r\nHi\r\n", ["a@example.net"]
    )
    enqueue_processing([str(submission.message_id)])
    wait_for(lambda: Submission.objects.get(pk=submission.pk).status == "processed",
             what="processing past the unreadable file")  # fmt: skip
