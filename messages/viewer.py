"""A stored message as the admin's mail viewer shows it: its recipients with their names, its
HTML and text parts, its header fields and its raw source. Plain functions over the stored bytes;
the admin's message page (``messages.admin``) draws them, and serves the HTML part alone under
``VIEWER_CSP`` into a sandboxed frame."""

from dataclasses import dataclass, field

from django.http import HttpResponse
from django.utils.html import format_html

from core import mime
from messages.models import OutboundMessage
from messages.serializers import _body, _names, parse_content

# The viewer frame's document may show the message's HTML, its inline styles and data: images,
# and nothing else: no script, no remote load (a tracking pixel, a web font), no form, no <base>;
# ``sandbox`` makes it an opaque origin even when opened outside the frame.
VIEWER_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
# The raw source shown in the page, at most (the whole message is a download away).
RAW_SHOWN = 256 * 1024
NOTE = '<!DOCTYPE html><p style="font: 14px sans-serif; color: #777">{}</p>'


@dataclass
class Person:
    name: str
    email: str
    status: str = ""


@dataclass
class Viewed:
    to: list[Person]
    cc: list[Person]
    bcc: list[Person]
    text: str
    has_html: bool
    headers: list[tuple[str, str]]
    raw: str
    raw_cut: bool
    attachments: list[str] = field(default_factory=list)


def view(message: OutboundMessage, statuses: dict[str, str] | None = None) -> Viewed:
    """What the viewer shows of ``message``; ``statuses`` (lower-cased address → delivery state)
    are written beside each recipient."""
    content = bytes(message.content)
    parsed = parse_content(message)
    names = _names(parsed.get_all("to", []) + parsed.get_all("cc", []))
    statuses = statuses or {}

    def people(addresses) -> list[Person]:
        return [
            Person(names.get(a.lower(), ""), a, statuses.get(a.lower(), ""))
            for a in addresses or []
        ]

    header_block = mime.split_message(content)[0]
    charset = mime.declared_charset(header_block)
    headers = [
        (mime.header_name(raw), mime.field_value(raw, charset))
        for _, raw in mime.fields(header_block)
    ]
    return Viewed(
        to=people(message.to),
        cc=people(message.cc),
        bcc=people(message.bcc),
        text=_body(parsed, "plain"),
        has_html=bool(_body(parsed, "html")),
        headers=headers,
        raw=content[:RAW_SHOWN].decode("utf-8", "replace"),
        raw_cut=len(content) > RAW_SHOWN,
        attachments=[p.get_filename() for p in parsed.iter_attachments() if p.get_filename()],
    )


def html_document(message: OutboundMessage) -> HttpResponse:
    """The message's HTML part as the viewer frame's document, under VIEWER_CSP."""
    html = _body(parse_content(message), "html")
    body = html or format_html(NOTE, "This message has no HTML part.")
    response = HttpResponse(body, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = VIEWER_CSP
    response["X-Frame-Options"] = "SAMEORIGIN"
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response
