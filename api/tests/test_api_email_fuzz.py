"""Property-based tests of POST /email and /email/batch: whatever a message holds — any value in
any field, in any spelling, addresses of every shape, bodies with NUL, lone CRs and endless
lines, hostile header names and values, attachments that are not base64, metadata of every type
— the answer is never a 500: a success in Postmark's shape, or ``{"ErrorCode", "Message"}``
with HTTP 4xx; a batch answers every item. Bounded in ``make test``, long in ``make fuzz``
(see ``test_api_fuzz``)."""

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.addresses import ONE_PLAIN_ADDRESS
from api.tests.test_api_fuzz import (  # noqa: F401 - world is a fixture
    STREAMS,
    fuzz,
    json_values,
    raw_bodies,
    send,
    spelled,
    texts,
    world,
)

pytestmark = pytest.mark.fuzz


ADDRESSES = [
    "user@example.net", "User <user@example.net>", '"Doe, Jane" <jane@example.net>',
    "gone@example.com", "spam@example.com", "a@b.c, d@e.f", "invalid@localhost", "user@+",
    "nobody", "@example.com", "a@", "<>", "<<a@b.com>>", "a b@example.com", "Ünï <u@exämple.com>",
    "ünï@example.com", "a@[127.0.0.1]", "x" * 400 + "@example.com", "a@b.com\r\nBcc: c@d.com",
    "=?utf-8?q?x?= <a@b.com>", ",,,", "a@b.com;c@d.com", "(comment) a@b.com",
]  # fmt: skip
addresses = st.one_of(
    st.sampled_from(ADDRESSES),
    st.emails().map(str),
    st.lists(st.sampled_from(ADDRESSES), max_size=3).map(", ".join),
    st.lists(st.sampled_from(ADDRESSES), max_size=3),
    texts,
    json_values,
)
BODY_TEXTS = [
    "Hello", "é" * 300, "x" * 5000, "a\rb\nc\r\nd", "line\x00nul", "\t tabs \t", ".\r\n.\r\n",
    "<html><body><a href='http://x'>x</a></body></html>", "\ufeff", "\U0001f600" * 50,
]  # fmt: skip
body_texts = st.one_of(st.sampled_from(BODY_TEXTS), texts, json_values)
base64_texts = st.one_of(
    st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
    st.sampled_from(["", "!!!", "aGVsbG8", "aGVs bG8=", "====", "aGVsbG8=\n"]),
    texts,
    json_values,
)
attachment = st.one_of(
    st.fixed_dictionaries(
        {
            "Name": st.one_of(st.sampled_from(["a.png", "r.pdf", "ü.txt", "", "a\r\nb"]), texts),
            "Content": base64_texts,
            "ContentType": st.one_of(
                st.sampled_from(["image/png", "text/plain", "application/pdf", "x", "a/b/c"]),
                texts,
                json_values,
            ),
        },
        optional={"ContentID": st.one_of(st.sampled_from(["cid:a.png", "<a>", ""]), texts)},
    ),
    json_values,
)
header = st.one_of(
    st.fixed_dictionaries(
        {
            "Name": st.one_of(
                st.sampled_from(
                    [
                        "X-A",
                        "Message-ID",
                        "X-PM-Tag",
                        "Content-Type",
                        "Bad Name",
                        "X:Y",
                        "",
                        "Reply-To",
                        "X-PM-KeepID",
                    ]
                ),  # fmt: skip
                texts,
            ),
            "Value": st.one_of(st.sampled_from(["v", "true", "é", "a\r\nb", ""]), texts),
        }
    ),
    json_values,
)
FIELDS = {
    "From": addresses,
    "To": addresses,
    "Cc": addresses,
    "Bcc": addresses,
    "ReplyTo": addresses,
    "Subject": st.one_of(st.sampled_from(["Hi", "Grüße", "a\r\nb", "x" * 1000]), texts),
    "Tag": st.one_of(st.sampled_from(["welcome", "t" * 1001]), texts, json_values),
    "HtmlBody": body_texts,
    "TextBody": body_texts,
    "Headers": st.one_of(
        st.lists(header, max_size=4), st.dictionaries(texts, texts, max_size=3), json_values
    ),  # fmt: skip
    "Metadata": st.one_of(st.dictionaries(texts, json_values, max_size=12), json_values),
    "TrackOpens": st.one_of(st.booleans(), texts, json_values),
    "TrackLinks": st.one_of(
        st.sampled_from(["None", "HtmlAndText", "HtmlOnly", "TextOnly", "htmlonly"]), texts
    ),
    "Attachments": st.one_of(st.lists(attachment, max_size=3), json_values),
    "MessageStream": st.one_of(STREAMS, json_values),
    "TemplateModel": json_values,
}
VALID = {"From": "app@example.com", "To": "user@example.net", "TextBody": "Hello"}


@st.composite
def messages(draw):
    """Mostly a valid message with some fields replaced, so that the checks behind the first
    refusal are reached; sometimes any JSON value at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    names = draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, min_size=1, max_size=6))
    message = dict(VALID) if draw(st.integers(0, 3)) else {}
    for name in names:
        message.pop(name, None)
        message[draw(spelled(name))] = draw(FIELDS[name])
    return message


def assert_success(item: dict) -> None:
    assert set(item) == {"To", "SubmittedAt", "MessageID", "ErrorCode", "Message"}, item
    assert item["ErrorCode"] == 0 and isinstance(item["Message"], str)


@pytest.mark.django_db
@fuzz(150)
@given(data=st.data())
def test_email_never_fails(world, data):  # noqa: F811 - the fixture
    if data.draw(st.integers(0, 9), label="raw?") == 0:
        body = data.draw(raw_bodies, label="raw body")
    else:
        body = json.dumps(data.draw(messages(), label="message")).encode()
    token = data.draw(st.sampled_from([True, True, True, "POSTMARK_API_TEST"]), label="token")
    response = send(world, "POST", "/email", body, token=token)
    if response.status_code == 200:
        assert_success(response.json())


@pytest.mark.django_db
@fuzz(40)
@given(data=st.data())
def test_email_batch_never_fails(world, data):  # noqa: F811 - the fixture
    items = data.draw(st.lists(messages(), max_size=5), label="batch")
    response = send(world, "POST", "/email/batch", json.dumps(items).encode())
    if response.status_code != 200:  # NaN, 1e999, a lone surrogate: not JSON at all
        assert response.json()["ErrorCode"] == 402, response.content[:300]
        return
    answers = response.json()
    assert len(answers) == len(items)
    for answer in answers:
        assert isinstance(answer["ErrorCode"], int) and isinstance(answer["Message"], str)
        assert isinstance(answer["To"], str)
        if answer["ErrorCode"] == 0:
            assert_success(answer)


HEADER_TEXTS = st.one_of(
    st.sampled_from(["Hi", "Grüße", "x" * 200, "a, b", '"q"', "=?utf-8?q?x?=", "  spaced  "]),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=120),
)
SENDING_BODIES = st.one_of(
    st.sampled_from(BODY_TEXTS + ["", "x" * 78, "x" * 79, "a\n", "\n\n\n", "é"]),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=300),
)


@fuzz(150)
@given(
    subject=HEADER_TEXTS,
    name=HEADER_TEXTS,
    tag=HEADER_TEXTS,
    text=SENDING_BODIES,
    html=SENDING_BODIES,
)
def test_the_fast_writer_writes_what_the_generator_writes(subject, name, tag, text, html):
    """``written_bytes`` must equal ``EmailMessage.as_bytes`` for every message it writes."""
    from email.message import EmailMessage

    from api.sending import WRITTEN_POLICY, _add_text_bodies, one_line, set_header, written_bytes

    message = EmailMessage(policy=WRITTEN_POLICY)
    set_header(message, "From", f'"{one_line(name)}" <a@example.com>'.replace('""', ""))
    set_header(message, "Subject", one_line(subject))
    set_header(message, "X-PM-Tag", one_line(tag))
    if not (text or html):
        text = "x"
    boundary = _add_text_bodies(message, text, html)
    assert written_bytes(message, boundary) == message.as_bytes()


@fuzz(300)
@given(
    value=st.one_of(
        st.from_regex(ONE_PLAIN_ADDRESS, fullmatch=True),
        st.emails().map(str),
        st.sampled_from(ADDRESSES),
        st.text(st.sampled_from("ab.@<> '\"+-_,;:()Zé1"), max_size=30),
    )
)
def test_plain_addresses_read_as_getaddresses_reads_them(value):
    import email.utils

    from api.addresses import split_addresses

    assert split_addresses(value) == email.utils.getaddresses([value])
