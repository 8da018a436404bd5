"""Delivery claims its recipients and fails message by message, through a real local SMTP sink.

Two workers delivering the same messages at once send each recipient once; a worker that lost a
recipient sends it nothing; one message's failure (a poison address, an unexpected error, workers
that keep dying) never holds up the others of its delivery batch and ends ``failed`` with a bounce;
retries further off than DELIVERY_MAX_COUNTDOWN wait in the database for the sweep.
"""

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connections
from django.utils import timezone

from bounces.models import Bounce
from core import leases
from delivery import content as delivery
from delivery import tasks
from delivery.claims import Claim
from delivery.relay import deliver_message
from delivery.tests.sinks import SmtpSink
from delivery.tests.test_delivery import queued_message, relay_to, statuses
from messages.models import OutboundMessage, Recipient
from postmark_site.celery import app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def published(monkeypatch):
    """What would be published to the broker: (message id or ids, countdown)."""
    sent = []
    monkeypatch.setattr(
        tasks.deliver,
        "apply_async",
        lambda args, countdown=None, **kw: sent.append((args[0], countdown)),
    )
    return sent


def run_at_once(count: int, work) -> None:
    """Run ``work`` in ``count`` threads that start together, as workers would; re-raise the
    first error."""
    barrier = threading.Barrier(count)
    errors = []

    def worker():
        try:
            barrier.wait()
            work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]


# --- Two workers, one recipient, one copy ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_workers_delivering_the_same_batch_send_each_recipient_once(live, settings, published):
    """As when the broker redelivers a task whose first run is still going."""
    with SmtpSink(rcpt_delay=0.02) as sink:
        relay_to(settings, sink)
        messages = [
            queued_message(live, [f"ok{m}-{r}@example.net" for r in range(4)]) for m in range(3)
        ]
        batch = [m.pk for m in messages]
        run_at_once(2, lambda: tasks.deliver(batch))
    expected = {r.email: 1 for r in Recipient.objects.all()}
    assert sink.delivered_to() == expected  # each once, none twice
    assert set(Recipient.objects.values_list("status", "attempts")) == {("delivered", 1)}
    assert all(countdown is None or countdown <= 300 for _, countdown in published)


@pytest.mark.django_db
def test_a_held_recipient_waits_for_its_lease_and_is_sent_again_when_in_doubt(live, sink):
    message = queued_message(live, ["ok@example.net"])
    # Another worker took it and began DATA...
    taken = Claim.take(message)
    assert taken.still_held(taken.recipients()) == taken.recipients()
    assert deliver_message(message.pk) == "queued"
    assert sink.messages == []  # ...so this one leaves it alone.
    # That worker died: once its lease has run out the recipient is in doubt, and sent again.
    Recipient.objects.update(leased_until=timezone.now() - timedelta(seconds=1))
    assert deliver_message(message.pk) == "sent"
    assert sink.delivered_to() == {"ok@example.net": 1}
    state = message.deliveries.get()
    assert (state.status, state.attempts, state.errors, state.leased_until) == (
        "delivered",
        2,
        1,  # the abandoned try counts as an error
        None,
    )


@pytest.mark.django_db
def test_a_worker_that_lost_a_recipient_sends_it_nothing(live, sink, monkeypatch):
    """The lease is checked before DATA; a recipient taken over meanwhile is left out (RSET and
    a new transaction for the others) and nothing is recorded for it by this worker."""
    message = queued_message(live, ["ok1@example.net", "ok2@example.net"])
    still_held = Claim.still_held

    def still_held_after_a_stall(claim, recipients):
        # This worker stalled past its lease, and another one took ok2 meanwhile.
        stalled = timezone.now() - timedelta(seconds=1)
        Recipient.objects.filter(email="ok1@example.net").update(leased_until=stalled)
        Recipient.objects.filter(email="ok2@example.net").update(
            leased_until=timezone.now() + timedelta(hours=1)
        )
        claim.until = stalled
        return still_held(claim, recipients)

    monkeypatch.setattr(Claim, "still_held", still_held_after_a_stall)
    assert deliver_message(message.pk) == "queued"
    assert sink.delivered_to() == {"ok1@example.net": 1}
    assert statuses(message) == {"ok1@example.net": "delivered", "ok2@example.net": "sending"}


@pytest.mark.django_db
def test_a_fresh_lease_is_checked_without_a_statement(live, django_assert_num_queries):
    """Others take only leases that have run out, so while three quarters of it are left the
    check before DATA needs no round trip to the database."""
    message = queued_message(live, ["ok@example.net"])
    claim = Claim.take(message)
    with django_assert_num_queries(0):
        assert claim.still_held(claim.recipients()) == claim.recipients()


@pytest.mark.django_db
def test_a_lease_running_low_is_renewed_and_a_lost_recipient_forgotten(live, settings):
    settings.OUTBOUND_TIMEOUT = 60  # a lease of 240 s
    message = queued_message(live, ["ok1@example.net", "ok2@example.net"])
    claim = Claim.take(message)
    assert len(claim.recipients()) == 2
    # Fresh: renewing costs nothing, and changes nothing.
    until = claim.until
    claim.renew()
    assert claim.until == until
    # Later, with under three quarters of the lease left (and ok2 lost to another worker once
    # its lease ran out), renewing extends what is still held and forgets the rest.
    soon = timezone.now() + timedelta(seconds=30)
    Recipient.objects.update(leased_until=soon)
    Recipient.objects.filter(email="ok2@example.net").update(leased_until=soon + timedelta(hours=1))
    claim.until = soon
    claim.renew()
    assert [r.email for r in claim.recipients()] == ["ok1@example.net"]
    ok1 = Recipient.objects.get(email="ok1@example.net")
    assert ok1.leased_until == claim.until > timezone.now() + timedelta(seconds=230)


# --- One message's failure is its own -------------------------------------------------------------


@pytest.mark.parametrize("smtputf8", [False, True])
@pytest.mark.django_db
def test_a_poison_smtputf8_recipient_does_not_hold_up_its_batch(
    live, settings, published, smtputf8
):
    """Before, the non-ASCII address raised UnicodeEncodeError in the worker, every time, and the
    messages queued beside it in the same task were never delivered."""
    with SmtpSink(smtputf8=smtputf8) as sink:
        relay_to(settings, sink)
        first = queued_message(live, ["ok1@example.net"])
        poison = queued_message(live, ["jörg@example.net"])
        others = [queued_message(live, [f"ok{i}@example.net"]) for i in (2, 3)]
        tasks.deliver([first.pk, poison.pk, *[m.pk for m in others]])
    delivered = sink.delivered_to()
    assert {r: delivered[r] for r in ("ok1@example.net", "ok2@example.net", "ok3@example.net")} == {
        "ok1@example.net": 1,
        "ok2@example.net": 1,
        "ok3@example.net": 1,
    }
    poison.refresh_from_db()
    if smtputf8:
        assert delivered["jörg@example.net"] == 1 and poison.status == "sent"
    else:
        assert poison.status == "bounced"  # at once, with a reason, never retried
        bounce = Bounce.objects.get(email="jörg@example.net")
        assert bounce.type == "HardBounce" and "SMTPUTF8" in bounce.details
        assert not bounce.inactive
    assert published == []  # nothing left to retry


@pytest.mark.django_db
def test_an_unexpected_error_fails_its_own_message_only(live, settings, published, monkeypatch):
    settings.DELIVERY_ERROR_LIMIT = 3
    with SmtpSink() as sink:
        relay_to(settings, sink)
        before = queued_message(live, ["ok1@example.net"])
        poison = queued_message(live, ["ok-poison@example.net"])
        after = queued_message(live, ["ok2@example.net"])
        message_bytes = delivery.message_bytes

        def broken_for_the_poison(message, recipient):
            if message.pk == poison.pk:
                raise RuntimeError("cannot build this message")
            return message_bytes(message, recipient)

        monkeypatch.setattr(delivery, "message_bytes", broken_for_the_poison)
        assert tasks.deliver([before.pk, poison.pk, after.pk]) == "sent, queued, sent"
        assert sink.delivered_to() == {"ok1@example.net": 1, "ok2@example.net": 1}
        state = poison.deliveries.get()
        assert (state.status, state.errors, state.attempts) == ("deferred", 1, 1)
        assert "RuntimeError: cannot build this message" in state.last_reply
        assert not Bounce.objects.exists()  # an internal error is not a remote deferral
        [(queued_id, countdown)] = published  # its retry, on the backoff schedule
        assert queued_id == poison.pk and 55 < countdown <= settings.DELIVERY_RETRY_BASE
        for _ in range(2):
            Recipient.objects.filter(pk=state.pk).update(next_attempt_at=timezone.now())
            tasks.deliver([poison.pk])
        # The third error gives up: failed, with a bounce the sender sees; never tried again.
        state.refresh_from_db()
        assert (state.status, state.errors, state.attempts) == ("failed", 3, 3)
        bounce = Bounce.objects.get()
        assert (bounce.type, bounce.email, bounce.inactive) == (
            "SoftBounce",
            "ok-poison@example.net",
            False,
        )
        assert "RuntimeError: cannot build this message" in bounce.details
        assert tasks.deliver([poison.pk]) == "failed"
        assert Bounce.objects.count() == 1


@pytest.mark.django_db
def test_a_recipient_whose_workers_keep_dying_ends_failed(live, sink, settings):
    """A message that kills its worker (the task comes back each time the lease runs out) is
    given up after DELIVERY_ERROR_LIMIT tries, not retried forever."""
    settings.DELIVERY_ERROR_LIMIT = 3
    message = queued_message(live, ["ok@example.net"])
    Recipient.objects.update(
        status="sending",
        attempts=2,
        errors=2,
        leased_until=timezone.now() - timedelta(seconds=1),  # two workers died holding it
    )
    assert deliver_message(message.pk) == "failed"
    assert sink.messages == []
    bounce = Bounce.objects.get()
    assert bounce.type == "SoftBounce" and "3 tries" in bounce.details


# --- Retries: short ones as countdowns, long ones in the database ---------------------------------


@pytest.mark.django_db
def test_a_short_retry_is_queued_with_a_countdown(live, settings, published):
    settings.DELIVERY_RETRY_BASE = 60
    with SmtpSink() as sink:
        relay_to(settings, sink)
        message = queued_message(live, ["later@example.net"])
        assert tasks.deliver(message.pk) == "queued"
    [(outbound_id, countdown)] = published
    assert outbound_id == message.pk and 55 < countdown <= 60
    message.refresh_from_db()  # the sweep leaves it alone while that task is on its way
    assert message.leased_until > timezone.now() + timedelta(seconds=55)


@pytest.mark.django_db
def test_a_long_backoff_waits_in_the_database_for_the_sweep(live, settings, published):
    settings.DELIVERY_RETRY_BASE = 3600
    settings.DELIVERY_MAX_COUNTDOWN = 300
    with SmtpSink() as sink:
        relay_to(settings, sink)
        message = queued_message(live, ["later@example.net"])
        assert tasks.deliver(message.pk) == "queued"
        assert published == []  # no hour-long countdown held by the broker
        message.refresh_from_db()
        assert message.leased_until is None
        assert tasks.requeue_due_deliveries() == 0  # not due yet
        Recipient.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        assert tasks.requeue_due_deliveries() == 1
        assert tasks.requeue_due_deliveries() == 0  # queued once per interval
        assert published == [(message.pk, None)]
        assert tasks.deliver(message.pk) == "sent"
    assert sink.delivered_to() == {"later@example.net": 1}


@pytest.mark.django_db
def test_no_countdown_is_longer_than_the_cap(live, settings, published):
    settings.DELIVERY_MAX_COUNTDOWN = 300
    message = queued_message(live, ["ok@example.net"])
    tasks.enqueue_delivery(message.pk, countdown=4 * 3600)
    assert published == [(message.pk, 300)]


@pytest.mark.django_db
def test_the_sweep_requeues_a_recipient_left_in_doubt(live, published):
    message = queued_message(live, ["ok@example.net"])
    leases.take(Recipient.objects.all(), 60, count_attempt=True)
    Recipient.objects.update(status="sending")
    assert tasks.requeue_due_deliveries() == 0  # its worker still holds it
    Recipient.objects.update(leased_until=timezone.now() - timedelta(seconds=1))
    OutboundMessage.objects.update(leased_until=None)
    assert tasks.requeue_due_deliveries() == 1
    assert published == [(message.pk, None)]


def test_workers_reserve_one_task_at_a_time():
    """With late acknowledgement a reserved task waits unacknowledged behind the running one;
    a delivery can take minutes, so each worker slot reserves just one."""
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_acks_late
    procfile = (ROOT / "Procfile").read_text()
    assert "--prefetch-multiplier" not in procfile
