"""The gateway's pure pieces: limits, reply codes, smuggling detection, listener syntax."""

import asyncio

import pytest
from django.db import OperationalError

from smtpgw.data_reader import is_smuggling
from smtpgw.limits import ConnectionLimits
from smtpgw.replies import with_enhanced_code
from streams.listeners import Listener

pytestmark = pytest.mark.no_db


def test_connection_limits():
    limits = ConnectionLimits(max_total=3, max_per_address=2)
    assert limits.admit("a") == ""
    assert limits.admit("a") == ""
    assert "from your address" in limits.admit("a")
    assert limits.admit("b") == ""
    assert "Too many connections to this server" in limits.admit("c")
    limits.release("a")
    assert limits.admit("c") == ""
    assert limits.total == 3


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("250 OK", "250 2.0.0 OK"),
        ("221 Bye", "221 2.0.0 Bye"),
        ("552 Error: Too much mail data", "552 5.3.4 Error: Too much mail data"),
        ("503 Error: need RCPT command", "503 5.5.1 Error: need RCPT command"),
        ("500 Error: bad syntax", "500 5.5.2 Error: bad syntax"),
        (
            "535 5.7.8 Authentication credentials invalid",
            "535 5.7.8 Authentication credentials invalid",
        ),
        ("220 host ESMTP", "220 host ESMTP"),
        ("334 VXNlcm5hbWU6", "334 VXNlcm5hbWU6"),
        ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),
    ],
)
def test_enhanced_status_codes(status, expected):
    assert with_enhanced_code(status) == expected


@pytest.mark.parametrize(
    "content",
    [
        b"Subject: x\r\n\r\nhi\n.\r\nMAIL FROM:<evil@example.com>\r\n",
        b"Subject: x\r\n\r\nhi\r\n.\nMAIL FROM:<evil@example.com>\r\n",
        b"Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@example.com>\r\n",
        b"Subject: x\r\n\r\nhi\r.\rMAIL FROM:<evil@example.com>\r\n",
        b"Subject: x\r\n\r\nhi\r.\r\nMAIL FROM:<evil@example.com>\r\n",
    ],
)
def test_smuggling_shapes_are_detected(content):
    assert is_smuggling(content)


@pytest.mark.parametrize(
    "content",
    [
        b"Subject: x\r\n\r\nhi\r\n..\r\nstill the body\r\n",
        b"Subject: x\r\n\r\nversion 1.2\nbare LF without a dot line\r\n",
        b"Subject: x\r\n\r\n.hidden\r\n",
        b"Subject: x\r\n\r\nend.\r\n",
    ],
)
def test_ordinary_messages_are_not_smuggling(content):
    assert not is_smuggling(content)


def test_listener_syntax():
    assert Listener.parse("transactional=127.0.0.1:2525") == Listener(
        "transactional", "127.0.0.1", 2525, False
    )
    assert Listener.parse("broadcast+tls=[::1]:465") == Listener("broadcast", "::1", 465, True)
    assert Listener.parse("transactional=:25").host == "0.0.0.0"
    assert str(Listener.parse("broadcast+tls=127.0.0.1:465")) == "broadcast+tls=127.0.0.1:465"
    for bad in ["smtp=127.0.0.1:25", "transactional=127.0.0.1", "transactional+ssl=:25", "x"]:
        with pytest.raises(ValueError, match="bad listener"):
            Listener.parse(bad)


@pytest.mark.parametrize(
    "error", [OperationalError("server closed the connection"), RuntimeError("a bug of ours")]
)
def test_an_error_inside_a_command_is_a_temporary_reply(error):
    """A failure of ours inside MAIL, RCPT or DATA (the database gone while a limit is read, a
    bug) answers 451, so the client keeps the mail and retries; aiosmtpd's default is a 500."""
    from smtpgw.transaction import TransactionHandler

    handler = TransactionHandler(None, Listener("transactional", "127.0.0.1", 2525))
    reply = asyncio.run(handler.handle_exception(error))
    assert reply.startswith("451 4.3.0 ")
