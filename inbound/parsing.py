"""An inbound message as Postmark's inbound JSON (compat §13.1).

``parse`` reads the header at the byte level (``core.mime``: linear in its size however it is
folded), decodes every value explicitly (``inbound.text``: 8-bit headers in an undeclared charset
included), and the bodies and attachments with the email package (``inbound.mimeparts``). It never
raises for what a message holds: a part it cannot read is kept as an attachment of its bytes.

The result is split in two: ``payload``, the JSON as stored and shown by the API (attachments
without their ``Content``, text parts capped), and ``contents``, the attachments' bytes, which are
read again from the raw message when the webhook is posted (``post_body``) rather than stored
twice.
"""

import base64
import contextlib
import re
from dataclasses import dataclass, field
from email.utils import getaddresses

from django.conf import settings

from core import encoded_words
from core.mime import fields, header_name, split_message
from inbound.addresses import mailbox_hash
from inbound.mimeparts import Attachment, parse_message, read_parts
from inbound.text import decode, html_to_text

# Headers Postmark gives as fields of their own rather than in ``Headers``.
SEPARATE = {"from", "to", "cc", "bcc", "subject", "date", "reply-to"}
# A reply's subject prefix in the languages mail clients write it in.
REPLY_SUBJECT = re.compile(r"^\s*(re|aw|sv|vs|odp|antw|rif|res|r)\s*(\[\d+\])?\s*:", re.I)
ENCODED_WORD = re.compile(r"=\?[^?\s]{1,75}\?[bBqQ]\?[^?\s]*\?=")
WORD_MARK = "QxEWx"
# What ``FromFull``/``ToFull`` list as an Email (clients validate it): local@domain, no spaces.
ADDR_SPEC = re.compile(r"[^\s<>@,;]{1,255}@[^\s<>@,;()\[\]]{1,253}")
HIDDEN_WORD = re.compile(WORD_MARK + r"(\d+)" + WORD_MARK)
SPAM_STATUS_SCORE = re.compile(r"\bscore=(-?\d+(?:\.\d+)?)", re.I)


@dataclass
class Inbound:
    """One parsed inbound message: the JSON and what the listing filters on."""

    payload: dict
    contents: list[bytes] = field(default_factory=list)
    spam_score: float | None = None

    def __getitem__(self, key):
        return self.payload[key]


def parse(raw: bytes, recipient: str, mail_from: str = "") -> Inbound:
    """Postmark's inbound JSON for ``raw`` received for the envelope ``recipient`` from the
    envelope sender ``mail_from`` (without MessageID, MessageStream and RawEmail, which
    depend on where it is stored and for whom)."""
    header_block, _, _ = split_message(raw)
    headers: list[tuple[str, str]] = []  # (name as written, decoded value)
    raw_values: dict[str, str] = {}  # first value of each name, 8-bit decoded, words not
    for lower, raw_field in fields(header_block):
        if not lower:
            continue
        _, _, value = raw_field.partition(b":")
        text = " ".join(decode(value).split())
        raw_values.setdefault(lower, text)
        headers.append((header_name(raw_field), _words(text)))

    first = {}
    for name, value in headers:
        first.setdefault(name.lower(), value)

    from_list = _addresses(raw_values.get("from", ""))
    sender = from_list[0] if from_list else _address("", mail_from)
    to_full = _addresses(raw_values.get("to", ""))
    cc_full = _addresses(raw_values.get("cc", ""))
    named = {item["Email"].lower() for item in to_full + cc_full}
    bcc_full = []
    if recipient and recipient.lower() not in named:
        bcc_full = [_address("", recipient)]

    msg = parse_message(raw)
    parts = read_parts(msg)
    text_body = "\n".join(parts.text)
    html_body = "\n".join(parts.html)
    if not parts.text and html_body:
        text_body = html_to_text(html_body)
    cap = settings.INBOUND_MAX_BODY_CHARS
    subject = first.get("subject", "")
    is_reply = bool(first.get("in-reply-to") or first.get("references"))
    is_reply = is_reply or bool(REPLY_SUBJECT.match(subject))
    stripped = stripped_reply(text_body) if is_reply and parts.text else ""

    payload = {
        "From": sender["Email"],
        "FromName": sender["Name"],
        "FromFull": sender,
        "To": first.get("to", ""),
        "ToFull": to_full,
        "Cc": first.get("cc", ""),
        "CcFull": cc_full,
        "Bcc": recipient if bcc_full else "",
        "BccFull": bcc_full,
        "OriginalRecipient": recipient,
        "ReplyTo": first.get("reply-to", ""),
        "Subject": subject,
        "Date": first.get("date", ""),
        "MailboxHash": mailbox_hash(recipient),
        "TextBody": text_body[:cap],
        "HtmlBody": html_body[:cap],
        "StrippedTextReply": stripped[:cap],
        "Tag": "",
        "Headers": [{"Name": "Return-Path", "Value": f"<{mail_from}>"}]
        + [{"Name": n, "Value": v} for n, v in headers if n.lower() not in SEPARATE],
        "Attachments": [_described(a) for a in parts.attachments],
    }
    return Inbound(payload, [a.content for a in parts.attachments], spam_score(first))


def _words(text: str) -> str:
    """RFC 2047 encoded words decoded (linear time); the text as it is when they are broken."""
    if "=?" in text:
        with contextlib.suppress(Exception):
            text = encoded_words.decode(text)
    return text.replace("\x00", "")


def _address(name: str, email: str) -> dict:
    return {"Email": email, "Name": name, "MailboxHash": mailbox_hash(email) if email else ""}


def _addresses(value: str) -> list[dict]:
    """``{Email, Name, MailboxHash}`` of each address in an address header (read before its
    encoded words are decoded, so a comma inside a decoded name cannot split it)."""
    if not value:
        return []
    words: list[str] = []

    def hide(match):
        words.append(match.group(0))
        return f"{WORD_MARK}{len(words) - 1}{WORD_MARK}"

    if "=?" in value:  # a comma inside an encoded word must not split the address
        value = ENCODED_WORD.sub(hide, value.replace(WORD_MARK, ""))
    try:
        pairs = getaddresses([value])
    except Exception:
        return []
    found = []
    for name, email in pairs:
        if ADDR_SPEC.fullmatch(email) and WORD_MARK not in email:
            if words:
                name = HIDDEN_WORD.sub(lambda m: words[int(m.group(1))], name)
            found.append(_address(_words(name), email))
    return found


def _described(attachment: Attachment) -> dict:
    return {
        "Name": attachment.name,
        "ContentType": attachment.content_type,
        "ContentLength": len(attachment.content),
        "ContentID": attachment.content_id,
    }


def spam_score(headers: dict[str, str]) -> float | None:
    """The score an upstream filter wrote: X-Spam-Score, else X-Spam-Status's ``score=``."""
    for value, pattern in (
        (headers.get("x-spam-score", ""), None),
        (headers.get("x-spam-status", ""), SPAM_STATUS_SCORE),
    ):
        if pattern is not None:
            match = pattern.search(value)
            value = match.group(1) if match else ""
        with contextlib.suppress(ValueError):
            score = float(value.strip().split()[0]) if value.strip() else None
            if score is not None and -1000 < score < 1000:
                return score
    return None


_reply_parser = None
# mail-parser-reply's patterns take time that grows much faster than a line's length: it reads
# at most REPLY_LINES lines, and a line longer than REPLY_LINE_CHARS (no attribution line is)
# stands in as a short placeholder, restored in the result. Its worst case stays near a second.
REPLY_LINES = 400
REPLY_LINE_CHARS = 160
PLACEHOLDER = re.compile(r"\[\[long line (\d+)\]\]")


def stripped_reply(text: str) -> str:
    """The new text of a reply, without the quoted history (mail-parser-reply, in the
    INBOUND_REPLY_LANGUAGES); the whole text when no quoted history is found."""
    global _reply_parser
    from mailparser_reply import EmailReplyParser

    if _reply_parser is None:
        _reply_parser = EmailReplyParser(languages=list(settings.INBOUND_REPLY_LANGUAGES))
    lines = text.replace("\r\n", "\n").split("\n")
    long_lines: list[str] = []
    sample = []
    for line in lines[:REPLY_LINES]:
        if len(line) > REPLY_LINE_CHARS:
            long_lines.append(line)
            line = f"[[long line {len(long_lines) - 1}]]"
        sample.append(line)
    try:
        read = _reply_parser.read(text="\n".join(sample))
        found = len(read.replies) > 1
        reply = read.latest_reply or "" if found else ""
    except Exception:
        found, reply = False, ""
    if not found:
        return text.strip()
    if long_lines:
        reply = PLACEHOLDER.sub(lambda m: long_lines[int(m.group(1))], reply)
    return reply.strip()


def post_body(payload: dict, raw: bytes, *, raw_email: bool) -> dict:
    """The JSON to POST: the stored ``payload`` with the attachments' ``Content`` read again
    from ``raw`` (and ``RawEmail`` when the server's RawEmailEnabled is on)."""
    body = dict(payload)
    parts = read_parts(parse_message(raw)) if payload.get("Attachments") else None
    attachments = []
    for index, described in enumerate(payload.get("Attachments", [])):
        content = b""
        if parts is not None and index < len(parts.attachments):
            content = parts.attachments[index].content
        attachments.append(
            {
                "Name": described["Name"],
                "Content": base64.b64encode(content).decode("ascii"),
                "ContentType": described["ContentType"],
                "ContentLength": described["ContentLength"],
                "ContentID": described["ContentID"],
            }
        )
    body["Attachments"] = attachments
    if raw_email:
        body["RawEmail"] = decode(raw)
    return body
