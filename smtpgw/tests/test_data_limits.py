"""The DATA phase of a running gateway in bounded memory and linear time, on both the submission
endpoint and the bounce MX: figures read from the gateway process in /proc."""

import contextlib
import os
import socket
import time
from pathlib import Path

import pytest

from conftest import MESSAGE, queued_id, start_gateway
from smtpgw.tests.test_bounce_mx import sent_message, verp
from smtpgw.tests.test_storable import Session, plain

pytestmark = pytest.mark.django_db(transaction=True)

MB = 1024 * 1024
RSS_GROWTH_LIMIT_KB = 32 * 1024


@pytest.fixture
def fresh_gateway(tmp_path):
    """A gateway process of its own: its memory figures are this test's alone."""
    running = start_gateway(tmp_path / "runsmtp.log")
    yield running
    running.process.stop()


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """Reset VmHWM (the peak RSS) to the current RSS (Linux: clear_refs, value 5). Where that is
    not allowed, VmHWM stays the peak since the (fresh) process started: a stricter figure."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of every thread of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_transaction(gateway, creds, bounce_to: str = "") -> Session:
    """A session that has had its 354 to DATA."""
    if bounce_to:
        session = Session(gateway.bounce_port)
        assert session.command(b"EHLO mx.example").startswith(b"250")
        assert session.command(b"MAIL FROM:<>").startswith(b"250")
        assert session.command(f"RCPT TO:<{bounce_to}>".encode()).startswith(b"250")
    else:
        session = Session(gateway.port)
        assert session.command(b"EHLO client.example").startswith(b"250")
        assert session.command(plain(creds.access_key, creds.secret)).startswith(b"235")
        assert session.command(b"MAIL FROM:<app@example.com>").startswith(b"250")
        assert session.command(b"RCPT TO:<user@example.net>").startswith(b"250")
    assert session.command(b"DATA").startswith(b"354")
    return session


def stream(session: Session, piece: bytes, total: int) -> bytes:
    """Send ``total`` bytes made of ``piece``, then the end of data; return the reply."""
    block = piece * (MB // len(piece))
    sent = 0
    while sent < total:
        session.sock.sendall(block)
        sent += len(block)
    session.sock.sendall(b"\r\n.\r\n")
    return session.reply()


@pytest.mark.parametrize("listener", ["submission", "bounce MX"])
def test_a_line_without_end_costs_no_memory(fresh_gateway, creds, listener):
    """64 MB without CRLF: aiosmtpd kept all of it until the end of data (RSS grew by as much);
    now the gateway grows by at most 32 MB, answers 500 and the session goes on."""
    pid = fresh_gateway.process.proc.pid
    bounce_to = (
        verp(sent_message(creds.server, ["user@example.net"])) if "bounce" in listener else ""
    )
    warm = open_transaction(fresh_gateway, creds, bounce_to)
    assert warm.command(MESSAGE + b".").startswith(b"250")
    warm.close()
    session = open_transaction(fresh_gateway, creds, bounce_to)
    session.sock.sendall(b"Subject: endless\r\n\r\n")
    time.sleep(0.2)
    reset_peak(pid)
    before = status_kb(pid, "VmRSS")
    reply = stream(session, b"y", 64 * MB)
    growth = status_kb(pid, "VmHWM") - before
    assert reply.startswith(b"500 5.5.2 Line too long"), reply
    assert growth <= RSS_GROWTH_LIMIT_KB, f"RSS grew by {growth} kB"
    assert session.command(b"RSET").startswith(b"250")
    session.close()


def test_empty_lines_cost_no_more_cpu_than_ordinary_lines(fresh_gateway, creds):
    """9 MB of empty lines took aiosmtpd over 10 s of CPU, a hundred times as much as 9 MB of
    76-character lines; now no more than twice as much (the better of three runs each, CPU time
    of the gateway process, so that a busy machine slows both alike)."""
    pid = fresh_gateway.process.proc.pid
    size = 9 * MB

    def cost(piece: bytes) -> float:
        session = open_transaction(fresh_gateway, creds)
        session.sock.sendall(b"Subject: lines\r\n\r\n")
        started = cpu_seconds(pid)
        reply = stream(session, piece, size)
        spent = cpu_seconds(pid) - started
        assert reply.startswith(b"250 2.0.0"), reply
        assert queued_id(reply[4:])
        session.close()
        return spent

    ordinary_line = b"x" * 76 + b"\r\n"
    cost(ordinary_line)  # warm-up
    ordinary = min(cost(ordinary_line) for _ in range(3))
    empty = min(cost(b"\r\n") for _ in range(3))
    assert empty <= 2 * ordinary + 0.05, (empty, ordinary)


def test_pipelined_commands_after_the_data_are_read(gateway, creds):
    """The reader never consumes past the end of data: commands sent in the same packet as the
    final dot are answered in order."""
    session = open_transaction(gateway, creds)
    session.sock.sendall(MESSAGE + b".\r\nRSET\r\nNOOP\r\n")
    assert session.reply().startswith(b"250 2.0.0 Ok: queued as")
    assert session.reply().startswith(b"250")
    assert session.reply().startswith(b"250")
    session.close()


def test_connection_lost_during_data(gateway, creds):
    session = open_transaction(gateway, creds)
    session.sock.sendall(b"Subject: x\r\n\r\npartial")
    session.sock.shutdown(socket.SHUT_RDWR)
    session.close()
    follower = open_transaction(gateway, creds)
    assert follower.command(MESSAGE + b".").startswith(b"250")
    follower.close()


FOLD = b" " + b"a" * 70 + b"\r\n"


@pytest.mark.parametrize("listener", ["submission", "bounce MX"])
@pytest.mark.parametrize(
    ("header", "reply"),
    [
        (b"X-Folded: start\r\n" + FOLD * 30_000,  # one field of 2 MB
         b"552 5.3.4 Message header field too long: at most 102400 bytes per field"),
        (b"".join(b"X-Field-%d: %s\r\n" % (i, b"v" * 60) for i in range(30_000)),  # 2 MB
         b"552 5.3.4 Message header too big: at most 1048576 bytes"),
    ],
    ids=["a folded field", "many fields"],
)  # fmt: skip
def test_a_header_over_the_caps_is_refused_at_data(gateway, creds, listener, header, reply):
    """A header of megabytes was accepted and then cost processing minutes (quadratic), inside
    the batch's transaction. Now it is refused at DATA with a permanent error, on the bounce MX
    (no AUTH) as on the submission listener, and the session goes on."""
    bounce_to = (
        verp(sent_message(creds.server, ["user@example.net"])) if "bounce" in listener else ""
    )
    session = open_transaction(gateway, creds, bounce_to)
    session.sock.sendall(b"From: app@example.com\r\nTo: user@example.net\r\n" + header)
    answer = session.command(b"\r\nbody\r\n.")
    assert answer.startswith(reply), answer
    assert session.command(b"RSET").startswith(b"250")
    session.close()


def test_an_honest_large_header_is_accepted(gateway, creds):
    """50 recipients in To and a References chain of 400 messages stay far below the caps."""
    to = b",\r\n ".join(b"Person %d <p%d@example.net>" % (i, i) for i in range(50))
    references = b"\r\n ".join(b"<%d.thread@example.com>" % i for i in range(400))
    session = open_transaction(gateway, creds)
    answer = session.command(
        b"From: app@example.com\r\nTo: " + to + b"\r\nReferences: " + references
        + b"\r\nSubject: a long thread\r\n\r\nHello.\r\n."
    )  # fmt: skip
    assert answer.startswith(b"250 2.0.0 Ok: queued as"), answer
    session.close()
