"""Classify messages that come back to the VERP return path: bounces, complaints, auto-replies.

Mail goes out with the return path ``pm_bounces+<MessageID>@<bounce domain>``.  What comes back is
one of: an RFC 3464 delivery status notification (a multipart/report with a message/delivery-status
part), a non-standard bounce written as plain text (classic Exim, qmail, Yahoo…), an RFC 5965 ARF
feedback report (spam complaint), an auto-reply (RFC 3834, "Out of Office"…) or a challenge-response
verification request.  ``parse_report`` turns the raw bytes into a ``Report`` named with Postmark's
bounce Type names (see ``bounces.types``).  It is pure Python (stdlib only) and never raises.
"""

from __future__ import annotations

import email
import html
import re
import uuid
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parseaddr

from core import crypto

VERP_LOCAL_PART = "pm_bounces"
VERP_TAG_PURPOSE = b"verp"
MAX_BYTES = 2 * 1024 * 1024  # parse at most this much; the report parts come before the original
MAX_TEXT = 100_000  # characters of notification text searched by the heuristics
MAX_PARTS = 200
MAX_DEPTH = 20
MAX_DIAGNOSTIC = 500
MAX_HEADER = 4000  # characters of a header value looked at

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_UUID_RE = re.compile(rf"\s*<?\s*({_UUID})\s*>?\s*", re.I)
VERP_TAG_LENGTH = 10  # hex digits: 40 bits of HMAC, checked before a report may touch anything
_VERP_TAG = rf"(?:\.([0-9a-f]{{{VERP_TAG_LENGTH}}}))?"
_VERP_ADDR_RE = re.compile(rf"{VERP_LOCAL_PART}\+({_UUID}){_VERP_TAG}@[^@\s<>]+", re.I)
_VERP_IN_TEXT_RE = re.compile(rf"{VERP_LOCAL_PART}\+({_UUID}){_VERP_TAG}@".encode(), re.I)
_MESSAGE_ID_RE = re.compile(r"<[^<>\s]{1,500}>")
_MESSAGE_ID_UUID_RE = re.compile(rf"<({_UUID})@[^<>\s]{{1,255}}>", re.I)
_ENHANCED_RE = re.compile(r"(?<!\d)(?<!\d\.)([245]\.\d{1,3}\.\d{1,3})(?!\.?\d)")
_LEADING_CODE_RE = re.compile(r"^\s*(?:[\w.-]{1,30};\s*)?([2-5]\d\d)(?=[\s-]|$)")
_ANY_CODE_RE = re.compile(r"(?<![\w.])([245]\d\d)(?=[ -])")
_ADDR_SPEC_RE = re.compile(r"[^@\s<>()\[\],;:\"']{1,64}@[a-z0-9.-]{1,253}\.[a-z0-9-]{2,63}", re.I)


@dataclass(frozen=True)
class Report:
    """What a message received at the bounce address says about an earlier message."""

    type: str  # a Postmark bounce Type name (HardBounce, SpamComplaint, AutoResponder, Unknown…)
    recipient: str = ""  # the failed/complaining recipient, lower-case addr-spec
    status: str = ""  # enhanced status code, e.g. "5.1.1"
    diagnostic: str = ""  # the remote server's text, one short line
    message_id: str = ""  # the original message's MessageID (a UUID)
    original_message_id_header: str = ""  # the original message's Message-ID header


# ---------------------------------------------------------------------------------------------
# VERP addresses


def verp_address(message_id: str, domain: str) -> str:
    """The return path for a message: ``pm_bounces+<MessageID>.<tag>@<domain>`` (ValueError if
    bad). The tag is a keyed HMAC of the MessageID (under SECRETS_KEY): only the service can make
    one, so an address it did not hand out is refused at RCPT by the bounce MX."""
    canonical = str(uuid.UUID(str(message_id).strip()))
    domain = str(domain).strip().lstrip("@")
    if not domain or "@" in domain or any(c.isspace() for c in domain):
        raise ValueError(f"not a bounce domain: {domain!r}")
    tag = crypto.tag(VERP_TAG_PURPOSE, canonical, VERP_TAG_LENGTH)
    return f"{VERP_LOCAL_PART}+{canonical}.{tag}@{domain}"


def message_id_from_verp(address: str) -> str:
    """The MessageID (lower-case UUID) in a VERP address, or "" if it is not one of ours (no tag,
    or a tag the service did not make)."""
    try:
        text = str(address or "").strip()
        if ";" in text:  # DSN address-type prefix, e.g. "rfc822; pm_bounces+…@…"
            text = text.split(";", 1)[1]
        addr = parseaddr(text)[1] or text.strip().strip("<>")
        match = _VERP_ADDR_RE.fullmatch(addr.strip())
        if not match:
            return ""
        message_id = str(uuid.UUID(match.group(1)))
        if not crypto.tag_matches(VERP_TAG_PURPOSE, message_id, match.group(2), VERP_TAG_LENGTH):
            return ""  # not an address the service handed out
        return message_id
    except Exception:
        return ""


def _uuid_or_blank(value: str) -> str:
    match = _UUID_RE.fullmatch(str(value or ""))
    return match.group(1).lower() if match else ""


# ---------------------------------------------------------------------------------------------
# SMTP reply classification

# Text heuristics, tried in order, for replies without a specific enhanced status code.
_TEXT_RULES = [
    ("VirusNotification", r"\bvirus|\bmalware\b|\binfected\b"),
    (
        "DnsError",
        r"host or domain name not found|name service error|\bhost not found|domain not found"
        r"|domain (?:name )?(?:does not|doesn't) exist|no mx (?:record|host)|\bnxdomain\b"
        r"|unrouteable|unable to route|dns (?:lookup|error|failure)|mx lookup",
    ),
    (
        "BadEmailAddress",
        r"bad (?:destination )?(?:mailbox )?address syntax|syntax error in (?:mailbox|address)"
        r"|invalid address syntax|malformed (?:e-?mail )?address",
    ),
    (
        "SoftBounce",
        r"mailbox (?:is )?full|\bquota\b|storage allocation|out of storage"
        r"|insufficient (?:disk )?space|out of (?:disk )?space|(?:mailbox|account) (?:is )?"
        r"(?:temporarily )?(?:disabled|inactive|suspended)",
    ),
    (
        "HardBounce",
        r"user unknown|unknown user|no such (?:user|mailbox|recipient|address|account)"
        r"|mailbox (?:unavailable|not found|does not exist|doesn't exist)"
        r"|recipient (?:not found|unknown)|unknown (?:recipient|mailbox|address)"
        r"|does not exist|doesn't exist|doesn't have an? [\w.-]{1,60} account"
        r"|(?:invalid|not a valid) (?:recipient|mailbox)|user not found|addressee unknown"
        r"|account (?:has been )?(?:closed|deleted|terminated)",
    ),
    (
        "Blocked",
        r"spam|\bblocked\b|black ?list|block ?list|\blisted (?:at|in|on|by)\b|\brbl\b"
        r"|reputation|policy|unsolicited|\bdenied\b",
    ),
]
_TEXT_RULES_RE = [(name, re.compile(pattern, re.I)) for name, pattern in _TEXT_RULES]


def _text_rule(text: str) -> str:
    for name, pattern in _TEXT_RULES_RE:
        if pattern.search(text):
            return name
    return ""


def _first_enhanced(text: str) -> str:
    match = _ENHANCED_RE.search(text or "")
    return match.group(1) if match else ""


def _reply_code(text: str) -> int:
    match = _LEADING_CODE_RE.match(text or "") or _ANY_CODE_RE.search(text or "")
    return int(match.group(1)) if match else 0


# The enhanced status details (RFC 3463) that say the recipient's address itself does not work:
# bad mailbox (x.1.1), bad destination system (x.1.2), bad syntax (x.1.3), mailbox moved
# (x.1.6), null MX (x.1.10, RFC 7505).
ADDRESS_STATUSES = frozenset({"1.1", "1.2", "1.3", "1.6", "1.10"})
# The sender's address was refused (bad sender mailbox x.1.7, bad sender system x.1.8).
SENDER_STATUSES = frozenset({"1.7", "1.8"})
_UNKNOWN_ADDRESS_RE = re.compile(
    r"\buser unknown|\bunknown user|no such (?:user|mailbox|recipient|account|address)"
    r"|(?:user|recipient|mailbox|addressee) (?:not found|unknown|does not exist|doesn't exist)"
    r"|\bunknown (?:recipient|mailbox|local[- ]part)|invalid (?:recipient|mailbox)\b"
    r"|recipientnotfound|account (?:that you tried to reach )?(?:does not|doesn't) exist",
    re.I,
)


def classify_smtp_reply(code: int, enhanced: str, text: str) -> str:
    """A Postmark bounce Type for an SMTP reply (code, enhanced status code, reply text).

    5xx → HardBounce unless refined: x.1.3 BadEmailAddress, 5.1.x HardBounce, except the
    sender's address (5.1.7, 5.1.8: Blocked, the receiving system refuses our sender), 5.2.x and
    5.3.4 SoftBounce (mailbox full or disabled, message too big), x.4.3/x.4.4 DnsError, 5.7.x
    Blocked; 4xx → Transient (DnsError for DNS trouble). Generic codes (x.0.0 or none) fall back
    to text heuristics.
    """
    text = str(text or "")[:MAX_TEXT]
    enhanced = _first_enhanced(str(enhanced or "")) or _first_enhanced(text)
    code = _int_code(code, text)
    klass = code // 100 if code else (int(enhanced[0]) if enhanced else 0)
    detail = enhanced.split(".", 1)[1] if enhanced else ""  # "1.1" for 5.1.1
    rule = _text_rule(text)

    if rule == "VirusNotification":
        return rule
    if detail in ("4.3", "4.4"):
        return "DnsError"
    if rule == "DnsError" and detail in ("", "0.0", "1.2", "4.0"):
        return "DnsError"
    if klass == 4:
        return "Transient"
    if klass == 5:
        if detail == "1.3":
            return "BadEmailAddress"
        if detail in SENDER_STATUSES:
            return "Blocked"
        if detail.startswith("1.") and detail != "1.0":
            return "HardBounce"
        if (detail.startswith("2.") and detail != "2.0") or detail == "3.4":
            return "SoftBounce"
        if detail == "4.7":  # delivery time expired: the address itself may be fine
            return "SoftBounce"
        if detail.startswith("7."):
            return "Blocked"
        if rule in ("BadEmailAddress", "SoftBounce", "HardBounce", "Blocked"):
            return rule
        return "HardBounce"
    if klass == 0 and rule:
        return rule
    return "Unknown"


def _int_code(code, text: str) -> int:
    try:
        code = int(code or 0)
    except (TypeError, ValueError):
        code = 0
    return code if 200 <= code < 600 else _reply_code(text)


def address_rejected(code: int, enhanced: str, text: str) -> bool:
    """Whether a permanent reply says the recipient's address itself does not work: an address
    status (x.1.1, x.1.2, x.1.3, x.1.6, x.1.10), or without a specific status code a text that
    says so unambiguously ("user unknown", and nothing about spam, policy or a full mailbox)."""
    text = str(text or "")[:MAX_TEXT]
    enhanced = _first_enhanced(str(enhanced or "")) or _first_enhanced(text)
    code = _int_code(code, text)
    if not (500 <= code < 600 or (not code and enhanced.startswith("5"))):
        return False
    detail = enhanced.split(".", 1)[1] if enhanced else ""
    if detail in ADDRESS_STATUSES:
        return True
    if detail not in ("", "0.0", "1.0"):
        return False  # a specific code about something else (policy, mailbox full, sender…)
    if not _UNKNOWN_ADDRESS_RE.search(text):
        return False
    # Unambiguous: no other rule (spam, policy, a full mailbox, DNS trouble) matches as well.
    return all(name == "HardBounce" or not p.search(text) for name, p in _TEXT_RULES_RE)


class Stage:
    """The SMTP command a reply answered."""

    MAIL = "MAIL"  # MAIL FROM: about the sender or the session, never one recipient
    RCPT = "RCPT"  # RCPT TO: about this recipient
    DATA = "DATA"  # the DATA command or the message body: about the message


@dataclass(frozen=True)
class SmtpFailure:
    """What a non-2xx reply means for the recipients it concerns."""

    type: str  # the Postmark bounce Type to record
    permanent: bool  # bounce now, never retry (5xx); else a deferral, retried later
    deactivates: bool  # the address itself does not work: deactivate it (HardBounce + suppression)


def classify_smtp_failure(stage: str, code: int, enhanced: str, text: str) -> SmtpFailure:
    """What a 4xx or 5xx reply at ``stage`` does to its recipients.

    4xx is a deferral at every stage. A 5xx to RCPT bounces that recipient, and deactivates it
    only when the reply is about the address (``address_rejected``). A 5xx to MAIL FROM or to the
    message (DATA) bounces the message for its recipients by the type its code gives (Blocked for
    policy and sender refusals, SoftBounce for size, HardBounce otherwise) but deactivates no
    one: the addresses were never the problem. A 530 to MAIL FROM (authentication required) is
    the relay's configuration, so it is retried."""
    text = str(text or "")[:MAX_TEXT]
    code = _int_code(code, text)
    kind = classify_smtp_reply(code, enhanced, text)
    if code // 100 != 5 or (stage == Stage.MAIL and code == 530):
        return SmtpFailure(kind if kind == "DnsError" else "Transient", False, False)
    if kind in ("Transient", "DnsError", "Unknown"):
        kind = "HardBounce"  # a permanent reply is never "delayed"
    deactivates = stage == Stage.RCPT and address_rejected(code, enhanced, text)
    if deactivates and kind not in ("HardBounce", "BadEmailAddress"):
        kind = "HardBounce"
    return SmtpFailure(kind, True, deactivates)


# ---------------------------------------------------------------------------------------------
# Small helpers over email.message.Message (compat32: the most forgiving policy)


def _hdr(msg: Message | None, name: str) -> str:
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


def _clean_addr(value: str) -> str:
    """A lower-case addr-spec from "rfc822; x@y", "<x@y>", "Name <x@y>"…; never a VERP address."""
    text = str(value or "").strip()
    if ";" in text:
        text = text.split(";", 1)[1]
    match = re.search(r"<([^<>]{1,320})>", text)
    text = (match.group(1) if match else text).strip().strip("'\".,:;()[]").lower()
    if not _ADDR_SPEC_RE.fullmatch(text) or _VERP_ADDR_RE.fullmatch(text):
        return ""
    return text


def _first_addr(value: str) -> str:
    try:
        pairs = getaddresses([value[:MAX_HEADER]])
    except Exception:
        pairs = []
    for _name, addr in pairs:
        cleaned = _clean_addr(addr)
        if cleaned:
            return cleaned
    return ""


def _one_line(text: str) -> str:
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


def _decode(part: Message) -> str:
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


def _leaf_parts(msg: Message) -> list[Message]:
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


def _body_text(parts: list[Message]) -> str:
    """The human-readable notification text (text/plain, else text/html without tags)."""
    plain, rich = [], []
    for part in parts:
        if str(part.get("Content-Disposition", "")).lower().startswith("attachment"):
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" or part.get_content_maintype() == "multipart":
            plain.append(_decode(part))
        elif ctype == "text/html":
            rich.append(_decode(part))
    if plain:
        return "\n".join(plain)[:MAX_TEXT]
    return _strip_html("\n".join(rich))[:MAX_TEXT]


def _strip_html(markup: str) -> str:
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


def _parse_fields(text: str) -> list[dict[str, str]]:
    """Blank-line separated blocks of "Name: value" fields (continuation lines unfolded)."""
    blocks: list[dict[str, str]] = []
    block: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if block:
                blocks.append(block)
            block, last = {}, ""
        elif line[0] in " \t":
            if last:
                block[last] += " " + line.strip()
        else:
            name, sep, value = line.partition(":")
            name = name.strip().lower()
            if sep and name and " " not in name and name not in block:
                block[name], last = value.strip(), name
            else:
                last = ""
    if block:
        blocks.append(block)
    return blocks


def _field_blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return _parse_fields(_decode(part))
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
            blocks.extend(_parse_fields(rest[:MAX_TEXT]))
    return [b for b in blocks if b]


# ---------------------------------------------------------------------------------------------
# The returned original message

_COPY_SEPARATOR_RE = re.compile(
    r"^[^\n]{0,40}(?:below this line is a copy of the message|this is a copy of the message"
    r"|original message (?:headers|follows)|message headers? follows?"
    r"|undelivered message headers?)[^\n]{0,40}$",
    re.I | re.M,
)
_ORIGINAL_TYPES = ("message/rfc822", "message/global", "message/rfc822-headers")
_ORIGINAL_HEADER_TYPES = ("text/rfc822-headers", "message/global-headers", "text/rfc822")


def _split_inline_copy(text: str) -> tuple[str, Message | None]:
    """(notification text, original message) for bounces that quote the original inline."""
    match = _COPY_SEPARATOR_RE.search(text)
    if not match:
        return text, None
    rest = text[match.end() :].lstrip("\r\n")
    if not re.match(r"[\w-]{1,60}:", rest):
        return text[: match.start()], None
    return text[: match.start()], email.message_from_string(rest[:MAX_TEXT])


def _returned_original(parts: list[Message]) -> Message | None:
    for part in parts:
        ctype = part.get_content_type()
        payload = part.get_payload()
        if ctype in _ORIGINAL_TYPES and isinstance(payload, list) and payload[:1]:
            first = payload[0]
            return first if isinstance(first, Message) else None
        if ctype in _ORIGINAL_HEADER_TYPES:
            return email.message_from_string(_decode(part))
    return None


# ---------------------------------------------------------------------------------------------
# RFC 5965 ARF feedback reports

_FEEDBACK_TYPES = {
    "abuse": "SpamComplaint",
    "fraud": "SpamComplaint",
    "other": "SpamComplaint",
    "virus": "VirusNotification",
    "opt-out": "Unsubscribe",
    "unsubscribe": "Unsubscribe",
    "not-spam": "Unknown",
    "auth-failure": "Unknown",
}


def _feedback(msg: Message, parts: list[Message], original: Message | None) -> dict | None:
    """An ARF report: Feedback-Type → Type; the complainer from Original-Rcpt-To and friends."""
    part = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    is_arf = str(msg.get_param("report-type", "") or "").lower() == "feedback-report"
    if part is None and not is_arf:
        return None
    fields: dict[str, str] = {}
    for block in _field_blocks(part) if part is not None else []:
        for name, value in block.items():
            fields.setdefault(name, value)
    kind = fields.get("feedback-type", "abuse").strip().lower()
    recipient = (
        _clean_addr(fields.get("original-rcpt-to", ""))
        or _clean_addr(fields.get("removal-recipient", ""))
        or _first_addr(_hdr(original, "X-HmXmrOriginalRecipient"))
        or _first_addr(_hdr(original, "To"))
    )
    agent = fields.get("user-agent", "")
    return {
        "type": _FEEDBACK_TYPES.get(kind, "SpamComplaint"),
        "recipient": recipient,
        "diagnostic": f"Feedback-Type: {kind}" + (f"; User-Agent: {agent}" if agent else ""),
    }


# ---------------------------------------------------------------------------------------------
# RFC 3464 delivery status notifications

_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status", "text/delivery-status")
_RECIPIENT_FIELDS = ("final-recipient", "original-recipient", "action", "status")


def _delivery_status(parts: list[Message], notice: str) -> dict | None:
    """A DSN: the first failed (else delayed) recipient block's Action, Status, Diagnostic-Code."""
    part = next((p for p in parts if p.get_content_type() in _DSN_TYPES), None)
    if part is None:
        return None
    blocks = _field_blocks(part)
    per_message = blocks[0] if blocks and "reporting-mta" in blocks[0] else {}
    recipients = [b for b in blocks if any(f in b for f in _RECIPIENT_FIELDS)]
    recipients = [b for b in recipients if b is not per_message] or recipients

    def rank(block: dict[str, str]) -> int:
        action = block.get("action", "").lower()
        return 0 if action.startswith("failed") else 1 if action.startswith("delayed") else 2

    block = min(recipients, key=rank) if recipients else {}
    recipient = _clean_addr(block.get("final-recipient", "")) or _clean_addr(
        block.get("original-recipient", "")
    )
    diagnostic = _one_line(block.get("diagnostic-code", "")) or _notice_diagnostic(notice)
    status = _first_enhanced(block.get("status", ""))
    specific = _first_enhanced(diagnostic)
    if specific and (not status or (status.endswith(".0.0") and specific[0] == status[0])):
        status = specific  # Exim and others say "5.0.0" and give the real code in the text
    action = block.get("action", "").lower()
    if not action:
        action = "delayed" if status.startswith("4") else "failed" if status else ""

    if action.startswith("delayed"):
        kind = classify_smtp_reply(_reply_code(diagnostic) or 450, status, diagnostic)
        kind = kind if kind in ("Transient", "DnsError") else "Transient"
    elif action.startswith("failed") or not action:
        kind = classify_smtp_reply(_reply_code(diagnostic), status, diagnostic)
    else:  # delivered, relayed, expanded: not a failure at all
        kind = "Unknown"
    return {
        "type": kind,
        "recipient": recipient or _notice_recipient(notice),
        "status": status,
        "diagnostic": diagnostic,
        "envelope_id": per_message.get("original-envelope-id", ""),
        "original_message_id": per_message.get("x-original-message-id", ""),
    }


# ---------------------------------------------------------------------------------------------
# Non-standard bounces: heuristics over the notification text

_BOUNCE_MARKERS_RE = re.compile(
    r"mail delivery (?:software|subsystem|system)|could(?: not|n't) be delivered"
    r"|wasn't able to deliver|(?:unable|failed) to deliver|undeliverable|undelivered mail"
    r"|delivery (?:status notification|has failed|failure|failed|problem)"
    r"|permanent (?:fatal )?errors?|returned mail|non-?delivery|(?:was|were) not delivered"
    r"|message not delivered|qmail-send program|not yet been delivered|delayed mail"
    r"|\bvirus (?:alert|found|detected|warning)|\bvirus\b.{0,40}\b(?:found|detected)",
    re.I,
)
_DAEMON_RE = re.compile(
    r"mailer[-_.]?daemon|postmaster|mail delivery|delivery subsystem|mail administrator", re.I
)
_TEMPORARY_RE = re.compile(
    r"not yet been delivered|warning only|will (?:continue|keep) (?:trying|to try|retrying)"
    r"|still being retried|delivery (?:is )?delayed|temporar(?:y|ily) (?:error|failure|problem)",
    re.I,
)
_PERMANENT_RE = re.compile(
    r"permanent (?:fatal )?error|given up|giving up|failed permanently|could not be delivered"
    r"|couldn't be delivered|wasn't able to deliver|unable to deliver|undeliverable",
    re.I,
)
_LINES = r"[^\n]{1,1000}(?:\n[ \t]{1,40}[^\n]{1,1000}){0,10}"  # a line and its continuations
_DIAGNOSTIC_PATTERNS = [
    re.compile(p, re.I | re.M)
    for p in (
        r"Remote Server returned '([^'\n]{1,1000})'",
        r"Remote host said:[ \t]*([^\n]{1,1000}(?:\n(?![ \t]*\n|Giving up)[^\n]{1,1000}){0,10})",
        r"SMTP error from remote (?:mail server|mailer) after (?:[A-Z ]{1,20}:<[^>\n]{0,320}>"
        r"|[^:\n]{1,60}):(?:\s{0,40}host [^\n:]{1,300}:)?\s{0,40}(" + _LINES + ")",
        r"\(reason:[ \t]*([^)\n]{1,1000})\)",
        r"\bsaid:[ \t]*(\d{3}[ -]" + _LINES + ")",
        r"^[ \t]*(\d{3}[ -][245]\.\d{1,3}\.\d{1,3}\b[^\n]{0,1000})$",
        r"(Host or domain name not found\.[^\n]{0,1000})",
    )
]
_ADDR = r"([^<>\s@()]{1,64}@[^<>\s@()]{1,255})"
_RECIPIENT_PATTERNS = [
    re.compile(p, re.I | re.M)
    for p in (
        r"^<" + _ADDR + ">:",  # qmail, Yahoo
        r"following address(?:\(es\))? failed:\s{1,40}<?" + _ADDR + r"\s",  # Exim
        r"permanent fatal errors -*\s{1,40}<?" + _ADDR + r"\s",  # Sendmail
        r"RCPT TO:\s{0,5}<" + _ADDR + ">",
        r"(?:failed to these recipients or groups:|(?:could(?: not|n't)|wasn't) be delivered to"
        r"|to the following (?:address|recipient)(?:es|s)?:?)\s{1,40}<?" + _ADDR + r"\s",
        r"<" + _ADDR + ">",
    )
]


def _notice_diagnostic(notice: str) -> str:
    for pattern in _DIAGNOSTIC_PATTERNS:
        match = pattern.search(notice)
        if match:
            return _one_line(match.group(1))
    return ""


def _notice_recipient(notice: str) -> str:
    for pattern in _RECIPIENT_PATTERNS:
        for match in pattern.finditer(notice):
            addr = _clean_addr(match.group(1))
            if addr and not _DAEMON_RE.search(addr):
                return addr
    return ""


def _plain_bounce(msg: Message, notice: str) -> dict:
    """A bounce without a DSN part: diagnostic and recipient found by the patterns above."""
    diagnostic = _notice_diagnostic(notice)
    code, status = _reply_code(diagnostic), _first_enhanced(diagnostic)
    kind = classify_smtp_reply(code, status, diagnostic or _hdr(msg, "Subject") + "\n" + notice)
    if kind == "Unknown" and _PERMANENT_RE.search(notice):
        kind = "HardBounce"
    if _TEMPORARY_RE.search(notice) and kind not in ("DnsError", "VirusNotification"):
        kind = "Transient"
    recipient = _first_addr(_hdr(msg, "X-Failed-Recipients")) or _notice_recipient(notice)
    return {"type": kind, "recipient": recipient, "status": status, "diagnostic": diagnostic}


# ---------------------------------------------------------------------------------------------
# Auto-replies, challenges, address changes, unsubscribe requests

_AUTO_SUBJECT_RE = re.compile(
    r"^(?:automatic reply|auto(?:matic)?[- ]?(?:reply|response)|auto:|out of (?:the )?office"
    r"|on vacation|away from|abwesenheit|r[ée]ponse automatique|respuesta autom[aá]tica)",
    re.I,
)
_AUTO_BODY_RE = re.compile(
    r"out of (?:the )?office|on vacation|on (?:annual |parental |sick )?leave"
    r"|away from (?:the|my) (?:office|desk)|i am (?:currently )?away"
    r"|limited access to (?:my )?e-?mail|i will (?:be )?(?:back|return)",
    re.I,
)
_CHALLENGE_RE = re.compile(
    r"spam ?arrest|boxbe|mailfrontier|please (?:confirm|verify) (?:your|that you|you)"
    r"|(?:confirm|verify) (?:that )?you are (?:a )?(?:human|real person)|approved senders"
    r"|challenge[- ]response|sender verification|to control (?:spam|junk)",
    re.I,
)
_ADDRESS_CHANGE_RE = re.compile(
    r"(?:e-?mail )?address (?:has )?changed|changed (?:my|his|her|their|our) e-?mail address"
    r"|my new (?:e-?mail )?address|new e-?mail address is|no longer (?:in use|valid|active)"
    r"[^\n]{0,80}please (?:use|write|send|contact)",
    re.I,
)
_UNSUBSCRIBE_RE = re.compile(r"(?:(?:re|aw|fwd?):\s*)*(?:unsubscribe|remove me|remove)\b", re.I)


def _is_auto_reply(msg: Message, subject: str, notice: str) -> bool:
    """RFC 3834 and vendor auto-reply headers, "Automatic reply:" subjects, "out of office" text."""
    auto = _hdr(msg, "Auto-Submitted").lower()
    precedence = _hdr(msg, "Precedence").lower()
    flagged = (
        auto.startswith("auto-replied")
        or _hdr(msg, "X-Autoreply").lower() in ("yes", "true", "1")
        or bool(_hdr(msg, "X-Autorespond"))
        or bool(_hdr(msg, "X-Autoresponder"))
        or precedence in ("auto_reply", "auto-reply")
    )
    subject_says = bool(_AUTO_SUBJECT_RE.match(re.sub(r"^(?:re|aw):\s*", "", subject, flags=re.I)))
    body_says = bool(_AUTO_BODY_RE.search(notice[:3000]))
    return flagged or subject_says or body_says


def _other(msg: Message, subject: str, notice: str) -> dict:
    """Everything that is neither an ARF report nor a DSN part."""
    sender = _hdr(msg, "From")
    daemon = bool(_DAEMON_RE.search(sender))
    head = subject + "\n" + notice[:20000]
    auto = _is_auto_reply(msg, subject, notice)
    reply = {"recipient": _first_addr(sender), "diagnostic": subject[:MAX_DIAGNOSTIC]}
    if not daemon and _CHALLENGE_RE.search(head):  # services like Boxbe send on the user's behalf
        recipient = _first_addr(_hdr(msg, "Reply-To")) or reply["recipient"]
        return {**reply, "type": "ChallengeVerification", "recipient": recipient}
    if daemon or (_BOUNCE_MARKERS_RE.search(head) and not auto):
        return _plain_bounce(msg, notice)
    if _UNSUBSCRIBE_RE.fullmatch(subject.strip()) or notice.strip().lower() in ("unsubscribe",):
        return {"type": "Unsubscribe", **reply}
    if _ADDRESS_CHANGE_RE.search(head):
        return {"type": "AddressChange", **reply}
    if auto:
        return {"type": "AutoResponder", **reply}
    return {"type": "Unknown"}


# ---------------------------------------------------------------------------------------------
# Finding the original MessageID

_VERP_HEADERS = (
    "To",
    "Delivered-To",
    "X-Original-To",
    "Envelope-To",
    "X-Envelope-To",
    "Original-Recipient",
    "X-Original-Recipient",
    "Cc",
)
_ID_HEADERS = ("X-PM-Message-Id", "X-Message-ID", "X-MessageID")


def _verp_in_headers(msg: Message | None, names: tuple[str, ...]) -> str:
    for name in names:
        for value in (msg.get_all(name) or []) if msg is not None else []:
            match = _VERP_ADDR_RE.search(str(value))
            if match:
                return match.group(1).lower()
    return ""


def _message_id_header(value: str) -> str:
    match = _MESSAGE_ID_RE.search(value)
    return match.group(0) if match else value.strip()[:500]


def _find_ids(raw: bytes, msg: Message, original: Message | None, found: dict) -> tuple[str, str]:
    """(MessageID, original Message-ID header), preferring VERP over the Message-ID's UUID."""
    header = (
        _message_id_header(_hdr(original, "Message-ID"))
        or _message_id_header(found.get("original_message_id", ""))
        or _message_id_header(_hdr(msg, "In-Reply-To"))
        or _message_id_header(_hdr(msg, "References"))
    )
    candidates = [
        lambda: _verp_in_headers(msg, _VERP_HEADERS),
        lambda: _uuid_or_blank(found.get("envelope_id", "")),
        lambda: _verp_in_headers(original, ("Return-Path", "Sender", "Errors-To")),
        lambda: next(filter(None, (_uuid_or_blank(_hdr(original, h)) for h in _ID_HEADERS)), ""),
        lambda: m.group(1).decode().lower() if (m := _VERP_IN_TEXT_RE.search(raw)) else "",
        lambda: m.group(1).lower() if (m := _MESSAGE_ID_UUID_RE.fullmatch(header)) else "",
    ]
    for candidate in candidates:
        message_id = candidate()
        if message_id:
            return message_id, header
    return "", header


# ---------------------------------------------------------------------------------------------


def parse_report(raw: bytes, verp_message_id: str = "") -> Report:
    """Classify one message received at the bounce address.  Never raises.

    ``verp_message_id`` — the MessageID (or the whole VERP address) from the envelope recipient,
    when the caller knows it — wins over anything found in the message.
    """
    known = _uuid_or_blank(verp_message_id) or message_id_from_verp(verp_message_id)
    try:
        return _parse(raw, known)
    except Exception:  # broken input of any kind: still an answer
        return Report(type="Unknown", message_id=known)


def _parse(raw: bytes, known_message_id: str) -> Report:
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "replace")
    raw = bytes(raw or b"")[:MAX_BYTES]
    msg = email.message_from_bytes(raw)
    subject = _hdr(msg, "Subject")
    parts = _leaf_parts(msg)
    notice, inline_original = _split_inline_copy(_body_text(parts))
    original = _returned_original(parts) or inline_original
    found = (
        _feedback(msg, parts, original)
        or _delivery_status(parts, notice)
        or _other(msg, subject, notice)
    )
    message_id, header = _find_ids(raw, msg, original, found)
    return Report(
        type=found["type"],
        recipient=found.get("recipient", ""),
        status=found.get("status", ""),
        diagnostic=found.get("diagnostic", ""),
        message_id=known_message_id or message_id,
        original_message_id_header=header,
    )
