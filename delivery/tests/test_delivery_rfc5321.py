"""Delivery as RFC 5321 asks, through a real SMTP sink and a real DNS server: AAAA as well as A,
MX answers cached for their TTL."""

import socket
import time

import dns.resolver
import pytest

from delivery.relay import deliver_message
from delivery.tests.sinks import DnsServer, SmtpSink
from delivery.tests.test_delivery import outbound
from domains import signing

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
