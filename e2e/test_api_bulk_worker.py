"""The Bulk API end to end: Postmark's official Python SDK posts a bulk request of 20 over real
HTTP (live_server), a real Celery worker takes the task ``api.bulk.send`` from the queue, sends
each item through POST /email's path and relays it to a local SMTP sink; one bad item fails
alone, and the status the SDK reads counts them all. A bulk whose task was lost is queued again
by the sweep and sent by the worker."""

from datetime import timedelta

import pytest
from django.utils import timezone

from conftest import wait_for
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
    import api.tasks

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
