"""Delivery as RFC 5321 asks, through a real SMTP sink and a real DNS server: no second host after
a time-out past DATA, a new transaction after a 452 to RCPT, 8-bit content converted for a host
without 8BITMIME (and still DKIM-valid), AAAA as well as A, MX answers cached for their TTL."""

import email
import email.policy
import socket
import time

import dns.resolver
import pytest

from bounces.models import Bounce
from delivery.downgrade import Unconvertible, seven_bit
from delivery.relay import deliver_message
from delivery.tests.sinks import DnsServer, SmtpSink
from delivery.tests.test_delivery import bounces, outbound, relay_to, statuses
from delivery.tests.test_delivery_dkim import verified_domain
from domains import signing
from domains.tests.dkim_verify import PublishedKeys, unsigned, verify_all

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def service(settings):
    settings.DKIM_SERVICE_DOMAIN = "mail.service.test"
    settings.BOUNCE_DOMAIN = "bounces.service.test"
    signing.forget()
    yield
    signing.forget()


def direct_mx(settings, dns_server, port) -> None:
    settings.OUTBOUND_SMTP_RELAY = ""
    settings.OUTBOUND_DIRECT_MX = True
    settings.OUTBOUND_DNS_SERVERS = [f"127.0.0.1:{dns_server.port}"]
    settings.OUTBOUND_MX_PORT = port


# --- A time-out after DATA: the message may have been delivered -----------------------------------

TWO_HOSTS = {
    ("example.test", "MX"): ["10 mx1.example.test.", "20 mx2.example.test."],
    ("mx1.example.test", "A"): ["127.0.0.1"],
    ("mx2.example.test", "A"): ["127.0.0.1"],
}


@pytest.mark.parametrize(
    ("stall", "copies", "status"),
    [
        # Before the message was sent: nothing can have been delivered; the next host takes it.
        ("stall_at_rcpt", 1, "delivered"),
        # Waiting for the reply to the message: it may have been delivered (the sink has it), so
        # it is deferred on this host, never sent to the next one now (a duplicate).
        ("stall_after_data", 1, "deferred"),
    ],
)
def test_a_time_out_moves_to_the_next_host_only_before_the_message_was_sent(
    live, settings, stall, copies, status
):
    settings.OUTBOUND_TIMEOUT = 1
    with (
        SmtpSink(**{stall: 1}, stall_seconds=3) as sink,
        DnsServer(TWO_HOSTS) as dns_server,
    ):
        direct_mx(settings, dns_server, sink.port)
        message = outbound(live, ["ok@example.test"])
        deliver_message(message.pk)
        assert len(sink.messages) == copies
        assert len(sink.handler.sessions) == (2 if status == "delivered" else 1)
    assert statuses(message) == {"ok@example.test": status}
    if status == "deferred":
        reply = message.deliveries.get().last_reply
        assert "mx1.example.test" in reply and "may have been delivered" in reply
        assert bounces() == [("ok@example.test", "Transient", False, False)]
    else:
        assert not Bounce.objects.exists()


# --- 452 at RCPT: a new transaction -------------------------------------------------------------


@pytest.mark.parametrize(
    ("times", "reply", "status"),
    [
        # The second transaction takes it, in the same attempt.
        (1, "452 4.5.3 Too many recipients", "delivered"),
        # Refused again in a new transaction: deferred, not tried on and on.
        (5, "452 4.5.3 Too many recipients", "deferred"),
        # The 552 that RFC 821 listed for this: temporary as well, never a bounce.
        (5, "552 5.5.3 Too many recipients", "deferred"),
    ],
)
@pytest.mark.parametrize("pipelining", [True, False])
def test_a_452_at_rcpt_tries_again_in_a_new_transaction(
    live, settings, times, reply, status, pipelining
):
    """RFC 5321 §4.5.3.1.10: a 452 (too many recipients for this transaction, or not enough
    storage) leaves the recipient for a new transaction, over the same connection, not for a
    retry an hour later."""
    with SmtpSink(rcpt_452_times=times, too_many_reply=reply, pipelining=pipelining) as sink:
        relay_to(settings, sink)
        message = outbound(live, ["ok1@example.net", "ok2@example.net"])
        deliver_message(message.pk)
    assert statuses(message) == {"ok1@example.net": status, "ok2@example.net": status}
    [session] = sink.handler.sessions  # one connection for all of it
    per_recipient = ["MAIL", "RCPT", "RSET", "MAIL", "RCPT"]  # two transactions each
    assert session == [*per_recipient, *(["RSET"] if status == "deferred" else [])] * 2
    if status == "delivered":
        assert sink.delivered_to() == {"ok1@example.net": 1, "ok2@example.net": 1}
        assert not Bounce.objects.exists()
    else:
        assert sink.messages == []
        assert {kind for _, kind, *_ in bounces()} == {"Transient"}
        assert set(Bounce.objects.values_list("details", flat=True)) == {reply}


# --- 8-bit content and 8BITMIME ------------------------------------------------------------------

HEADER = (
    "From: Shop <orders@shop.test>\r\nTo: ok@example.net\r\nSubject: {subject}\r\n"
    "Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
)
MIXED = (
    'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    "This is a multi-part message in MIME format.\r\n"
    "--b1\r\n"
    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    "Grüße aus Zürich. " + "Ein sehr langer Satz über Öl und Ähren, " * 4 + "\r\n"
    ".\r\nFrom the shop, with a trailing space \r\n"
    "--b1\r\n"
    'Content-Type: multipart/alternative; boundary="b2"\r\n\r\n'
    "--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>naïve café</p>\r\n"
    "--b2\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nplain ASCII\r\n"
    "--b2--\r\n"
    "--b1\r\n"
    "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    "AAECAwQF\r\n"
    "--b1\r\n"
    "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    "Subject: forwarded\r\n\r\nInnen: ünd außen\r\n"
    "--b1--\r\n"
)
SEVEN_BIT = "Content-Type: text/plain; charset=us-ascii\r\n\r\nJust ASCII.\r\n"


def raw_message(body: str, subject: str = "Order 7") -> bytes:
    return (HEADER.format(subject=subject) + body).encode("utf-8")


def leaves(raw: bytes) -> list[tuple[str, bytes]]:
    """Each body part's type and decoded content, as a reader sees them."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    return [
        (part.get_content_type(), part.get_payload(decode=True))
        for part in parsed.walk()
        if not part.is_multipart()
    ]


@pytest.mark.parametrize(
    ("raw", "eightbitmime", "smtputf8", "sent", "body_option"),
    [
        # 8-bit parts to a host without 8BITMIME: quoted-printable, part by part.
        (raw_message(MIXED), False, False, "converted", False),
        # ... and to one that offers it: as they are, with BODY=8BITMIME.
        (raw_message(MIXED), True, False, "as is", True),
        # 7-bit content: no BODY=8BITMIME.
        (raw_message(SEVEN_BIT), True, False, "as is", False),
        (raw_message(SEVEN_BIT), False, False, "as is", False),
        # A raw UTF-8 header cannot be converted: it goes with SMTPUTF8 where that is offered ...
        (raw_message(MIXED, subject="Grüße"), False, True, "converted", False),
        # ... and is bounced with the reason where it is not.
        (raw_message(MIXED, subject="Grüße"), False, False, "bounced", False),
    ],
)
def test_8bit_content_goes_as_the_next_hop_can_take_it(
    live, settings, raw, eightbitmime, smtputf8, sent, body_option
):
    keys = PublishedKeys()
    verified_domain("shop.test", keys)
    with SmtpSink(eightbitmime=eightbitmime, smtputf8=smtputf8) as sink:
        relay_to(settings, sink)
        message = outbound(live, ["ok@example.net"], raw)
        deliver_message(message.pk)
    if sent == "bounced":
        assert sink.messages == []
        assert bounces() == [("ok@example.net", "HardBounce", False, False)]
        details = Bounce.objects.get().details
        assert "8BITMIME" in details and "subject" in details and "converted" in details
        return
    [received] = sink.messages
    assert statuses(message) == {"ok@example.net": "delivered"}
    assert ("BODY=8BITMIME" in received.mail_options) == body_option
    assert received.smtp_utf8 == (smtputf8 and not raw.split(b"\r\n\r\n")[0].isascii())
    assert verify_all(received.content, keys) == [True]  # signed after the conversion
    body = unsigned(received.content).split(b"\r\n\r\n", 1)[1]
    if sent == "as is":
        assert body == raw.split(b"\r\n\r\n", 1)[1]
        return
    assert body.isascii()
    assert leaves(unsigned(received.content)) == leaves(raw)  # what a reader sees is the same
    assert body.count(b"Content-Transfer-Encoding: quoted-printable") == 3
    assert b"This is a multi-part message in MIME format." in body
    assert b"AAECAwQF" in body  # the base64 part as it was
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    if smtputf8:  # the header as it was
        assert "Subject: Grüße\r\n".encode() in unsigned(received.content)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Stray 8-bit bytes in a quoted-printable part: encoded as a decoder read them.
        (b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=3D\xe9\r\n",
         b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=3D=E9\r\n"),
        # Without MIME-Version, none declared: text/plain, 7bit (RFC 2045); MIME-Version added.
        (b"Subject: x\r\n\r\nZ\xc3\xbcrich\r\n",
         b"Subject: x\r\nContent-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n"
         b"\r\nZ=C3=BCrich\r\n"),
        # A part without header fields.
        (b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\n\xff\r\n--b--\r\n',
         b'Content-Type: multipart/mixed; boundary="b"\r\nMIME-Version: 1.0\r\n\r\n--b\r\n'
         b"Content-Transfer-Encoding: quoted-printable\r\n\r\n=FF\r\n--b--\r\n"),
        # Nothing 8-bit: nothing changes.
        (b"Subject: x\r\n\r\nplain\r\n", b"Subject: x\r\n\r\nplain\r\n"),
        # What cannot be converted, and says why.
        (b"Content-Transfer-Encoding: x-uuencode\r\n\r\n\xff\r\n", "'x-uuencode'"),
        (b"Content-Type: message/partial; id=1\r\n\r\n\xff\r\n", "message/partial"),
        (b"Content-Type: multipart/mixed\r\n\r\n\xff\r\n", "boundary"),
        (b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nx\r\n", "subject"),
    ],
)  # fmt: skip
def test_the_conversion_to_7bit(raw, expected):
    if isinstance(expected, bytes):
        assert seven_bit(raw) == expected
    else:
        with pytest.raises(Unconvertible, match=expected):
            seven_bit(raw)


def test_utf8_headers_stay_only_where_smtputf8_is_offered_and_they_are_utf8():
    utf8 = b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n\r\n\xff\r\n"
    assert seven_bit(utf8, utf8_headers=True).startswith(b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n")
    with pytest.raises(Unconvertible, match="not UTF-8"):
        seven_bit(b"Subject: Gr\xfc\xdfe\r\n\r\nx\r\n", utf8_headers=True)


# --- AAAA as well as A; MX answers cached for their TTL -------------------------------------------


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
@pytest.mark.parametrize(
    ("listening_on", "records"),
    [
        # An MX host with only an AAAA record.
        ("::1", {("v6.test", "MX"): ["10 mx.v6.test."], ("mx.v6.test", "AAAA"): ["::1"]}),
        # No MX: the domain itself, with only an AAAA record (the implicit MX, RFC 5321 §5.1).
        ("::1", {("v6.test", "AAAA"): ["::1"]}),
        # AAAA and A: the AAAA address first; nothing listens there, so the A address takes it.
        (
            "127.0.0.1",
            {
                ("v6.test", "MX"): ["10 mx.v6.test."],
                ("mx.v6.test", "AAAA"): ["::1"],
                ("mx.v6.test", "A"): ["127.0.0.1"],
            },
        ),
    ],
)
def test_mail_hosts_are_reached_over_ipv6_as_well(live, settings, listening_on, records):
    with SmtpSink(host=listening_on) as sink, DnsServer(records) as dns_server:
        direct_mx(settings, dns_server, sink.port)
        message = outbound(live, ["ok@v6.test"])
        assert deliver_message(message.pk) == "sent"
        assert sink.delivered_to() == {"ok@v6.test": 1}
        assert sink.messages[0].peer[0] == listening_on


class Clock:
    """dnspython's clock, moved on at will (the answers' TTLs run out without waiting)."""

    def __init__(self):
        self.ahead = 0.0

    def time(self) -> float:
        return time.time() + self.ahead

    def __getattr__(self, name):
        return getattr(time, name)


def test_mx_answers_are_cached_for_their_ttl(live, settings, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(dns.resolver, "time", clock)
    records = {
        ("example.test", "MX"): ["10 mx.example.test."],
        ("mx.example.test", "A"): ["127.0.0.1"],
    }
    with SmtpSink() as sink, DnsServer(records, ttl=60) as dns_server:
        direct_mx(settings, dns_server, sink.port)
        for _ in range(3):
            assert deliver_message(outbound(live, ["ok@example.test"]).pk) == "sent"
        assert dns_server.queries[("example.test", "MX")] == 1
        clock.ahead = 59
        assert deliver_message(outbound(live, ["ok@example.test"]).pk) == "sent"
        assert dns_server.queries[("example.test", "MX")] == 1
        clock.ahead = 61  # the TTL has run out: asked again
        assert deliver_message(outbound(live, ["ok@example.test"]).pk) == "sent"
        assert dns_server.queries[("example.test", "MX")] == 2
        assert len(sink.messages) == 5
