"""The plain rules delivery follows: what an SMTP refusal means at each stage, how an address is
written in the envelope, and the line endings sent (the sink tests drive them over SMTP)."""

import pytest

from bounces.replies import Stage, classify_smtp_failure, classify_smtp_reply
from delivery.content import crlf
from delivery.transport import UnsendableAddress, envelope_address

pytestmark = pytest.mark.no_db

MAIL, RCPT, DATA = Stage.MAIL, Stage.RCPT, Stage.DATA

FAILURES = [
    # Recipient stage: only a reply about the address deactivates it.
    (RCPT, "550 5.1.1 <a@b>: Recipient address rejected: User unknown", "HardBounce", True),
    (RCPT, "550 5.1.2 Host or domain name not found", "HardBounce", True),
    (RCPT, "553 5.1.3 Bad recipient address syntax", "BadEmailAddress", True),
    (RCPT, "550 5.1.6 Mailbox has moved", "HardBounce", True),
    (RCPT, "550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found", "HardBounce", True),
    (RCPT, "556 5.1.10 Recipient address has null MX", "HardBounce", True),
    (RCPT, "550 No such user here", "HardBounce", True),
    (RCPT, "550 5.0.0 <a@b>... User unknown", "HardBounce", True),
    (RCPT, "550 Requested action not taken: mailbox unavailable", "HardBounce", False),
    (RCPT, "550 User unknown, and your IP is on a blacklist", "HardBounce", False),
    (RCPT, "550 5.7.1 Client host blocked using zen.spamhaus.org", "Blocked", False),
    (RCPT, "552 5.2.2 Mailbox full", "SoftBounce", False),
    (RCPT, "550 5.1.8 Sender address rejected: Domain not found", "Blocked", False),
    (RCPT, "550 5.1.7 Bad sender mailbox syntax", "Blocked", False),
    # MAIL FROM and DATA: about the sender or the message, never the address.
    (MAIL, "550 5.1.8 Sender address rejected: Domain not found", "Blocked", False),
    (MAIL, "553 5.7.1 Sender not permitted", "Blocked", False),
    (MAIL, "550 5.1.1 User unknown", "HardBounce", False),
    (DATA, "554 5.7.1 Message rejected as spam", "Blocked", False),
    (DATA, "552 5.3.4 Message too big for system", "SoftBounce", False),
    (DATA, "554 Transaction failed", "HardBounce", False),
    (DATA, "550 5.1.1 User unknown", "HardBounce", False),
    (DATA, "554 5.7.0 Reject - VIRUS: Eicar-Signature", "VirusNotification", False),
]


@pytest.mark.parametrize(("stage", "reply", "bounce_type", "deactivates"), FAILURES)
def test_a_permanent_refusal_by_stage(stage, reply, bounce_type, deactivates):
    code = int(reply[:3])
    failure = classify_smtp_failure(stage, code, "", reply)
    assert (failure.type, failure.permanent, failure.deactivates) == (
        bounce_type,
        True,
        deactivates,
    )


@pytest.mark.parametrize("stage", [MAIL, RCPT, DATA])
@pytest.mark.parametrize(
    ("reply", "bounce_type"),
    [
        ("450 4.2.0 Greylisted", "Transient"),
        ("421 4.3.2 Service shutting down", "Transient"),
        ("451 4.4.3 Temporary DNS failure", "DnsError"),
        ("452 4.2.2 Mailbox full", "Transient"),
    ],
)
def test_a_temporary_refusal_is_a_deferral_at_every_stage(stage, reply, bounce_type):
    failure = classify_smtp_failure(stage, int(reply[:3]), "", reply)
    assert (failure.type, failure.permanent, failure.deactivates) == (bounce_type, False, False)


def test_authentication_required_at_mail_from_is_the_relays_configuration():
    failure = classify_smtp_failure(MAIL, 530, "5.7.0", "530 5.7.0 Authentication required")
    assert not failure.permanent and failure.type == "Transient"


@pytest.mark.parametrize(
    ("status", "bounce_type"),
    [("5.1.7", "Blocked"), ("5.1.8", "Blocked"), ("5.3.4", "SoftBounce"), ("5.1.1", "HardBounce")],
)
def test_sender_and_size_statuses_are_never_a_hard_bounce(status, bounce_type):
    """Also for reports at the bounce MX, which carry the status alone."""
    assert classify_smtp_reply(550, status, "") == bounce_type


@pytest.mark.parametrize(
    ("email", "envelope", "smtputf8"),
    [
        ("ok@example.net", "ok@example.net", False),
        ("ok@bücher.example", "ok@xn--bcher-kva.example", False),
        ("jörg@example.net", "jörg@example.net", True),
        ("jörg@bücher.example", "jörg@bücher.example", True),
    ],
)
def test_envelope_addresses(email, envelope, smtputf8):
    assert envelope_address(email) == (envelope, smtputf8)


@pytest.mark.parametrize(
    "email",
    [
        "no-domain",
        "@example.net",
        "a@",
        "two words@example.net",
        "x@example.net>\r\nRCPT TO:<y@example.net",
        "nul\x00@example.net",
        "lone\udcffsurrogate@example.net",
        "ok@" + "ü" * 70 + ".example",  # an IDN label longer than 63 octets
        "ok@" + "a" * 64 + ".example",
        "ok@example..net",
    ],
)
def test_addresses_no_smtp_command_can_carry(email):
    with pytest.raises(UnsendableAddress):
        envelope_address(email)


@pytest.mark.parametrize(
    ("stored", "sent"),
    [
        (b"a\r\nb\r\n", b"a\r\nb\r\n"),
        (b"a\nb\n", b"a\r\nb\r\n"),
        (b"a\rb\r", b"a\r\nb\r\n"),
        (b"a\r\r\nb\n\r\n", b"a\r\n\r\nb\r\n\r\n"),
        (b"x\n.\ny", b"x\r\n.\r\ny"),
    ],
)
def test_line_endings_sent_are_crlf(stored, sent):
    assert crlf(stored) == sent
