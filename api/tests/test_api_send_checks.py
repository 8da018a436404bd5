"""What POST /email and /email/batch check before a message is built (issue 22): recipients
counted before any address is read, address lists read in linear time, header names bounded,
header fields written without the header registry's quadratic parsing; Postmark's test token
held to every check that needs no server; the server's sending limits, as over SMTP. Through
Django's test client, table-driven where the cases are alike."""

import email
import email.policy
import email.utils
import json
import time
from email.header import decode_header, make_header

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from api import addresses, sending
from api.headerfields import address_value, text_value
from api.tests.test_api_fuzz import fuzz
from messages import limits
from messages.models import OutboundMessage, Submission

pytestmark = pytest.mark.django_db

TEST_TOKEN = "POSTMARK_API_TEST"
GETADDRESSES = email.utils.getaddresses  # the tests' own reader (patched for the code's)
TOO_MANY = "Invalid email request: A message may have at most 50 recipients, this one has {}."


@pytest.fixture
def api(server):
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)


@pytest.fixture
def test_token():
    return Client(HTTP_X_POSTMARK_SERVER_TOKEN=TEST_TOKEN)


@pytest.fixture
def clients(api, test_token):
    return {"server": api, "test": test_token}


def message(**fields):
    base = {"From": "app@example.com", "To": "user@example.net", "Subject": "Hi",
            "TextBody": "Hello"}  # fmt: skip
    base.update(fields)
    return base


def post(client, body, path="/email"):
    return client.post(path, data=json.dumps(body), content_type="application/json")


def answer(response) -> tuple[int, int, str]:
    body = response.json()
    return response.status_code, body["ErrorCode"], body["Message"]


def unread(*args, **kwargs):
    raise AssertionError("an address was read")


@pytest.fixture
def addresses_never_read(monkeypatch):
    monkeypatch.setattr(sending, "split_addresses", unread)
    monkeypatch.setattr(sending.email.utils, "getaddresses", unread)


@pytest.fixture
def never_read_slowly(monkeypatch):
    """The standard library's address parser (microseconds a character) is never called."""
    monkeypatch.setattr(sending.email.utils, "getaddresses", unread)


def read_addresses(field: str) -> list[tuple[str, str]]:
    """(display name, addr-spec) of a written address field, its names decoded as RFC 2047 says
    (the whitespace between adjacent encoded words is not text; the header registry's reader
    keeps it, for its own folding as for this)."""
    pairs = GETADDRESSES(["".join(field.split("\r\n"))])
    return [(str(make_header(decode_header(name))), addr) for name, addr in pairs]


def header_field(raw: bytes, name: str) -> str:
    """A field's value, unfolded (each CRLF before a space removed)."""
    head = raw.split(b"\r\n\r\n")[0].decode("ascii").replace("\r\n ", " ")
    [field] = [f for f in head.split("\r\n") if f.lower().startswith(name.lower() + ":")]
    return field.split(":", 1)[1].strip()


def many(count: int, domain: str = "example.net") -> str:
    return ", ".join(f"user{i}@{domain}" for i in range(count))


# --- recipients, counted before they are read -----------------------------------------------------

COUNTED = [
    ({"To": many(40_000)}, 40_000),
    ({"To": [f"u{i}@example.net" for i in range(51)]}, 51),
    ({"To": many(30), "Cc": many(21, "example.org")}, 51),
    ({"To": "a@example.net", "Bcc": many(60)}, 61),
    ({"To": ", ".join(f'"Name{i}" <u{i}@example.net>' for i in range(51))}, 51),
]


@pytest.mark.parametrize("token", ["server", "test"])
@pytest.mark.parametrize(("fields", "count"), COUNTED)
def test_too_many_recipients_are_refused_before_any_address_is_read(
    clients, token, fields, count, addresses_never_read
):
    response = post(clients[token], message(**fields))
    assert answer(response) == (422, 300, TOO_MANY.format(count))
    assert not Submission.objects.exists()


@pytest.mark.parametrize(
    "fields",
    [
        {"To": ", ".join(f'"a@b, c@d" <u{i}@example.net>' for i in range(50))},
        {"To": ", ".join(f"u{i}@example.net (x@y)" for i in range(25)), "Cc": many(25, "e.org")},
    ],
)
def test_an_at_sign_in_a_quoted_name_or_comment_is_no_recipient(api, fields):
    assert answer(post(api, message(**fields)))[:2] == (200, 0)
    assert len(OutboundMessage.objects.get().recipients) == 50


def test_more_than_fifty_reply_to_addresses_are_refused(test_token, addresses_never_read):
    assert answer(post(test_token, message(ReplyTo=many(51)))) == (
        422, 300,
        "Invalid email request: 'ReplyTo' may name at most 50 addresses, this one names 51.",
    )  # fmt: skip


def test_an_unusual_address_field_is_read_only_when_short(test_token, never_read_slowly):
    to = "(" + "comment " * 200 + ") user@example.net"
    status, code, text = answer(post(test_token, message(To=to)))
    assert (status, code) == (422, 300)
    assert text.startswith("Invalid 'To' address: '(comment")
    assert text.endswith("may be at most 998 characters.")


def test_a_long_plain_list_is_read_in_linear_time(api, never_read_slowly):
    """50 addresses with 400-character names: read by regular expressions, never by the
    standard library's parser, written without the header registry (which took 9 s for 50
    non-ASCII names of 1,000 characters) and read back the same."""
    names = ["Jo" * 200, "Ünïcødé " * 50, "Doe, Jane " * 40]
    to = ", ".join(f'"{names[i % 3]}" <u{i}@example.net>' for i in range(50))
    started = time.process_time()  # CPU time: a busy machine does not count
    status, code, _ = answer(post(api, message(To=to, Subject="Grüße " * 300)))
    assert (status, code) == (200, 0)
    assert time.process_time() - started < 5  # about 0.05 s
    content = bytes(OutboundMessage.objects.get().content)
    assert all(len(line) <= 998 for line in content.split(b"\r\n"))
    read = read_addresses(header_field(content, "To"))
    assert read == [(names[i % 3], f"u{i}@example.net") for i in range(50)]
    parsed = email.message_from_bytes(content, policy=email.policy.default)
    assert str(parsed["Subject"]) == ("Grüße " * 300).strip()


@fuzz(200)
@given(
    entries=st.lists(
        st.one_of(
            st.from_regex(addresses.ONE_PLAIN_ADDRESS, fullmatch=True),
            st.builds(
                '"{}" <{}>'.format,
                st.text(st.characters(blacklist_characters='"\\\r\n', codec="utf-8"), max_size=20),
                st.from_regex(addresses._ADDR_SPEC, fullmatch=True),
            ),
        ),
        min_size=1,
        max_size=6,
    ),
    separator=st.sampled_from([", ", ",", " , ", "\t,"]),
)
def test_plain_lists_read_as_getaddresses_reads_them(entries, separator):
    value = separator.join(entries)
    assert addresses.split_addresses(value) == GETADDRESSES([value])


# --- Postmark's test token: every check that needs no server --------------------------------------

NEEDS_NO_SERVER = [
    ({"To": many(60)}, 300, TOO_MANY.format(60)),
    ({"Metadata": {f"k{i}": "v" for i in range(20)}}, 300,
     "Invalid email request: A message may have at most 10 metadata fields."),
    ({"Metadata": {"k" * 21: "v"}}, 300,
     f"Invalid email request: Metadata key '{'k' * 21}' is longer than 20 characters."),
    ({"Metadata": {"k": "v" * 81}}, 300,
     "Invalid email request: The value of metadata key 'k' is longer than 80 characters."),
    ({"Tag": "t" * 1001}, 300, "Invalid email request: The tag is longer than 1000 characters."),
    ({"TrackLinks": "Sometimes"}, 300, "Invalid email request: X-PM-TrackLinks must be None, "
     "HtmlAndText, HtmlOnly or TextOnly, not 'Sometimes'."),
    ({"TrackOpens": "maybe"}, 300,
     "Invalid email request: X-PM-TrackOpens must be true or false, not 'maybe'."),
    ({"Headers": [{"Name": "X-" + "h" * 5000, "Value": "v"}]}, 300,
     f"Invalid email request: the header name 'X-{'h' * 98}…' is longer than 76 characters."),
    ({"Subject": "s" * 2001}, 300,
     "Invalid email request: The subject is longer than 2000 characters."),
    ({"Subject": "\U0001f600" * 1001}, 300,  # 2002 UTF-16 code units, as Postmark counts
     "Invalid email request: The subject is longer than 2000 characters."),
    ({"Headers": [{"Name": f"X-H{i}", "Value": "v " * 500} for i in range(70)]}, 300,
     "Invalid email request: the message's header fields (addresses, Subject, Tag, Metadata "
     "and Headers together) take more than 65536 bytes."),
    ({"MessageStream": "pm-reserved"}, 1235,
     "The stream provided: 'pm-reserved' does not exist on this server."),
    ({"MessageStream": "Outbound"}, 1235,
     "The stream provided: 'Outbound' does not exist on this server."),
    ({"MessageStream": "s" * 31}, 1235,
     f"The stream provided: '{'s' * 31}' does not exist on this server."),
    ({"Headers": [{"Name": "Message-ID", "Value": "<" + "i" * 1000 + "@x>"},
                  {"Name": "X-PM-KeepID", "Value": "true"}]}, 300,
     "Invalid email request: The Message-ID header is longer than 998 characters."),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "code", "text"), NEEDS_NO_SERVER)
def test_the_test_token_gets_the_answer_a_server_token_gets(clients, fields, code, text):
    """(Before issue 22 the test token answered "Test job accepted" to all of these.)"""
    for token in ("test", "server"):
        assert answer(post(clients[token], message(**fields))) == (422, code, text), token
    assert not Submission.objects.exists()


def test_a_well_formed_unknown_stream_passes_with_the_test_token(clients):
    """An unknown stream needs a server to be unknown: the test token has none."""
    response = post(clients["test"], message(MessageStream="newsletters"))
    assert answer(response) == (200, 0, "Test job accepted")
    assert answer(post(clients["server"], message(MessageStream="newsletters")))[1] == 1235


def test_a_test_token_batch_answers_each_item(test_token):
    items = [message(), message(To=many(51)), message(Tag="t" * 1001), message()]
    answers = post(test_token, items, path="/email/batch").json()
    assert [a["ErrorCode"] for a in answers] == [0, 300, 300, 0]
    assert answers[0]["Message"] == "Test job accepted"
    assert not Submission.objects.exists()


# --- custom header names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "accepted"),
    [("X-" + "a" * 74, True), ("X-" + "a" * 75, False), ("X-" + "a" * 4998, False),
     ("X Bad", False), ("X:Bad", False), ("X-Ünï", False)],
)  # fmt: skip
def test_custom_header_names_are_bounded(api, name, accepted):
    status, code, _ = answer(post(api, message(Headers=[{"Name": name, "Value": "v"}])))
    assert (status, code) == ((200, 0) if accepted else (422, 300))
    if accepted:
        parsed = email.message_from_bytes(
            bytes(OutboundMessage.objects.get().content), policy=email.policy.default
        )
        assert parsed[name] == "v"


# --- header fields written in linear time ---------------------------------------------------------

header_texts = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=300).map(
    sending.one_line
)


@fuzz(300)
@given(value=header_texts, name=st.sampled_from(["Subject", "X-PM-Tag", "X-" + "n" * 70]))
def test_a_written_text_field_reads_back_as_written(value, name):
    raw = f"{name}: {text_value(name, value)}\r\n\r\n".encode("ascii")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(parsed[name]) == value


@fuzz(200)
@given(
    names=st.lists(
        st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=120).map(
            sending.one_line
        ),
        min_size=1,
        max_size=5,
    )
)
def test_written_addresses_read_back_as_written(names):
    pairs = [(name, f"user{i}@example.net") for i, name in enumerate(names)]
    value = address_value("To", pairs)
    assert all(len(line) <= 998 for line in f"To: {value}".split("\r\n"))
    assert read_addresses(value) == pairs


# --- the server's sending limits ------------------------------------------------------------------


def test_one_message_over_the_sending_limit_is_429(api, server):
    limits.clear_cache()
    server.smtp_messages_per_day = 1
    server.save()
    assert answer(post(api, message()))[:2] == (200, 0)
    assert answer(post(api, message())) == (
        429, 429,
        "Sending limit of this server reached (at most 1 message(s) per day): try again later.",
    )  # fmt: skip
    assert Submission.objects.count() == 1
    limits.clear_cache()
