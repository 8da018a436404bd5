"""Open and click tracking applied to a message as it is delivered, and the events it produces.

``apply_tracking`` returns the bytes to deliver to one recipient: a 1×1 pixel before ``</body>`` of
every HTML part (open tracking) and links rewritten to ``{TRACKING_BASE_URL}/c/<token>`` (link
tracking). The message is walked at the byte level, like ``streams.mime`` does for headers: only
the text parts that change are decoded (Content-Transfer-Encoding and charset), modified and
re-encoded with the same transfer encoding and charset. Every header, every other part, every
preamble, boundary and epilogue stays byte-identical. Nothing here raises on bad input; a part
that cannot be decoded is delivered as it came.

Tokens are signed with ``django.core.signing`` (SECRET_KEY, with SECRET_KEY_FALLBACKS honoured)
under one salt for opens and another for clicks. They carry the MessageID and the recipient, and
for clicks the original URL and where it was (HTML or Text) — so a click redirects only to a URL
this service itself put in a message: no open redirect, even after the message has been purged.
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

import ua_parser
from django.conf import settings
from django.core import signing
from django.db import transaction

from core.mime import split_message
from messages.events import record_message_event
from messages.models import MessageEvent, OutboundMessage

log = logging.getLogger(__name__)

OPEN_SALT = "streams.tracking.open"
CLICK_SALT = "streams.tracking.click"
# Not in base64url's alphabet (nor "." which marks a compressed payload), unreserved in URLs.
TOKEN_SEP = "~"

HTML = "HTML"
TEXT = "Text"
HTML_LINK_MODES = {"htmlandtext", "htmlonly"}
TEXT_LINK_MODES = {"htmlandtext", "textonly"}

MAX_DEPTH = 30  # nested multiparts followed at most this deep

PIXEL_STYLE = (
    "border:0;width:1px;height:1px;max-width:1px;max-height:1px;margin:0;padding:0;overflow:hidden"
)


# --- settings and tokens --------------------------------------------------------------------------


def base_url() -> str:
    return getattr(settings, "TRACKING_BASE_URL", "http://127.0.0.1:8000").rstrip("/")


def _signer(salt: str) -> signing.Signer:
    return signing.Signer(salt=salt, sep=TOKEN_SEP)


def open_token(message_id: uuid.UUID | str, recipient: str) -> str:
    return _signer(OPEN_SALT).sign_object(
        [uuid.UUID(str(message_id)).hex, recipient], compress=True
    )


def click_token(message_id: uuid.UUID | str, recipient: str, url: str, location: str) -> str:
    payload = [uuid.UUID(str(message_id)).hex, recipient, url, "H" if location == HTML else "T"]
    return _signer(CLICK_SALT).sign_object(payload, compress=True)


def open_url(message_id: uuid.UUID | str, recipient: str) -> str:
    return f"{base_url()}/o/{open_token(message_id, recipient)}"


def click_url(message_id: uuid.UUID | str, recipient: str, url: str, location: str) -> str:
    return f"{base_url()}/c/{click_token(message_id, recipient, url, location)}"


def _unsign(token: str, salt: str):
    """The payload of a token signed by us, or None. A suffix such as ``.gif`` is ignored."""
    head, sep, signature = token.partition(TOKEN_SEP)
    if not sep or TOKEN_SEP in signature:
        return None
    signature = signature.split(".", 1)[0]
    try:
        return _signer(salt).unsign_object(f"{head}{TOKEN_SEP}{signature}")
    except (signing.BadSignature, ValueError, TypeError, UnicodeError, binascii.Error):
        return None
    except Exception:  # zlib.error and the like from a payload that was never ours
        return None


@dataclass(frozen=True)
class OpenToken:
    message_id: uuid.UUID
    recipient: str


@dataclass(frozen=True)
class ClickToken:
    message_id: uuid.UUID
    recipient: str
    url: str
    location: str  # "HTML" | "Text"


def read_open_token(token: str) -> OpenToken | None:
    payload = _unsign(token, OPEN_SALT)
    if not (isinstance(payload, list) and len(payload) == 2):
        return None
    try:
        return OpenToken(uuid.UUID(hex=payload[0]), str(payload[1]))
    except (ValueError, TypeError, AttributeError):
        return None


def read_click_token(token: str) -> ClickToken | None:
    payload = _unsign(token, CLICK_SALT)
    if not (isinstance(payload, list) and len(payload) == 4):
        return None
    try:
        message_id = uuid.UUID(hex=payload[0])
    except (ValueError, TypeError, AttributeError):
        return None
    url, location = payload[2], payload[3]
    if not isinstance(url, str) or not _is_http_url(url) or location not in ("H", "T"):
        return None
    return ClickToken(message_id, str(payload[1]), url, HTML if location == "H" else TEXT)


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


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
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
        header_block + b"\n\n"
    )
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
    if not _is_http_url(base):
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
        if not _is_http_url(url) or _tracking_url(url):
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
        if not _is_http_url(url) or _tracking_url(url):
            return match.group(0)
        return click_url(context.message_id, context.recipient, url, TEXT) + rest

    return TEXT_URL.sub(replace, text)


# --- user agents ----------------------------------------------------------------------------------

DESKTOP, MOBILE, WEBMAIL, UNKNOWN = "Desktop", "Mobile", "WebMail", "Unknown"

# ua-parser's family → the name mail senders know it by. Image proxies stand for the webmail
# that fetches images for its readers; iOS Mail loads them in a web view without "Safari".
CLIENT_NAMES = {
    "GmailImageProxy": "Gmail",
    "YahooMailProxy": "Yahoo Mail",
    "Mobile Safari UI/WKWebView": "Apple Mail",
}
OS_NAMES = {"Mac OS X": "OS X"}
WEBMAIL_CLIENTS = {"Gmail", "Yahoo Mail"}
# Whose version ua-parser reads from something else (Apple Mail: the WebKit build).
UNVERSIONED_CLIENTS = {"Gmail", "Yahoo Mail", "Apple Mail"}
MOBILE_SYSTEMS = {"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "HarmonyOS"}
COMPANIES = {
    "Gmail": "Google", "Chrome": "Google", "Chrome Mobile": "Google",
    "Chrome Mobile iOS": "Google", "Chrome Mobile WebView": "Google", "Android": "Google",
    "Chrome OS": "Google", "Yahoo Mail": "Yahoo", "Firefox": "Mozilla",
    "Firefox Mobile": "Mozilla", "Firefox iOS": "Mozilla", "Thunderbird": "Mozilla",
    "Safari": "Apple Inc.", "Mobile Safari": "Apple Inc.", "Apple Mail": "Apple Inc.",
    "iOS": "Apple Inc.", "OS X": "Apple Inc.", "Edge": "Microsoft Corporation",
    "Edge Mobile": "Microsoft Corporation", "IE": "Microsoft Corporation",
    "Outlook": "Microsoft Corporation", "Windows Live Mail": "Microsoft Corporation",
    "Windows": "Microsoft Corporation", "Windows Phone": "Microsoft Corporation",
    "Opera": "Opera Software", "Samsung Internet": "Samsung",
}  # fmt: skip


def _described(family: str, *version) -> dict:
    numbers = ".".join(v for v in version if v)
    return {
        "Name": f"{family} {numbers}".strip(),
        "Company": COMPANIES.get(family, UNKNOWN),
        "Family": family,
    }


def classify_user_agent(user_agent: str) -> dict:
    """Postmark's ``Platform``, ``Client`` and ``OS`` for a user agent, from ua-parser (the
    Browserscope rules of uap-core, shipped by ``ua-parser-builtins``)."""
    unknown = {"Name": UNKNOWN, "Company": UNKNOWN, "Family": UNKNOWN}
    try:
        parsed = ua_parser.parse(user_agent or "")
    except Exception:  # a user agent is the reader's input: never fail an open on it
        parsed = None
    agent = parsed.user_agent if parsed is not None else None
    system = parsed.os if parsed is not None else None
    client = dict(unknown)
    if agent is not None and agent.family not in ("Other", ""):
        family = CLIENT_NAMES.get(agent.family, agent.family)
        version = () if family in UNVERSIONED_CLIENTS else (agent.major, agent.minor)
        client = _described(family, *version)
    os = dict(unknown)
    proxied = client["Family"] in WEBMAIL_CLIENTS  # a proxy's OS says nothing about the reader
    if system is not None and system.family not in ("Other", "") and not proxied:
        family = OS_NAMES.get(system.family, system.family)
        os = _described(family, system.major, system.minor)
    if client["Family"] in WEBMAIL_CLIENTS:
        platform = WEBMAIL
    elif os["Family"] in MOBILE_SYSTEMS or "Mobile" in client["Family"]:
        platform = MOBILE
    elif client["Family"] != UNKNOWN or os["Family"] != UNKNOWN:
        platform = DESKTOP
    else:
        platform = UNKNOWN
    return {"Platform": platform, "Client": client, "OS": os}


# --- events ---------------------------------------------------------------------------------------

GEO_FIELDS = (
    "CountryISOCode",
    "Country",
    "RegionISOCode",
    "Region",
    "City",
    "Zip",
    "Coords",
    "IP",
)


def _reader(user_agent: str) -> dict:
    user_agent = (user_agent or "")[:2000]
    return {
        "UserAgent": user_agent,
        **classify_user_agent(user_agent),
        "Geo": dict.fromkeys(GEO_FIELDS, ""),  # no geolocation database here
    }


def message_for(message_id: uuid.UUID) -> OutboundMessage | None:
    return OutboundMessage.objects.filter(message_id=message_id).first()


def record_open(message: OutboundMessage, recipient: str, user_agent: str) -> MessageEvent:
    """An Open event; ``FirstOpen`` is true for the first open of ``message`` by ``recipient``."""
    with transaction.atomic():
        # Serialise opens of one message (PostgreSQL) so that only one can be the first.
        OutboundMessage.objects.select_for_update().filter(pk=message.pk).exists()
        first = not MessageEvent.objects.filter(
            outbound=message, type=MessageEvent.Type.OPEN, recipient=recipient
        ).exists()
        return record_message_event(
            message,
            MessageEvent.Type.OPEN,
            recipient,
            data={"FirstOpen": first, **_reader(user_agent), "ReadSeconds": 0},
        )


def record_click(
    message: OutboundMessage, recipient: str, url: str, location: str, user_agent: str
) -> MessageEvent:
    """A Click event on ``url`` (``location`` is "HTML" or "Text")."""
    return record_message_event(
        message,
        MessageEvent.Type.CLICK,
        recipient,
        data={"OriginalLink": url, "ClickLocation": location, **_reader(user_agent)},
    )
