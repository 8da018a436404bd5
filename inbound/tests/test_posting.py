"""The inbound webhook against a real HTTP receiver: the JSON, Basic auth from the URL, 2xx,
403, the retry schedule to Failed (and its InboundError bounce), the SSRF guard, the sweep,
bypass and retry."""

import base64
from datetime import timedelta

import pytest
from django.utils import timezone

from bounces.models import Bounce
from inbound import posting, services
from inbound.models import InboundMessage
from inbound.tests.helpers import Queue, inbound_submission
from messages.processing import process_submission
from webhooks.tests.test_webhooks import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def queue(monkeypatch):
    q = Queue()
    monkeypatch.setattr(posting, "publish", q)
    return q


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(autouse=True)
def commits(django_capture_on_commit_callbacks):
    """What runs once a transaction commits (queuing a post) runs in these tests too."""
    global capture
    capture = django_capture_on_commit_callbacks


capture = None


def received(server, receiver, status=200, url=None, raw=None) -> InboundMessage:
    receiver.status = status
    server.inbound_hook_url = url or receiver.url
    server.save()
    with capture(execute=True):
        process_submission(inbound_submission(server, raw).pk)
    return InboundMessage.objects.get()


def due_now(message):
    InboundMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())


def test_a_2xx_answer_processes_the_message(server, receiver, queue):
    message = received(server, receiver, 202)
    assert queue.drain() == ["processed"]
    message.refresh_from_db()
    assert message.status == "processed"
    assert message.attempts == 1
    assert message.last_response_code == 202
    (request,) = receiver.requests
    assert request["headers"]["Content-Type"] == "application/json"
    assert "Authorization" not in request["headers"]
    body = receiver.payloads()[0]
    assert body["MessageID"] == str(message.message_id)
    assert body["StrippedTextReply"] == "Thanks, that fixed it."
    assert body["Attachments"] == []
    assert "RawEmail" not in body


def test_url_credentials_become_basic_auth(server, receiver, queue):
    url = receiver.url.replace("http://", "http://app%40x:s3cr%3At@")
    received(server, receiver, url=url)
    queue.drain()
    auth = receiver.requests[0]["headers"]["Authorization"]
    assert base64.b64decode(auth.split()[1]) == b"app@x:s3cr:t"
    assert receiver.requests[0]["path"] == "/hook"


def test_raw_email_only_when_enabled(server, receiver, queue):
    server.raw_email_enabled = True
    server.save()
    message = received(server, receiver)
    queue.drain()
    assert receiver.payloads()[0]["RawEmail"] == bytes(message.raw).decode()


def test_attachments_are_posted_with_their_content(server, receiver, queue):
    raw = (
        b"From: a@b.example\r\nSubject: files\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
        b"--B\r\nContent-Type: application/pdf; name=doc.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--B--\r\n"
    )
    message = received(server, receiver, raw=raw)
    assert message.payload["Attachments"] == [
        {"Name": "doc.pdf", "ContentType": "application/pdf", "ContentLength": 9, "ContentID": ""}
    ]
    queue.drain()
    (attachment,) = receiver.payloads()[0]["Attachments"]
    assert base64.b64decode(attachment["Content"]) == b"%PDF-1.4\n"


def test_403_fails_at_once(server, receiver, queue):
    message = received(server, receiver, 403)
    assert queue.drain() == ["failed"]
    message.refresh_from_db()
    assert (message.status, message.attempts, message.last_response_code) == ("failed", 1, 403)
    assert len(receiver.requests) == 1
    bounce = Bounce.objects.get()
    assert (bounce.type, bounce.message_id) == ("InboundError", message.message_id)


def test_other_answers_retry_on_postmarks_schedule_then_fail(server, receiver, queue, settings):
    message = received(server, receiver, 500)
    delays = []
    for _ in range(len(settings.INBOUND_RETRY_DELAYS)):
        assert queue.drain() == ["scheduled"]
        message.refresh_from_db()
        assert message.status == "scheduled"
        delays.append(round((message.next_attempt_at - timezone.now()).total_seconds() / 60))
        # A task that wakes up early does nothing (and queues itself for the rest).
        assert posting.post(message.pk, message.attempts) == "skipped"
        queue.calls.clear()
        due_now(message)
        queue.calls.append((message.pk, message.attempts, 0))
    assert delays == [1, 5, 10, 10, 10, 15, 30, 60, 120, 360]
    assert queue.drain() == ["failed"]
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("failed", 11)
    assert "HTTP 500" in message.last_response
    assert len(receiver.requests) == 11
    assert Bounce.objects.get().type == "InboundError"


def test_no_answer_retries(server, receiver, queue, settings):
    settings.INBOUND_WEBHOOK_TIMEOUT = 2
    message = received(server, receiver, url="http://127.0.0.1:9/closed")
    assert queue.drain() == ["scheduled"]
    message.refresh_from_db()
    assert message.last_response_code is None
    assert message.last_response


def test_the_ssrf_guard_fails_a_private_url(server, receiver, queue, settings):
    message = received(server, receiver)
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    assert queue.drain() == ["failed"]
    message.refresh_from_db()
    assert message.status == "failed"
    assert receiver.requests == []


def test_a_hook_url_removed_meanwhile_leaves_the_message_processed(server, receiver, queue):
    message = received(server, receiver)
    server.inbound_hook_url = ""
    server.save()
    assert queue.drain() == ["processed"]
    assert receiver.requests == []
    message.refresh_from_db()
    assert "No InboundHookUrl" in message.last_response


def test_a_stale_or_duplicate_task_does_nothing(server, receiver, queue):
    message = received(server, receiver)
    pk = message.pk
    assert queue.drain() == ["processed"]
    assert posting.post(pk, 0) == "skipped"
    assert posting.post(pk) == "skipped"
    assert len(receiver.requests) == 1


def test_the_sweep_queues_lost_and_due_retries(server, receiver, queue):
    message = received(server, receiver, 500)
    queue.calls.clear()  # the task was lost
    assert posting.sweep(grace_seconds=60) == 0  # not yet late
    InboundMessage.objects.filter(pk=message.pk).update(
        next_attempt_at=timezone.now() - timedelta(minutes=5)
    )
    assert posting.sweep(grace_seconds=60) == 1
    assert queue.calls == [(message.pk, 0, 0)]
    assert posting.sweep(grace_seconds=60) == 0  # made due "now": left alone for a while
    receiver.status = 200
    assert queue.drain() == ["processed"]


def test_bypass_posts_a_blocked_message(server, receiver, queue):
    from inbound.models import InboundRule

    InboundRule.objects.create(server=server, rule="jane@customer.example")
    message = received(server, receiver)
    assert message.status == "blocked"
    assert queue.calls == []
    assert services.retry(message) is False  # only Failed messages are retried
    with capture(execute=True):
        assert services.bypass(message) is True
    assert message.status == "queued"
    assert queue.drain() == ["processed"]
    assert len(receiver.requests) == 1
    message.refresh_from_db()
    assert services.bypass(message) is False  # no longer blocked


def test_retry_starts_the_schedule_over(server, receiver, queue):
    message = received(server, receiver, 403)
    queue.drain()
    message.refresh_from_db()
    assert services.bypass(message) is False
    receiver.status = 200
    with capture(execute=True):
        assert services.retry(message) is True
    assert (message.status, message.attempts) == ("queued", 0)
    assert queue.drain() == ["processed"]
    assert len(receiver.requests) == 2


def test_retention_deletes_old_finished_messages(server, receiver, queue, settings):
    from inbound.tasks import retention

    settings.MESSAGE_RETENTION_DAYS = 45
    message = received(server, receiver, 500)  # scheduled: kept however old
    queue.drain()
    receiver.status = 200
    done = received_again(server, receiver)
    assert queue.drain()[-1] == "processed"
    old = timezone.now() - timedelta(days=46)
    InboundMessage.objects.update(received_at=old)
    assert retention() == 1
    assert list(InboundMessage.objects.values_list("pk", flat=True)) == [message.pk]
    assert done.pk != message.pk


def received_again(server, receiver) -> InboundMessage:
    with capture(execute=True):
        process_submission(inbound_submission(server).pk)
    return InboundMessage.objects.order_by("-pk").first()


def test_a_body_that_cannot_be_made_fails_the_message(server, receiver, queue, monkeypatch):
    message = received(server, receiver)

    def broken(*args, **kwargs):
        raise RecursionError("too deep")

    monkeypatch.setattr(posting, "post_body", broken)
    assert queue.drain() == ["failed"]
    message.refresh_from_db()
    assert "RecursionError" in message.last_response
    assert receiver.requests == []


def test_the_backlog_gauge(server, receiver, queue):
    from messages.metrics import all_queue_states

    received(server, receiver, 500)
    assert all_queue_states()["inbound_messages_waiting"]["count"] == 1
    queue.drain()  # scheduled: still waiting
    assert all_queue_states()["inbound_messages_waiting"]["count"] == 1
