"""The HTTP send API's translation: one Postmark JSON message (compat §5) → a MIME message built
with the standard library's ``email.message.EmailMessage`` → the submission it is accepted as.

Only the protocol is translated here. What the message's fields mean for sending — the stream,
tag, metadata, tracking, the recipient limit, inactive recipients, the sender — is decided by
processing (``messages.processing``) from the headers it reads, exactly as for a message that
came over SMTP: ``Tag`` becomes ``X-PM-Tag``, ``Metadata`` ``X-PM-Metadata-*``, ``TrackOpens``
``X-PM-TrackOpens``, ``TrackLinks`` ``X-PM-TrackLinks`` and ``MessageStream``
``X-PM-Message-Stream``. What this module refuses is what only JSON can get wrong: field types,
addresses in Postmark's exact words (ErrorCode 300), a message with no body, attachments that are
not base64, and the size.
"""

import base64
import binascii
import email.utils
import ipaddress
import mimetypes
import quopri
import re
import uuid
from dataclasses import dataclass
from email.message import EmailMessage

from django.conf import settings
from django.utils import timezone

from api.addresses import (
    MAX_UNUSUAL_ADDRESS_FIELD,
    address_count,
    address_header,
    address_problem,
    is_plain_list,
    split_addresses,
)
from api.headerfields import ComposingPolicy, address_value, text_value
from api.text import quoted
from domains.from_rule import FromProblem, parse_from_value
from messages import processing
from messages.models import Submission
from streams.models import CredentialKind, Endpoint

INVALID_EMAIL = 300
INVALID_JSON = 402
INVALID_FIELDS = 403
TOO_LARGE = 413

# Bodies are 7-bit clean (quoted-printable or base64 where needed), lines CRLF-terminated: any
# next hop takes them, with or without 8BITMIME. Header fields are folded by ``api.headerfields``.
POLICY = ComposingPolicy(linesep="\r\n", cte_type="7bit")


class _WrittenPolicy(ComposingPolicy):
    """POLICY for a message that is only written out (no attachments, so no content-manager
    calls): a header stored as written (``set_header``) is read back as its text, as the
    generator needs, instead of being parsed into a header object first."""

    def header_fetch_parse(self, name, value):
        return value if hasattr(value, "name") else "".join(value.splitlines())


WRITTEN_POLICY = _WrittenPolicy(linesep="\r\n", cte_type="7bit")
# Headers the message's structure owns: a custom header of these names is left out.
STRUCTURAL_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "subject", "date", "mime-version", "content-type",
     "content-transfer-encoding", "content-disposition"}
)  # fmt: skip
# Postmark's limit (in UTF-16 code units, as Postmark counts them).
MAX_SUBJECT_LENGTH = 2000
# The header fields a message composed here may have, all together: room for 50 recipients with
# long names, the longest subject, metadata and custom headers.
MAX_HEADER_BLOCK = 64 * 1024
# RFC 5322's field names: printable ASCII but the colon, here at most 76 characters (so that the
# name and a word fit on a line).
HEADER_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")
MAX_HEADER_NAME_LENGTH = 76
# Fields whose value is a list of addresses, also when given as a custom header.
ADDRESS_HEADERS = frozenset(
    {"sender", "reply-to", "resent-from", "resent-sender", "resent-to", "resent-cc", "resent-bcc"}
)
LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029\x00]+")
# Text a 7bit body may hold as it is: printable ASCII, tab and line breaks.
SEVEN_BIT_SAFE = re.compile(r"^[\t\n\x20-\x7e]*$")
NO_BODY = "Provide either email TextBody or HtmlBody or both."
ZERO_RECIPIENTS = "Zero recipients specified"


class Refused(Exception):
    """A message the API refuses before processing, with Postmark's ErrorCode."""

    def __init__(self, error_code: int, message: str, http_status: int = 422):
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.http_status = http_status


@dataclass
class Composed:
    raw: bytes
    mail_from: str
    recipients: list[str]
    to: str  # the To field as given, echoed in the answer


class Fields:
    """A message's JSON fields, with names in any letter case; null means absent."""

    def __init__(self, item):
        if not isinstance(item, dict):
            raise Refused(
                INVALID_JSON, "Received invalid JSON input: a message must be a JSON object."
            )
        self.values = {str(k).lower(): v for k, v in item.items()}

    def get(self, name: str):
        return self.values.get(name.lower())

    def text(self, name: str) -> str:
        """A string field ('' when absent); numbers and booleans are taken as their text."""
        value = self.get(name)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        if not isinstance(value, str):
            raise Refused(INVALID_FIELDS, f"The '{name}' field must be a string.")
        return value


def one_line(value: str) -> str:
    """A header value on one line: line breaks — every character ``str.splitlines`` breaks at,
    which the email package refuses in a header — and NUL become spaces."""
    return LINE_BREAKS.sub(" ", value).strip()


def parse_addresses(fields: Fields, name: str, header: str) -> list[tuple[str, str]]:
    """(display name, addr-spec) of each address in a field ("Joe <joe@example.com>, …"); a list
    of strings is taken as well. Raises Refused (300) for the first bad address."""
    value = fields.get(name)
    if value is None or value == "":
        return []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = ", ".join(value)
    if not isinstance(value, str):
        raise Refused(INVALID_EMAIL, f"Invalid '{header}' address: '{quoted(value)}'.")
    line = one_line(value)
    if len(line) > MAX_UNUSUAL_ADDRESS_FIELD and not is_plain_list(line):
        raise Refused(
            INVALID_EMAIL,
            f"Invalid '{header}' address: '{quoted(value)}'. A field that is not a list of plain "
            'addresses (a@example.com, Name <a@example.com>, "Name" <a@example.com>) may be at '
            f"most {MAX_UNUSUAL_ADDRESS_FIELD} characters.",
        )
    try:
        pairs = split_addresses(line)
    except Exception:  # the parser's own failures on hostile input
        raise Refused(INVALID_EMAIL, f"Invalid '{header}' address: '{quoted(value)}'.") from None
    found = []
    for display_name, addr in pairs:
        if not addr:
            if display_name:
                raise Refused(
                    INVALID_EMAIL, f"Invalid '{header}' address: '{quoted(display_name)}'."
                )
            continue
        problem = address_problem(header, addr)
        if problem:
            raise Refused(INVALID_EMAIL, problem)
        found.append((display_name, addr))
    return found


def from_field(fields: Fields) -> tuple[str, str]:
    """(display name, addr-spec) of the ``From`` field: one mailbox, read by the From rule every
    channel shares (``domains.from_rule``), or Refused (300) in Postmark's words."""
    value = fields.get("From")
    if not isinstance(value, str):
        raise Refused(INVALID_EMAIL, f"Invalid 'From' address: '{quoted(value or '')}'.")
    sender = parse_from_value(value.strip())
    if isinstance(sender, FromProblem):
        raise Refused(sender.error_code, sender.message)
    # An international domain is written as its A-labels: the header stays ASCII.
    address = sender.addr_spec if sender.domain.isascii() else sender.address
    return one_line(sender.display_name), address


def check_counts(fields: Fields) -> None:
    """Refuse, before any address is read, a message naming more recipients than a message may
    have (To, Cc and Bcc together), or more Reply-To addresses than that."""
    limit = settings.SMTP_MAX_RECIPIENTS
    listed = sum(address_count(fields.get(name)) for name in ("To", "Cc", "Bcc"))
    if listed > limit:
        problem = processing.too_many_recipients(listed)
        raise Refused(problem.error_code, problem.message)
    reply_to = address_count(fields.get("ReplyTo"))
    if reply_to > limit:
        raise Refused(
            INVALID_EMAIL,
            f"Invalid email request: 'ReplyTo' may name at most {limit} addresses, this one "
            f"names {reply_to}.",
        )


def _attachments(fields: Fields) -> list[tuple[str, bytes, str, str]]:
    """(name, content, content type, content ID) of each attachment."""
    value = fields.get("Attachments")
    if value is None:
        return []
    if not isinstance(value, list):
        raise Refused(INVALID_FIELDS, "The 'Attachments' field must be a list.")
    found = []
    for entry in value:
        attachment = Fields(entry) if isinstance(entry, dict) else None
        if attachment is None:
            raise Refused(
                INVALID_FIELDS, "Each attachment must be an object with Name and Content."
            )
        name = one_line(attachment.text("Name")) or "attachment"
        try:
            content = base64.b64decode(
                re.sub(r"\s+", "", attachment.text("Content")), validate=True
            )
        except (binascii.Error, ValueError):
            raise Refused(
                INVALID_EMAIL,
                f"Invalid email request: the Content of attachment '{quoted(name)}' is not base64.",
            ) from None
        content_type = one_line(attachment.text("ContentType")).lower()
        if not re.match(r"^[a-z0-9][\w.+-]*/[a-z0-9][\w.+-]*$", content_type):
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        content_id = one_line(attachment.text("ContentID"))
        if content_id.lower().startswith("cid:"):
            content_id = content_id[4:]
        found.append((name, content, content_type, content_id.strip("<>")))
    return found


def _custom_headers(fields: Fields) -> list[tuple[str, str]]:
    value = fields.get("Headers")
    if value is None:
        return []
    if isinstance(value, dict):  # liberal: {"Name": "Value"}
        value = [{"Name": k, "Value": v} for k, v in value.items()]
    if not isinstance(value, list):
        raise Refused(INVALID_FIELDS, "The 'Headers' field must be a list of {Name, Value}.")
    found = []
    for entry in value:
        header = Fields(entry) if isinstance(entry, dict) else None
        if header is None:
            raise Refused(INVALID_FIELDS, "Each header must be an object with Name and Value.")
        name = header.text("Name").strip()
        if len(name) > MAX_HEADER_NAME_LENGTH:
            raise Refused(
                INVALID_EMAIL,
                f"Invalid email request: the header name '{quoted(name)}' is longer than "
                f"{MAX_HEADER_NAME_LENGTH} characters.",
            )
        if not HEADER_NAME.match(name):
            raise Refused(
                INVALID_EMAIL, f"Invalid email request: '{quoted(name)}' is not a header name."
            )
        if name.lower() not in STRUCTURAL_HEADERS:
            found.append((name, one_line(header.text("Value"))))
    return found


def _metadata(fields: Fields) -> list[tuple[str, str]]:
    value = fields.get("Metadata")
    if value is None:
        return []
    if not isinstance(value, dict):
        raise Refused(INVALID_EMAIL, "Invalid metadata content: Metadata must be an object.")
    found, seen = [], set()
    for key, field_value in value.items():
        if key.lower() in seen:  # over SMTP a number is appended; the API refuses
            raise Refused(
                INVALID_EMAIL,
                f"Invalid metadata content: the key '{quoted(key)}' is given twice (keys are "
                "compared in any letter case).",
            )
        seen.add(key.lower())
        if not HEADER_NAME.match(key):
            raise Refused(
                INVALID_EMAIL,
                f"Invalid metadata content: the key '{quoted(key)}' may hold only printable "
                "ASCII characters, no spaces and no colon.",
            )
        if isinstance(field_value, dict | list):
            raise Refused(
                INVALID_EMAIL,
                f"Invalid metadata content: the value of '{quoted(key)}' is not text.",
            )
        text = "" if field_value is None else Fields({"v": field_value}).text("v")
        found.append((f"X-PM-Metadata-{key}", one_line(text)))
    return found


def _pm_headers(fields: Fields) -> list[tuple[str, str]]:
    """Postmark's fields as the X-PM-* headers processing reads (over SMTP too)."""
    headers = []
    for field, header in (
        ("MessageStream", "X-PM-Message-Stream"),
        ("Tag", "X-PM-Tag"),
        ("TrackOpens", "X-PM-TrackOpens"),
        ("TrackLinks", "X-PM-TrackLinks"),
    ):
        value = one_line(fields.text(field))
        if value:
            headers.append((header, value))
    return headers + _metadata(fields)


def compose(item) -> Composed:
    """The MIME message for one JSON message, or Refused. Recipients are counted before any
    address is read, and every step is linear in the message's size."""
    fields = Fields(item)
    check_counts(fields)
    sender = from_field(fields)
    to = parse_addresses(fields, "To", "To")
    cc = parse_addresses(fields, "Cc", "Cc")
    bcc = parse_addresses(fields, "Bcc", "Bcc")
    reply_to = parse_addresses(fields, "ReplyTo", "Reply-To")
    if not (to or cc or bcc):
        raise Refused(INVALID_EMAIL, ZERO_RECIPIENTS)
    text_body, html_body = fields.text("TextBody"), fields.text("HtmlBody")
    if not (text_body or html_body):
        raise Refused(INVALID_EMAIL, NO_BODY)
    subject = one_line(fields.text("Subject"))
    if len(subject.encode("utf-16-le")) // 2 > MAX_SUBJECT_LENGTH:  # as Postmark counts
        raise Refused(
            INVALID_EMAIL,
            f"Invalid email request: The subject is longer than {MAX_SUBJECT_LENGTH} characters.",
        )
    headers = _pm_headers(fields) + _custom_headers(fields)
    attachments = _attachments(fields)
    size = len(text_body) + len(html_body) + sum(len(a[1]) for a in attachments)
    if size > settings.SMTP_MAX_MESSAGE_SIZE:
        raise too_large()
    message = EmailMessage(policy=POLICY if attachments else WRITTEN_POLICY)
    try:
        set_addresses(message, "From", [sender])
        if to:
            set_addresses(message, "To", to)
        if cc:
            set_addresses(message, "Cc", cc)
        if reply_to:
            set_addresses(message, "Reply-To", reply_to)
        if subject:
            set_header(message, "Subject", subject)
        set_header(message, "Date", email.utils.formatdate(usegmt=True))
        for name, value in headers:
            set_custom_header(message, name, value)
        if attachments:
            _add_bodies(message, text_body, html_body, attachments)
            for part in message.walk():
                if part is not message:
                    del part["MIME-Version"]  # EmailMessage gives every part one
            raw = message.as_bytes()
        else:
            boundary = _add_text_bodies(message, text_body, html_body)
            raw = written_bytes(message, boundary)
    except Refused:
        raise
    except Exception as exc:  # what the email package cannot represent
        raise Refused(INVALID_EMAIL, f"Invalid email request: {quoted(str(exc))}") from None
    if len(raw) > settings.SMTP_MAX_MESSAGE_SIZE:
        raise too_large()
    if raw.find(b"\r\n\r\n") > MAX_HEADER_BLOCK:
        raise Refused(
            INVALID_EMAIL,
            f"Invalid email request: the message's header fields (addresses, Subject, Tag, "
            f"Metadata and Headers together) take more than {MAX_HEADER_BLOCK} bytes.",
        )
    to_value = fields.get("To")
    return Composed(
        raw=raw,
        mail_from=sender[1],
        recipients=[addr for _, addr in to + cc + bcc],
        to=to_value if isinstance(to_value, str) else address_header(to),
    )


def too_large() -> Refused:
    limit = settings.SMTP_MAX_MESSAGE_SIZE
    return Refused(
        TOO_LARGE, f"The message is larger than the limit of {limit} bytes.", http_status=413
    )


def set_header(message: EmailMessage, name: str, value: str) -> None:
    """Set an unstructured header field (``value`` on one line): stored as written when it fits
    on the field's line, else folded, and encoded (RFC 2047) unless it is printable ASCII, by
    ``api.headerfields`` in linear time; never parsed by the header registry."""
    message.set_raw(name, text_value(name, value))


def set_addresses(message: EmailMessage, name: str, pairs: list[tuple[str, str]]) -> None:
    """Set an address field from checked (display name, addr-spec) pairs."""
    message.set_raw(name, address_value(name, pairs))


def set_custom_header(message: EmailMessage, name: str, value: str) -> None:
    """A header the client named: an address field (``Sender``, ``Resent-To`` …) whose value is
    a plain list of addresses is written as one; any other value as unstructured text."""
    if name.lower() in ADDRESS_HEADERS and not value.isascii() and is_plain_list(value):
        set_addresses(message, name, split_addresses(value))
    else:
        set_header(message, name, value)


def _add_text_bodies(message: EmailMessage, text: str, html: str) -> str | None:
    """The bodies of a message without attachments: text/plain, text/html, or both as
    multipart/alternative (its boundary is returned). Each part is encoded here (7bit when it
    can be, else quoted-printable, or base64 for mostly non-ASCII text) rather than by the
    content manager, whose header handling would cost several times the rest of the message."""
    message.set_raw("MIME-Version", "1.0")
    if not (text and html):
        _text_part(message, text or html, "plain" if text else "html")
        return None
    boundary = "=_" + uuid.uuid4().hex
    message.set_raw("Content-Type", f'multipart/alternative; boundary="{boundary}"')
    for body, subtype in ((text, "plain"), (html, "html")):
        part = EmailMessage(policy=WRITTEN_POLICY)
        _text_part(part, body, subtype)
        message.attach(part)
    return boundary


def written_bytes(message: EmailMessage, boundary: str | None = None) -> bytes:
    """``message.as_bytes()`` for a message built by ``_add_text_bodies``, byte for byte (a
    property test holds them equal), without the generator's work per line: each header folded
    by the policy as the generator folds it, then the body, whose lines end in LF, with CRLF."""
    fold = message.policy.fold_binary
    head = b"".join(fold(name, value) for name, value in message.raw_items()) + b"\r\n"
    if boundary is None:
        return head + message.get_payload().replace("\n", "\r\n").encode("ascii")
    delimiter = f"--{boundary}\r\n".encode("ascii")
    parts = (written_bytes(part) for part in message.get_payload())
    closing = f"\r\n--{boundary}--\r\n".encode("ascii")
    return head + delimiter + (b"\r\n" + delimiter).join(parts) + closing


def _text_part(part: EmailMessage, body: str, subtype: str) -> None:
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    lines = body.split("\n")
    if body.isascii() and SEVEN_BIT_SAFE.match(body) and max(map(len, lines)) <= 78:
        encoding, payload = "7bit", body
    else:
        data = body.encode("utf-8", "surrogateescape")
        if len(data) - len(body) > len(body) // 3:  # mostly non-ASCII: base64 is shorter
            encoding, payload = "base64", base64.encodebytes(data).decode("ascii")
        else:
            encoding, payload = "quoted-printable", quopri.encodestring(data).decode("ascii")
    if not payload.endswith("\n"):
        payload += "\n"
    part.set_raw("Content-Type", f'text/{subtype}; charset="utf-8"')
    part.set_raw("Content-Transfer-Encoding", encoding)
    part.set_payload(payload)


def _add_bodies(message: EmailMessage, text: str, html: str, attachments) -> None:
    """text/plain and text/html as alternatives; attachments with a ContentID beside the HTML
    (multipart/related, for inline images), the others attached (multipart/mixed)."""
    if text:
        message.set_content(text)
        if html:
            message.add_alternative(html, subtype="html")
    else:
        message.set_content(html, subtype="html")
    html_part = None
    if html:
        html_part = message.get_payload()[-1] if text else message
    # Inline parts first: once the message is multipart/mixed, its HTML root cannot take them.
    inline = [bool(a[3]) and html_part is not None for a in attachments]
    for (name, content, content_type, content_id), related in zip(attachments, inline, strict=True):
        if related:
            maintype, _, subtype = content_type.partition("/")
            html_part.add_related(
                content, maintype, subtype, cid=f"<{content_id}>", filename=name,
                disposition="inline",
            )  # fmt: skip
    for (name, content, content_type, content_id), related in zip(attachments, inline, strict=True):
        if related:
            continue
        maintype, _, subtype = content_type.partition("/")
        cid = f"<{content_id}>" if content_id else None
        message.add_attachment(content, maintype, subtype, filename=name, cid=cid)


def client_address(request) -> str:
    address = request.META.get("REMOTE_ADDR") or ""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return "0.0.0.0"  # noqa: S104 - a column value, not a listener


def submission_for(server, composed: Composed, request, token: str) -> Submission:
    """The durable accept record of an HTTP message, as the gateway writes one for SMTP."""
    return api_submission(
        server,
        composed,
        credential="…" + token[-4:],
        client_address=client_address(request),
        tls_version="TLS" if request.is_secure() else "",
    )


def api_submission(
    server,
    composed: Composed,
    *,
    credential: str,
    client_address: str,
    tls_version: str,
    message_id: uuid.UUID | None = None,
) -> Submission:
    """The accept record of a message sent with a server token: a request's, or a bulk
    request's item (``api.bulk``, with a MessageID fixed by its place in the request)."""
    return Submission(
        message_id=message_id or uuid.uuid4(),
        server=server,
        stream=None,  # named by X-PM-Message-Stream, as for SMTP with a server token
        endpoint=Endpoint.API,
        credential_kind=CredentialKind.SERVER_TOKEN,
        credential=credential,
        auth_mechanism="",
        client_address=client_address,
        tls_version=tls_version,
        mail_from=composed.mail_from,
        rcpt_to=composed.recipients,
        size=len(composed.raw),
        raw=composed.raw,
        status=Submission.Status.ACCEPTED,
        received_at=timezone.now(),
    )
