"""Input the service cannot store is refused at the command that carried it, and never costs
another sender anything: through real sessions against a running gateway, and as plain rules."""

import base64
import smtplib
import socket
import threading
import uuid

import pytest

from conftest import MESSAGE, send
from messages.models import Recipient, Submission
from smtpgw import storable

# --- the rules --------------------------------------------------------------------------------


def test_limits_come_from_the_columns():
    assert storable.sender_max_length() == Submission._meta.get_field("mail_from").max_length
    assert storable.recipient_max_length() == Recipient._meta.get_field("email").max_length
    assert storable.helo_max_length() == Submission._meta.get_field("client_helo").max_length


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("app@example.com", ""),
        ("josé@exämple.com", ""),
        ("<>", ""),
        ("\udcff@example.com", "it is not valid UTF-8"),
        ("a\x00b@example.com", "it contains a NUL character"),
        ("a\x01b@example.com", "it contains a control character"),
        ("a\rb@example.com", "it contains a control character"),
        ("a\x7fb@example.com", "it contains a control character"),
        ("a" * 308 + "@example.com", ""),
        ("a" * 309 + "@example.com", "it is longer than 320 characters"),
    ],
)
def test_sender_addresses(value, problem):
    refusal = storable.sender_refusal(value)
    if problem:
        assert refusal == f"553 5.1.7 Sender address refused: {problem}"
    else:
        assert refusal == ""


def test_recipients_and_helo_names():
    assert storable.recipient_refusal("user@example.net") == ""
    assert storable.recipient_refusal("u" * 400 + "@example.net") == (
        "501 5.1.3 Recipient address refused: it is longer than 320 characters"
    )
    assert storable.recipient_refusal("\udcfe@example.net").startswith("501 5.1.3")
    assert storable.helo_refusal("client.example") == ""
    assert storable.helo_refusal("[192.0.2.1]") == ""
    assert storable.helo_refusal("h" * 256) == (
        "501 5.5.4 HELO/EHLO name refused: it is longer than 255 characters"
    )
    assert storable.helo_refusal("bad\udcffname").startswith("501 5.5.4")


def test_row_problem_checks_every_column():
    row = {"mail_from": "a@example.com", "rcpt_to": ["b@example.net"], "size": 3, "raw": b"\0"}
    assert storable.row_problem(row) == ""
    assert storable.row_problem({**row, "client_helo": "x" * 256}) == (
        "client_helo: it is longer than 255 characters"
    )
    assert storable.row_problem({**row, "rcpt_to": ["ok@example.net", "a\x00b"]}) == (
        "rcpt_to: it contains a NUL character"
    )
    assert storable.row_problem({**row, "credential": "\udc80"}) == (
        "credential: it is not valid UTF-8"
    )


# --- through the gateway ----------------------------------------------------------------------


class Session:
    """A raw SMTP session: commands are bytes, as a hostile client sends them."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        assert self.reply().startswith(b"220")

    def reply(self) -> bytes:
        line = self.file.readline()
        while line[3:4] == b"-":
            line = self.file.readline()
        return line

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def close(self):
        self.file.close()
        self.sock.close()


def plain(user: str, secret: str) -> bytes:
    return b"AUTH PLAIN " + base64.b64encode(f"\0{user}\0{secret}".encode())


LONG_SENDER = b"s" * 390 + b"@example.com"
LONG_RECIPIENT = b"r" * 358 + b"@example.net"  # 370 characters
# (the command, then the refusal it must get); every session otherwise well behaved.
POISON = [
    (b"EHLO " + b"h" * 300, b"501 5.5.4"),
    (b"EHLO bad\xffname.example", b"501 5.5.4"),
    (b"HELO bad\x00name.example", b"501 5.5.4"),
    (b"MAIL FROM:<\xff@example.com>", b"553 5.1.7"),
    (b"MAIL FROM:<" + LONG_SENDER + b">", b"553 5.1.7"),
    (b"MAIL FROM:<a\x00b@example.com>", b"553 5.1.7"),
    (b'MAIL FROM:<"a\x01b"@example.com>', b"553 5.1.7"),
    (b"RCPT TO:<\xfe\xff@example.net>", b"501 5.1.3"),
    (b"RCPT TO:<" + LONG_RECIPIENT + b">", b"501 5.1.3"),
    (b"RCPT TO:<a\x00b@example.net>", b"501 5.1.3"),
    (b"AUTH LOGIN " + base64.b64encode(b"a\x00b"), b"535 5.7.8"),
]


def poison_session(port: int, creds, poison: bytes) -> bytes:
    """Run one session up to the poisoned command and return the reply to it; then check that
    the session still works."""
    session = Session(port)
    try:
        verb = poison.split(b" ", 1)[0]
        if verb in (b"EHLO", b"HELO"):
            refusal = session.command(poison)
            assert session.command(b"EHLO client.example").startswith(b"250")
            return refusal
        assert session.command(b"EHLO client.example").startswith(b"250")
        if verb == b"AUTH":
            assert session.command(poison).startswith(b"334")  # the password prompt
            return session.command(base64.b64encode(b"anything"))
        assert session.command(plain(creds.access_key, creds.secret)).startswith(b"235")
        if verb == b"RCPT":
            assert session.command(b"MAIL FROM:<app@example.com>").startswith(b"250")
        refusal = session.command(poison)
        assert session.command(b"RSET").startswith(b"250")
        return refusal
    finally:
        session.close()


@pytest.mark.django_db(transaction=True)
def test_poison_is_refused_and_costs_no_one_else_anything(gateway, creds):
    """Every poison at its own command, at the same time as 24 ordinary senders: each poison gets
    its 5xx, every ordinary message gets 250 and is stored."""
    normal_count = 24
    start = threading.Barrier(normal_count + len(POISON))
    queued: dict[int, str] = {}
    refusals: dict[int, bytes] = {}
    failures: list[BaseException] = []

    def normal(index: int):
        try:
            client = gateway.smtp()
            client.login(creds.access_key, creds.secret)
            start.wait(30)
            queued[index] = send(client, MESSAGE, rcpts=(f"user{index}@example.net",))
            client.quit()
        except BaseException as exc:  # reported below, with the others
            failures.append(exc)

    def hostile(index: int):
        try:
            start.wait(30)
            refusals[index] = poison_session(gateway.port, creds, POISON[index][0])
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=normal, args=(i,)) for i in range(normal_count)]
    threads += [threading.Thread(target=hostile, args=(i,)) for i in range(len(POISON))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    for index, (command, expected) in enumerate(POISON):
        assert refusals[index].startswith(expected), (command[:40], refusals[index])
    assert len(queued) == normal_count
    stored = set(Submission.objects.values_list("message_id", flat=True))
    assert stored == {uuid.UUID(message_id) for message_id in queued.values()}


@pytest.mark.django_db(transaction=True)
def test_utf8_envelope_at_the_limits_is_stored(gateway, creds):
    """What the columns can hold is accepted: a 320-character UTF-8 sender, a 255-character
    EHLO name, a 320-character recipient."""
    client = smtplib.SMTP("127.0.0.1", gateway.port, timeout=20)
    helo = "h" * 251 + ".com"
    code, _ = client.ehlo(helo)
    assert code == 250
    client.login(creds.access_key, creds.secret)
    sender = "é" * 8 + "s" * 300 + "@example.com"
    recipient = "r" * 308 + "@example.net"
    assert len(sender) == len(recipient) == 320
    client.mail(sender, ["SMTPUTF8"])
    assert client.rcpt(recipient)[0] == 250
    code, reply = client.data(MESSAGE)
    assert code == 250, reply
    row = Submission.objects.get()
    assert (row.mail_from, row.rcpt_to, row.client_helo) == (sender, [recipient], helo)
