"""The Bulk API end to end: Postmark's official Python SDK posts a bulk request of 20 over real
HTTP (live_server), a real Celery worker takes the task ``api.bulk.send`` from the queue, sends
each item through POST /email's path and relays it to a local SMTP sink; one bad item fails
alone, and the status the SDK reads counts them all. A bulk whose task was lost is queued again
by the sweep and sent by the worker."""

from datetime import timedelta

import pytest
from django.utils import timezone

import api.tasks
from conftest import subprocess_env, wait_for
from e2e.test_api_email_clients import received, token  # noqa: F401 - fixtures
from messages.models import BulkRequest

postmark = pytest.importorskip("postmark.sync")

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_bulk_of_twenty_is_sent_by_a_worker_and_relayed(
    live_server,
    token,  # noqa: F811 - the fixture
    relay_sink,
    relaying_worker,
):
    items = [{"To": f"ok{n}@example.net", "TemplateModel": {"name": f"N{n}"}} for n in range(19)]
    items.insert(7, {"To": "not an address", "TemplateModel": {"name": "bad"}})
    with postmark.ServerClient(token, retries=0, base_url=live_server.url) as client:
        answer = client.outbound.send_bulk(
            {"From": "shop@example.com", "Subject": "Hi {{name}}",
             "HtmlBody": "<p>Hello {{name}}</p>", "Messages": items}
        )  # fmt: skip
        assert answer.status.value == "Accepted"

        def done():
            return client.outbound.get_bulk_status(answer.id).status.value == "Completed"

        wait_for(done, timeout=60, what="the bulk request completed")
        status = client.outbound.get_bulk_status(answer.id)
    assert status.total_messages == 20 and status.percentage_completed == 100.0
    counted = BulkRequest.objects.get(id=answer.id)
    assert (counted.released, counted.failed) == (19, 1)
    assert counted.errors[0]["Index"] == 7
    messages = received(relay_sink, 19)
    assert sorted(str(m["Subject"]) for m in messages) == sorted(f"Hi N{n}" for n in range(19))
    one = next(m for m in messages if str(m["To"]) == "ok3@example.net")
    assert "Hello N3" in one.get_body(("html",)).get_content()


def test_a_bulk_whose_task_was_lost_is_queued_again_by_the_sweep(
    live_server,
    token,  # noqa: F811 - the fixture
    relay_sink,
    relaying_worker,
    monkeypatch,
):
    """The broker loses the task (here: it is never published); once the request's lease runs
    out, the beat's sweep queues it again and the real worker sends it."""
    with monkeypatch.context() as lost:
        lost.setattr(api.tasks.send_bulk_request, "apply_async", lambda *a, **k: None)
        with postmark.ServerClient(token, retries=0, base_url=live_server.url) as client:
            answer = client.outbound.send_bulk(
                {"From": "shop@example.com", "Subject": "Hi {{name}}", "TextBody": "Hello",
                 "Messages": [{"To": f"ok{n}@example.net", "TemplateModel": {"name": f"N{n}"}}
                              for n in range(5)]}
            )  # fmt: skip
    assert api.tasks.sweep_bulk_requests() == 0  # its lease still runs
    past = timezone.now() - timedelta(hours=1)
    BulkRequest.objects.filter(id=answer.id).update(submitted_at=past, leased_until=past)
    assert api.tasks.sweep_bulk_requests() == 1

    def done():
        return BulkRequest.objects.get(id=answer.id).status == "Completed"

    wait_for(done, timeout=60, what="the bulk request completed")
    messages = received(relay_sink, 5)
    assert sorted(str(m["Subject"]) for m in messages) == sorted(f"Hi N{n}" for n in range(5))


def test_a_bulk_whose_worker_was_killed_midway_resumes_without_duplicates(
    live_server,
    token,  # noqa: F811 - the fixture
    relay_sink,
    relaying_worker,
    start_process,
):
    """The worker is SIGKILLed after a chunk is counted; its redelivered task finds the claim
    still held, and once the lease runs out the sweep queues the request again: a new worker
    goes on from the chunk counted, and every recipient gets one message."""
    from messages.models import OutboundMessage

    total = 600
    with postmark.ServerClient(token, retries=0, base_url=live_server.url) as client:
        answer = client.outbound.send_bulk(
            {"From": "shop@example.com", "Subject": "Hi {{n}}", "TextBody": "Hello",
             "Messages": [{"To": f"r{n}@example.net", "TemplateModel": {"n": n}}
                          for n in range(total)]}
        )  # fmt: skip
    rows = BulkRequest.objects.filter(id=answer.id)
    wait_for(lambda: rows.get().processed >= 100, timeout=120, what="a chunk counted")
    relaying_worker.proc.kill()
    relaying_worker.proc.wait()
    midway = rows.get()
    assert midway.status == "Processing" and midway.processed < total, "finished before the kill"
    second = start_process(
        ["-m", "celery", "-A", "postmark_site", "worker", "-l", "info", "--pool", "threads"],
        env=subprocess_env(
            CELERY_BROKER_URL="",
            OUTBOUND_SMTP_RELAY=f"smtp://127.0.0.1:{relay_sink.port}?starttls=never",
        ),
        name="second-worker",
    )
    second.wait_for("ready", timeout=60)
    past = timezone.now() - timedelta(hours=1)
    rows.update(submitted_at=past, leased_until=past)
    assert api.tasks.sweep_bulk_requests() == 1
    wait_for(lambda: rows.get().status == "Completed", timeout=180, what="the bulk completed")
    done = rows.get()
    assert (done.processed, done.released, done.failed, done.attempts) == (total, total, 0, 2)
    recipients = list(OutboundMessage.objects.values_list("to", flat=True))
    assert sorted(r[0] for r in recipients) == sorted(f"r{n}@example.net" for n in range(total))
