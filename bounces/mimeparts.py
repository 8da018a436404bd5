"""Small helpers over ``email.message.Message`` for reading bounce reports (compat32: the most
forgiving policy): a header as one decoded line, addresses cleaned to a lower-case addr-spec, a
diagnostic collapsed to one short line, a part's text decoded, the leaf parts of a report, its
human-readable text, and the "Name: value" field blocks of DSN and ARF parts. None of them raises on
broken input.
"""

import html
import re
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses

from bounces.replies import MAX_TEXT
from bounces.verp import VERP_ADDRESS_RE

MAX_PARTS = 200
MAX_DEPTH = 20
MAX_DIAGNOSTIC = 500
MAX_HEADER = 4000  # characters of a header value looked at

_ADDR_SPEC_RE = re.compile(r"[^@\s<>()\[\],;:\"']{1,64}@[a-z0-9.-]{1,253}\.[a-z0-9-]{2,63}", re.I)


def header_text(msg: Message | None, name: str) -> str:
    """A header as one line of text, RFC 2047 words decoded; "" when absent or undecodable."""
    if msg is None:
        return ""
    try:
        value = msg.get(name)
        if value is None:
            return ""
        value = str(value)[:MAX_HEADER]
        if "=?" in value:
            value = str(make_header(decode_header(value)))
        return " ".join(value.split())
    except Exception:
        return ""


def clean_addr(value: str) -> str:
    """A lower-case addr-spec from "rfc822; x@y", "<x@y>", "Name <x@y>"…; never a VERP address."""
    text = str(value or "").strip()
    if ";" in text:
        text = text.split(";", 1)[1]
    match = re.search(r"<([^<>]{1,320})>", text)
    text = (match.group(1) if match else text).strip().strip("'\".,:;()[]").lower()
    if not _ADDR_SPEC_RE.fullmatch(text) or VERP_ADDRESS_RE.fullmatch(text):
        return ""
    return text


def first_addr(value: str) -> str:
    try:
        pairs = getaddresses([value[:MAX_HEADER]])
    except Exception:
        pairs = []
    for _name, addr in pairs:
        cleaned = clean_addr(addr)
        if cleaned:
            return cleaned
    return ""


def one_line(text: str) -> str:
    """Collapse a (possibly multi-line, multi-reply) diagnostic into one short line."""
    text = " ".join(str(text or "").split())
    text = re.sub(r"^[\w.-]{1,30};\s*", "", text)  # DSN diagnostic type: "smtp; …"
    match = re.match(r"(\d{3})[ -](?:(\d\.\d{1,3}\.\d{1,3}) )?", text)
    if match:  # "550-5.1.1 a 550-5.1.1 b 550 5.1.1 c" → "550 5.1.1 a b c"
        prefix = (
            re.escape(match.group(1))
            + "[ -]"
            + (re.escape(match.group(2)) if match.group(2) else "")
        )
        head, rest = text[: match.end()], text[match.end() :]
        text = head.replace("-", " ", 1) + re.sub(r"\s" + prefix + r"\s+", " ", rest)
        text = " ".join(text.split())
    return text[:MAX_DIAGNOSTIC]


def decode_part(part: Message) -> str:
    """A leaf part's text: transfer-decoded, then its declared charset, else UTF-8, replacing."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if payload is None:
        raw = part.get_payload()
        return raw[:MAX_TEXT] if isinstance(raw, str) else ""
    payload = payload[: MAX_TEXT * 4]
    try:
        return payload.decode(part.get_content_charset() or "utf-8", "replace")[:MAX_TEXT]
    except Exception:
        return payload.decode("utf-8", "replace")[:MAX_TEXT]


def leaf_parts(msg: Message) -> list[Message]:
    """The report's parts in order; message/* parts are kept whole (not descended into)."""
    out: list[Message] = []
    todo = [(msg, 0)]
    while todo and len(out) < MAX_PARTS:
        part, depth = todo.pop(0)
        payload = part.get_payload()
        if part.get_content_maintype() == "multipart" and isinstance(payload, list):
            if depth < MAX_DEPTH:
                subparts = [(p, depth + 1) for p in payload if isinstance(p, Message)]
                todo[0:0] = subparts
        else:
            out.append(part)
    return out


def body_text(parts: list[Message]) -> str:
    """The human-readable notification text (text/plain, else text/html without tags)."""
    plain, rich = [], []
    for part in parts:
        if str(part.get("Content-Disposition", "")).lower().startswith("attachment"):
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" or part.get_content_maintype() == "multipart":
            plain.append(decode_part(part))
        elif ctype == "text/html":
            rich.append(decode_part(part))
    if plain:
        return "\n".join(plain)[:MAX_TEXT]
    return strip_html("\n".join(rich))[:MAX_TEXT]


def strip_html(markup: str) -> str:
    """Text of an HTML part: tags dropped (script/style content too), entities decoded."""
    out, hidden = [], False
    for token in re.split(r"(<[^<>]{0,2000}>)", markup):
        lower = token[:8].lower()
        if lower.startswith(("<script", "<style")):
            hidden = True
        elif lower.startswith(("</script", "</style")):
            hidden = False
        elif lower.startswith(("<br", "<p", "</p", "<div", "</div", "<tr", "<li")):
            out.append("\n")
        elif not token.startswith("<") and not hidden:
            out.append(token)
    return html.unescape("".join(out))


def parse_fields(text: str) -> list[dict[str, str]]:
    """Blank-line separated blocks of "Name: value" fields (continuation lines unfolded)."""
    blocks: list[dict[str, str]] = []
    block: dict[str, list[str]] = {}  # each value's pieces, joined once (not grown by +=)
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if block:
                blocks.append(_joined(block))
            block, last = {}, ""
        elif line[0] in " \t":
            if last:
                block[last].append(line.strip())
        else:
            name, sep, value = line.partition(":")
            name = name.strip().lower()
            if sep and name and " " not in name and name not in block:
                block[name], last = [value.strip()], name
            else:
                last = ""
    if block:
        blocks.append(_joined(block))
    return blocks


def _joined(block: dict[str, list[str]]) -> dict[str, str]:
    return {name: " ".join(pieces) for name, pieces in block.items()}


def field_blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return parse_fields(decode_part(part))
    blocks = []
    for sub in payload:
        if not isinstance(sub, Message):
            continue
        block: dict[str, str] = {}
        for name, value in sub.items():
            block.setdefault(str(name).strip().lower(), " ".join(str(value).split()))
        blocks.append(block)
        rest = sub.get_payload()
        if isinstance(rest, str) and rest.strip():  # message/global-delivery-status and friends
            blocks.extend(parse_fields(rest[:MAX_TEXT]))
    return [b for b in blocks if b]
