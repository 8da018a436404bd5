"""The bodies and attachments of an inbound message, read with the ``email`` package's most
forgiving policy (compat32) and decoded explicitly (``inbound.text``).

``read_parts`` walks the MIME tree without recursion, depth and part count bounded: the first
text/plain and text/html parts that are not attachments become the bodies (further ones are
appended), every other leaf is an attachment (a TNEF ``winmail.dat``, a calendar invite, an
attached message, an inline image with its ContentID). A part that cannot be decoded is kept as
an attachment of its raw bytes, so nothing of a broken message is lost.
"""

import contextlib
import email
import mimetypes
from dataclasses import dataclass, field
from email import policy
from email.message import Message

from core import encoded_words
from inbound.text import decode

MAX_PARTS = 1000
MAX_DEPTH = 50


@dataclass
class Attachment:
    name: str
    content_type: str
    content: bytes
    content_id: str = ""


@dataclass
class Parts:
    text: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)


def parse_message(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=policy.compat32)


def read_parts(msg: Message) -> Parts:
    """The message's bodies and attachments, in document order."""
    parts = Parts()
    todo: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while todo and seen < MAX_PARTS:
        part, depth = todo.pop()
        seen += 1
        payload = part.get_payload()
        if isinstance(payload, list) and part.get_content_maintype() == "multipart":
            if depth < MAX_DEPTH:
                children = [(p, depth + 1) for p in payload if isinstance(p, Message)]
                todo.extend(reversed(children))
            continue
        try:
            _read_leaf(part, parts, top=part is msg)
        except Exception:  # a part too broken to read: kept whole, as it came
            parts.attachments.append(_raw_attachment(part, len(parts.attachments)))
    return parts


def _read_leaf(part: Message, parts: Parts, top: bool) -> None:
    ctype = _content_type(part)
    disposition = (part.get_content_disposition() or "").lower()
    name = filename(part)
    if ctype in ("text/plain", "text/html") and disposition != "attachment" and not name:
        text = decode(_payload(part), _charset(part))
        (parts.text if ctype == "text/plain" else parts.html).append(text)
        return
    if ctype == "message/rfc822" or isinstance(part.get_payload(), list):
        content = _message_bytes(part)
    else:
        content = _payload(part)
    content_id = ""
    if disposition != "attachment":
        content_id = _header(part, "Content-ID").strip().strip("<>")
    if not name:
        name = _default_name(part, ctype, len(parts.attachments))
    parts.attachments.append(Attachment(name, ctype, content, content_id))


def _content_type(part: Message) -> str:
    ctype = part.get_content_type()
    major, slash, minor = ctype.partition("/")
    if major and minor and "/" not in minor and len(ctype) <= 255 and ctype.isascii():
        return ctype
    return "application/octet-stream"


def _charset(part: Message) -> str:
    try:
        return part.get_content_charset() or ""
    except Exception:
        return ""


def _payload(part: Message) -> bytes:
    """The transfer-decoded bytes (base64 and quoted-printable read leniently, as compat32
    does); the bytes as they came when the encoding is unknown."""
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload.encode("ascii", "surrogateescape")
    return b""


def _message_bytes(part: Message) -> bytes:
    """An attached message (message/rfc822), serialised back."""
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if isinstance(inner, Message):
        with contextlib.suppress(Exception):
            return inner.as_bytes(policy=policy.compat32)
    return _payload(part)


def _header(part: Message, name: str) -> str:
    value = part.get(name)
    if value is None:
        return ""
    return header_text(str(value))


def header_text(value: str) -> str:
    """A header value from the email package (8-bit bytes as surrogate escapes) as text: the
    bytes decoded (``inbound.text``), unfolded, RFC 2047 words decoded."""
    if any("\udc80" <= c <= "\udcff" for c in value):
        value = decode(value.encode("ascii", "surrogateescape"))
    value = " ".join(value.split())
    if "=?" in value:
        with contextlib.suppress(Exception):
            value = encoded_words.decode(value)
    return value.replace("\x00", "")


def filename(part: Message) -> str:
    """The part's file name: Content-Disposition's filename (RFC 2231 decoded by the email
    package) or Content-Type's name, RFC 2047 words decoded."""
    try:
        name = part.get_filename() or part.get_param("name") or ""
    except Exception:
        return ""
    if isinstance(name, tuple):  # an RFC 2231 value the email package left undecoded
        name = email.utils.collapse_rfc2231_value(name)
    return header_text(str(name))[:255]


def _default_name(part: Message, ctype: str, index: int) -> str:
    if ctype == "message/rfc822":
        return "message.eml"
    if ctype == "text/calendar":
        return "invite.ics"
    extension = mimetypes.guess_extension(ctype) or ".bin"
    return f"attachment-{index + 1}{extension}"


def _raw_attachment(part: Message, index: int) -> Attachment:
    try:
        content = part.as_bytes(policy=policy.compat32)
    except Exception:
        payload = part.get_payload()
        content = payload.encode("ascii", "surrogateescape") if isinstance(payload, str) else b""
    return Attachment(f"part-{index + 1}.bin", "application/octet-stream", content)
