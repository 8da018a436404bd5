"""A real gateway process on free loopback ports, and credentials to use against it."""

import smtplib
import ssl
import sys
from dataclasses import dataclass

import pytest

from conftest import Process, free_port, subprocess_env


@dataclass
class Gateway:
    process: Process
    port: int  # transactional, plain (STARTTLS available)
    broadcast_port: int
    tls_port: int  # transactional, implicit TLS
    bounce_port: int = 0  # the bounce MX

    def smtp(self, port: int | None = None, **kwargs) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", port or self.port, timeout=20, **kwargs)
        client.ehlo("client.example")
        return client

    def smtp_tls(self) -> smtplib.SMTP_SSL:
        client = smtplib.SMTP_SSL("127.0.0.1", self.tls_port, timeout=20, context=insecure())
        client.ehlo("client.example")
        return client


BOUNCE_DOMAIN = "bounces.test.example"


def insecure() -> ssl.SSLContext:
    """The gateway's certificate is self-signed in tests."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def start_gateway(log_path, **env) -> Gateway:
    port, broadcast_port, tls_port, bounce_port = free_port(), free_port(), free_port(), free_port()
    args = [
        sys.executable,
        "manage.py",
        "runsmtp",
        "--listen",
        f"transactional=127.0.0.1:{port}",
        "--listen",
        f"broadcast=127.0.0.1:{broadcast_port}",
        "--listen",
        f"transactional+tls=127.0.0.1:{tls_port}",
        "--listen",
        f"bounce=127.0.0.1:{bounce_port}",
    ]
    settings = {
        "SMTP_AUTH_CACHE_SECONDS": 0,
        "SMTP_SHUTDOWN_GRACE": 5,
        "BOUNCE_DOMAIN": BOUNCE_DOMAIN,
        **env,
    }
    process = Process(args, subprocess_env(**settings), log_path)
    process.wait_for("SMTP gateway ready")
    return Gateway(process, port, broadcast_port, tls_port, bounce_port)


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker, tmp_path_factory):
    """One gateway process for a test module (its throttle allows plenty of failures)."""
    running = start_gateway(
        tmp_path_factory.mktemp("gateway") / "runsmtp.log", SMTP_AUTH_FAILURE_LIMIT=1000
    )
    yield running
    running.process.stop()


@dataclass
class Credentials:
    server: object
    server_token: str
    access_key: str
    secret: str
    broadcast_key: str
    broadcast_secret: str


@pytest.fixture
def creds(transactional_db):
    from streams.services import create_server, create_smtp_token, get_stream

    server = create_server("Gateway test")
    token, secret = create_smtp_token(get_stream(server, "outbound"))
    btoken, bsecret = create_smtp_token(get_stream(server, "broadcast"))
    return Credentials(
        server, server.api_tokens[0], token.access_key, secret, btoken.access_key, bsecret
    )


MESSAGE = (
    b"From: App <app@example.com>\r\n"
    b"To: User <user@example.net>\r\n"
    b"Subject: Hello\r\n"
    b"Message-ID: <hello@example.com>\r\n"
    b"\r\n"
    b"Hello there.\r\n"
)


def queued_id(reply: bytes) -> str:
    """The MessageID from '2.0.0 Ok: queued as <id>'."""
    text = reply.decode()
    assert "queued as " in text, text
    return text.rsplit("queued as ", 1)[1].strip()


def send(client: smtplib.SMTP, message: bytes = MESSAGE, rcpts=("user@example.net",)) -> str:
    """Send one message and return the id from the 250 reply."""
    client.mail("app@example.com")
    for rcpt in rcpts:
        code, reply = client.rcpt(rcpt)
        assert code == 250, reply
    code, reply = client.data(message)
    assert code == 250, reply
    return queued_id(reply)
