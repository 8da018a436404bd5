"""Open and click tracking applied to a message as it is delivered.

``apply_tracking`` returns the bytes to deliver to one recipient: a 1×1 pixel before ``</body>`` of
every HTML part (open tracking) and links rewritten to ``{TRACKING_BASE_URL}/c/<token>`` (link
tracking). The message is walked at the byte level, like ``core.mime`` does for headers: only
the text parts that change are decoded (Content-Transfer-Encoding and charset), modified and
re-encoded with the same transfer encoding and charset. Every header, every other part, every
preamble, boundary and epilogue stays byte-identical. Nothing here raises on bad input; a part
that cannot be decoded is delivered as it came. The URLs put in come from ``tracking.tokens``.
"""

import base64
import binascii
import codecs
import email.parser
import email.policy
import html
import logging
import re
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from core.mime import split_message
from core.mimeparams import Message as LinearMessage
from messages.models import OutboundMessage
from tracking.tokens import HTML, TEXT, base_url, click_url, is_http_url, open_url

log = logging.getLogger(__name__)

HTML_LINK_MODES = {"htmlandtext", "htmlonly"}
TEXT_LINK_MODES = {"htmlandtext", "textonly"}

MAX_DEPTH = 30  # nested multiparts followed at most this deep

PIXEL_STYLE = (
    "border:0;width:1px;height:1px;max-width:1px;max-height:1px;margin:0;padding:0;overflow:hidden"
)


# --- applying tracking to a message ---------------------------------------------------------------


@dataclass
class _Context:
    message_id: uuid.UUID
    recipient: str
    opens: bool
    html_links: bool
    text_links: bool
    eol: bytes


def apply_tracking(message: OutboundMessage, recipient: str | None = None) -> bytes:
    """The bytes to deliver to ``recipient``, with tracking applied where it is switched on.

    Without open or link tracking (or without a recipient: the pre-tracking call shape) the
    stored content is returned byte-identical."""
    content = bytes(message.content)
    links = (message.track_links or "None").strip().lower()
    opens = bool(message.track_opens)
    if recipient is None or not (opens or links in HTML_LINK_MODES | TEXT_LINK_MODES):
        return content
    header_block, _, _ = split_message(content)
    context = _Context(
        message_id=message.message_id,
        recipient=recipient,
        opens=opens,
        html_links=links in HTML_LINK_MODES,
        text_links=links in TEXT_LINK_MODES,
        eol=b"\r\n" if b"\r\n" in header_block or not header_block else b"\n",
    )
    try:
        return _entity(content, context, 0)
    except Exception:  # never keep a message from being delivered because of tracking
        log.exception("tracking not applied to message %s", message.message_id)
        return content


def _entity(raw: bytes, context: _Context, depth: int) -> bytes:
    """``raw`` (a message or a body part) with tracking applied to its text parts."""
    header_block, separator, body = split_message(raw)
    if header_block + separator + body != raw or (not separator and header_block):
        return raw  # no clear header/body split: leave it as it is
    headers = email.parser.BytesHeaderParser(
        LinearMessage, policy=email.policy.compat32
    ).parsebytes(header_block + b"\n\n")
    content_type = headers.get_content_type()
    if content_type.startswith("multipart/"):
        boundary = headers.get_boundary()
        if not boundary or depth >= MAX_DEPTH:
            return raw
        try:
            boundary_bytes = boundary.encode("ascii")
        except UnicodeError:
            return raw
        new_body = _multipart(body, boundary_bytes, context, depth + 1)
    elif content_type in ("text/html", "text/plain"):
        if (headers.get_content_disposition() or "") == "attachment":
            return raw
        new_body = _leaf(body, headers, content_type == "text/html", context)
    else:  # attachments, message/rfc822 (a forwarded message is not ours to track), …
        return raw
    if new_body == body:
        return raw
    return header_block + separator + new_body


def _multipart(body: bytes, boundary: bytes, context: _Context, depth: int) -> bytes:
    delimiter = re.compile(rb"(?m)^--" + re.escape(boundary) + rb"(--)?[ \t]*\r?$")
    matches = list(delimiter.finditer(body))
    replacements = []
    for i, match in enumerate(matches):
        if match.group(1):  # the close delimiter: the epilogue follows
            break
        start = match.end()
        if body[start : start + 1] != b"\n":
            break  # delimiter at the very end of the body: no part follows
        start += 1
        if i + 1 < len(matches):
            end = matches[i + 1].start()
            # The line break before a delimiter belongs to the delimiter (RFC 2046 §5.1.1).
            if end - 2 >= start and body[end - 2 : end] == b"\r\n":
                end -= 2
            elif end - 1 >= start and body[end - 1 : end] == b"\n":
                end -= 1
        else:
            end = len(body)  # no close delimiter: the last part runs to the end
        part = body[start:end]
        new_part = _entity(part, context, depth)
        if new_part != part:
            replacements.append((start, end, new_part))
    for start, end, new_part in reversed(replacements):
        body = body[:start] + new_part + body[end:]
    return body


def _leaf(body: bytes, headers, is_html: bool, context: _Context) -> bytes:
    """A text part's body with tracking applied, in its own transfer encoding and charset."""
    if is_html and not (context.opens or context.html_links):
        return body
    if not is_html and not context.text_links:
        return body
    encoding = str(headers.get("content-transfer-encoding") or "7bit").strip().lower()
    eol = b"\r\n" if b"\r\n" in body else b"\n" if b"\n" in body else context.eol
    try:
        if encoding in ("7bit", "8bit", "binary"):
            data = body
        elif encoding == "quoted-printable":
            data = binascii.a2b_qp(body)
        elif encoding == "base64":
            data = base64.b64decode(body)  # skips line breaks and other non-alphabet bytes
        else:
            return body
        charset = headers.get_content_charset() or "us-ascii"
        codec = codecs.lookup(charset).name
        text = data.decode(codec, "surrogateescape")
        if text.encode(codec, "surrogateescape") != data:
            return body  # would not survive the round trip: leave it alone
        if is_html:
            new_text = _track_html(text, context, eol.decode("ascii"), encoding)
        else:
            new_text = _track_text(text, context)
        if new_text == text:
            return body
        new_data = new_text.encode(codec, "surrogateescape")
    except Exception:  # undecodable part (bad base64, unknown charset, …): leave it alone
        return body
    if encoding in ("7bit", "8bit", "binary"):
        return new_data
    if encoding == "quoted-printable":
        encoded = binascii.b2a_qp(new_data.replace(b"\r\n", b"\n"), istext=True)
    else:
        encoded = base64.encodebytes(new_data)
    encoded = encoded.replace(b"\n", eol).rstrip(b"\r\n")
    trailing = body[len(body.rstrip(b"\r\n")) :]
    return encoded + trailing


# --- HTML and text rewriting ----------------------------------------------------------------------

BODY_END = re.compile(r"</body\s*>", re.I)
TEXT_URL = re.compile(r"""(?<![\w@/.=+-])https?://[^\s<>"]+""", re.I)
TRAILING_PUNCTUATION = ".,;:!?'*]}"
# Elements whose href is a link a reader follows; <base> only sets where relative links point.
LINK_TAGS = ("a", "area")
TAG_NAME = re.compile(r"<[^\s/>]+")
ATTRIBUTE = re.compile(
    r"""[\s/]*(?P<name>[^\s/>"'=][^\s/>"'=]*)"""
    r"""(?:\s*=\s*(?P<value>"[^"]*"|'[^']*'|(?!["'])[^\s>]*))?"""
)


class _Tags(HTMLParser):
    """The start tags of links and <base> in an HTML text, as (name, offset, source text).

    ``html.parser`` reads the document as a browser would: markup in comments, <script>, <style>
    and CDATA sections is not a tag, attributes may be upper-case, unquoted or spread over lines,
    and a ``>`` inside a quoted value does not end the tag. It only finds the tags; the rewrite
    works on offsets of the original text, so nothing else is re-serialised."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=False)
        self.found: list[tuple[str, int, str]] = []
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag in LINK_TAGS or tag == "base":
            line, column = self.getpos()
            source = self.get_starttag_text() or ""
            self.found.append((tag, self.line_starts[line - 1] + column, source))

    handle_startendtag = handle_starttag


def _href_span(tag_source: str) -> tuple[int, int, str] | None:
    """(start, end, raw value with its quotes) of the first href attribute of a start tag."""
    name = TAG_NAME.match(tag_source)
    pos = name.end() if name else 0
    while pos < len(tag_source):
        match = ATTRIBUTE.match(tag_source, pos)
        if not match or match.end() == pos:
            return None
        if match["name"].lower() == "href":
            if match["value"] is None:
                return None
            return match.start("value"), match.end("value"), match["value"]
        pos = match.end()
    return None


def _unquoted(raw_value: str) -> str:
    if raw_value[:1] in "\"'" and raw_value[-1:] == raw_value[:1] and len(raw_value) >= 2:
        raw_value = raw_value[1:-1]
    return html.unescape(raw_value).strip()


def _html_links(text: str, context: _Context) -> str:
    """``text`` with the http(s) links of <a> and <area> rewritten to click-tracking URLs.
    ``mailto:``, ``tel:``, ``#anchors``, relative links (unless a ``<base href>`` makes them
    absolute), links without href and our own tracking URLs are left alone."""
    try:
        tags = _Tags(text).found
    except Exception:  # html.parser gave up on this text: leave its links alone
        return text
    base = next(
        (_unquoted(span[2]) for name, _, source in tags
         if name == "base" and (span := _href_span(source))),
        "",
    )  # fmt: skip
    if not is_http_url(base):
        base = ""
    replacements = []
    for name, offset, source in tags:
        if name == "base" or text[offset : offset + len(source)] != source:
            continue
        span = _href_span(source)
        if span is None:
            continue
        start, end, raw_value = span
        url = _unquoted(raw_value)
        if base and url and not urlsplit(url).scheme and not url.startswith("#"):
            url = urljoin(base, url)
        if not is_http_url(url) or _tracking_url(url):
            continue
        new_url = click_url(context.message_id, context.recipient, url, HTML)
        quote = raw_value[0] if raw_value[:1] in "\"'" else '"'
        replacements.append((offset + start, offset + end, f"{quote}{new_url}{quote}"))
    for start, end, value in reversed(replacements):
        text = text[:start] + value + text[end:]
    return text


def _track_html(text: str, context: _Context, eol: str, encoding: str) -> str:
    if context.html_links:
        text = _html_links(text, context)
    if context.opens:
        url = open_url(context.message_id, context.recipient)
        pixel = f'<img src="{url}" width="1" height="1" alt="" style="{PIXEL_STYLE}">'
        if encoding in ("7bit", "8bit", "binary"):
            pixel = eol + pixel  # on a line of its own: keeps lines short without QP/base64
        matches = list(BODY_END.finditer(text))
        if matches:
            at = matches[-1].start()
            text = text[:at] + pixel + text[at:]
        else:
            text += pixel
    return text


def _tracking_url(url: str) -> bool:
    base = base_url()
    return url.startswith((f"{base}/c/", f"{base}/o/"))


def _text_url_span(match: re.Match) -> str:
    url = match.group(0)
    while url:
        unbalanced = url[-1] == ")" and url.count(")") > url.count("(")
        if url[-1] in TRAILING_PUNCTUATION or unbalanced:
            url = url[:-1]
        else:
            break
    return url


def _track_text(text: str, context: _Context) -> str:
    def replace(match: re.Match) -> str:
        url = _text_url_span(match)
        rest = match.group(0)[len(url) :]
        if not is_http_url(url) or _tracking_url(url):
            return match.group(0)
        return click_url(context.message_id, context.recipient, url, TEXT) + rest

    return TEXT_URL.sub(replace, text)
