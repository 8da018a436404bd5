"""Delivery through real local SMTP and DNS servers: delivered, retried, hard and soft bounces,
each by the stage that refused; destinations that can never work; SMTPUTF8; line endings."""

import smtplib
import socket
import uuid

import pytest
from django.conf import settings
from django.utils import timezone

from bounces.models import Bounce
from bounces.verp import verp_address
from conftest import accepted_submission, free_port
from delivery import tasks
from delivery.outcomes import retry_delay
from delivery.relay import deliver_message
from delivery.tests.sinks import DnsServer, SmtpSink
from domains.tests.dkim_verify import unsigned
from messages import tasks as message_tasks
from messages.models import MessageEvent, OutboundMessage, Recipient, Submission
from messages.processing import process_submission
from streams.models import Suppression
from streams.services import get_stream

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


def outbound(server, rcpts, raw=RAW) -> OutboundMessage:
    submission = accepted_submission(server, raw, rcpts)
    process_submission(submission.pk)
    return OutboundMessage.objects.get(message_id=submission.message_id)


def recipient(message, email) -> Recipient:
    return message.deliveries.get(email=email)


def queued_message(server, rcpts, content: bytes | None = None) -> OutboundMessage:
    """A message as processing leaves it (queued, one pending row per recipient), for tests
    that start at delivery."""
    message_id = uuid.uuid4()
    default = f"Message-ID: <{message_id}@test>\r\nSubject: Queued\r\n\r\nhi\r\n".encode()
    message = OutboundMessage.objects.create(
        message_id=message_id,
        server=server,
        stream=get_stream(server, "outbound"),
        from_address="app@example.com",
        recipients=list(rcpts),
        subject="Queued",
        content=content or default,
        received_at=timezone.now(),
    )
    Recipient.objects.bulk_create([Recipient(message=message, email=r) for r in rcpts])
    return message


def relay_to(settings, sink) -> None:
    settings.OUTBOUND_SMTP_RELAY = f"smtp://127.0.0.1:{sink.port}?starttls=never"


def bounces() -> list[tuple]:
    return list(
        Bounce.objects.order_by("email").values_list("email", "type", "inactive", "can_activate")
    )


def statuses(message) -> dict[str, str]:
    return dict(message.deliveries.values_list("email", "status"))


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
    # A transaction per recipient, each from the recipient's own return path, one connection.
    first, second = sink.messages
    assert (first.rcpt_tos, second.rcpt_tos) == (["ok1@example.net"], ["ok2@example.net"])
    assert first.peer == second.peer
    rows = dict(message.deliveries.values_list("email", "pk"))
    for received in (first, second):
        [email] = received.rcpt_tos
        assert received.mail_from == verp_address(
            message.message_id, "bounces.example.org", rows[email]
        )
    assert first.content == second.content
    received = first
    assert b"X-PM-" not in received.content and b"Bcc:" not in received.content
    assert b"client-id@example.com" not in received.content  # Message-ID rewritten
    events = MessageEvent.objects.filter(outbound=message, type="Delivery")
    assert sorted(e.recipient for e in events) == ["ok1@example.net", "ok2@example.net"]
    details = {e.recipient: e.details for e in events}
    assert details["ok1@example.net"].startswith("250 2.0.0 Ok: queued as SINK1")
    assert details["ok2@example.net"].startswith("250 2.0.0 Ok: queued as SINK2")
    assert not Bounce.objects.exists()
    # Running again sends nothing twice.
    assert deliver_message(message.pk) == "sent"
    assert len(sink.messages) == 2


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


@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.django_db
def test_every_recipient_gets_its_own_answer_with_or_without_pipelining(
    live, settings, monkeypatch, pipelining
):
    """Where the next hop offers PIPELINING (RFC 2920) MAIL FROM and every RCPT TO go in one
    write and their replies are read in order; otherwise a command at a time. Either way each
    recipient's own reply decides its fate, and each recipient accepted gets a transaction of
    its own (with its own return path) over the one connection."""
    writes = []
    send = smtplib.SMTP.send

    def recorded(smtp, data):
        writes.append(data if isinstance(data, str) else data.decode("latin-1"))
        return send(smtp, data)

    monkeypatch.setattr(smtplib.SMTP, "send", recorded)
    rcpts = ["ok1@example.net", "gone@example.net", "later@example.net", "ok2@example.net"]
    with SmtpSink(pipelining=pipelining) as sink:
        relay_to(settings, sink)
        message = outbound(live, rcpts)
        assert deliver_message(message.pk) == "queued"
    assert [received.rcpt_tos for received in sink.messages] == [
        ["ok1@example.net"],
        ["ok2@example.net"],
    ]
    assert len({received.peer for received in sink.messages}) == 1
    assert statuses(message) == {
        "ok1@example.net": "delivered",
        "gone@example.net": "bounced",
        "later@example.net": "deferred",
        "ok2@example.net": "delivered",
    }
    envelopes = [w for w in writes if w.startswith("MAIL FROM:")]
    assert len(envelopes) == 4  # one per recipient
    assert [e.count("RCPT TO:") for e in envelopes] == [1 if pipelining else 0] * 4
    bounce = Bounce.objects.get(email="gone@example.net")
    assert "C: RCPT TO:<gone@example.net>" in bounce.content and "S: 550 5.1.1" in bounce.content


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
        assert deliver_message(message.pk) == "sent"
    assert sorted(r for m in sink.messages for r in m.rcpt_tos) == [
        "ok@example.test",
        "ok@nomx.test",  # the A fallback of RFC 5321 §5.1
    ]
    dns_bounce = Bounce.objects.get()
    assert (dns_bounce.type, dns_bounce.email) == ("HardBounce", "ok@nowhere.test")
    assert "NXDOMAIN" in dns_bounce.details


@pytest.mark.django_db
@pytest.mark.parametrize("relay_host", ["127.0.0.1", "[::1]"])
def test_a_relay_given_as_an_ip_literal_is_dialled_as_it_is(live, settings, relay_host):
    """With name servers configured (which answer nothing here), a relay named by its address is
    reached without a look-up, IPv4 and bracketed IPv6 alike."""
    if relay_host == "[::1]" and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with SmtpSink(host=relay_host.strip("[]")) as sink, DnsServer({}) as dns_server:
        settings.OUTBOUND_DNS_SERVERS = [f"127.0.0.1:{dns_server.port}"]
        settings.OUTBOUND_SMTP_RELAY = f"smtp://{relay_host}:{sink.port}?starttls=never"
        message = outbound(live, ["ok@example.net"])
        assert deliver_message(message.pk) == "sent"
    assert [m.rcpt_tos for m in sink.messages] == [["ok@example.net"]]


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
        message_tasks.process_submissions,
        "apply_async",
        lambda args, **kw: published.append(args[0]),
    )
    submission = accepted_submission(
        server, received_at=timezone.now() - timezone.timedelta(minutes=5)
    )
    assert message_tasks.requeue_stuck_submissions() == 1
    assert message_tasks.requeue_stuck_submissions() == 0
    assert published == [[str(submission.message_id)]]


BACKLOG = 5000


def queued_files(queue: str) -> int:
    """Tasks waiting in a queue of the embedded broker (the tests' default)."""
    return len(list((settings.DATA_DIR / "queue").glob(f"*.{queue}.msg")))


def processing_backlog(server, now):
    """Accepted submissions whose tasks the gateway published in batches of 50 and no worker
    has taken yet."""
    Submission.objects.bulk_create(
        Submission(
            message_id=uuid.uuid4(), server=server, endpoint="transactional",
            credential_kind="server_token", client_address="127.0.0.1",
            mail_from="app@example.com", rcpt_to=["a@example.net"], size=1, raw=b"x",
            received_at=now,
        )
        for _ in range(BACKLOG)
    )  # fmt: skip
    ids = [str(m) for m in Submission.objects.values_list("message_id", flat=True)]
    for start in range(0, len(ids), 50):
        message_tasks.enqueue_processing(ids[start : start + 50])
    Submission.objects.update(received_at=now - timezone.timedelta(minutes=5))
    return message_tasks.requeue_stuck_submissions, "processing", 256


def delivery_backlog(server, now):
    """Messages processing made and queued for delivery (tasks of 64), not yet taken."""
    stream = get_stream(server, "outbound")
    OutboundMessage.objects.bulk_create(
        OutboundMessage(
            message_id=uuid.uuid4(), server=server, stream=stream, from_address="a@example.com",
            recipients=["b@example.net"], content=b"Subject: x\r\n\r\nx\r\n", received_at=now,
        )
        for _ in range(BACKLOG)
    )  # fmt: skip
    ids = list(OutboundMessage.objects.values_list("pk", flat=True))
    Recipient.objects.bulk_create(Recipient(message_id=pk, email="b@example.net") for pk in ids)
    tasks.enqueue_deliveries(ids)
    OutboundMessage.objects.update(leased_until=now - timezone.timedelta(minutes=5))
    Recipient.objects.update(updated_at=now - timezone.timedelta(minutes=5))
    return tasks.requeue_due_deliveries, "delivery", 1


@pytest.mark.parametrize("backlog", [processing_backlog, delivery_backlog])
@pytest.mark.django_db
def test_a_backlog_still_in_the_queue_is_not_queued_again_by_the_sweep(server, settings, backlog):
    """A backlog older than SWEEP_AFTER_SECONDS, its tasks still waiting in the broker: the
    sweep leaves it alone, however often it runs; once the tasks are gone (lost with a broker)
    it queues the work again, at most SWEEP_MAX_REQUEUE rows a run."""
    settings.SWEEP_AFTER_SECONDS = 60
    settings.SWEEP_MAX_REQUEUE = 1000
    settings.SWEEP_BUSY_QUEUE_LENGTH = 50
    sweep, queue, per_task = backlog(server, timezone.now())
    waiting = queued_files(queue)
    assert waiting >= settings.SWEEP_BUSY_QUEUE_LENGTH
    assert sweep() == 0
    assert sweep() == 0
    assert queued_files(queue) == waiting  # nothing published twice
    for path in (settings.DATA_DIR / "queue").glob(f"*.{queue}.msg"):
        path.unlink()  # the broker lost them
    assert sweep() == 1000
    published = -(-1000 // per_task)
    assert queued_files(queue) == published
    # The next sweep queues more of the rest only while the queue is still short.
    assert sweep() == (1000 if published < settings.SWEEP_BUSY_QUEUE_LENGTH else 0)


# --- Bounces by stage: only a refusal of the address deactivates it ------------------------------


@pytest.mark.django_db
def test_an_ambiguous_refusal_at_rcpt_bounces_without_deactivating(live, sink):
    """A 550 without an address status or an unambiguous text may be policy: no suppression."""
    message = outbound(live, ["moved@example.net"])
    assert deliver_message(message.pk) == "bounced"
    assert bounces() == [("moved@example.net", "HardBounce", False, False)]
    assert not Suppression.objects.exists()


@pytest.mark.parametrize(
    ("reply", "bounce_type"),
    [
        (
            "550 5.1.8 <pm_bounces@example.org>: Sender address rejected: Domain not found",
            "Blocked",
        ),
        ("553 5.1.7 The sender address is not a valid address", "Blocked"),
        ("554 5.7.1 Sender not permitted by local policy", "Blocked"),
        ("550 Sender rejected", "HardBounce"),
    ],
)
@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.django_db
def test_a_refused_sender_bounces_the_message_without_deactivating(
    live, settings, reply, bounce_type, pipelining
):
    with SmtpSink(mail_reply=reply, pipelining=pipelining) as sink:
        relay_to(settings, sink)
        message = outbound(live, ["ok@example.net", "gone@example.net"])
        assert deliver_message(message.pk) == "bounced"
        assert bounces() == [
            ("gone@example.net", bounce_type, False, False),
            ("ok@example.net", bounce_type, False, False),
        ]
        assert set(Bounce.objects.values_list("details", flat=True)) == {reply}
        assert "C: MAIL FROM:<pm_bounces+" in Bounce.objects.first().content
        assert not Suppression.objects.exists()
        assert set(statuses(message).values()) == {"bounced"}
        # Not retried: a second run sends and records nothing.
        Recipient.objects.update(next_attempt_at=timezone.now())
        assert deliver_message(message.pk) == "bounced"
        assert Bounce.objects.count() == 2 and sink.messages == []


@pytest.mark.parametrize(
    "reply", ["451 4.3.0 Try again later", "530 5.7.0 Authentication required"]
)
@pytest.mark.django_db
def test_a_temporary_refusal_of_the_sender_is_a_deferral(live, settings, reply):
    """4xx, and 530 (the relay wants us to authenticate: configuration, not the message)."""
    with SmtpSink(mail_reply=reply) as sink:
        relay_to(settings, sink)
        message = outbound(live, ["ok@example.net"])
        assert deliver_message(message.pk) == "queued"
    assert statuses(message) == {"ok@example.net": "deferred"}
    assert bounces() == [("ok@example.net", "Transient", False, False)]


@pytest.mark.parametrize("refused_at", ["mail", "rcpt"])
@pytest.mark.django_db
def test_a_server_closing_with_421_defers_every_recipient_left(live, settings, refused_at):
    """Each recipient has a transaction of its own: a 421 (the server closes the connection)
    answers the one it came in, and those not yet sent to are deferred with it, not bounced,
    and never sent over the closed connection."""
    down = "421 4.3.2 Service shutting down"
    with SmtpSink(mail_reply=down if refused_at == "mail" else None) as sink:
        relay_to(settings, sink)
        first = "down@example.net" if refused_at == "rcpt" else "ok0@example.net"
        message = outbound(live, [first, "ok1@example.net", "ok2@example.net"])
        assert deliver_message(message.pk) == "queued"
    assert sink.messages == []
    assert set(statuses(message).values()) == {"deferred"}
    replies = dict(message.deliveries.values_list("email", "last_reply"))
    assert all("421 4.3.2 Service shutting down" in reply for reply in replies.values()), replies
    assert {kind for _, kind, *_ in bounces()} == {"Transient"}


@pytest.mark.parametrize(
    ("rcpt", "bounce_type", "details"),
    [
        ("spam@example.net", "Blocked", "554 5.7.1 Message rejected"),
        ("huge@example.net", "SoftBounce", "552 5.3.4 Message too big"),
    ],
)
@pytest.mark.django_db
def test_a_refused_message_body_bounces_without_deactivating(
    live, sink, rcpt, bounce_type, details
):
    """A 5xx at the end of DATA is about the message: every recipient it is refused for
    bounces (the sink refuses the same content again, as a content filter does), none is
    deactivated, and it is not retried for 72 hours."""
    message = outbound(live, [rcpt, "ok@example.net"])
    assert deliver_message(message.pk) == "bounced"
    assert bounces() == sorted(
        [(rcpt, bounce_type, False, False), ("ok@example.net", bounce_type, False, False)]
    )
    assert all(d.startswith(details) for d in Bounce.objects.values_list("details", flat=True))
    assert "C: DATA" in Bounce.objects.first().content
    assert not Suppression.objects.exists()
    assert set(statuses(message).values()) == {"bounced"}
    assert sink.messages == []


@pytest.mark.django_db
def test_a_refused_data_command_bounces_at_once(live, settings):
    """Before, a 5xx to the DATA command itself raised in smtplib and was retried for 72 h."""
    with SmtpSink(data_reply="554 5.7.1 Relay access denied by policy") as sink:
        relay_to(settings, sink)
        message = outbound(live, ["ok@example.net"])
        assert deliver_message(message.pk) == "bounced"
    assert bounces() == [("ok@example.net", "Blocked", False, False)]
    assert Bounce.objects.get().details == "554 5.7.1 Relay access denied by policy"
    assert statuses(message) == {"ok@example.net": "bounced"}


@pytest.mark.django_db
def test_a_temporary_refusal_at_data_is_a_deferral(live, sink):
    message = outbound(live, ["slowly@example.net"])
    assert deliver_message(message.pk) == "queued"
    assert statuses(message) == {"slowly@example.net": "deferred"}
    assert bounces() == [("slowly@example.net", "Transient", False, False)]


# --- Destinations that can never work ------------------------------------------------------------


@pytest.mark.django_db
def test_nxdomain_and_null_mx_bounce_at_once_and_servfail_is_retried(live, settings):
    records = {
        ("example.test", "MX"): ["10 mx.example.test."],
        ("mx.example.test", "A"): ["127.0.0.1"],
        ("nullmx.test", "MX"): ["0 ."],  # RFC 7505: accepts no mail
    }
    with SmtpSink() as sink, DnsServer(records, servfail=["broken.test"]) as dns_server:
        settings.OUTBOUND_SMTP_RELAY = ""
        settings.OUTBOUND_DIRECT_MX = True
        settings.OUTBOUND_DNS_SERVERS = [f"127.0.0.1:{dns_server.port}"]
        settings.OUTBOUND_MX_PORT = sink.port
        rcpts = ["ok@example.test", "ok@nullmx.test", "ok@nowhere.test", "ok@broken.test"]
        message = outbound(live, rcpts)
        assert deliver_message(message.pk) == "queued"  # broken.test waits for its DNS
        assert sink.delivered_to() == {"ok@example.test": 1}
    assert statuses(message) == {
        "ok@example.test": "delivered",
        "ok@nullmx.test": "bounced",
        "ok@nowhere.test": "bounced",
        "ok@broken.test": "deferred",
    }
    assert bounces() == [
        ("ok@broken.test", "DnsError", False, False),
        ("ok@nowhere.test", "HardBounce", True, True),
        ("ok@nullmx.test", "HardBounce", True, True),
    ]
    nullmx = Bounce.objects.get(email="ok@nullmx.test").details
    assert nullmx.startswith("5.1.10 ") and "null MX" in nullmx
    nxdomain = Bounce.objects.get(email="ok@nowhere.test").details
    assert nxdomain.startswith("5.1.2 ") and "NXDOMAIN" in nxdomain
    assert sorted(Suppression.objects.values_list("email", flat=True)) == [
        "ok@nowhere.test",
        "ok@nullmx.test",
    ]


# --- Addresses: SMTPUTF8, IDN, and what no command can carry --------------------------------------


@pytest.mark.django_db
def test_a_non_ascii_address_goes_with_smtputf8_where_offered(live, settings):
    with SmtpSink(smtputf8=True) as sink:
        relay_to(settings, sink)
        message = queued_message(live, ["jörg@example.net", "ok@example.net"])
        assert deliver_message(message.pk) == "sent"
    utf8, ascii_only = sink.messages
    assert (utf8.rcpt_tos, ascii_only.rcpt_tos) == (["jörg@example.net"], ["ok@example.net"])
    assert utf8.smtp_utf8 and not ascii_only.smtp_utf8  # MAIL FROM carried SMTPUTF8 if needed
    assert not Bounce.objects.exists()


@pytest.mark.django_db
def test_a_non_ascii_address_bounces_where_smtputf8_is_not_offered(live, settings):
    with SmtpSink(smtputf8=False) as sink:
        relay_to(settings, sink)
        message = queued_message(live, ["jörg@example.net", "ok@example.net"])
        assert deliver_message(message.pk) == "sent"
    [received] = sink.messages
    assert received.rcpt_tos == ["ok@example.net"] and not received.smtp_utf8
    assert statuses(message) == {"jörg@example.net": "bounced", "ok@example.net": "delivered"}
    assert bounces() == [("jörg@example.net", "HardBounce", False, False)]
    details = Bounce.objects.get().details
    assert "SMTPUTF8" in details and "jörg@example.net" in details and "127.0.0.1" in details


@pytest.mark.django_db
def test_an_international_domain_goes_as_a_labels(live, settings):
    with SmtpSink(smtputf8=False) as sink:
        relay_to(settings, sink)
        message = queued_message(live, ["ok@bücher.example"])
        assert deliver_message(message.pk) == "sent"
    assert sink.messages[0].rcpt_tos == ["ok@xn--bcher-kva.example"]


@pytest.mark.django_db
def test_an_address_no_command_can_carry_bounces(live, sink):
    evil = "x@example.net>\r\nRCPT TO:<y@example.net"
    message = queued_message(live, [evil, "ok@example.net"])
    assert deliver_message(message.pk) == "sent"
    assert sink.delivered_to() == {"ok@example.net": 1}
    assert bounces() == [(evil, "BadEmailAddress", False, False)]


# --- Line endings --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_bare_line_ends_are_sent_as_crlf(live, sink):
    # A From the From rule reads: a message without one is not signed (domains.signing).
    content = (
        b"From: app@example.com\nSubject: Line ends\nX-Test: 1\n\n"
        b"first line\n.\nafter a lone dot\rbare CR\r\n..two dots\nlast"
    )
    message = queued_message(live, ["ok@example.net"], content=content)
    assert deliver_message(message.pk) == "sent"
    [received] = sink.messages
    assert received.content.startswith(b"DKIM-Signature: ")
    assert unsigned(received.content) == (
        b"From: app@example.com\r\nSubject: Line ends\r\nX-Test: 1\r\n\r\n"
        b"first line\r\n.\r\nafter a lone dot\r\nbare CR\r\n..two dots\r\nlast\r\n"
    )


def test_a_server_that_hangs_up_after_refusing_mail_is_answered_by_that_refusal():
    """Pipelined, the RCPT replies never come when the server closes after a 421 to MAIL: the
    421 is the answer for every recipient, as when the commands go one by one."""
    from delivery.connections import Transcript
    from delivery.relay import _pipelined

    class HangsUp:
        def __init__(self):
            self.replies = [(421, b"4.7.0 Too many connections, closing")]
            self.sent = []

        def send(self, data):
            self.sent.append(data)

        def getreply(self):
            if not self.replies:
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            return self.replies.pop(0)

    server = HangsUp()
    commands = [("MAIL", "FROM:<a@example.org>"), ("RCPT", "TO:<b@example.net>")]
    transcript = Transcript()
    assert _pipelined(server, commands, transcript) == [
        (421, b"4.7.0 Too many connections, closing")
    ]
    assert server.sent == ["MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"]
    assert "S: 421 4.7.0 Too many connections, closing" in transcript.text()
    server.replies = []  # nothing at all: that is a broken connection, not an answer
    with pytest.raises(smtplib.SMTPServerDisconnected):
        _pipelined(server, commands, Transcript())
