"""The webhook outbox: every event is marked until its fan-out has run, so the sweep finds each one
whose dispatch was lost, whatever order the transactions committed in; an event no webhook can
want costs nothing beyond its INSERT; a webhook created in another process still gets the events
recorded before that process knew of it."""

import contextlib

# ruff: noqa: F811 - the fixtures imported from test_webhooks are parameters of the tests
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from delivery.tests.test_delivery import queued_files
from messages.events import record_event, record_message_event
from messages.models import MessageEvent
from streams.services import get_stream
from webhooks import deliveries, fanout
from webhooks.models import WebhookDelivery
from webhooks.tests.test_webhooks import (
    all_triggers,
    drain,
    outbound,
    private_ok,  # noqa: F401 - fixture
    queued,  # noqa: F401 - fixture
    receiver,  # noqa: F401 - fixture
)

# Ids far above what the test's other rows take: one event takes its id before the other and
# commits after it, as a long transaction's does on PostgreSQL.
EARLY_ID, LATE_ID = 10**9 - 1, 10**9
BACKLOG = 5000


def lost_event(server, stream, pk=None) -> MessageEvent:
    """An event committed whose fan-out never ran (the process died right after the commit)."""
    message = outbound(server, stream)
    return MessageEvent.objects.create(
        id=pk, server=server, stream=stream, outbound=message, message_id=message.message_id,
        type="Delivery", recipient="user@example.net", occurred_at=timezone.now(),
    )  # fmt: skip


def posted(receiver) -> list[str]:
    return sorted(p["MessageID"] for p in receiver.payloads())


@pytest.mark.django_db
def test_an_event_that_commits_after_the_sweep_passed_its_id_is_posted(
    server, receiver, private_ok, queued
):
    stream = get_stream(server, "outbound")
    all_triggers(stream, receiver.url)
    deliveries.dispatch_missed_events()  # a sweep has run before
    later = timezone.now() + timedelta(minutes=2)
    late = lost_event(server, stream, LATE_ID)
    assert deliveries.dispatch_missed_events(now=later) == 1  # the sweep is past LATE_ID now
    # Its id was taken before LATE_ID's, its transaction commits only now, and its fan-out is lost.
    early = lost_event(server, stream, EARLY_ID)
    assert deliveries.dispatch_missed_events(now=later + timedelta(minutes=2)) == 1
    assert deliveries.dispatch_missed_events(now=later + timedelta(minutes=4)) == 0
    assert drain(queued) == ["delivered", "delivered"]
    assert posted(receiver) == sorted([str(late.message_id), str(early.message_id)])


@pytest.mark.django_db
def test_the_sweep_takes_every_marked_event_in_batches(server, receiver, private_ok, queued):
    stream = get_stream(server, "outbound")
    all_triggers(stream, receiver.url)
    events = [lost_event(server, stream) for _ in range(7)]
    later = timezone.now() + timedelta(minutes=2)
    assert deliveries.dispatch_missed_events(now=later, batch=2) == 7
    assert not MessageEvent.objects.filter(webhooks_pending_since__isnull=False).exists()
    drain(queued)
    assert posted(receiver) == sorted(str(e.message_id) for e in events)


@pytest.mark.django_db(transaction=True)
def test_an_event_whose_fan_out_failed_is_posted_by_the_sweep(
    server, receiver, private_ok, queued, monkeypatch
):
    stream = get_stream(server, "outbound")
    all_triggers(stream, receiver.url)
    message = outbound(server, stream)
    original = fanout.create_deliveries
    monkeypatch.setattr(fanout, "create_deliveries", lambda *a: 1 / 0)
    record_message_event(message, "Delivery", "user@example.net")  # commits; the fan-out fails
    monkeypatch.setattr(fanout, "create_deliveries", original)
    assert not WebhookDelivery.objects.exists() and queued == []
    event = MessageEvent.objects.get()
    assert event.webhooks_pending_since is not None  # still in the outbox
    assert deliveries.dispatch_missed_events(now=timezone.now() + timedelta(minutes=2)) == 1
    assert drain(queued) == ["delivered"]
    assert posted(receiver) == [str(message.message_id)]


@contextlib.contextmanager
def driver_statements(seen: list):
    """The statements run through psycopg cursors of their own (the raw fast paths on
    PostgreSQL), which Django's query capture does not see."""
    if connection.vendor != "postgresql":
        yield
        return
    import psycopg

    originals = {name: getattr(psycopg.Cursor, name) for name in ("execute", "executemany")}

    def spy(name):
        def call(self, query, *args, **kwargs):
            seen.append(str(query).lstrip())
            return originals[name](self, query, *args, **kwargs)

        return call

    for name in originals:
        setattr(psycopg.Cursor, name, spy(name))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(psycopg.Cursor, name, original)


@pytest.mark.django_db(transaction=True)
def test_the_fan_out_clears_the_mark_and_an_unwanted_event_is_never_marked(
    server, receiver, private_ok, queued
):
    hooked = get_stream(server, "outbound")
    all_triggers(hooked, receiver.url)
    quiet = server.streams.get(stream_id="broadcast")
    fanout.forget_webhook_streams()
    fanout.streams_with_webhooks()  # warm, as in a busy process
    raw = []  # on PostgreSQL the event's INSERT goes through psycopg's own cursor
    with CaptureQueriesContext(connection) as queries, driver_statements(raw):
        record_event(server_id=server.pk, stream_id=quiet.pk, type="Delivery", recipient="a@x.io")
    verbs = [q["sql"].split()[0] for q in queries] + [sql.split()[0] for sql in raw]
    assert [v for v in verbs if v in ("INSERT", "UPDATE", "SELECT")] == ["INSERT"]
    assert MessageEvent.objects.get(stream=quiet).webhooks_pending_since is None
    record_message_event(outbound(server, hooked), "Delivery", "user@example.net")
    assert MessageEvent.objects.get(stream=hooked).webhooks_pending_since is None  # dispatched
    assert len(queued) == 1
    assert deliveries.dispatch_missed_events(now=timezone.now() + timedelta(minutes=2)) == 0


@pytest.mark.django_db(transaction=True)
def test_a_webhook_created_in_another_process_gets_what_this_one_recorded_meanwhile(
    server, receiver, private_ok, queued, monkeypatch, settings
):
    settings.WEBHOOK_STREAMS_CACHE_SECONDS = 5
    stream = get_stream(server, "outbound")
    webhook = all_triggers(stream, receiver.url)
    # This process has not heard of it yet: its list of streams with webhooks is older.
    monkeypatch.setattr(fanout, "_hooked_streams", (time.monotonic() + 5, frozenset()))
    message = outbound(server, stream)
    record_message_event(message, "Delivery", "user@example.net")
    event = MessageEvent.objects.get()
    assert event.webhooks_pending_since is None and queued == []  # recorded as nobody's
    soon = webhook.created_at + timedelta(seconds=30)
    assert deliveries.dispatch_missed_events(now=soon) == 0  # other processes may not know yet
    settled = webhook.created_at + timedelta(seconds=5 + 60 + 1)
    assert deliveries.dispatch_missed_events(now=settled) == 1
    assert deliveries.dispatch_missed_events(now=settled + timedelta(minutes=5)) == 0  # once
    webhook.refresh_from_db()
    assert webhook.events_caught_up
    assert drain(queued) == ["delivered"]
    assert posted(receiver) == [str(message.message_id)]


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_marks_the_events_the_old_cursor_had_not_reached(server):
    """Events after the old sweep's cursor, of streams with webhooks, go to the outbox; the rest
    count as dispatched (the old sweep covered them)."""
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    hooked, quiet = get_stream(server, "outbound"), server.streams.get(stream_id="broadcast")
    try:
        executor.migrate([("webhooks", "0001_initial")])
        state = [("webhooks", "0001_initial"), ("outbound", "0006_event_webhooks_pending")]
        old = executor.loader.project_state(state, at_end=True).apps
        old.get_model("webhooks", "Webhook").objects.create(
            stream_id=hooked.pk, url="https://hooks.example.com/", signing_secret_encrypted="x"
        )
        event = old.get_model("outbound", "MessageEvent").objects
        made = [
            event.create(server_id=server.pk, stream_id=stream.pk, type="Delivery",
                         occurred_at=timezone.now(), webhooks_pending_since=None).pk
            for stream in (hooked, hooked, quiet)
        ]  # fmt: skip
        old.get_model("webhooks", "WebhookSweepCursor").objects.create(pk=1, last_event_id=made[0])
    finally:
        executor.loader.build_graph()
        executor.migrate(latest)
    marked = MessageEvent.objects.filter(webhooks_pending_since__isnull=False)
    assert list(marked.values_list("pk", flat=True)) == [made[1]]


@pytest.mark.django_db
def test_a_backlog_still_in_the_webhooks_queue_is_not_queued_again_by_the_sweep(
    server, settings, private_ok
):
    settings.SWEEP_MAX_REQUEUE = 1000
    settings.SWEEP_BUSY_QUEUE_LENGTH = 50
    stream = get_stream(server, "outbound")
    webhook = all_triggers(stream, "https://hooks.example.com/in")
    message = outbound(server, stream)
    now = timezone.now()
    events = MessageEvent.objects.bulk_create(
        MessageEvent(server=server, stream=stream, outbound=message, type="Delivery",
                     occurred_at=now, webhooks_pending_since=None)
        for _ in range(BACKLOG)
    )  # fmt: skip
    made = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(webhook=webhook, event=e, next_attempt_at=now) for e in events
    )
    for delivery in made:
        fanout.publish(delivery.pk, 0)  # queued; no worker has taken them yet
    WebhookDelivery.objects.update(next_attempt_at=now - timedelta(minutes=5))
    waiting = queued_files("webhooks")
    assert waiting == BACKLOG
    assert deliveries.sweep() == {"requeued": 0, "dispatched": 0}
    assert deliveries.sweep() == {"requeued": 0, "dispatched": 0}
    assert queued_files("webhooks") == waiting
    for path in (settings.DATA_DIR / "queue").glob("*.webhooks.msg"):
        path.unlink()  # the broker lost them
    assert deliveries.requeue_due() == 1000
    assert queued_files("webhooks") == 1000
