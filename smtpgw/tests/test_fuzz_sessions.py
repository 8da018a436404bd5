"""Generated SMTP sessions against a real gateway: junk in every command, NUL and 8-bit bytes,
over-long arguments, commands out of order, DATA with smuggling attempts and bare line endings.
Every reply must be a well-formed SMTP reply, the gateway must keep serving, and every message it
accepted must end processed or failed.

A bounded number of examples runs in ``make test``; ``make fuzz`` runs many more
(``FUZZ_EXAMPLES``)."""

import base64
import os
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import MESSAGE
from messages.models import Submission
from messages.processing import process_submission

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db(transaction=True)]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40")) // 2 or 1

junk = st.one_of(
    st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.sampled_from([b"\x00", b"\xff\xfe", b"a" * 400, b"user@example.net", b"<>", b"@", b" "]),
)
address = st.one_of(
    st.sampled_from([b"app@example.com", b"user@example.net", b"caf\xc3\xa9@example.net"]),
    junk,
)
body = st.one_of(
    st.just(MESSAGE),
    st.binary(max_size=400),
    st.sampled_from([
        MESSAGE + b"\n.\r\nMAIL FROM:<smuggled@example.com>\r\n",  # smuggling attempts
        MESSAGE + b"\r\n.\nRCPT TO:<x@example.net>\r\n",
        b"\r\n" * 200,
        b"Subject: \x00\r\n\r\n..dot-stuffed\r\n",
    ]),
)  # fmt: skip
command = st.one_of(
    st.tuples(st.just(b"EHLO "), junk),
    st.tuples(st.just(b"MAIL FROM:<"), address,
              st.sampled_from([b">", b"> SIZE=10", b"> BODY=8BITMIME", b""])),
    st.tuples(st.just(b"RCPT TO:<"), address, st.sampled_from([b">", b"> NOTIFY=NEVER", b""])),
    st.tuples(st.just(b"DATA"), body),
    st.sampled_from([(b"RSET",), (b"NOOP",), (b"VRFY x",), (b"HELP",), (b"BDAT 10",)]),
    st.tuples(junk),
)  # fmt: skip


def reply(sock) -> bytes:
    """One whole (possibly multi-line) reply, or b'' when the gateway closed the connection."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
        lines = data.split(b"\r\n")
        for line in lines[:-1]:
            if len(line) >= 4 and line[3:4] == b" ":
                return data


def assert_well_formed(answer: bytes) -> None:
    for line in answer.split(b"\r\n")[:-1]:
        assert line[:3].isdigit() and line[3:4] in (b" ", b"-"), answer


def run_session(port: int, token: str, commands) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        assert_well_formed(reply(sock))
        plain = base64.b64encode(f"\0{token}\0{token}".encode())
        for line in (b"EHLO fuzz.example", b"AUTH PLAIN " + plain):
            sock.sendall(line + b"\r\n")
            assert_well_formed(reply(sock))
        for parts in commands:
            if parts[0] == b"DATA":
                sock.sendall(b"DATA\r\n")
                answer = reply(sock)
                assert_well_formed(answer)
                if answer.startswith(b"354"):
                    stuffed = parts[1].replace(b"\r\n.", b"\r\n..")
                    sock.sendall(stuffed + b"\r\n.\r\n")
                    answer = reply(sock)
            else:
                sock.sendall(b"".join(parts) + b"\r\n")
                answer = reply(sock)
            if not answer:
                return  # the gateway closed the session (e.g. 421 after too many errors)
            assert_well_formed(answer)
            # 421 and QUIT's 221 end the session; after STARTTLS's 220 only a TLS handshake may
            # follow (the generator draws the project's own literals, STARTTLS and QUIT too).
            if answer.startswith((b"421", b"221", b"220")):
                return


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(commands=st.lists(command, min_size=1, max_size=12))
def test_generated_sessions(gateway, creds, commands):
    run_session(gateway.port, creds.server_token, commands)
    # The gateway still serves a well-behaved client.
    client = gateway.smtp()
    assert client.noop()[0] == 250
    client.quit()
    # Whatever it accepted ends in a terminal state.
    for pk in Submission.objects.filter(status="accepted").values_list("pk", flat=True):
        assert process_submission(pk) in ("processed", "failed")
