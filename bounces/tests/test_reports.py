"""bounces.reports: classifying bounces, complaints and auto-replies (pure Python, no database)."""

import random
from pathlib import Path

import pytest

from bounces.reports import Report, parse_report
from bounces.types import BOUNCE_TYPES
from bounces.verp import verp_address

pytestmark = pytest.mark.no_db

CORPUS = Path(__file__).parent / "corpus"

# file → (Type, recipient, status, MessageID)
EXPECTED = {
    "postfix_user_unknown.eml": (
        "HardBounce", "john.doe@example.org", "5.1.1", "0f8e2a6c-3b1d-4c5e-9a7f-1d2c3b4a5e6f"),
    "postfix_delayed.eml": (
        "Transient", "sales@slow.example.net", "4.4.1", "7c9e6679-7425-40de-944b-e07fc1f90ae7"),
    "postfix_dns_host_not_found.eml": (
        "DnsError", "alice@no-such-domain.example", "5.4.4",
        "3fa85f64-5717-4562-b3fc-2c963f66afa6"),
    "postfix_mailbox_full.eml": (
        "SoftBounce", "bob@example.com", "5.2.2", "9b2d7c1e-4f6a-4b8c-8d3e-5a1f2b3c4d5e"),
    "exim_dsn_spamhaus_block.eml": (
        "Blocked", "carol@example.co.uk", "5.7.1", "c56a4180-65aa-42ec-a945-5fd21dec0538"),
    "exim_dsn_user_unknown.eml": (
        "HardBounce", "dieter@example.de", "5.1.1", "1b4e28ba-2fa1-41d2-883f-0016d3cca427"),
    "exim_classic.eml": (
        "HardBounce", "erin@example.biz", "", "e4eaaaf2-d142-11e1-b3e4-080027620cdd"),
    "sendmail_user_unknown.eml": (
        "HardBounce", "frank@cs.example.edu", "5.1.1", "5d7f3a10-8c2e-4b6d-a1f9-3e4c5d6e7f80"),
    "gmail_address_not_found.eml": (
        "HardBounce", "no.such.person.xyz@gmail.com", "5.1.1",
        "a8f5c2d4-1e7b-4c39-9d60-2b8e4f1a7c35"),
    "office365_undeliverable.eml": (
        "HardBounce", "grace@contoso.com", "5.1.10", "2c9d4e6f-8a1b-4c3d-9e5f-7a8b9c0d1e2f"),
    "yahoo_no_account.eml": (
        "HardBounce", "henry.nonexistent@yahoo.com", "", "6f1e9d2c-3a4b-4c5d-8e7f-9a0b1c2d3e4f"),
    "qmail_does_not_like_recipient.eml": (
        "HardBounce", "ivan@example.info", "5.1.1", "b7e3c1a9-5d2f-4e8a-9b6c-1f0e2d3c4b5a"),
    "amavis_virus.eml": (
        "VirusNotification", "uma@example.net", "5.7.0", "ab0c1d2e-3f4a-4b5c-9d6e-7f8a9b0c1d2e"),
    "arf_yahoo_abuse.eml": (
        "SpamComplaint", "judy.smith@yahoo.com", "", "8d4c2b1a-0f9e-4d8c-a7b6-5e4d3c2b1a09"),
    "arf_microsoft_jmrp.eml": (
        "SpamComplaint", "kim.lee@outlook.com", "", "4e7a9c2b-1d3f-4a5b-8c6d-0e1f2a3b4c5d"),
    "arf_headers_only_removal_recipient.eml": (
        "SpamComplaint", "lou.grant@aol.com", "", "f0e1d2c3-b4a5-4968-8776-655443322110"),
    "autoreply_sieve_vacation.eml": (
        "AutoResponder", "kate@example.org", "", "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"),
    "autoreply_exchange_automatic_reply.eml": (
        "AutoResponder", "liam.obrien@fabrikam.example", "",
        "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"),
    "autoreply_x_autoreply_koi8r.eml": (
        "AutoResponder", "m.petrov@mail.example.ru", "", "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a"),
    "autoreply_cpanel_x_autorespond.eml": (
        "AutoResponder", "nora@shop.example.net", "", "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"),
    "autoreply_body_only.eml": (
        "AutoResponder", "oscar@example.com", "", "7d8e9f0a-1b2c-4d3e-8f4a-5b6c7d8e9f0a"),
    "challenge_spamarrest.eml": (
        "ChallengeVerification", "paul@example.net", "", "4b5c6d7e-8f9a-4b0c-9d1e-2f3a4b5c6d7e"),
    "challenge_boxbe.eml": (
        "ChallengeVerification", "quinn@example.com", "", "5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f"),
    "address_change.eml": (
        "AddressChange", "rita@oldcorp.example", "", "6d7e8f9a-0b1c-4d2e-9f3a-4b5c6d7e8f9a"),
    "unsubscribe_request.eml": (
        "Unsubscribe", "sam@example.org", "", "7e8f9a0b-1c2d-4e3f-8a4b-5c6d7e8f9a0b"),
    "unknown_human_reply.eml": ("Unknown", "", "", "8f9a0b1c-2d3e-4f4a-9b5c-6d7e8f9a0b1c"),
    "unknown_daemon_notice.eml": ("Unknown", "", "", "9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"),
}  # fmt: skip

# A few files, checked further: the diagnostic text and the original Message-ID header.
DIAGNOSTICS = {
    "postfix_user_unknown.eml": "550 5.1.1 <john.doe@example.org>: Recipient address rejected: "
    "User unknown in virtual mailbox table",
    "office365_undeliverable.eml": "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not "
    "found by SMTP address lookup",
    "yahoo_no_account.eml": "554 delivery error: dd This user doesn't have a yahoo.com account",
    "exim_classic.eml": "550 No Such User Here",
    "qmail_does_not_like_recipient.eml": "550 5.1.1 <ivan@example.info>: Recipient address "
    "rejected: User unknown",
    "postfix_dns_host_not_found.eml": "Host or domain name not found. Name service error for "
    "name=no-such-domain.example type=MX: Host not found",
    "gmail_address_not_found.eml": "550 5.1.1 The email account that you tried to reach does not "
    "exist. Please try double-checking the recipient's email address",
}
HEADERS = {
    # the customer's own Message-ID: the MessageID comes from the VERP address instead
    "postfix_mailbox_full.eml": "<d2a1b7e0-6c3f-4e59-8a41-7b90c2f3e811@acme.example>",
    "office365_undeliverable.eml": "<CAF3xk9qY2hT=orders@mail.acme.example>",
    "gmail_address_not_found.eml": "<a8f5c2d4-1e7b-4c39-9d60-2b8e4f1a7c35@mailer.example>",
    "autoreply_exchange_automatic_reply.eml": "<5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9@mailer.example>",  # noqa: E501
    "unknown_daemon_notice.eml": "",
}
ID = "0f8e2a6c-3b1d-4c5e-9a7f-1d2c3b4a5e6f"
OTHER_ID = "11111111-2222-4333-8444-555555555555"


def load(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def test_every_corpus_file_has_an_expectation():
    assert {p.name for p in CORPUS.glob("*.eml")} == set(EXPECTED)
    assert all(row[0] in BOUNCE_TYPES for row in EXPECTED.values())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus(name):
    kind, recipient, status, message_id = EXPECTED[name]
    report = parse_report(load(name))
    assert (report.type, report.recipient, report.status, report.message_id) == (
        kind,
        recipient,
        status,
        message_id,
    )
    assert "\n" not in report.diagnostic and len(report.diagnostic) <= 500
    if name in DIAGNOSTICS:
        assert report.diagnostic.startswith(DIAGNOSTICS[name])
    if name in HEADERS:
        assert report.original_message_id_header == HEADERS[name]


def test_envelope_message_id_wins():
    raw = load("postfix_user_unknown.eml")
    assert parse_report(raw).message_id == ID
    assert parse_report(raw, verp_message_id=OTHER_ID).message_id == OTHER_ID
    assert parse_report(raw, OTHER_ID.upper()).message_id == OTHER_ID
    verp = verp_address(OTHER_ID, "bounces.mailer.example", 1)
    assert parse_report(raw, verp_message_id=verp).message_id == OTHER_ID
    assert parse_report(raw, verp_message_id="not-a-uuid").message_id == ID
    assert parse_report(b"", verp_message_id=OTHER_ID) == Report("Unknown", message_id=OTHER_ID)


def test_message_id_uuid_is_the_last_resort():
    raw = (
        b"From: MAILER-DAEMON@example.org\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        b"Content-Type: text/plain\r\n\r\n<x@example.org>: host said: 550 5.1.1 User unknown\r\n"
        b"\r\n--- Below this line is a copy of the message.\r\n\r\n"
        b"Message-ID: <" + OTHER_ID.upper().encode() + b"@mailer.example>\r\n"
        b"Subject: hi\r\n\r\nhi\r\n"
    )
    report = parse_report(raw)
    assert (report.type, report.recipient, report.status) == (
        "HardBounce",
        "x@example.org",
        "5.1.1",
    )
    assert report.message_id == OTHER_ID
    with_verp = raw.replace(b"Subject: hi", b"X-PM-Message-Id: " + ID.encode())
    assert parse_report(with_verp).message_id == ID


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe" * 1000,
        "Subject: not bytes\n\nuser unknown",
        b"Content-Type: multipart/report; boundary=x\n\n--x\nContent-Type: message/delivery-status"
        b"\n\nAction: failed\nStatus: 5.1.1\n--x",
        b'Content-Type: multipart/mixed; boundary="a"\n\n' + b"--a\nContent-Type: multipart/mixed;"
        b' boundary="a"\n\n' * 300,
        b"Content-Type: text/plain; charset=no-such-charset\n\nmailbox full \xff",
        b"Content-Type: text/plain; charset=base64\nContent-Transfer-Encoding: base64\n\n!!!",
        b"From: =?utf-8?q?broken\nSubject: =?x?b?@@@?=\n\n",
        b"Content-Type: message/feedback-report\n\n",
        b"<" * 50_000 + b"@" + b"a" * 50_000,
    ],
)
def test_never_raises_on_odd_input(raw):
    assert isinstance(parse_report(raw), Report)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One random damage: flip, delete, duplicate, insert or truncate."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            break
        i = rng.randrange(len(buf))
        j = min(len(buf), i + rng.randint(1, 400))
        choice = rng.randrange(5)
        if choice == 0:
            buf[i] = rng.randrange(256)
        elif choice == 1:
            del buf[i:j]
        elif choice == 2:
            buf[i:i] = buf[i:j]
        elif choice == 3:
            buf[i:i] = rng.choice([b"\n\n", b"--", b"=?utf-8?b?", b":", b"\xff\xfe", b"\r"]) * 3
        else:
            del buf[i:]
    return bytes(buf)


def test_random_mutations_never_raise():
    rng = random.Random(20240312)
    files = [load(name) for name in sorted(EXPECTED)]
    for _ in range(1000):
        report = parse_report(mutate(rng, rng.choice(files)))
        assert isinstance(report, Report)
        assert report.type in BOUNCE_TYPES
        assert "\n" not in report.diagnostic


# Whether a field of the report names the recipient (else it is a guess: from the notice text,
# a reply's From, or the returned copy's To, which a Cc or Bcc recipient's copy shows others in).
STATED = {
    "postfix_user_unknown.eml",  # Final-Recipient
    "exim_dsn_user_unknown.eml",
    "exim_classic.eml",  # X-Failed-Recipients
    "arf_yahoo_abuse.eml",  # Original-Rcpt-To
    "arf_headers_only_removal_recipient.eml",  # Removal-Recipient
}
GUESSED = {
    "qmail_does_not_like_recipient.eml",  # the notice text
    "autoreply_sieve_vacation.eml",  # the reply's From
    "challenge_boxbe.eml",
    "unknown_human_reply.eml",  # nobody
}


@pytest.mark.parametrize("name", sorted(STATED | GUESSED))
def test_whether_the_report_states_its_recipient(name):
    assert parse_report(load(name)).recipient_stated == (name in STATED)


def test_a_complaint_without_original_rcpt_to_guesses_from_the_copys_to():
    raw = load("arf_yahoo_abuse.eml").replace(b"Original-Rcpt-To:", b"X-Not-Rcpt-To:")
    report = parse_report(raw)
    assert (report.recipient, report.recipient_stated) == ("judy.smith@yahoo.com", False)


@pytest.mark.parametrize(
    "raw",
    [
        # 150,000 parameters after a stray quote, in the report's own header and in a part's:
        # the standard library's reading of them ran for over ten minutes.
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"; x="'
        + b";\r\n a=b" * 150_000
        + b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nuser unknown\r\n--b--\r\n",
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b'--b\r\nContent-Type: text/plain; charset=utf-8; x="'
        + b";\r\n a=b" * 150_000
        + b"\r\n\r\nuser unknown\r\n--b--\r\n",
        b"Subject: Undelivered\r\nX-Folded: a\r\n"
        + b" "
        + b"a" * 70
        + b"\r\n" * 28_000
        + b"\r\nThe message could not be delivered: 550 5.1.1 user unknown\r\n",
        b"Content-Type: message/delivery-status\r\n\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"Diagnostic-Code: smtp; 550\r\n" + b" x\r\n" * 300_000,
    ],
    ids=["report parameters", "part parameters", "a folded field", "a folded DSN field"],
)
def test_hostile_headers_are_read_in_linear_time(raw):
    import time

    started = time.process_time()  # CPU time: a busy machine does not count
    assert isinstance(parse_report(raw), Report)
    assert time.process_time() - started < 5
