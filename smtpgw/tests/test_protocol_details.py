"""Protocol details through real SMTP sessions: no STARTTLS inside TLS, no AUTH at the bounce MX,
over-long AUTH lines answered 500 5.5.6 without a traceback, CRLF "." LF refused as smuggling."""

import base64
import socket

import pytest

from conftest import insecure, send
from messages.models import Submission

pytestmark = pytest.mark.django_db(transaction=True)


def plain(user: str, password: str) -> bytes:
    return base64.b64encode(f"\0{user}\0{password}".encode())


class RawSession:
    """A socket-level SMTP session, for what smtplib would not send."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.banner = self.reply()

    def reply(self) -> bytes:
        line = self.file.readline()
        lines = [line]
        while line[3:4] == b"-":
            line = self.file.readline()
            lines.append(line)
        return b"".join(lines)

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


# --- STARTTLS ---------------------------------------------------------------------------------


def test_a_second_starttls_inside_tls_is_refused(gateway, creds):
    client = gateway.smtp()
    client.starttls(context=insecure())
    client.ehlo("client.example")
    code, reply = client.docmd("STARTTLS")
    assert code == 503
    assert reply == b"5.5.1 TLS is already active on this connection"
    client.login(creds.access_key, creds.secret)  # the session goes on, inside the one TLS layer
    send(client)
    client.quit()


def test_starttls_on_an_implicit_tls_port_is_refused(gateway, creds):
    client = gateway.smtp_tls()
    code, reply = client.docmd("STARTTLS")
    assert (code, reply) == (503, b"5.5.1 TLS is already active on this connection")
    client.login(creds.access_key, creds.secret)
    send(client)
    client.quit()


# --- the bounce MX ----------------------------------------------------------------------------


def test_the_bounce_mx_neither_advertises_nor_accepts_auth(gateway, creds):
    client = gateway.smtp(gateway.bounce_port)
    assert "auth" not in client.esmtp_features
    for mechanism in ("PLAIN " + plain(creds.server_token, creds.server_token).decode(), "LOGIN"):
        code, reply = client.docmd("AUTH", mechanism)
        assert code == 502, reply
        assert reply.startswith(b"5.5.1 AUTH is not available here")
    # Still only a bounce MX: a valid server token did not turn it into a relay.
    client.mail("someone@example.com")
    code, _ = client.rcpt("user@example.net")
    assert code == 550
    client.quit()
    assert Submission.objects.count() == 0


# --- over-long AUTH lines ---------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5"])
@pytest.mark.parametrize("length", [1100, 200_000])
def test_an_over_long_auth_line_gets_500_5_5_6_without_a_traceback(
    gateway, creds, mechanism, length
):
    log_before = len(gateway.process.output())
    session = RawSession(gateway.port)
    session.command(b"EHLO client.example")
    assert session.command(b"AUTH " + mechanism.encode()).startswith(b"334 ")
    reply = session.command(b"A" * length)
    assert reply == b"500 5.5.6 Authentication Exchange line is too long\r\n"
    # The rest of the long line was not taken for commands; the session goes on.
    assert session.command(b"NOOP").startswith(b"250")
    reply = session.command(b"AUTH PLAIN " + plain(creds.access_key, creds.secret))
    assert reply.startswith(b"235"), reply
    session.command(b"QUIT")
    session.close()
    new_log = gateway.process.output()[log_before:]
    assert "Traceback" not in new_log
    assert "SMTP session exception" not in new_log


def test_an_over_long_login_password_line_too(gateway, creds):
    session = RawSession(gateway.port)
    session.command(b"EHLO client.example")
    assert session.command(b"AUTH LOGIN").startswith(b"334 ")
    assert session.command(base64.b64encode(creds.access_key.encode())).startswith(b"334 ")
    assert session.command(b"B" * 5000).startswith(b"500 5.5.6 ")
    session.close()


# --- smuggling --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "smuggled",
    [
        b"hello\r\n.\nMAIL FROM:<ceo@example.com>\r\n",  # CRLF . LF
        b"hello\r\n.\rMAIL FROM:<ceo@example.com>\r\n",  # CRLF . CR
        b"hello\n.\r\nMAIL FROM:<ceo@example.com>\r\n",  # LF . CRLF
        b"hello\n.\nMAIL FROM:<ceo@example.com>\r\n",  # LF . LF
    ],
    ids=["crlf-dot-lf", "crlf-dot-cr", "lf-dot-crlf", "lf-dot-lf"],
)
def test_every_unframed_lone_dot_is_refused_as_smuggling(gateway, creds, smuggled):
    session = RawSession(gateway.port)
    session.command(b"EHLO client.example")
    assert session.command(b"AUTH PLAIN " + plain(creds.access_key, creds.secret))[:3] == b"235"
    session.command(b"MAIL FROM:<app@example.com>")
    session.command(b"RCPT TO:<user@example.net>")
    assert session.command(b"DATA").startswith(b"354")
    reply = session.command(b"Subject: hi\r\n\r\n" + smuggled + b".")
    assert reply.startswith(b"550 5.5.2 "), reply
    session.close()
    assert Submission.objects.count() == 0


def test_a_dot_stuffed_line_is_kept_with_its_dot(gateway, creds):
    client = gateway.smtp()
    client.login(creds.access_key, creds.secret)
    message_id = send(client, b"Subject: dots\r\n\r\n.\r\n..two\r\n")  # smtplib stuffs them
    client.quit()
    raw = bytes(Submission.objects.get(message_id=message_id).raw)
    assert raw == b"Subject: dots\r\n\r\n.\r\n..two\r\n"
