"""Parsing inbound mail into Postmark's inbound JSON: every field, the real-world corpus, the
worst inputs (bounded time, no crash), and a property test over arbitrary bytes."""

import base64
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from inbound.parsing import parse, post_body
from inbound.text import decode, guess

CORPUS = Path(__file__).parent / "corpus"
RCPT = "0123456789abcdef0123456789abcdef+box-7@inbound.example.net"
FIELDS = {
    "From", "FromName", "FromFull", "To", "ToFull", "Cc", "CcFull", "Bcc", "BccFull",
    "OriginalRecipient", "ReplyTo", "Subject", "Date", "MailboxHash", "TextBody", "HtmlBody",
    "StrippedTextReply", "Tag", "Headers", "Attachments",
}  # fmt: skip


def parsed(name: str, rcpt: str = RCPT) -> dict:
    return parse((CORPUS / name).read_bytes(), rcpt, "sender@bounce.example").payload


def names(payload) -> list[tuple]:
    return [(a["Name"], a["ContentType"], a["ContentID"]) for a in payload["Attachments"]]


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.eml")), ids=lambda p: p.name)
def test_every_message_of_the_corpus_parses(path):
    raw = path.read_bytes()
    payload = parse(raw, RCPT, "sender@bounce.example").payload
    assert set(payload) == FIELDS
    assert payload["OriginalRecipient"] == RCPT
    assert payload["MailboxHash"] == "box-7"
    assert payload["Headers"][0] == {"Name": "Return-Path", "Value": "<sender@bounce.example>"}
    for item in [payload["FromFull"], *payload["ToFull"], *payload["CcFull"]]:
        assert set(item) == {"Email", "Name", "MailboxHash"}
        assert " " not in item["Email"] and "@" in item["Email"]
    body = post_body(payload, raw, raw_email=True)
    for described, posted in zip(payload["Attachments"], body["Attachments"], strict=True):
        assert len(base64.b64decode(posted["Content"])) == described["ContentLength"]
    assert body["RawEmail"]


def test_outlook_reply():
    payload = parsed("outlook_reply.eml")
    assert payload["FromFull"] == {
        "Email": "joerg.mueller@contoso.example", "Name": "Jörg Müller", "MailboxHash": ""
    }  # fmt: skip
    assert payload["ToFull"][0]["MailboxHash"] == "T-1842"
    assert payload["CcFull"] == [
        {"Email": "anna.smith@contoso.example", "Name": "Smith, Anna", "MailboxHash": ""}
    ]
    assert payload["Cc"] == '"Smith, Anna" <anna.smith@contoso.example>'
    assert "danke für die schnelle Hilfe" in payload["TextBody"]
    assert payload["StrippedTextReply"].endswith("Viele Grüße\nJörg")
    assert "Sent:" not in payload["StrippedTextReply"]
    assert payload["HtmlBody"].startswith("<html>")
    assert names(payload) == [("image001.png", "image/png", "image001.png@01DA28F1.5C8E2B40")]
    assert payload["Date"] == "Mon, 7 Dec 2026 08:12:41 +0000"
    assert {"Name": "Thread-Index", "Value": "AdnK3h0q3zj4m1nXQ6K1bH7Xb8l9YQ=="} in payload[
        "Headers"
    ]
    # Given as fields of their own, as Postmark does.
    assert not {"From", "To", "Cc", "Subject", "Date"} & {h["Name"] for h in payload["Headers"]}


def test_gmail_reply():
    payload = parsed("gmail_reply.eml")
    assert payload["StrippedTextReply"] == (
        "Hi, the tracking link doesn\u2019t work. Can you check?\n\nMaria"
    )
    assert "> Your order #77 has shipped." in payload["TextBody"]
    assert 'class="gmail_quote"' in payload["HtmlBody"]


def test_forwarded_message_and_rfc2231_names():
    payload = parsed("forwarded.eml")
    assert names(payload) == [
        ("Invoice 2026-117.eml", "message/rfc822", ""),
        ("Rechnung 2026-117 ü.pdf", "application/pdf", ""),
    ]
    assert payload["StrippedTextReply"] == ""  # a forward is not a reply
    content = base64.b64decode(
        post_body(payload, (CORPUS / "forwarded.eml").read_bytes(), raw_email=False)["Attachments"][
            0
        ]["Content"]
    )
    assert b"Subject: Invoice 2026-117" in content


def test_calendar_invite_is_kept():
    payload = parsed("calendar_invite.eml")
    assert names(payload) == [
        ("invite.ics", "text/calendar", ""),
        ("invite.ics", "application/ics", ""),
    ]
    assert payload["TextBody"].startswith("You have been invited")
    assert "<b>Weekly sync</b>" in payload["HtmlBody"]


def test_winmail_dat_is_an_attachment():
    payload = parsed("winmail_dat.eml")
    assert names(payload) == [("winmail.dat", "application/ms-tnef", "")]
    raw = (CORPUS / "winmail_dat.eml").read_bytes()
    content = base64.b64decode(
        post_body(payload, raw, raw_email=False)["Attachments"][0]["Content"]
    )
    assert content.startswith(bytes.fromhex("789f3e22"))


def test_inline_image_has_its_content_id():
    payload = parsed("inline_image.eml")
    assert names(payload) == [("attachment-1.png", "image/png", "logo@studio.example")]
    assert payload["TextBody"] == "Here is the new logo:"  # derived from the HTML part


def test_html_only_text_is_derived():
    payload = parsed("html_only.eml")
    assert payload["Subject"] == "\U0001f389 Weekly digest"
    assert payload["TextBody"] == "Digest\nFirst item & second\n\nBye"
    assert "alert" not in payload["TextBody"]


def test_eight_bit_iso_8859_2_without_a_charset():
    payload = parsed("iso_8859_2_8bit.eml")
    assert payload["Subject"] == "Zażółć gęślą jaźń"
    assert "Příliš žluťoučký kůň úpěl ďábelské ódy." in payload["TextBody"]


def test_broken_mime_loses_nothing_readable():
    payload = parsed("broken_mime.eml")
    assert payload["From"] == "broken@sender.example"
    assert [t["Email"] for t in payload["ToFull"]] == ["weird@intake.example"]
    assert payload["Subject"] == "=?utf-8?q?unterminated encoded word"
    assert payload["TextBody"] == "Hello world"
    assert payload["HtmlBody"].startswith("<p>unclosed html")
    assert [a["ContentType"] for a in payload["Attachments"]] == ["application/octet-stream"]


def test_bcc_only_when_the_recipient_is_in_neither_to_nor_cc():
    raw = f"From: a@b.example\r\nTo: Support <{RCPT.upper()}>\r\n\r\nhi\r\n".encode()
    payload = parse(raw, RCPT).payload
    assert (payload["Bcc"], payload["BccFull"]) == ("", [])
    raw = b"From: a@b.example\r\nTo: someone@else.example\r\n\r\nhi\r\n"
    payload = parse(raw, RCPT).payload
    assert payload["Bcc"] == RCPT
    assert payload["BccFull"] == [{"Email": RCPT, "Name": "", "MailboxHash": "box-7"}]


def test_no_from_header_falls_back_to_the_envelope_sender():
    payload = parse(b"Subject: x\r\n\r\nhi\r\n", RCPT, "env@sender.example").payload
    assert payload["FromFull"]["Email"] == "env@sender.example"
    assert payload["From"] == "env@sender.example"


def test_encoded_word_names_with_commas_and_reply_to():
    raw = (
        b"From: =?utf-8?q?Doe,_J=C3=B6hn?= <john+x@example.com>\r\n"
        b"Reply-To: Desk <desk@example.com>\r\n"
        b"Subject: =?iso-8859-2?q?=AF=F3=B3=E6?=\r\n\r\nhi\r\n"
    )
    payload = parse(raw, RCPT).payload
    assert payload["FromFull"] == {
        "Email": "john+x@example.com",
        "Name": "Doe, Jöhn",
        "MailboxHash": "x",
    }
    assert payload["FromName"] == "Doe, Jöhn"
    assert payload["ReplyTo"] == "Desk <desk@example.com>"
    assert payload["Subject"] == "Żółć"


def test_spam_score_from_an_upstream_filter():
    raw = b"From: a@b.example\r\nX-Spam-Status: Yes, score=12.3 required=5.0\r\n\r\nx\r\n"
    assert parse(raw, RCPT).spam_score == 12.3
    raw = b"From: a@b.example\r\nX-Spam-Score: 2.5 (++)\r\n\r\nx\r\n"
    assert parse(raw, RCPT).spam_score == 2.5
    assert parse(b"From: a@b.example\r\nX-Spam-Score: lots\r\n\r\nx", RCPT).spam_score is None


def test_bodies_are_capped(settings):
    settings.INBOUND_MAX_BODY_CHARS = 1000
    raw = b"From: a@b.example\r\n\r\n" + b"x" * 5000
    assert len(parse(raw, RCPT).payload["TextBody"]) == 1000


def test_charset_guesses():
    assert decode("Ça coûte 5 €".encode("cp1252")) == "Ça coûte 5 €"
    assert guess("Zażółć gęślą jaźń".encode("iso-8859-2")) == "iso-8859-2"
    assert decode(b"\x81\x8d\x8f\x90\x9d") == "\x81\x8d\x8f\x90\x9d"  # no byte is ever lost
    assert decode(b"nul\x00byte") == "nul\ufffdbyte"
    assert decode("déclaré".encode("latin-1"), "bogus-charset") == "déclaré"


@pytest.mark.parametrize(
    "raw",
    [
        b"Subject: " + b"=?utf-8?q?" * 20000 + b"\r\n\r\nx",
        b"To: " + b"a@b.example, " * 40000 + b"\r\n\r\nx",
        b"X-Folded: x" + b"\r\n y" * 100000 + b"\r\n\r\nx",
        b"Content-Type: multipart/mixed; boundary=a\r\n\r\n"
        + b"--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n" * 2000,
        b"Content-Type: text/plain\r\n\r\n" + b"> quoted line\r\n" * 200000,
        b"Subject: Re: x\r\nIn-Reply-To: <a@b>\r\n\r\n" + b"On wrote:" * 50000,
    ],
    ids=["words", "addresses", "folded", "nested", "long-body", "reply-markers"],
)
def test_the_worst_inputs_parse_in_bounded_time(raw):
    started = time.monotonic()
    parse(raw, RCPT)
    assert time.monotonic() - started < 10


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=3000) | st.text(max_size=2000).map(lambda t: t.encode("utf-8", "replace"))
)
def test_any_bytes_parse_without_error(raw):
    payload = parse(raw, RCPT, "s@x.example").payload
    assert set(payload) == FIELDS
    post_body(payload, raw, raw_email=True)


MIME_PIECES = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"Content-Type: text/plain; charset=iso-8859-2\r\n",
        b"Content-Type: text/html\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Content-Disposition: attachment; filename*=utf-8''%C5%BC.txt\r\n",
        b"Content-ID: <x@y>\r\n",
        b"From: =?utf-8?b?w7w=?= <a@b.example>\r\n",
        b"\r\n",
        b"--b\r\n",
        b"--b--\r\n",
        b"SGVsbG8=\r\n",
        b"=C5=BC=\r\n",
        "żółć\r\n".encode("iso-8859-2"),
    ]
)


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MIME_PIECES, max_size=40).map(b"".join))
def test_mime_shaped_bytes_parse_without_error(raw):
    payload = parse(raw, RCPT).payload
    body = post_body(payload, raw, raw_email=False)
    assert len(body["Attachments"]) == len(payload["Attachments"])
