"""The chunked DATA reader against a line-by-line model of aiosmtpd 1.4.6's DATA loop (and against
aiosmtpd itself), on byte streams split at every awkward boundary."""

import asyncio
import socket

import pytest
from aiosmtpd.controller import Controller
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import free_port
from smtpgw.data_reader import (
    LINE_TOO_LONG,
    TOO_MUCH_DATA,
    DataReader,
    is_smuggling,
    read_data,
)

pytestmark = pytest.mark.no_db

# --- the models -------------------------------------------------------------------------------


def aiosmtpd_data(stream: bytes, line_limit: int, size_limit: int) -> tuple[str, bytes, bytes]:
    """aiosmtpd 1.4.6's smtp_DATA, one CRLF line at a time, on a stream holding the end of data:
    (error reply or "", content, the bytes after the end). A line longer than the limit before its
    CRLF is refused when it is read (StreamReader's LimitOverrunError), before its bytes count
    towards the size; then the size; then the line with its CRLF."""
    pos, state, size, lines = 0, "", 0, []
    while True:
        eol = stream.index(b"\r\n", pos) + 2
        line, pos = stream[pos:eol], eol
        if line == b".\r\n":
            break
        if not state and len(line) - 2 > line_limit:
            state = LINE_TOO_LONG
        size += len(line)
        if not state and size_limit and size > size_limit:
            state = TOO_MUCH_DATA
        if not state and len(line) > line_limit:
            state = LINE_TOO_LONG
        if not state:
            lines.append(line)
    if state:
        return state, b"", stream[pos:]
    return "", b"".join(line[1:] if line[:1] == b"." else line for line in lines), stream[pos:]


def smuggling_as_it_was(content: bytes) -> bool:
    """The gateway's smuggling rule as first written (one step per candidate)."""
    for marker in (b"\n.", b"\r."):
        start = content.find(marker)
        while start != -1:
            after = content[start + 2 : start + 4]
            if after[:1] in (b"\r", b"\n"):
                framed = (
                    marker == b"\n." and content[start - 1 : start] == b"\r" and after == b"\r\n"
                )
                if not framed:
                    return True
            start = content.find(marker, start + 1)
    return False


def read_in_chunks(stream: bytes, cuts, line_limit=1001, size_limit=0):
    """Feed ``stream`` split at ``cuts``; return (reader, bytes after the end)."""
    reader = DataReader(line_limit, size_limit)
    bounds = [0, *sorted(set(cuts)), len(stream)]
    for start, stop in zip(bounds, bounds[1:], strict=False):
        rest = reader.feed(stream[start:stop])
        if rest is not None:
            return reader, rest + stream[stop:]
    raise AssertionError("the end of data was not found")


def expected(stream: bytes, line_limit: int, size_limit: int):
    error, content, rest = aiosmtpd_data(stream, line_limit, size_limit)
    wire = b"\r\n" + stream[: len(stream) - len(rest) - 3]  # as sent, after DATA's CRLF
    smuggling = not error and (smuggling_as_it_was(content) or smuggling_as_it_was(wire))
    return error, smuggling, b"" if error or smuggling else content, rest


def outcome(reader: DataReader, rest: bytes):
    assert reader.done
    assert reader.keeping or not reader.content, "kept bytes it refuses"
    return reader.error, reader.smuggling and not reader.error, reader.content, rest


# --- concrete cases ---------------------------------------------------------------------------

CASES = [
    b".\r\n",
    b"\r\n.\r\n",
    b"..\r\n.\r\n",
    b".\r\r\n.\r\n",
    b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
    b"..hidden\r\n...\r\n..\r\n.\r\nMAIL FROM:<a@b>\r\n",
    b"a\r\n.\r.\r\n.\r\n",
    b"a\n.\r\nb\r\n.\r\n",
    b"a\r\n.\nb\r\n.\r\n",
    b".\nb\r\n.\r\n",
    b".\rb\r\n.\r\n",
    b"a\r\n.\rb\r\n.\r\n",
    b"a\r\n..\nb\r\n.\r\n",
    b"a\r.\rb\r\n.\r\n",
    b"a\r\n..\r\n..\r\n..\r\nb\r\n.\r\n",
    b"\r\r\r\n\n\n\r\n.\r\n",
    b"x" * 999 + b"\r\n.\r\n",
    b"x" * 1000 + b"\r\n.\r\n",
    b"x" * 1001 + b"\r\n.\r\n",
    b"x" * 1002 + b"\r\n.\r\n",
    b"." + b"x" * 999 + b"\r\n.\r\n",
    b"x" * 5000 + b"\r\nafter\r\n.\r\n",
    b"short\r\n" * 300 + b".\r\n",
]


@pytest.mark.parametrize("stream", CASES)
def test_every_split_in_two_and_byte_by_byte(stream):
    want = expected(stream, 1001, 2000)
    assert outcome(*read_in_chunks(stream, [], 1001, 2000)) == want
    assert outcome(*read_in_chunks(stream, range(1, len(stream)), 1001, 2000)) == want
    for cut in range(1, len(stream)):
        assert outcome(*read_in_chunks(stream, [cut], 1001, 2000)) == want, cut


@pytest.mark.parametrize("stream", [case for case in CASES if len(case) < 40])
def test_every_split_in_three(stream):
    want = expected(stream, 6, 30)
    for first in range(1, len(stream)):
        for second in range(first, len(stream)):
            got = outcome(*read_in_chunks(stream, [first, second], 6, 30))
            assert got == want, (first, second)


@pytest.mark.parametrize(
    ("line", "size_limit", "error"),
    [
        # The line that crosses the size limit decides, in aiosmtpd's order.
        (b"x" * 1002, 1500, LINE_TOO_LONG),  # too long before its CRLF: 500 first
        (b"x" * 1000, 1500, TOO_MUCH_DATA),  # 1002 bytes with CRLF: the size is checked first
        (b"x" * 1000, 5000, LINE_TOO_LONG),
        (b"x" * 999, 1500, TOO_MUCH_DATA),
    ],
)
def test_which_limit_a_line_reaches_first(line, size_limit, error):
    stream = b"y" * 998 + b"\r\n" + line + b"\r\n" + b"z" * 5000 + b"\r\n.\r\n"
    assert aiosmtpd_data(stream, 1001, size_limit)[0] == error
    for cut in (0, 500, 1000, 1001, 1500, 2001, 2003, 2005, 4000):
        reader, _ = read_in_chunks(stream, [cut] if cut else [], 1001, size_limit)
        assert reader.error == error


def test_nothing_is_kept_once_a_line_is_too_long():
    reader = DataReader(1001, 10_000_000)
    assert reader.feed(b"Subject: x\r\n\r\n") is None
    for _ in range(64):
        assert reader.feed(b"z" * 65536) is None
        assert not reader.keeping and reader.content == b""
    assert reader.feed(b"\r\n.\r\nQUIT\r\n") == b"QUIT\r\n"
    assert reader.error == LINE_TOO_LONG


def test_nothing_is_kept_beyond_the_size_limit():
    reader = DataReader(1001, 1000)
    for _ in range(100):
        assert reader.feed(b"line\r\n" * 100) is None
    assert reader.content == b""
    assert reader.feed(b".\r\n") == b""
    assert reader.error == TOO_MUCH_DATA


def test_smuggled_data_is_dropped_as_soon_as_it_is_seen():
    reader = DataReader(1001, 10_000_000)
    reader.feed(b"Subject: x\r\n\r\nhi\n.\r\nMAIL FROM:<ceo@example.com>\r\n")
    assert reader.smuggling and reader.content == b""
    reader.feed(b"more\r\n" * 1000)
    assert reader.content == b""
    assert reader.feed(b".\r\n") == b""
    assert reader.smuggling and not reader.error


def test_feeding_after_the_end_is_an_error():
    reader = DataReader()
    assert reader.feed(b".\r\n") == b""
    with pytest.raises(ValueError, match="end of data"):
        reader.feed(b"x")


# --- generated streams ------------------------------------------------------------------------

# Bytes that matter (CR, LF, dot) and one that does not, in lines around the limits.
PIECES = st.sampled_from([b"\r", b"\n", b".", b"x", b"\r\n", b"\r\n.", b".\r\n", b"xxxxxxx"])


@st.composite
def streams(draw):
    body = b"".join(draw(st.lists(PIECES, max_size=40)))
    tail = draw(st.sampled_from([b"", b"QUIT\r\n", b".\r\n", b"\r\n.\r\n"]))
    stream = body + b"\r\n.\r\n" + tail
    cuts = draw(st.lists(st.integers(1, len(stream) - 1), max_size=6))
    return stream, cuts


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.integers(1, 12), st.integers(0, 60))
def test_any_split_reads_as_aiosmtpd_would(case, line_limit, size_limit):
    stream, cuts = case
    want = expected(stream, line_limit, size_limit)
    assert outcome(*read_in_chunks(stream, cuts, line_limit, size_limit)) == want


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"\r", b"\n", b".", b"x", b"\r\n", b"\x00"]), max_size=30))
def test_smuggling_rule_is_unchanged(pieces):
    content = b"".join(pieces)
    assert is_smuggling(content) == smuggling_as_it_was(content)


# --- the asyncio side -------------------------------------------------------------------------


def test_read_data_leaves_pipelined_commands_in_the_stream():
    async def scenario():
        stream = asyncio.StreamReader(limit=1001)
        reader = DataReader(1001, 10_000)
        task = asyncio.create_task(read_data(stream, reader))
        for piece in (b"Subject: x\r\n\r\nhi\r", b"\n.", b"\r\nRSET\r\nQU", b"IT\r\n"):
            stream.feed_data(piece)
            await asyncio.sleep(0)
        await task
        return reader, await stream.readuntil(), await stream.readuntil()

    reader, first, second = asyncio.run(scenario())
    assert reader.content == b"Subject: x\r\n\r\nhi\r\n"
    assert (first, second) == (b"RSET\r\n", b"QUIT\r\n")


# --- against aiosmtpd itself ------------------------------------------------------------------


class Capture:
    def __init__(self):
        self.content = None

    async def handle_DATA(self, server, session, envelope):
        self.content = envelope.original_content
        return "250 OK"


@pytest.fixture(scope="module")
def aiosmtpd_server():
    """A plain aiosmtpd server (its own DATA loop) with a 3,000-byte size limit."""
    handler = Capture()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), data_size_limit=3000)
    controller.start()
    yield controller, handler
    controller.stop()


def aiosmtpd_reply(controller, data: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", controller.port), timeout=10) as sock:
        file = sock.makefile("rb")

        def reply() -> bytes:
            line = file.readline()
            while line[3:4] == b"-":
                line = file.readline()
            return line

        reply()
        for command in (b"EHLO x", b"MAIL FROM:<a@example.com>", b"RCPT TO:<b@example.com>"):
            sock.sendall(command + b"\r\n")
            reply()
        sock.sendall(b"DATA\r\n")
        assert reply().startswith(b"354")
        sock.sendall(data)
        answer = reply()
        return int(answer[:3]), answer


LINES = st.sampled_from(
    [b"", b".", b"..", b"x", b".x", b"x" * 997, b"x" * 998, b"x" * 999, b"x" * 1000, b"x" * 1001]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LINES, max_size=6))
def test_same_replies_and_content_as_aiosmtpd(aiosmtpd_server, lines):
    controller, handler = aiosmtpd_server
    stream = b"".join(line + b"\r\n" for line in lines) + b".\r\n"
    stream = stream[: len(stream) - len(aiosmtpd_data(stream, 1001, 3000)[2])]  # a "." line ends it
    handler.content = None
    code, answer = aiosmtpd_reply(controller, stream)
    reader, _ = read_in_chunks(stream, [], 1001, 3000)
    if reader.error:
        assert answer.decode().rstrip("\r\n") == reader.error
    else:
        assert code == 250 and handler.content == reader.content


def test_the_content_is_handed_over_not_copied():
    reader = DataReader()
    assert reader.feed(b"Subject: x\r\n\r\n..dot\r\n.\r\n") == b""
    assert reader.take_content() == b"Subject: x\r\n\r\n.dot\r\n"
    assert reader.content == b""


@pytest.mark.parametrize(
    "stream",
    [b"a\r\n.\nb\r\n.\r\n", b"a\r\n.\rb\r\n.\r\n", b".\nb\r\n.\r\n", b".\rb\r\n.\r\n"],
)
def test_a_lone_dot_after_crlf_but_before_a_bare_line_break_is_smuggling(stream):
    """Read as a dot-stuffed line, CRLF "." LF would lose its dot and pass; another server may
    take it for the end of data, so it is refused like every other unframed lone dot."""
    reader, rest = read_in_chunks(stream, [])
    assert reader.smuggling and reader.content == b"" and rest == b""


def test_a_stuffed_dot_line_is_not_smuggling():
    reader, _ = read_in_chunks(b"a\r\n..\r\n...\r\nb\r\n.\r\n", [])
    assert not reader.smuggling
    assert reader.content == b"a\r\n.\r\n..\r\nb\r\n"
