"""The header caps of the DATA reader (smtpgw.data_reader.HeaderLimits) against a model that reads
the whole header at once, on content split at every awkward boundary; and in DataReader, a header
over a cap is refused and not kept."""

import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import mime
from smtpgw.data_reader import FIELD_TOO_LONG, HEADER_TOO_BIG, DataReader, HeaderLimits

pytestmark = pytest.mark.no_db


def model(content: bytes, header_limit: int, field_limit: int) -> str:
    """The header is everything up to the line feed that ends the last header line (the first
    empty line after it, whatever its line endings, as core.mime.split_message has it); its
    fields end at every line feed that no space or tab follows."""
    window = b"\n" + content
    found = [i for i in (window.find(b"\n\n"), window.find(b"\n\r\n")) if i != -1]
    if found:
        header = window[1 : min(found) + 1]
    else:  # a final line feed (and CR) may still start the empty line: not counted yet
        end = len(window) - (2 if window.endswith(b"\n\r") else 1 if window.endswith(b"\n") else 0)
        header = window[1:end]
    if header_limit and len(header) > header_limit:
        return HEADER_TOO_BIG.format(limit=header_limit)
    sizes, start = [], 0
    for i, byte in enumerate(header):
        if byte == 0x0A and (i + 1 == len(header) or header[i + 1] not in b" \t"):
            sizes.append(i + 1 - start)
            start = i + 1
    sizes.append(len(header) - start)
    if field_limit and max(sizes) > field_limit:
        return FIELD_TOO_LONG.format(limit=field_limit)
    return ""


PIECES = st.sampled_from(
    [b"A: 1", b"Subject: hello", b"\r\n", b"\n", b"\r", b" ", b"\t", b"x" * 7, b"\r\n ", b"\n\t"]
)


# A bounded run in make test, as many as FUZZ_EXAMPLES says in make fuzz.
@pytest.mark.fuzz
@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES") or 500), deadline=None)
@given(
    st.lists(PIECES, max_size=30).map(b"".join),
    st.lists(st.integers(0, 200), max_size=6),
    st.integers(0, 60),
    st.integers(0, 20),
)
def test_the_caps_agree_with_reading_the_header_whole(content, cuts, header_limit, field_limit):
    limits = HeaderLimits(header_limit, field_limit)
    bounds = [0, *sorted(c for c in set(cuts) if c < len(content)), len(content)]
    error = ""
    for start, stop in zip(bounds, bounds[1:], strict=False):
        error = limits.feed(content[start:stop]) or error
    want = model(content, header_limit, field_limit)
    if want and error and want != error:  # both caps passed: the first one reached answers
        assert model(content, header_limit, 0) and model(content, 0, field_limit)
    else:
        assert error == want


def read(content: bytes, **limits) -> DataReader:
    reader = DataReader(1001, 10 * 1024 * 1024, **limits)
    chunk = 64 * 1024
    for start in range(0, len(content), chunk):
        assert reader.feed(content[start : start + chunk]) is None
    assert reader.feed(b"\r\n.\r\n") == b""
    return reader


FOLD = b" " + b"a" * 70 + b"\r\n"


def test_a_header_over_a_cap_is_refused_and_not_kept():
    folded = b"Subject: x\r\nX-Big: y\r\n" + FOLD * 2000 + b"\r\nbody\r\n"  # a 144 kB field
    reader = read(folded, header_limit=1024 * 1024, field_limit=102400)
    assert reader.error == FIELD_TOO_LONG.format(limit=102400) and reader.content == b""
    many = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 60) for i in range(20000)) + b"\r\nbody\r\n"
    reader = read(many, header_limit=1024 * 1024, field_limit=102400)
    assert reader.error == HEADER_TOO_BIG.format(limit=1024 * 1024) and reader.content == b""


def test_an_honest_large_header_and_a_large_body_pass():
    """50 recipients in To, a References chain of 400 messages, a DKIM signature, and 5 MB of
    body made of lines that look like header fields and folds."""
    to = b",\r\n ".join(b"Person %d <p%d@example.net>" % (i, i) for i in range(50))
    references = b"\r\n ".join(b"<%d.thread@example.com>" % i for i in range(400))
    header = b"From: a@example.com\r\nTo: " + to + b"\r\nReferences: " + references + b"\r\n"
    header += b"DKIM-Signature: v=1; a=rsa-sha256; b=\r\n" + (b" " + b"A" * 70 + b"\r\n") * 5
    body = (b"X-Not-A-Header: " + b"b" * 60 + b"\r\n" + FOLD) * 37000
    message = header + b"\r\n" + body
    reader = read(message, header_limit=1024 * 1024, field_limit=102400)
    assert reader.error == "" and reader.content == message + b"\r\n"
    assert mime.split_message(message)[2] == body


def test_the_caps_cost_no_python_step_per_line():
    """A megabyte of header in 3-byte lines costs about as much as in 73-byte lines."""

    def cost(line: bytes) -> float:
        content = b"X: y\r\n" + line * ((1000 * 1000) // len(line)) + b"\r\nbody\r\n"
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            limits = HeaderLimits(1024 * 1024, 1024 * 1024)
            for start in range(0, len(content), 65536):
                limits.feed(content[start : start + 65536])
            best = min(best, time.perf_counter() - started)
        return best

    assert cost(b"A:\r\n") <= 5 * cost(b"A: " + b"v" * 68 + b"\r\n") + 0.01
    assert cost(b" \r\n") <= 5 * cost(FOLD) + 0.01
