"""Generated messages (broken MIME boundaries, unknown and hostile charsets, 8-bit and NUL-bearing
headers, deep nesting, odd envelopes) go through processing: none may raise or leave its
submission anywhere but processed or failed.

A bounded number of examples runs in ``make test``; ``make fuzz`` runs many more
(``FUZZ_EXAMPLES``)."""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import accepted_submission
from messages.processing import process_submission

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))

CHARSETS = [
    "utf-8",
    "iso-8859-1",
    "undefined",
    "unicode_escape",
    "utf-16",
    "x-unknown",
    "",
    "ascii",
]
NAMES = [
    b"From", b"To", b"Cc", b"Subject", b"Message-ID", b"Content-Type", b"X-PM-Message-Stream",
    b"X-PM-Tag", b"X-PM-TrackOpens", b"X-PM-TrackLinks", b"X-PM-KeepID", b"X-PM-Metadata-k",
    b"X-PM-Metadata-", b"Bcc", b"Content-Transfer-Encoding",
]  # fmt: skip

text_bytes = st.one_of(
    st.binary(max_size=120),
    st.text(max_size=80).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"=?utf-8?q?a=00b?=", b"=?bogus?b?AAAA?=", b"=?utf-8?b?////?=", b"\x00",
                     b"caf\xe9", b"outbound", b"s" * 300, b"true", b"HtmlOnly", b"<x@y>"]),
)  # fmt: skip


@st.composite
def header(draw):
    name = draw(st.sampled_from(NAMES))
    if name == b"Content-Type":
        charset = draw(st.sampled_from(CHARSETS)).encode()
        kind = draw(st.sampled_from([b"text/plain", b"multipart/mixed", b"text/html"]))
        boundary = draw(st.sampled_from([b"b1", b"", b'"unterminated', b"b" * 200]))
        return name + b": " + kind + b"; charset=" + charset + b"; boundary=" + boundary
    value = draw(text_bytes)
    fold = draw(st.booleans())
    return name + b": " + (value[:40] + b"\r\n\t" + value[40:] if fold else value)


@st.composite
def body(draw, depth=0):
    if depth < 4 and draw(st.booleans()):
        boundary = draw(st.sampled_from([b"b1", b"b2", b""]))
        parts = draw(st.lists(body(depth=depth + 1), max_size=3))
        closing = draw(st.sampled_from([b"--" + boundary + b"--\r\n", b""]))  # broken or not
        return b"".join(
            b"--" + boundary + b"\r\nContent-Type: multipart/mixed; boundary=" + boundary
            + b"\r\n\r\n" + part for part in parts
        ) + closing  # fmt: skip
    return draw(st.binary(max_size=300))


@st.composite
def raw_message(draw):
    headers = draw(st.lists(header(), max_size=14))
    newline = draw(st.sampled_from([b"\r\n", b"\n"]))
    return newline.join(headers) + newline + newline + draw(body())


recipients = st.lists(
    st.one_of(
        st.sampled_from(["ann@example.net", "ANN@example.net", "bob@example.net"]),
        st.text(min_size=1, max_size=30).map(lambda t: f"{t}@example.net"),
        st.just("x" * 400 + "@example.net"),
    ),
    min_size=1,
    max_size=6,
)


@pytest.mark.django_db
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=raw_message(), rcpts=recipients)
def test_every_generated_message_ends_processed_or_failed(server, raw, rcpts):
    rcpts = [r.replace("\x00", "") for r in rcpts]  # the gateway refuses NUL in addresses
    rcpts = [r.encode("utf-8", "replace").decode("utf-8") for r in rcpts]
    submission = accepted_submission(server, raw, rcpts)
    assert process_submission(submission.pk) in ("processed", "failed")
