"""A slow relay costs time, never mail: the stale-claim sequence, through a real SMTP sink; and a
task that died costs an error only to the message it was on.

A delivery task of 64 messages whose first message stalls at the relay (the default 60 s timeout
and 240 s lease, on a clock the test moves) must not let the other 63 be counted as failed tries:
they wait their turn untaken, another worker sends them once the sweep has queued them again, and
nobody's error count rises. Before, the task took the whole batch up front and renewed only the
message in progress; the sweep took the others again once their leases ran out and counted an
error on each, and with two earlier errors they ended ``failed`` with a SoftBounce ("cut short")
although no attempt at them had ever started.
"""

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from bounces.models import Bounce
from delivery import tasks
from delivery.claims import Claim
from delivery.relay import deliver_message
from delivery.tests.sinks import SinkHandler, SmtpSink
from delivery.tests.test_delivery import queued_message, relay_to
from messages.models import Recipient

BATCH = 64  # messages a delivery task takes (delivery.tasks.enqueue_deliveries)


class Clock:
    """``timezone.now`` for the test: real time, moved on by ``advance``."""

    def __init__(self):
        self.offset = timedelta()
        self.real = timezone.now

    def now(self):
        return self.real() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@dataclass
class StallingRelay(SinkHandler):
    """The relay stalls one transaction: RCPT TO is answered after ``rcpt_seconds`` and the end
    of DATA never (a 451 once the client would have timed out, after ``data_seconds``), on the
    test's clock. While the DATA stall lasts, ``meanwhile`` runs in a thread of its own (the
    sweep and another worker), the sink serving other connections as usual."""

    clock: Clock | None = None
    stall: str = ""
    rcpt_seconds: float = 0.0
    data_seconds: float = 0.0
    meanwhile: object = None
    stalled: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == self.stall and "RCPT" not in self.stalled:
            self.stalled.append("RCPT")
            self.clock.advance(self.rcpt_seconds)
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):
        if self.stall in envelope.rcpt_tos and "DATA" not in self.stalled:
            self.stalled.append("DATA")
            self.clock.advance(self.data_seconds)
            thread = threading.Thread(target=self._meanwhile)
            thread.start()
            while thread.is_alive():
                await asyncio.sleep(0.01)
            return "451 4.4.2 No answer from the next hop in time"
        return await super().handle_DATA(server, session, envelope)

    def _meanwhile(self):
        try:
            self.meanwhile()
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            connections.close_all()


@pytest.mark.parametrize("earlier_errors", [0, 2])
@pytest.mark.django_db(transaction=True)
def test_a_stalled_message_does_not_cost_the_rest_of_its_task_a_try(
    live, settings, monkeypatch, earlier_errors
):
    """64 messages in one task, the first stalling: 100 s for its RCPT (so the lease is renewed
    before DATA) and 150 s for DATA, past the others' leases had they been taken with it. The
    sweep runs during the stall and another worker delivers what it queued; the relay then
    times out on the first, which is deferred, and delivered once the relay is back. With two
    earlier (real) errors on every recipient, one more would have failed them."""
    settings.OUTBOUND_TIMEOUT = 60  # a lease of 240 s
    settings.DELIVERY_ERROR_LIMIT = 3
    settings.DELIVERY_RETRY_BASE = 60
    clock = Clock()
    monkeypatch.setattr(timezone, "now", clock.now)
    published = []
    monkeypatch.setattr(
        tasks.deliver, "apply_async", lambda args, countdown=None, **kw: published.append(args[0])
    )

    def the_sweep_and_another_worker():
        published.clear()
        assert tasks.requeue_due_deliveries() == BATCH - 1  # all but the one in progress
        for outbound_id in list(published):
            tasks.deliver(outbound_id)

    relay = StallingRelay(
        clock=clock,
        stall="ok-00@example.net",
        rcpt_seconds=100,
        data_seconds=150,
        meanwhile=the_sweep_and_another_worker,
    )
    with SmtpSink(handler=relay) as sink:
        relay_to(settings, sink)
        messages = [queued_message(live, [f"ok-{i:02}@example.net"]) for i in range(BATCH)]
        Recipient.objects.update(errors=earlier_errors)
        assert tasks.deliver([m.pk for m in messages]).startswith("queued, sent, sent")
        assert relay.stalled == ["RCPT", "DATA"] and relay.errors == []
        # The relay is back: the first message's retry is due, the sweep queues it, it goes.
        clock.advance(300)
        published.clear()
        assert tasks.requeue_due_deliveries() == 1
        assert [tasks.deliver(outbound_id) for outbound_id in published] == ["sent"]

    everyone = {f"ok-{i:02}@example.net" for i in range(BATCH)}
    assert sink.delivered_to() == {email: 1 for email in everyone}  # each once
    rows = {r.email: (r.status, r.errors, r.attempts) for r in Recipient.objects.all()}
    assert rows == {
        email: ("delivered", earlier_errors, 2 if email == "ok-00@example.net" else 1)
        for email in everyone
    }
    # The first deferral of the stalled message says so (Transient); nobody failed.
    assert list(Bounce.objects.values_list("email", "type")) == [("ok-00@example.net", "Transient")]


@pytest.mark.django_db
def test_a_task_that_died_on_a_message_costs_that_message_an_error_and_no_other(live, sink):
    """The task took three messages, delivered the first and died on the second: once the
    leases have run out and the messages are taken again (in any order), the second counts
    an error (its attempt was cut short), the third, which was waiting its turn, neither an
    error nor a second attempt."""
    first, second, third = (queued_message(live, [f"ok-{i}@example.net"]) for i in range(3))
    claims = Claim.take_all([first, second, third])
    [recipient] = claims[first.pk].recipients()
    assert claims[first.pk].finish(recipient, status="delivered", last_reply="250 2.0.0 Ok")
    Recipient.objects.filter(leased_until__isnull=False).update(
        leased_until=timezone.now() - timedelta(seconds=1)  # the worker died
    )
    assert [deliver_message(m.pk) for m in (third, second)] == ["sent", "sent"]
    rows = {r.email: (r.status, r.errors, r.attempts) for r in Recipient.objects.all()}
    assert rows == {
        "ok-0@example.net": ("delivered", 0, 1),
        "ok-1@example.net": ("delivered", 1, 2),  # in doubt: sent again, an error counted
        "ok-2@example.net": ("delivered", 0, 1),
    }
    assert sink.delivered_to() == {"ok-1@example.net": 1, "ok-2@example.net": 1}
