"""A bulk request is never lost (``api.bulk``'s lease and the beat's ``api.bulk.sweep``): a
request whose task never reached a worker is queued again once its lease runs out and completes;
one whose worker died midway resumes where it stopped without sending any message twice; a try
that errors is tried again, up to BULK_ATTEMPTS, then the request ends Failed with its reason in
GET /email/bulk/{id}. Time passing is the lease set in the past."""

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

import api.bulk
import api.tasks
from api.bulk import claim, requeue_stalled, send_bulk
from messages.models import BulkRequest, OutboundMessage, Submission

pytestmark = pytest.mark.django_db


@pytest.fixture
def api_client(server):
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)


@pytest.fixture
def queued(monkeypatch):
    """The ids the sweep (or a POST) queues, instead of a broker."""
    ids = []
    monkeypatch.setattr(
        api.tasks.send_bulk_request, "apply_async", lambda args, **kw: ids.append(args[0])
    )
    return ids


def post_bulk(api_client, capture, n=3, *, run_callbacks=False) -> str:
    body = {
        "From": "app@example.com",
        "Subject": "Hi {{name}}",
        "TextBody": "Hello {{name}}",
        "Messages": [{"To": f"u{i}@example.net", "TemplateModel": {"name": f"U{i}"}}
                     for i in range(n)],
    }  # fmt: skip
    with capture(execute=run_callbacks):
        response = api_client.post(
            "/email/bulk", data=json.dumps(body), content_type="application/json"
        )
    assert response.status_code == 200, response.content
    return response.json()["ID"]


def later(bulk_id, seconds=None):
    """Time passes for ``bulk_id``: its lease (and its age) run out."""
    from django.conf import settings

    past = timezone.now() - timedelta(seconds=(seconds or settings.BULK_LEASE_SECONDS) + 1)
    BulkRequest.objects.filter(id=bulk_id).update(
        submitted_at=past, leased_until=min(past, timezone.now())
    )


def status(api_client, bulk_id) -> dict:
    response = api_client.get(f"/email/bulk/{bulk_id}")
    assert response.status_code == 200
    return response.json()


def sweep() -> int:
    return api.tasks.sweep_bulk_requests()


def run(ids):
    for bulk_id in list(ids):
        ids.remove(bulk_id)
        api.tasks.send_bulk_request(bulk_id)


def test_a_request_whose_task_never_ran_is_queued_again_and_completes(
    api_client, queued, django_capture_on_commit_callbacks
):
    bulk_id = post_bulk(api_client, django_capture_on_commit_callbacks)  # its task is lost
    assert sweep() == 0  # within its lease: the task may still be on its way
    later(bulk_id)
    assert sweep() == 1 and queued == [bulk_id]
    assert sweep() == 0  # queued again once per lease, not by every sweep
    run(queued)
    answer = status(api_client, bulk_id)
    assert answer["Status"] == "Completed" and answer["ReleasedCount"] == 3
    assert "FailureReason" not in answer
    assert OutboundMessage.objects.count() == 3
    later(bulk_id)
    assert sweep() == 0  # a finished request is never queued again


def test_a_request_whose_worker_died_midway_resumes_without_duplicates(
    api_client, queued, monkeypatch, django_capture_on_commit_callbacks
):
    bulk_id = post_bulk(api_client, django_capture_on_commit_callbacks, n=250)
    real = api.bulk._send_chunk
    calls = []

    def killed_after_the_second_chunk_is_stored(bulk, start, items):
        answers = real(bulk, start, items)
        calls.append(start)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the worker killed: no handler runs, nothing is counted
        return answers

    monkeypatch.setattr(api.bulk, "_send_chunk", killed_after_the_second_chunk_is_stored)
    with pytest.raises(KeyboardInterrupt):
        send_bulk(bulk_id)
    monkeypatch.setattr(api.bulk, "_send_chunk", real)
    midway = BulkRequest.objects.get(id=bulk_id)
    assert (midway.status, midway.processed, midway.attempts) == ("Processing", 100, 1)
    assert Submission.objects.count() == 200  # the second chunk stored, not counted

    # The broker redelivers the task of the lost worker at once: the claim still holds.
    assert send_bulk(bulk_id).startswith("nothing to do")
    assert sweep() == 0
    later(bulk_id)
    assert sweep() == 1
    run(queued)

    done = BulkRequest.objects.get(id=bulk_id)
    assert (done.status, done.processed, done.released, done.failed) == ("Completed", 250, 250, 0)
    assert done.attempts == 2
    assert Submission.objects.count() == 250
    recipients = [m.to[0] for m in OutboundMessage.objects.all()]
    assert sorted(recipients) == sorted(f"u{i}@example.net" for i in range(250))


def test_a_superseded_worker_stops_at_its_next_chunk(
    api_client, queued, django_capture_on_commit_callbacks
):
    bulk_id = post_bulk(api_client, django_capture_on_commit_callbacks, n=150)
    stuck = claim(bulk_id)  # a worker that took it, then hung past its lease
    later(bulk_id)
    assert sweep() == 1
    assert api.bulk._send(stuck) == "stopped: taken over by another try"
    assert BulkRequest.objects.get(id=bulk_id).processed == 0  # it counted nothing
    run(queued)
    done = BulkRequest.objects.get(id=bulk_id)
    assert (done.status, done.released) == ("Completed", 150)
    assert Submission.objects.count() == 150


def test_tries_that_fail_end_the_request_failed_with_the_reason(
    api_client, queued, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.BULK_ATTEMPTS = 2
    bulk_id = post_bulk(api_client, django_capture_on_commit_callbacks, n=3)

    def broken(bulk, start, items):
        raise RuntimeError("the renderer broke")

    monkeypatch.setattr(api.bulk, "_send_chunk", broken)
    with pytest.raises(RuntimeError):
        send_bulk(bulk_id)  # the first try
    later(bulk_id)
    assert sweep() == 1
    with pytest.raises(RuntimeError):
        run(queued)  # the second
    assert status(api_client, bulk_id)["Status"] == "Processing"
    later(bulk_id)
    assert sweep() == 0 and not queued  # out of tries: failed, not queued again
    answer = status(api_client, bulk_id)
    assert answer["Status"] == "Failed"
    assert answer["FailedCount"] == 3 and answer["ReleasedCount"] == 0
    assert "2 tries" in answer["FailureReason"]
    assert "RuntimeError: the renderer broke" in answer["FailureReason"]
    assert send_bulk(bulk_id).startswith("nothing to do")
    assert not Submission.objects.exists()


def test_a_broker_that_refuses_the_task_loses_nothing(
    api_client, monkeypatch, django_capture_on_commit_callbacks
):
    def down(*args, **kwargs):
        raise ConnectionRefusedError("the broker is down")

    monkeypatch.setattr(api.tasks.send_bulk_request, "apply_async", down)
    bulk_id = post_bulk(api_client, django_capture_on_commit_callbacks, run_callbacks=True)
    assert status(api_client, bulk_id)["Status"] == "Accepted"


def test_an_unavailable_database_gives_the_try_back(
    api_client, monkeypatch, django_capture_on_commit_callbacks
):
    from django.db import OperationalError

    bulk_id = post_bulk(api_client, django_capture_on_commit_callbacks)
    monkeypatch.setattr(api.bulk, "is_database_unavailable", lambda exc: True)

    def gone(bulk, start, items):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(api.bulk, "_send_chunk", gone)
    with pytest.raises(OperationalError):
        send_bulk(bulk_id)
    after = BulkRequest.objects.get(id=bulk_id)
    assert after.attempts == 0 and after.claimed_at is None  # the task's retry may claim it
    assert connection.is_usable()


def test_the_beat_sweeps_bulk_requests(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["api.bulk.sweep"]
    assert entry["task"] == "api.bulk.sweep" and entry["schedule"] == 60.0
    assert requeue_stalled(0) == []
