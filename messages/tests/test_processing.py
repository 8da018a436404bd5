"""Processing rules (compat §1): streams, X-PM-* headers, recipients, SMTPApiError records."""

import uuid

import pytest

from bounces.models import Bounce
from conftest import accepted_submission
from messages.headers import parse_headers
from messages.models import OutboundMessage, Submission
from messages.processing import delivered_content, process_submission
from streams.models import Suppression
from streams.services import create_stream, get_stream
from streams.suppressions import suppress

BASE = (
    b"From: App <app@example.com>\r\n"
    b"To: Ann <ann@example.net>, bob@example.net\r\n"
    b"Cc: carl@example.net\r\n"
    b"Bcc: secret@example.net\r\n"
    b"Subject: Hello\r\n"
    b"Message-ID: <original@client.example>\r\n"
)


def message(*headers: bytes, body: bytes = b"Hello.\r\n") -> bytes:
    return BASE + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


def submit(server, raw, rcpts=("ann@example.net",), stream=None, endpoint="transactional"):
    return accepted_submission(
        server, raw, rcpts, stream=stream, endpoint=endpoint, mail_from="bounce@example.com"
    )


# --- header rules -----------------------------------------------------------------------------


def test_the_first_tag_counts():
    parsed = parse_headers(message(b"X-PM-Tag: first", b"x-pm-tag: second"))
    assert parsed.tag == "first"
    assert parsed.problems == []


def test_metadata_and_duplicate_keys_are_numbered():
    parsed = parse_headers(
        message(
            b"X-PM-Metadata-client-id: 42",
            b"X-PM-Metadata-color: red",
            b"x-pm-metadata-Color: blue",
            b"X-PM-Metadata-color: green",
        )
    )
    assert parsed.metadata == {
        "client-id": "42",
        "color": "red",
        "Color1": "blue",
        "color2": "green",
    }


@pytest.mark.parametrize(
    ("header", "text"),
    [
        (b"X-PM-Metadata-" + b"k" * 21 + b": v", "longer than 20 characters"),
        (b"X-PM-Metadata-key: " + b"v" * 81, "longer than 80 characters"),
        (b"X-PM-Metadata-: v", "has no key"),
        (b"X-PM-Tag: " + b"t" * 1001, "tag is longer than 1000"),
        (b"X-PM-TrackOpens: maybe", "must be true or false"),
        (b"X-PM-TrackLinks: Everything", "must be None, HtmlAndText"),
    ],
)
def test_bad_headers_are_problems(header, text):
    parsed = parse_headers(message(header))
    assert len(parsed.problems) == 1
    assert parsed.problems[0].error_code == 300
    assert text in parsed.problems[0].message


def test_at_most_ten_metadata_fields():
    headers = [f"X-PM-Metadata-k{i}: v".encode() for i in range(11)]
    parsed = parse_headers(message(*headers))
    assert len(parsed.metadata) == 10
    assert "at most 10 metadata fields" in parsed.problems[0].message


@pytest.mark.parametrize(
    ("headers", "opens", "links"),
    [
        ([b"X-PM-TrackOpens: true", b"X-PM-TrackLinks: HtmlAndText"], True, "HtmlAndText"),
        ([b"X-PM-Track-Opens: FALSE", b"X-PM-Track-Links: textonly"], False, "TextOnly"),
        ([], None, None),
    ],
)
def test_tracking_headers_in_both_spellings(headers, opens, links):
    parsed = parse_headers(message(*headers))
    assert (parsed.track_opens, parsed.track_links) == (opens, links)


def test_addresses_and_encoded_headers():
    raw = message(b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=").replace(b"Subject: Hello\r\n", b"")
    parsed = parse_headers(raw)
    assert parsed.subject == "Grüße"
    assert parsed.to == ["ann@example.net", "bob@example.net"]
    assert parsed.cc == ["carl@example.net"]
    assert parsed.from_address == "App <app@example.com>"


@pytest.mark.parametrize("keep", [False, True])
def test_delivered_content_drops_private_headers(keep, settings):
    settings.MESSAGE_ID_DOMAIN = "mail.example.org"
    raw = message(b"X-PM-Tag: t", b"X-PM-Metadata-a: b", b"X-PM-KeepID: true")
    ours = uuid.uuid4()
    content, message_id = delivered_content(raw, "<original@client.example>", keep, ours)
    assert b"X-PM-" not in content
    assert b"Bcc:" not in content
    assert content.endswith(b"\r\n\r\nHello.\r\n")
    assert content.count(b"Message-ID:") == 1
    if keep:
        assert message_id == "<original@client.example>"
        assert b"Message-ID: <original@client.example>" in content
    else:
        assert message_id == f"<{ours}@mail.example.org>"
        assert f"Message-ID: {message_id}".encode() in content
        assert b"original@client.example" not in content


# --- processing ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_message_becomes_one_outbound_message(server):
    raw = message(
        b"X-PM-Tag: welcome", b"X-PM-Metadata-client-id: 42", b"X-PM-TrackLinks: HtmlOnly"
    )
    rcpts = ["ann@example.net", "bob@example.net", "carl@example.net", "secret@example.net"]
    submission = submit(server, raw, rcpts)
    assert process_submission(submission.pk) == "processed"
    out = OutboundMessage.objects.get(message_id=submission.message_id)
    assert out.stream.stream_id == "outbound"
    assert out.tag == "welcome"
    assert out.metadata == {"client-id": "42"}
    assert out.track_links == "HtmlOnly"
    assert out.track_opens is False
    assert out.recipients == rcpts
    assert out.to == ["ann@example.net", "bob@example.net"]
    assert out.cc == ["carl@example.net"]
    assert out.bcc == ["secret@example.net"]
    assert out.subject == "Hello"
    content = bytes(out.content)
    assert b"X-PM-" not in content and b"Bcc:" not in content
    # Kept once: as the message to deliver; the submission keeps its envelope, not the bytes.
    assert bytes(Submission.objects.get(pk=submission.pk).raw) == b""
    assert not Bounce.objects.exists()


@pytest.mark.django_db
def test_processing_is_idempotent(server):
    submission = submit(server, message())
    process_submission(submission.pk)
    assert process_submission(submission.pk) == "processed"
    assert OutboundMessage.objects.count() == 1


@pytest.mark.django_db
def test_header_stream_for_server_tokens(server):
    create_stream(server, "second")
    submission = submit(server, message(b"X-PM-Message-Stream: second"))
    process_submission(submission.pk)
    assert OutboundMessage.objects.get().stream.stream_id == "second"


@pytest.mark.django_db
def test_smtp_token_stream_wins_over_the_header(server):
    outbound = get_stream(server, "outbound")
    submission = submit(server, message(b"X-PM-Message-Stream: nope"), stream=outbound)
    process_submission(submission.pk)
    assert OutboundMessage.objects.get().stream == outbound


def _only_bounces():
    return list(Bounce.objects.order_by("email"))


@pytest.mark.django_db
def test_unknown_stream_is_an_smtp_api_error_per_recipient(server):
    raw = message(b"X-PM-Message-Stream: nope", b"X-PM-Tag: t")
    submission = submit(server, raw, ["ann@example.net", "bob@example.net"])
    assert process_submission(submission.pk) == "failed"
    bounces = _only_bounces()
    assert [b.email for b in bounces] == ["ann@example.net", "bob@example.net"]
    first = bounces[0]
    assert first.type == "SMTPApiError" and first.type_code == 100007
    # Filed where the default bounce query and the outbound stream's webhooks see it; the text
    # names the stream that was asked for.
    assert first.message_stream == "outbound" and first.stream.stream_id == "outbound"
    assert first.message_id == submission.message_id
    assert first.details == "The stream provided: 'nope' does not exist on this server."
    assert first.dump_text.startswith(
        "ErrorCode: 1235\r\nMessage: The stream provided: 'nope' does not exist on this server."
    )
    assert first.dump_text.endswith(raw.decode())
    assert first.source_id == bounces[1].source_id  # the message is stored once for both
    assert first.tag == "t" and first.subject == "Hello" and first.from_address == "app@example.com"
    assert not first.inactive and not first.can_activate
    assert not OutboundMessage.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("stream_id", "endpoint", "text"),
    [
        ("inbound", "transactional", "not supported for the Inbound stream"),
        ("broadcast", "transactional", "must be sent to the broadcast SMTP endpoint"),
        ("outbound", "broadcast", "must be sent to the transactional SMTP endpoint"),
    ],
)
def test_wrong_stream_type_is_1236(server, stream_id, endpoint, text):
    raw = message(f"X-PM-Message-Stream: {stream_id}".encode())
    process_submission(submit(server, raw, endpoint=endpoint).pk)
    bounce = Bounce.objects.get()
    assert text in bounce.details
    assert bounce.content.startswith("ErrorCode: 1236\r\n")


@pytest.mark.django_db
def test_bad_metadata_is_300(server):
    process_submission(submit(server, message(b"X-PM-Metadata-" + b"k" * 25 + b": v")).pk)
    assert Bounce.objects.get().content.startswith("ErrorCode: 300\r\n")


@pytest.mark.django_db
def test_more_than_50_recipients_is_300(server, settings):
    rcpts = [f"u{i}@example.net" for i in range(51)]
    process_submission(submit(server, message(), rcpts).pk)
    assert Bounce.objects.count() == 51
    assert "at most 50 recipients" in Bounce.objects.first().details


@pytest.mark.django_db
def test_inactive_recipients_get_406_while_the_others_are_processed(server):
    outbound = get_stream(server, "outbound")
    suppress(outbound, "Bob@Example.net", Suppression.Reason.HARD_BOUNCE, "Recipient")
    suppress(outbound, "carl@example.net", Suppression.Reason.MANUAL, "Customer")
    rcpts = ["ann@example.net", "bob@example.net", "carl@example.net"]
    submission = submit(server, message(), rcpts)
    assert process_submission(submission.pk) == "processed"
    bounces = _only_bounces()
    assert [b.email for b in bounces] == ["bob@example.net", "carl@example.net"]
    expected = (
        "You tried to send to recipient(s) that have been marked as inactive. Found inactive "
        "addresses: bob@example.net, carl@example.net. Inactive recipients are ones that have "
        "generated a hard bounce, a spam complaint, or a manual suppression."
    )
    assert bounces[0].content.startswith(f"ErrorCode: 406\r\nMessage: {expected}\r\n\r\n")
    assert OutboundMessage.objects.get().recipients == ["ann@example.net"]


@pytest.mark.django_db
def test_suppressions_are_per_stream(server):
    suppress(get_stream(server, "broadcast"), "ann@example.net", "HardBounce", "Recipient")
    process_submission(submit(server, message()).pk)
    assert not Bounce.objects.exists()


@pytest.mark.django_db
def test_open_tracking_setting_and_stream_type(server):
    server.track_opens = True
    server.save()
    process_submission(submit(server, message(b"X-PM-TrackOpens: false")).pk)
    assert OutboundMessage.objects.get().track_opens is True  # the server setting wins


# --- a corpus of awkward messages ------------------------------------------------------------

AWKWARD = {
    "quoted-printable": b"Subject: qp\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe =\r\nsoft break\r\n",
    "base64": b"Subject: b64\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nR3LDvMOfZQ==\r\n",
    "unlabelled ISO-8859-2": "Subject: Żółć\r\nFrom: Jaźń <a@example.com>\r\n\r\n"
    "Zażółć gęślą jaźń\r\n".encode("iso-8859-2"),
    "labelled ISO-8859-2": "Subject: x\r\nContent-Type: text/plain; charset=iso-8859-2\r\n\r\n"
    "Zażółć gęślą jaźń\r\n".encode("iso-8859-2"),
    "UTF-8 headers": "Subject: Grüße 👋\r\nFrom: Zoë <zoe@example.com>\r\n\r\nhi\r\n".encode(),
    "broken RFC 2047": b"Subject: =?utf-8?q?broken=ZZ?= =?nope?b?!!!?=\r\n\r\nx\r\n",
    "unknown charset": b"Subject: x\r\nContent-Type: text/plain; charset=x-nonsense\r\n\r\n"
    b"\xff\r\n",
    "broken boundaries": b'Subject: mp\r\nContent-Type: multipart/mixed; boundary="zz"\r\n\r\n'
    b"--zz\r\nContent-Type: text/plain\r\n\r\npart one\r\n--z\r\nno end\r\n",
    "missing headers": b"\r\njust a body\r\n",
    "no body, no blank line": b"Subject: only headers",
    "100 KB header": b"Subject: big\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\nbody\r\n",
    "many headers": b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\nbody\r\n",
    "NUL bytes": b"Subject: nul\x00here\r\nX-PM-Tag: t\x00g\r\n\r\nbody\x00\x00\r\n",
    "bare LF": b"Subject: lf\nX-PM-Tag: t\nBcc: b@example.net\n\nbody\n",
    "header without colon": b"Subject: x\r\nnot a header line\r\n\r\nbody\r\n",
    "empty": b"",
}


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(AWKWARD))
def test_awkward_messages_are_processed_without_an_exception(server, name):
    raw = AWKWARD[name]
    submission = submit(server, raw)
    status = process_submission(submission.pk)
    assert status in ("processed", "failed")
    for bounce in Bounce.objects.all():
        assert "ErrorCode" in bounce.content
    out = OutboundMessage.objects.filter(message_id=submission.message_id).first()
    if out is not None:
        content = bytes(out.content)
        assert b"X-PM-" not in content and b"Bcc:" not in content
        # The body after the header block is untouched.
        for marker in (b"body", "Zaż".encode("iso-8859-2"), b"part one"):
            if marker in raw:
                assert marker in content
