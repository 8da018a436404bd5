"""Delivery through real local SMTP and DNS servers: delivered, retried, hard and soft bounces."""

import pytest
from django.utils import timezone

from bounces.models import Bounce
from conftest import accepted_submission, free_port
from outbound import tasks
from outbound.delivery import deliver_message, retry_delay
from outbound.models import MessageEvent, OutboundMessage, Recipient
from outbound.processing import process_submission
from outbound.tests.sinks import DnsServer, SmtpSink
from servers.models import DeliveryType
from streams.models import Suppression

RAW = (
    b"From: App <app@example.com>\r\n"
    b"To: someone@example.net\r\n"
    b"Subject: Delivery test\r\n"
    b"Message-ID: <client-id@example.com>\r\n"
    b"X-PM-Tag: receipts\r\n"
    b"X-PM-Metadata-order: 7\r\n"
    b"Bcc: hidden@example.net\r\n"
    b"\r\n"
    b"Hello.\r\n"
)


@pytest.fixture
def live(server):
    server.delivery_type = DeliveryType.LIVE
    server.save()
    return server


@pytest.fixture
def sink(settings):
    with SmtpSink() as running:
        settings.OUTBOUND_SMTP_RELAY = f"smtp://127.0.0.1:{running.port}?starttls=never"
        yield running


def outbound(server, rcpts, raw=RAW) -> OutboundMessage:
    submission = accepted_submission(server, raw, rcpts)
    process_submission(submission.pk)
    return OutboundMessage.objects.get(message_id=submission.message_id)


def recipient(message, email) -> Recipient:
    return message.deliveries.get(email=email)


@pytest.mark.django_db
def test_sandbox_servers_deliver_nothing(server, sink):
    message = outbound(server, ["ok@example.net"])
    assert deliver_message(message.pk) == "sandboxed"
    assert recipient(message, "ok@example.net").status == "sandboxed"
    assert sink.messages == []


@pytest.mark.django_db
def test_delivered(live, sink, settings):
    settings.BOUNCE_DOMAIN = "bounces.example.org"
    message = outbound(live, ["ok1@example.net", "ok2@example.net"])
    assert deliver_message(message.pk) == "sent"
    [received] = sink.messages  # both recipients in one transaction
    assert received.rcpt_tos == ["ok1@example.net", "ok2@example.net"]
    assert received.mail_from == f"pm_bounces+{message.message_id}@bounces.example.org"
    assert b"X-PM-" not in received.content and b"Bcc:" not in received.content
    assert b"client-id@example.com" not in received.content  # Message-ID rewritten
    events = MessageEvent.objects.filter(outbound=message, type="Delivery")
    assert sorted(e.recipient for e in events) == ["ok1@example.net", "ok2@example.net"]
    assert events[0].details.startswith("250 2.0.0 Ok: queued as SINK1")
    assert not Bounce.objects.exists()
    # Running again sends nothing twice.
    assert deliver_message(message.pk) == "sent"
    assert len(sink.messages) == 1


@pytest.mark.django_db
def test_hard_bounce_deactivates_the_recipient(live, sink):
    message = outbound(live, ["ok@example.net", "gone@example.net"])
    assert deliver_message(message.pk) == "sent"
    bounce = Bounce.objects.get()
    assert (bounce.type, bounce.type_code, bounce.email) == ("HardBounce", 1, "gone@example.net")
    assert (
        bounce.details == "550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown"
    )
    assert bounce.inactive and bounce.can_activate
    assert bounce.tag == "receipts" and bounce.metadata == {"order": "7"}
    assert bounce.message_id == message.message_id
    assert "C: RCPT TO:<gone@example.net>" in bounce.content
    assert "S: 550 5.1.1" in bounce.content
    assert "Subject: Delivery test" in bounce.content  # the message follows the transcript
    suppression = Suppression.objects.get(email="gone@example.net")
    assert suppression.reason == "HardBounce" and suppression.stream == message.stream
    assert recipient(message, "gone@example.net").status == "bounced"
    assert MessageEvent.objects.filter(type="Bounce", bounce=bounce).exists()


@pytest.mark.parametrize(
    ("email", "bounce_type"),
    [("full@example.net", "SoftBounce"), ("blocked@example.net", "Blocked")],
)
@pytest.mark.django_db
def test_enhanced_codes_refine_the_type(live, sink, email, bounce_type):
    message = outbound(live, [email])
    assert deliver_message(message.pk) == "bounced"
    bounce = Bounce.objects.get()
    assert bounce.type == bounce_type
    assert not bounce.inactive
    assert not Suppression.objects.exists()


@pytest.mark.django_db
def test_deferred_then_delivered(live, sink):
    message = outbound(live, ["later@example.net"])
    assert deliver_message(message.pk) == "queued"
    state = recipient(message, "later@example.net")
    assert state.status == "deferred" and state.attempts == 1
    assert state.next_attempt_at > timezone.now()
    transient = Bounce.objects.get()
    assert (transient.type, transient.name) == ("Transient", "Message delayed")
    assert transient.details.startswith("450 4.2.0")
    # Not due yet: nothing happens.
    assert deliver_message(message.pk) == "queued"
    Recipient.objects.filter(pk=state.pk).update(next_attempt_at=timezone.now())
    assert deliver_message(message.pk) == "sent"
    assert recipient(message, "later@example.net").status == "delivered"
    assert Bounce.objects.count() == 1  # one Transient for the deferral, nothing more


@pytest.mark.django_db
def test_soft_bounce_after_the_last_retry(live, settings):
    with SmtpSink(later_times=100) as sink:
        settings.OUTBOUND_SMTP_RELAY = f"smtp://127.0.0.1:{sink.port}?starttls=never"
        message = outbound(live, ["later@example.net"])
        deliver_message(message.pk)
        OutboundMessage.objects.filter(pk=message.pk).update(
            received_at=timezone.now() - timezone.timedelta(hours=73)
        )
        Recipient.objects.update(next_attempt_at=timezone.now())
        assert deliver_message(message.pk) == "failed"
    types = list(Bounce.objects.order_by("id").values_list("type", flat=True))
    assert types == ["Transient", "SoftBounce"]
    assert "Gave up after 2 attempts" in Bounce.objects.get(type="SoftBounce").details


@pytest.mark.django_db
def test_no_connection_is_a_deferral(live, settings):

    settings.OUTBOUND_SMTP_RELAY = f"smtp://127.0.0.1:{free_port()}"
    message = outbound(live, ["ok@example.net"])
    assert deliver_message(message.pk) == "queued"
    bounce = Bounce.objects.get()
    assert bounce.type == "Transient"
    assert "refused" in bounce.details.lower()


def test_retry_schedule(settings):
    settings.DELIVERY_RETRY_BASE = 60
    settings.DELIVERY_RETRY_MAX = 4 * 3600
    assert [retry_delay(n) for n in range(1, 11)] == [
        60, 120, 240, 480, 960, 1920, 3840, 7680, 14400, 14400
    ]  # fmt: skip


@pytest.mark.django_db
def test_direct_mx_delivery_through_real_dns(live, settings):
    with (
        SmtpSink() as sink,
        DnsServer(
            {
                ("example.test", "MX"): ["10 mx.example.test."],
                ("mx.example.test", "A"): ["127.0.0.1"],
                ("nomx.test", "A"): ["127.0.0.1"],
            }
        ) as dns_server,
    ):
        settings.OUTBOUND_SMTP_RELAY = ""
        settings.OUTBOUND_DIRECT_MX = True
        settings.OUTBOUND_DNS_SERVERS = [f"127.0.0.1:{dns_server.port}"]
        settings.OUTBOUND_MX_PORT = sink.port
        message = outbound(live, ["ok@example.test", "ok@nomx.test", "ok@nowhere.test"])
        assert deliver_message(message.pk) == "queued"
    assert sorted(r for m in sink.messages for r in m.rcpt_tos) == [
        "ok@example.test",
        "ok@nomx.test",  # the A fallback of RFC 5321 §5.1
    ]
    dns_bounce = Bounce.objects.get()
    assert (dns_bounce.type, dns_bounce.email) == ("DnsError", "ok@nowhere.test")
    assert "NXDOMAIN" in dns_bounce.details


@pytest.mark.django_db
def test_the_sweep_queues_waiting_work_at_most_once_per_interval(live, settings, monkeypatch):
    """A backlog merely waiting in the queue must not be multiplied by every sweep."""
    settings.SWEEP_AFTER_SECONDS = 60
    queued = []  # what would be published to the broker
    monkeypatch.setattr(tasks.deliver, "apply_async", lambda args, **kw: queued.append(args[0]))
    message = outbound(live, ["ok@example.net"])
    long_ago = timezone.now() - timezone.timedelta(minutes=5)
    Recipient.objects.update(updated_at=long_ago)
    OutboundMessage.objects.update(leased_until=timezone.now() + timezone.timedelta(seconds=60))
    # ^ its task is in the queue
    assert tasks.requeue_due_deliveries() == 0
    OutboundMessage.objects.update(leased_until=long_ago)  # that task should have run by now
    assert tasks.requeue_due_deliveries() == 1
    assert tasks.requeue_due_deliveries() == 0  # queued again just now
    assert queued == [message.pk]


@pytest.mark.django_db
def test_the_sweep_requeues_each_stuck_submission_once_per_interval(server, settings, monkeypatch):
    settings.SWEEP_AFTER_SECONDS = 60
    published = []  # what would be published to the broker
    monkeypatch.setattr(
        tasks.process_submissions, "apply_async", lambda args, **kw: published.append(args[0])
    )
    submission = accepted_submission(
        server, received_at=timezone.now() - timezone.timedelta(minutes=5)
    )
    assert tasks.requeue_stuck_submissions() == 1
    assert tasks.requeue_stuck_submissions() == 0
    assert published == [[str(submission.message_id)]]
