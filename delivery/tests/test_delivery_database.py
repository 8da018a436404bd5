"""A database that fails under delivery is never the message's fault, and never a second copy.

Through a real SMTP sink: the database errors of every driver (psycopg's own, as the raw fast
paths raised them; Django's; SQLite's) that say it is unavailable, injected while a delivered
recipient (the remote 250 in hand) is being recorded: the result is recorded once the database
answers, the message is sent once and ends ``sent``, and no error is counted. Injected while a
deferral is recorded: the recipient is given back and the task retried, with no error counted.
Before, psycopg's errors were not recognised: the failure was counted as the message's own, the
recipient deferred and sent again (a duplicate), and after three such failures ``failed``.
"""

import sqlite3
from datetime import timedelta

import psycopg
import pytest
from django.db import DatabaseError, OperationalError, connection
from django.utils import timezone

from delivery import claims, tasks
from delivery.claims import Claim
from delivery.tests.sinks import SmtpSink
from delivery.tests.test_delivery import queued_message, relay_to
from messages.models import MessageEvent, Recipient

UNAVAILABLE = [
    psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"),
    psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
    psycopg.InterfaceError("the connection is closed"),
    OperationalError("server closed the connection unexpectedly"),
    sqlite3.OperationalError("database is locked"),
]


@pytest.fixture
def published(monkeypatch):
    sent = []
    monkeypatch.setattr(
        tasks.deliver, "apply_async", lambda args, countdown=None, **kw: sent.append(args[0])
    )
    return sent


def failing(times: int, error: Exception, real):
    """``real``, failing with ``error`` the first ``times`` calls."""
    calls = []

    def call(*args, **kwargs):
        calls.append(args)
        if len(calls) <= times:
            raise error
        return real(*args, **kwargs)

    call.calls = calls
    return call


def retry_when_due() -> None:
    """What the sweep and a later task would do: whatever is due (or left in doubt) is sent."""
    Recipient.objects.update(
        next_attempt_at=timezone.now() - timedelta(seconds=1),
        leased_until=timezone.now() - timedelta(seconds=1),
    )
    for recipient in Recipient.objects.exclude(status="delivered"):
        tasks.deliver(recipient.message_id)


@pytest.mark.parametrize("error", UNAVAILABLE, ids=lambda e: type(e).__name__)
@pytest.mark.django_db(transaction=True)
def test_a_delivery_recorded_while_the_database_fails_is_recorded_not_sent_again(
    live, settings, published, monkeypatch, error
):
    settings.DELIVERY_ERROR_LIMIT = 3
    recording = failing(2, error, claims.record_message_event_with)
    monkeypatch.setattr(claims, "record_message_event_with", recording)
    with SmtpSink() as sink:
        relay_to(settings, sink)
        message = queued_message(live, ["ok@example.net"])
        try:
            first = tasks.deliver(message.pk)
        except DatabaseError:
            first = "retried"  # autoretry_for
        retry_when_due()
    assert sink.delivered_to() == {"ok@example.net": 1}  # never a second copy
    assert first == "sent"  # recorded on the third try, within the task
    assert len(recording.calls) == 3
    state = Recipient.objects.get()
    assert (state.status, state.errors, state.attempts) == ("delivered", 0, 1)
    assert list(MessageEvent.objects.values_list("type", flat=True)) == ["Delivery"]
    assert published == []


@pytest.mark.parametrize(
    "error", UNAVAILABLE[:1] + UNAVAILABLE[-1:], ids=lambda e: type(e).__name__
)
@pytest.mark.django_db(transaction=True)
def test_a_deferral_cut_short_by_the_database_is_not_the_messages_fault(
    live, settings, published, monkeypatch, error
):
    """The task is retried (``autoretry_for``); the recipient was given back, so the retry takes
    it at once, with no error counted."""
    settings.DELIVERY_ERROR_LIMIT = 3
    monkeypatch.setattr(Claim, "finish", failing(1, error, Claim.finish))
    with SmtpSink(later_times=1) as sink:
        relay_to(settings, sink)
        message = queued_message(live, ["later@example.net"])
        with pytest.raises(DatabaseError):
            tasks.deliver(message.pk)  # the 450 could not be recorded
        state = Recipient.objects.get()
        assert (state.status, state.errors, state.attempts, state.leased_until) == (
            "sending",
            0,
            1,
            None,  # given back: free at once
        )
        assert tasks.deliver(message.pk) == "sent"  # the task's retry
    state.refresh_from_db()
    assert (state.status, state.errors, state.attempts) == ("delivered", 0, 2)
    assert sink.delivered_to() == {"later@example.net": 1}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL connection killed")
@pytest.mark.django_db(transaction=True)
def test_a_connection_killed_while_a_delivery_is_recorded(live, settings, published, monkeypatch):
    """The real thing on PostgreSQL: the server ends the worker's connection just before the
    delivered recipient is recorded (as a restart or a failover would). The fast path's psycopg
    error comes out as Django's; the worker reconnects and records the delivery."""
    record = claims.record_message_event_with
    killed = []

    def killed_first(*args, **kwargs):
        if not killed:
            killed.append(connection.connection.info.backend_pid)
            with pytest.raises(OperationalError), connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return record(*args, **kwargs)  # first on the dead connection

    monkeypatch.setattr(claims, "record_message_event_with", killed_first)
    with SmtpSink() as sink:
        relay_to(settings, sink)
        message = queued_message(live, ["ok@example.net"])
        assert tasks.deliver(message.pk) == "sent"
        retry_when_due()
    assert killed and connection.connection.info.backend_pid != killed[0]  # reconnected
    assert sink.delivered_to() == {"ok@example.net": 1}
    state = Recipient.objects.get()
    assert (state.status, state.errors, state.attempts) == ("delivered", 0, 1)
