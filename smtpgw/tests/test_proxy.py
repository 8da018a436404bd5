"""The PROXY protocol (v1 and v2) on +proxy listeners: the header parser, and real sockets to a
gateway that trusts 127.0.0.0/8 (or, to test refusal, another network)."""

import smtplib
import socket
import ssl
import struct
import time

import pytest
from django.core.management import CommandError, call_command

from conftest import MESSAGE, insecure, send
from messages.models import Submission
from smtpgw import proxy
from smtpgw.proxy import ProxiedPeer, ProxyHeaderError, header_length, parse_header
from smtpgw.tests.proxied import ProxiedSMTP, start_proxy_gateway, v1_header, v2_header
from streams.listeners import Listener
from streams.models import IpCredential
from streams.services import get_stream

# --- The header, as plain functions --------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "peer"),
    [
        (v1_header("203.0.113.7", 4321), ProxiedPeer("203.0.113.7", 4321)),
        (v1_header("2001:db8::7", 1), ProxiedPeer("2001:db8::7", 1)),
        (b"PROXY UNKNOWN\r\n", ProxiedPeer(None)),
        (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", ProxiedPeer(None)),
        (v2_header("203.0.113.7", 4321), ProxiedPeer("203.0.113.7", 4321)),
        (v2_header("2001:db8::7", 65535), ProxiedPeer("2001:db8::7", 65535)),
        (v2_header("203.0.113.7", 5, tlvs=b"\x04\x00\x02ab"), ProxiedPeer("203.0.113.7", 5)),
        (proxy.V2_SIGNATURE + b"\x20\x00\x00\x00", ProxiedPeer(None)),  # LOCAL (health check)
        (proxy.V2_SIGNATURE + b"\x21\x00\x00\x00", ProxiedPeer(None)),  # PROXY, UNSPEC
    ],
)
def test_headers_are_parsed(header, peer):
    assert header_length(header + b"EHLO x\r\n") == len(header)
    for cut in range(len(header)):
        assert header_length(header[:cut]) is None
    assert parse_header(header) == peer


@pytest.mark.parametrize(
    "data",
    [
        b"EHLO client.example\r\n",
        b"\x16\x03\x01\x02\x00",  # a TLS ClientHello with no header before it
        b"PROXY TCP4 203.0.113.7 127.0.0.1 1 25\n",
        b"PROXY TCP4 " + b"1" * 120,
        proxy.V2_SIGNATURE + b"\x21\x11\xff\xff",  # 64 KiB announced
    ],
)
def test_what_cannot_start_a_header_is_refused_early(data):
    with pytest.raises(ProxyHeaderError):
        header_length(data)


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP4 203.0.113.7 127.0.0.1 1\r\n",
        b"PROXY TCP4 2001:db8::7 ::1 1 25\r\n",
        b"PROXY TCP6 203.0.113.7 127.0.0.1 1 25\r\n",
        b"PROXY TCP4 203.0.113.999 127.0.0.1 1 25\r\n",
        b"PROXY TCP4 203.0.113.7 127.0.0.1 01 25\r\n",
        b"PROXY TCP4 203.0.113.7 127.0.0.1 65536 25\r\n",
        b"PROXY TCP4 203.0.113.7 127.0.0.1 -1 25\r\n",
        b"PROXY TCP4  203.0.113.7 127.0.0.1 1 25\r\n",
        b"PROXY UDP4 203.0.113.7 127.0.0.1 1 25\r\n",
        b"PROXY TCP6 fe80::1%eth0 ::1 1 25\r\n",
        b"PROXY TCP4 203.0.113.\xff 127.0.0.1 1 25\r\n",
        proxy.V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12),  # version 1 in a v2 header
        proxy.V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12),  # unknown command
        proxy.V2_SIGNATURE + b"\x21\x12\x00\x0c" + bytes(12),  # UDP
        proxy.V2_SIGNATURE + b"\x21\x31\x00\x0c" + bytes(12),  # AF_UNIX
        proxy.V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4),  # address cut short
        proxy.V2_SIGNATURE + b"\x21\x21\x00\x0c" + bytes(12),  # IPv6 address cut short
    ],
)
def test_malformed_headers_are_refused(header):
    with pytest.raises(ProxyHeaderError):
        parse_header(header[: header_length(header)])


def test_trusted_networks():
    networks = proxy.trusted_networks(["127.0.0.0/8", " 2001:db8::/32", "192.0.2.7"])
    assert proxy.is_trusted("127.0.0.1", networks)
    assert proxy.is_trusted("::ffff:127.0.0.1", networks)
    assert proxy.is_trusted("2001:db8::1", networks)
    assert proxy.is_trusted("192.0.2.7", networks)
    assert not proxy.is_trusted("192.0.2.8", networks)
    assert not proxy.is_trusted("not an address", networks)
    with pytest.raises(ValueError, match="bad SMTP_PROXY_TRUSTED entry 'localhost'"):
        proxy.trusted_networks(["localhost"])


def test_listener_syntax_with_proxy():
    listener = Listener.parse("transactional+proxy+tls=10.0.0.5:465")
    assert (listener.proxy, listener.implicit_tls, listener.port) == (True, True, 465)
    assert Listener.parse("broadcast+tls+proxy=:465") == Listener(
        "broadcast", "0.0.0.0", 465, True, True
    )
    assert str(listener) == "transactional+proxy+tls=10.0.0.5:465"
    assert str(Listener.parse("bounce+proxy=:25")) == "bounce+proxy=0.0.0.0:25"
    for bad in ["transactional+proxy+proxy=:25", "transactional+haproxy=:25"]:
        with pytest.raises(ValueError, match=r"KIND\[\+proxy\]\[\+tls\]"):
            Listener.parse(bad)


def test_runsmtp_refuses_a_proxy_listener_without_trusted_balancers(settings):
    settings.SMTP_PROXY_TRUSTED = []
    with pytest.raises(CommandError, match="SMTP_PROXY_TRUSTED"):
        call_command("runsmtp", "--listen", "transactional+proxy=127.0.0.1:1")
    settings.SMTP_PROXY_TRUSTED = ["10.0.0.0/33"]
    with pytest.raises(CommandError, match="bad SMTP_PROXY_TRUSTED entry"):
        call_command("runsmtp", "--listen", "transactional=127.0.0.1:1")


# --- Through real sockets ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker, tmp_path_factory):
    running = start_proxy_gateway(
        tmp_path_factory.mktemp("proxy") / "runsmtp.log",
        SMTP_AUTH_FAILURE_LIMIT=1000,
        SMTP_PROXY_TIMEOUT=1,
    )
    yield running
    running.process.stop()


def _submission(message_id: str) -> Submission:
    return Submission.objects.get(message_id=message_id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("header", "client"),
    [
        (v1_header("203.0.113.7"), "203.0.113.7"),
        (v2_header("203.0.113.8"), "203.0.113.8"),
        (v1_header("2001:db8::9"), "2001:db8::9"),
        (v2_header("2001:db8::10", tlvs=b"\x04\x00\x03abc"), "2001:db8::10"),
    ],
)
def test_the_proxied_client_is_the_client(gateway, creds, header, client):
    smtp = gateway.smtp(header)
    smtp.login(creds.access_key, creds.secret)
    message_id = send(smtp)
    smtp.quit()
    assert _submission(message_id).client_address == client


@pytest.mark.django_db(transaction=True)
def test_ip_credentials_apply_to_the_proxied_address(gateway, creds):
    IpCredential.objects.create(stream=get_stream(creds.server, "outbound"), cidr="203.0.113.0/24")
    for header in (v1_header("203.0.113.20"), v2_header("203.0.113.21")):
        smtp = gateway.smtp(header)
        message_id = send(smtp)  # no AUTH: the address is the credential
        smtp.quit()
        assert _submission(message_id).credential_kind == "ip"
    # The balancer's own address (127.0.0.1) is not covered, nor is another client behind it.
    for header in (v1_header("198.51.100.1"), b"PROXY UNKNOWN\r\n"):
        smtp = gateway.smtp(header)
        assert smtp.mail("app@example.com")[0] == 530
        smtp.quit()


@pytest.mark.django_db(transaction=True)
def test_implicit_tls_after_the_header(gateway, creds):
    for header, client in (
        (v1_header("203.0.113.30"), "203.0.113.30"),
        (v2_header("203.0.113.31"), "203.0.113.31"),
    ):
        smtp = gateway.smtp_tls(header)
        smtp.login(creds.access_key, creds.secret)
        message_id = send(smtp)
        smtp.quit()
        submission = _submission(message_id)
        assert submission.client_address == client
        assert submission.tls_version.startswith("TLS")


def test_starttls_after_the_header(gateway, creds):
    smtp = gateway.smtp(v1_header("203.0.113.40"))
    smtp.starttls(context=insecure())
    smtp.ehlo("client.example")
    smtp.login(creds.access_key, creds.secret)
    smtp.quit()


@pytest.mark.parametrize(
    "data",
    [
        b"EHLO client.example\r\n",  # no header at all
        b"PROXY TCP4 203.0.113.7 127.0.0.1 01 25\r\n",
        b"PROXY TCP4 203.0.113.7\r\n",
        b"PROXY " + b"9" * 200 + b"\r\n",
        proxy.V2_SIGNATURE + b"\x21\x31\x00\x0c" + bytes(12),
        proxy.V2_SIGNATURE + b"\x21\x11\xff\xff",
    ],
)
def test_malformed_headers_close_the_connection_without_a_greeting(gateway, data):
    assert gateway.raw(data) == b""


def test_a_missing_header_times_out_without_a_greeting(gateway):
    started = time.monotonic()
    assert gateway.raw(b"PROXY TCP4 203.0.113.7") == b""  # and then nothing more
    assert time.monotonic() - started < 5
    assert gateway.raw(b"") == b""


def test_tls_without_the_header_is_closed(gateway):
    with (
        socket.create_connection(("127.0.0.1", gateway.tls_port), timeout=10) as sock,
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        insecure().wrap_socket(sock, server_hostname="localhost")


@pytest.mark.django_db(transaction=True)
def test_listeners_without_proxy_take_no_header(gateway, creds):
    """A header on an ordinary listener is just a bad command (and proves nothing)."""
    with socket.create_connection(("127.0.0.1", gateway.plain_port), timeout=10) as sock:
        file = sock.makefile("rb")
        assert file.readline().startswith(b"220")
        sock.sendall(v1_header("203.0.113.7"))
        assert file.readline().startswith(b"5")


@pytest.fixture
def untrusting_gateway(django_db_setup, tmp_path):
    running = start_proxy_gateway(tmp_path / "runsmtp.log", trusted="10.0.0.0/8,2001:db8::/32")
    yield running
    running.process.stop()


@pytest.mark.django_db(transaction=True)
def test_headers_from_an_untrusted_address_close_the_connection(untrusting_gateway, creds):
    for header in (v1_header("203.0.113.7"), v2_header("203.0.113.7")):
        assert untrusting_gateway.raw(header) == b""
        with pytest.raises(smtplib.SMTPServerDisconnected):
            ProxiedSMTP(header, untrusting_gateway.port)
    assert "not a trusted balancer" in untrusting_gateway.process.output()
    # Its ordinary listener still works.
    smtp = smtplib.SMTP("127.0.0.1", untrusting_gateway.plain_port, timeout=10)
    smtp.login(creds.access_key, creds.secret)
    assert send(smtp, MESSAGE)
    smtp.quit()


def test_v2_header_layout_matches_the_specification():
    """The test client's v2 header, checked against the fixed layout of the specification."""
    header = v2_header("203.0.113.7", 4321)
    assert header[:12] == b"\r\n\r\n\x00\r\nQUIT\n"
    assert header[12:14] == b"\x21\x11"
    assert struct.unpack("!H", header[14:16])[0] == 12
    assert header[16:20] == bytes([203, 0, 113, 7])
