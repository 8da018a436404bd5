"""A report only speaks for its own recipient: every recipient's copy goes out in a transaction of
its own with a return path of its own (one connection for all of them), and what comes back to
the bounce MX at one recipient's return path can affect that recipient alone, once.

Real protocol both ways: the message is relayed to a local SMTP sink, and the reports are sent to
the bounce MX of a real gateway process at the return paths the sink saw."""

import smtplib
import uuid
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from bounces.models import Bounce
from conftest import BOUNCE_DOMAIN, accepted_submission, start_gateway
from core import crypto
from delivery.relay import deliver_message
from messages.bounce_intake import message_for_bounce_address
from messages.models import MessageEvent, OutboundMessage, Recipient, Submission
from messages.processing import process_submission
from smtpgw.tests.test_bounce_mx import sent_message
from streams.models import Suppression

pytestmark = pytest.mark.django_db(transaction=True)

A, B, C = "ann@example.org", "bob@example.net", "cat@example.com"  # To, Cc and Bcc
STRANGER = "forwarded.to@elsewhere.example"
RAW = (
    f"From: App <app@example.com>\r\nTo: {A}\r\nCc: {B}\r\nBcc: {C}\r\n"
    "Subject: Your receipt\r\nX-PM-Tag: receipts\r\n\r\nThanks.\r\n"
).encode()


def dsn(to: str, named: str, action: str = "failed", status: str = "5.1.1") -> bytes:
    """An RFC 3464 delivery status notification sent to ``to`` about ``named`` (or nobody)."""
    fields = (
        f"Final-Recipient: rfc822; {named}\r\nOriginal-Recipient: rfc822;{named}\r\n"
        if named
        else ""
    )
    return (
        "From: MAILER-DAEMON@mx.remote.example (Mail Delivery System)\r\n"
        f"To: <{to}>\r\nSubject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\n"
        "This is the mail system at host mx.remote.example. Your message could not be "
        "delivered to one or more recipients.\r\n\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.remote.example\r\n\r\n"
        f"{fields}Action: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {status[0]}50 {status} Recipient address rejected\r\n\r\n"
        "--b1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Return-Path: <{to}>\r\nFrom: App <app@example.com>\r\nTo: {A}\r\nCc: {B}\r\n"
        "Subject: Your receipt\r\n\r\n--b1--\r\n"
    ).encode()


def arf(to: str, named: str) -> bytes:
    """An RFC 5965 spam complaint sent to ``to``; ``named`` in Original-Rcpt-To (or none: the
    returned copy's To and Cc then show the other recipients, as a Bcc recipient's copy does)."""
    rcpt_to = f"Original-Rcpt-To: {named}\r\n" if named else ""
    return (
        f"From: feedback@fbl.remote.example\r\nTo: <{to}>\r\nSubject: FW: Your receipt\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="b2"\r\n\r\n'
        "--b2\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n\r\n"
        "--b2\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: abuse\r\nUser-Agent: ExampleFBL/1.0\r\nVersion: 1\r\n{rcpt_to}\r\n"
        "--b2\r\nContent-Type: message/rfc822\r\n\r\n"
        f"Return-Path: <{to}>\r\nFrom: App <app@example.com>\r\nTo: {A}\r\nCc: {B}\r\n"
        "Subject: Your receipt\r\n\r\nThanks.\r\n--b2--\r\n"
    ).encode()


def relayed(live, sink, settings) -> tuple[OutboundMessage, dict[str, str]]:
    """The message to A, Cc B, Bcc C, delivered to the sink; and each recipient's return path."""
    settings.BOUNCE_DOMAIN = BOUNCE_DOMAIN
    submission = accepted_submission(live, RAW, [A, B, C])
    process_submission(submission.pk)
    message = OutboundMessage.objects.get(message_id=submission.message_id)
    assert deliver_message(message.pk) == "sent"
    paths = {}
    for received in sink.messages:
        for rcpt in received.rcpt_tos:
            paths[rcpt] = received.mail_from
    return message, paths


def report(port: int, address: str, raw: bytes) -> int:
    """Send a report to the bounce MX at ``address``; the RCPT reply code (the rest only if 250)."""
    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    client.ehlo("mx.remote.example")
    client.mail("")
    code, _ = client.rcpt(address)
    if code == 250:
        assert client.data(raw)[0] == 250
    client.quit()
    return code


def process_reports() -> list[str]:
    """Process the reports the bounce MX accepted; their statuses, oldest first."""
    waiting = Submission.objects.filter(endpoint="bounce", status="accepted").order_by("pk")
    for submission in waiting:
        process_submission(submission.pk)
    return list(
        Submission.objects.filter(endpoint="bounce").order_by("pk").values_list("status", flat=True)
    )


def bounces() -> list[tuple]:
    return list(Bounce.objects.order_by("pk").values_list("email", "type", "inactive"))


def suppressed() -> set[str]:
    return set(Suppression.objects.values_list("email", flat=True))


def test_each_recipient_gets_a_transaction_and_a_return_path_of_its_own(live, sink, settings):
    message, paths = relayed(live, sink, settings)
    assert [received.rcpt_tos for received in sink.messages] == [[A], [B], [C]]
    assert len({received.peer for received in sink.messages}) == 1  # over one connection
    assert len(set(paths.values())) == 3
    rows = dict(message.deliveries.values_list("email", "pk"))
    for rcpt, path in paths.items():
        local, _, domain = path.partition("@")
        assert domain == BOUNCE_DOMAIN and len(local) <= 64, path
        found = message_for_bounce_address(path)
        assert found.message_id == str(message.message_id)
        assert (found.recipient, found.recipient_id) == (rcpt, rows[rcpt])
    # The same content for all three (signed once), and the Bcc header in none.
    assert len({received.content for received in sink.messages}) == 1
    assert b"Bcc:" not in sink.messages[0].content
    assert statuses(message) == {A: "delivered", B: "delivered", C: "delivered"}


def statuses(message) -> dict[str, str]:
    return dict(message.deliveries.values_list("email", "status"))


# (report, arriving at the return path of, naming) -> the bounces it makes, the addresses
# suppressed, the report's status.
REPORTS = [
    pytest.param(dsn, A, B, [], set(), "failed", id="A's address, naming the Cc"),
    pytest.param(dsn, A, C, [], set(), "failed", id="A's address, naming the Bcc"),
    pytest.param(dsn, A, A, [(A, "HardBounce", True)], {A}, "processed", id="A's own"),
    pytest.param(
        dsn, A, A.upper(), [(A, "HardBounce", True)], {A}, "processed", id="A's own, upper-case"
    ),
    pytest.param(
        dsn,
        A,
        STRANGER,
        [(A, "HardBounce", True)],
        {A},
        "processed",
        id="A's address, naming where A forwards to",
    ),
    pytest.param(dsn, A, "", [(A, "HardBounce", True)], {A}, "processed", id="naming nobody"),
    pytest.param(arf, C, B, [], set(), "failed", id="ARF at C's address, naming the Cc"),
    pytest.param(
        arf, C, C, [(C, "SpamComplaint", True)], {C}, "processed", id="ARF at C's, naming C"
    ),
    pytest.param(
        arf,
        C,
        "",
        [(C, "SpamComplaint", True)],
        {C},
        "processed",
        id="ARF at C's, its copy showing only To A and Cc B",
    ),
    pytest.param(arf, B, A, [], set(), "failed", id="ARF at B's address, naming A"),
]


@pytest.mark.parametrize(("make", "at", "named", "made", "suppresses", "status"), REPORTS)
def test_a_report_affects_only_the_recipient_whose_return_path_it_came_to(
    gateway, live, sink, settings, make, at, named, made, suppresses, status
):
    message, paths = relayed(live, sink, settings)
    assert report(gateway.bounce_port, paths[at], make(paths[at], named)) == 250
    assert process_reports() == [status]
    assert bounces() == made
    assert suppressed() == suppresses
    changed = set(Recipient.objects.exclude(status="delivered").values_list("email", flat=True))
    assert changed <= {email for email, *_ in made}
    events = MessageEvent.objects.filter(outbound=message, bounce__isnull=False)
    assert sorted(e.recipient for e in events) == [email for email, *_ in made]


# Reports sent one after the other to the same return path -> the bounces they leave.
SEQUENCES = [
    pytest.param([(dsn, A, A)] * 3, [(A, "HardBounce", True)], id="a DSN replayed"),
    pytest.param([(arf, C, C)] * 2 + [(arf, C, "")], [(C, "SpamComplaint", True)], id="an ARF"),
    pytest.param(
        [(dsn, A, A.upper()), (dsn, A, A)], [(A, "HardBounce", True)], id="replayed, recased"
    ),
    pytest.param(
        [("delayed", A, A), ("delayed", A, A), (dsn, A, A)],
        [(A, "Transient", False), (A, "HardBounce", True)],
        id="a delay notice, again, then the failure",
    ),
    pytest.param(
        [(dsn, A, A), (dsn, B, B), (dsn, A, A)],
        [(A, "HardBounce", True), (B, "HardBounce", True)],
        id="two recipients' own reports",
    ),
]


@pytest.mark.parametrize(("sequence", "made"), SEQUENCES)
def test_a_replayed_report_records_nothing_new(gateway, live, sink, settings, sequence, made):
    message, paths = relayed(live, sink, settings)
    for make, at, named in sequence:
        raw = (
            dsn(paths[at], named, action="delayed", status="4.2.0")
            if make == "delayed"
            else make(paths[at], named)
        )
        assert report(gateway.bounce_port, paths[at], raw) == 250
    assert set(process_reports()) == {"processed"}
    assert bounces() == made
    assert MessageEvent.objects.filter(outbound=message, bounce__isnull=False).count() == len(made)


def per_message_address(message_id, domain: str = BOUNCE_DOMAIN) -> str:
    """The return path mail went out with before return paths were per recipient."""
    message_id = str(message_id)
    return f"pm_bounces+{message_id}.{crypto.tag(b'verp', message_id, 10)}@{domain}"


def test_a_per_message_return_path_of_mail_in_flight_still_takes_reports(gateway, server, settings):
    """Mail sent before the upgrade went out with one return path per message: its reports are
    taken, and may affect only the recipients they name that are recipients of that message."""
    settings.BOUNCE_DOMAIN = BOUNCE_DOMAIN
    message = sent_message(server, [A, B])
    address = per_message_address(message.message_id)
    for named in (B, STRANGER, B):
        assert report(gateway.bounce_port, address, dsn(address, named)) == 250
    assert process_reports() == ["processed", "failed", "processed"]
    assert bounces() == [(B, "HardBounce", True)]  # the stranger named by none; the replay: once
    assert suppressed() == {B}


def test_a_return_path_is_refused_once_its_report_window_has_passed(gateway, live, sink, settings):
    """Reports are taken for DELIVERY_GIVE_UP_AFTER + VERP_ACCEPT_DAYS after a message came in:
    past that (the upgrade's per-message return paths included), RCPT is refused."""
    message, paths = relayed(live, sink, settings)
    old = sent_message(live, [A])
    window = timedelta(seconds=django_settings.DELIVERY_GIVE_UP_AFTER) + timedelta(
        days=django_settings.VERP_ACCEPT_DAYS
    )
    for address in (paths[A], per_message_address(old.message_id)):
        assert report(gateway.bounce_port, address, b"Subject: x\r\n\r\nx\r\n") == 250
    Submission.objects.all().delete()
    OutboundMessage.objects.update(received_at=timezone.now() - window - timedelta(minutes=5))
    for address in (paths[A], per_message_address(old.message_id)):
        assert report(gateway.bounce_port, address, b"Subject: x\r\n\r\nx\r\n") == 550
    assert not Submission.objects.exists()


def test_a_return_path_for_another_recipient_row_or_message_is_refused(
    gateway, live, sink, settings
):
    """The tag covers the message and the recipient: neither can be swapped."""
    message, paths = relayed(live, sink, settings)
    other = sent_message(live, [A])
    local, _, domain = paths[A].partition("@")
    _, encoded_message, recipient, tag = local.replace("+", ".").split(".")
    rows = list(message.deliveries.order_by("pk").values_list("pk", flat=True))
    other_row = other.deliveries.get().pk
    forged = [
        f"pm_bounces+{uuid.UUID(str(other.message_id)).hex}.{recipient}.{tag}@{domain}",
        f"pm_bounces+{encoded_message}.{_base36(rows[1])}.{tag}@{domain}",
        f"pm_bounces+{encoded_message}.{_base36(other_row)}.{tag}@{domain}",
        f"pm_bounces+{encoded_message}.0{recipient}.{tag}@{domain}",
        f"pm_bounces+{encoded_message}.{recipient}@{domain}",
    ]
    for address in forged:
        assert report(gateway.bounce_port, address, b"x") == 550, address
    assert report(gateway.bounce_port, paths[A].upper(), dsn(paths[A], A)) == 250
    assert process_reports() == ["processed"]
    assert bounces() == [(A, "HardBounce", True)]


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = digits[digit] + text
        if not number:
            return text


OLD, NEW = "old-key-" + "o" * 40, "new-key-" + "n" * 40


def test_a_return_path_tagged_under_the_previous_key_takes_reports_after_a_rotation(
    live, sink, settings, tmp_path
):
    """Mail sent before SECRETS_KEY was rotated carries tags made under the old key; while the
    old key stays configured (behind the new one) its reports are taken. Dropping it too early
    would refuse them, which is why ``rotatesecrets`` says until when it must stay."""
    settings.SECRETS_KEY = OLD
    message, paths = relayed(live, sink, settings)
    settings.SECRETS_KEY = f"{NEW},{OLD}"
    rotated = start_gateway(tmp_path / "rotated.log", SECRETS_KEY=settings.SECRETS_KEY)
    try:
        assert report(rotated.bounce_port, paths[A], dsn(paths[A], A)) == 250
        assert report(rotated.bounce_port, paths[B], dsn(paths[B], B)) == 250
    finally:
        rotated.process.stop()
    assert process_reports() == ["processed", "processed"]
    assert bounces() == [(A, "HardBounce", True), (B, "HardBounce", True)]
    dropped = start_gateway(tmp_path / "dropped.log", SECRETS_KEY=NEW)
    try:
        assert report(dropped.bounce_port, paths[C], dsn(paths[C], C)) == 550
    finally:
        dropped.process.stop()


def test_one_recipients_return_path_per_report(gateway, live, sink, settings):
    """A report goes to one return path: a second recipient's in the same transaction is
    refused, so nothing can reach two recipients at once."""
    message, paths = relayed(live, sink, settings)
    client = smtplib.SMTP("127.0.0.1", gateway.bounce_port, timeout=10)
    client.ehlo("mx.remote.example")
    client.mail("")
    assert client.rcpt(paths[A])[0] == 250
    assert client.rcpt(paths[A].upper())[0] == 250  # the same return path
    assert client.rcpt(paths[B])[0] == 452
    assert client.data(dsn(paths[A], A))[0] == 250
    client.quit()
    [submission] = Submission.objects.filter(endpoint="bounce")
    assert submission.credential == f"{message.message_id}/{message.deliveries.get(email=A).pk}"
    assert process_reports() == ["processed"]
    assert bounces() == [(A, "HardBounce", True)]
