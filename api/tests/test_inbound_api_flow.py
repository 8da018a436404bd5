"""The inbound API over the whole path: a rule made through ``POST /triggers/inboundrules``
blocks a sender's real message (parsed by intake), which the listing shows Blocked and nobody
is posted; ``PUT …/bypass`` posts it to a local HTTP receiver. A message the application
refused with 403 is Failed; ``PUT …/retry`` posts it again."""

import pytest
from django.test import Client

from inbound import posting
from inbound.models import InboundMessage
from inbound.tests.helpers import Queue, inbound_submission
from messages.processing import process_submission
from webhooks.tests.test_webhooks import Receiver

S = InboundMessage.Status
pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    found = Receiver()
    yield found
    found.stop()


@pytest.fixture
def queue(monkeypatch):
    found = Queue()
    monkeypatch.setattr(posting, "publish", found)
    return found


@pytest.fixture
def api(server):
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)


def received(server, on_commit) -> InboundMessage:
    submission = inbound_submission(server)
    with on_commit(execute=True):
        process_submission(submission.pk)
    return InboundMessage.objects.get(message_id=submission.message_id)


def listed(api, status: str) -> list[dict]:
    body = api.get(f"/messages/inbound?count=10&offset=0&status={status}").json()
    return body["InboundMessages"]


def test_a_blocked_sender_is_posted_only_when_bypassed(
    api, server, receiver, queue, django_capture_on_commit_callbacks
):
    server.inbound_hook_url = receiver.url
    server.save()
    made = api.post("/triggers/inboundrules", {"Rule": "Customer.Example"}, "application/json")
    assert made.json()["Rule"] == "customer.example"
    message = received(server, django_capture_on_commit_callbacks)
    assert message.status == S.BLOCKED and queue.calls == []
    [item] = listed(api, "blocked")
    assert item["MessageID"] == str(message.message_id) and item["Status"] == "Blocked"
    assert item["From"] == "jane@customer.example" and item["MailboxHash"] == "ticket42"
    details = api.get(f"/messages/inbound/{message.message_id}/details").json()
    assert "customer.example" in details["BlockedReason"]
    assert details["StrippedTextReply"] == "Thanks, that fixed it."
    with django_capture_on_commit_callbacks(execute=True):
        bypassed = api.put(f"/messages/inbound/{message.message_id}/bypass")
    assert bypassed.json()["ErrorCode"] == 0
    assert queue.drain() == [S.PROCESSED]
    [posted] = receiver.payloads()
    assert posted["MessageID"] == str(message.message_id)
    assert posted["Subject"] == "Re: Your ticket #42"
    assert [m["MessageID"] for m in listed(api, "processed")] == [str(message.message_id)]
    assert listed(api, "blocked") == []


def test_a_failed_message_is_posted_again_when_retried(
    api, server, receiver, queue, django_capture_on_commit_callbacks
):
    server.inbound_hook_url = receiver.url
    server.save()
    receiver.status = [403, 200]
    message = received(server, django_capture_on_commit_callbacks)
    assert queue.drain() == [S.FAILED]  # 403: no more tries
    [item] = listed(api, "failed")
    assert item["Status"] == "Failed"
    with django_capture_on_commit_callbacks(execute=True):
        retried = api.put(f"/messages/inbound/{message.message_id}/retry")
    assert retried.json() == {
        "ErrorCode": 0,
        "Message": f"Successfully rescheduled failed message: {message.message_id}.",
    }
    assert queue.drain() == [S.PROCESSED]
    assert len(receiver.requests) == 2
    again = api.put(f"/messages/inbound/{message.message_id}/retry")
    assert again.status_code == 422 and again.json()["ErrorCode"] == 701
