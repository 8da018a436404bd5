"""Header handling at the byte level (core.mime, core.encoded_words): the header ends at the first
empty line whatever its line endings, fields are read and rewritten in time linear in the header
however they are folded, and encoded words are decoded as the standard library decodes them."""

import email
import email.header
import email.message
import os
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from core import dkim, encoded_words, mime, mimeparams
from messages.headers import parse_headers

pytestmark = pytest.mark.no_db

MB = 1024 * 1024
# Generated inputs: a bounded run in make test, as many as FUZZ_EXAMPLES says in make fuzz.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 0)


def fields_by_lines(header_block: bytes) -> list[tuple[str, bytes]]:
    """What ``mime.fields`` returned when it grew each field a line at a time (quadratic): the
    reference its linear form must agree with."""
    result: list[tuple[str, bytes]] = []
    for line in header_block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and result:
            name, raw = result[-1]
            result[-1] = (name, raw + line)
            continue
        match = mime.FIELD_NAME.match(line)
        result.append((match.group(1).decode("ascii").lower() if match else "", line))
    return result


HEADER_PIECES = st.sampled_from(
    [b"To: a@example.com", b"X-PM-Tag: t", b"Subject:", b" ", b"\t", b"x", b":", b"\r\n",
     b"\n", b"\r", b"\r\n ", b"\n\t", b"=?utf-8?q?a?=", b"\x00", b"\xff", b"Bad Name: v"]
)  # fmt: skip


@pytest.mark.fuzz
@settings(max_examples=EXAMPLES or 500, deadline=None)
@given(st.lists(HEADER_PIECES, max_size=25).map(b"".join))
def test_fields_agree_with_reading_line_by_line(block):
    assert mime.fields(block) == fields_by_lines(block)


TEXT_PIECES = st.sampled_from(
    list("=?qQbBx \t\n\r\x0b_aé\u2028") + ["=?", "?=", "=?utf-8?q?", "=?UTF-8?B?", "YWI", "=3D",
                                           "=?iso-8859-1?q?", "=?x?q?", "=00", "?"]
)  # fmt: skip


def standard(function, *args):
    try:
        return function(*args)
    except Exception as error:  # the same exception type is part of the contract
        return type(error)


@pytest.mark.fuzz
@settings(max_examples=EXAMPLES or 800, deadline=None)
@given(st.lists(TEXT_PIECES, max_size=30).map("".join))
def test_encoded_words_decode_as_the_standard_library_does(text):
    for line in text.splitlines() or [""]:
        assert encoded_words.split_line(line) == email.header.ecre.split(line)
    assert encoded_words.has_word(text) == bool(email.header.ecre.search(text))
    assert standard(encoded_words.decode_header, text) == standard(email.header.decode_header, text)
    assert standard(encoded_words.decode, text) == standard(
        lambda t: str(email.header.make_header(email.header.decode_header(t))), text
    )


BODY_WITH_HEADERS = b"Hello.\r\nBcc: hidden@example.org\r\nX-PM-Tag: from-the-body\r\n\r\nEnd.\r\n"


@pytest.mark.parametrize(
    ("header_eol", "blank"),
    [(b"\n", b"\n"), (b"\r\n", b"\r\n"), (b"\n", b"\r\n"), (b"\r\n", b"\n")],
    ids=["LF LF", "CRLF CRLF", "LF CRLF", "CRLF LF"],
)
def test_the_header_ends_at_the_first_empty_line_whatever_its_line_endings(header_eol, blank):
    """LF-only headers with a CRLF body were split at the body's first CRLF CRLF: body lines
    such as Bcc: or X-PM-Tag: were read as header fields."""
    header = header_eol.join([b"From: app@example.com", b"To: ann@example.net", b"Subject: Hi"])
    raw = header + header_eol + blank + BODY_WITH_HEADERS
    header_block, separator, body = mime.split_message(raw)
    assert header_block == header
    assert separator == header_eol + blank
    assert body == BODY_WITH_HEADERS
    assert [name for name, _ in mime.fields(header_block)] == ["from", "to", "subject"]
    parsed = parse_headers(raw)
    assert parsed.tag == "" and parsed.subject == "Hi"
    rewritten = mime.rewrite(raw, lambda name: name in ("bcc", "x-pm-tag"), [b"Message-ID: <m@x>"])
    assert rewritten.endswith(blank + BODY_WITH_HEADERS)  # the body untouched, Bcc and all
    assert mime.split_message(rewritten)[0].endswith(b"Message-ID: <m@x>")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", (b"", b"", b"")),
        (b"Subject: only a header", (b"Subject: only a header", b"", b"")),
        (b"\r\nbody", (b"", b"\r\n", b"body")),
        (b"\n\r\nbody", (b"", b"\n", b"\r\nbody")),
        (b"A: 1\r\r\n\r\nbody", (b"A: 1\r", b"\r\n\r\n", b"body")),
        (b"A: 1\n\n\nbody", (b"A: 1", b"\n\n", b"\nbody")),
    ],
)
def test_split_message_edges(raw, expected):
    assert mime.split_message(raw) == expected
    assert b"".join(mime.split_message(raw)) == raw


def test_rewrite_keeps_the_empty_line_of_a_message_without_header_fields():
    assert mime.rewrite(b"\r\nbody\r\n", lambda name: False, [b"X-A: 1"]) == (
        b"X-A: 1\r\n\r\nbody\r\n"
    )
    assert mime.rewrite(b"A: 1\r\nB: 2\n\nbody", lambda name: False, [b"X: 3"]) == (
        b"A: 1\r\nB: 2\r\nX: 3\r\n\nbody"
    )


def folded_message(size: int, line: bytes = b" " + b"a" * 70 + b"\r\n") -> bytes:
    return (
        b"From: app@example.com\r\nTo: ann@example.net\r\nX-Folded: start\r\n"
        + line * (size // len(line))
        + b"Subject: after the fold\r\n\r\nHello.\r\n"
    )


SIGNER = dkim.Signer("example.com", "s1", ed25519.Ed25519PrivateKey.generate())


def header_path(raw: bytes) -> None:
    """Everything processing and delivery do with a message's header: parse, unfold, decode,
    rewrite, then DKIM's canonicalisation of the signed fields."""
    parsed = parse_headers(raw)
    assert parsed.subject == "after the fold"
    content = mime.rewrite(
        raw, lambda name: name.startswith("x-pm-") or name == "bcc", [b"Message-ID: <x>"]
    )
    assert dkim.sign(content.replace(b"X-Folded:", b"References:"), [SIGNER])


@pytest.mark.parametrize(
    "line",
    [b" " + b"a" * 70 + b"\r\n", b" \r\n", b"\t=?utf-8?q?a?=\n", b" =?x?q?unterminated\r\n"],
    ids=["72-byte lines", "empty lines", "encoded words", "unterminated words"],
)
def test_two_megabytes_of_folded_header_are_handled_within_seconds(line):
    """The quadratic reading took 14 s for 5 MB of folded header; 2 MB took over 2 s, and its
    encoded words far longer. (The performance goal, within 20 times the cost of as large a
    body, is bench/tests/test_header_parsing_speed.py.)"""
    raw = folded_message(2 * MB, line)
    started = time.process_time()  # CPU time: a busy machine does not count
    header_path(raw)
    assert time.process_time() - started < 5


def test_a_long_references_field_and_fifty_recipients_read_as_before():
    references = b" ".join(b"<%d.thread@example.com>" % i for i in range(400))
    to = b",\r\n ".join(b"Person %d <p%d@example.net>" % (i, i) for i in range(50))
    raw = b"From: a@example.com\r\nTo: " + to + b"\r\nReferences: " + references + b"\r\n\r\nHi"
    parsed = parse_headers(raw)
    assert parsed.to == [f"p{i}@example.net" for i in range(50)]
    assert mime.fields(mime.split_message(raw)[0]) == fields_by_lines(mime.split_message(raw)[0])


PARAM_PIECES = st.sampled_from(list(';"\\= \ta') + ["charset=utf-8", 'name="a;b"', '\\"', "; "])


@pytest.mark.fuzz
@settings(max_examples=EXAMPLES or 800, deadline=None)
@given(st.lists(PARAM_PIECES, max_size=30).map("".join))
def test_parameters_split_as_the_standard_library_splits_them(value):
    assert mimeparams.split_params(value) == email.message._parseparam(value)


def test_parameters_of_a_huge_content_type_are_read_within_seconds():
    """40,000 parameters after a stray quote took 9 s for each get_content_charset()."""
    field = b'Content-Type: text/plain; charset=utf-8; x="' + b";\r\n a=b" * 40000
    message = email.message_from_bytes(field + b"\r\n\r\nHello", _class=mimeparams.Message)
    started = time.process_time()  # CPU time: a busy machine does not count
    assert message.get_content_charset() == "utf-8"
    assert message.get_content_type() == "text/plain"
    assert time.process_time() - started < 1
