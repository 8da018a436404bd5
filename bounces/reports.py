"""Classify messages that come back to the VERP return path: bounces, complaints, auto-replies.

Mail goes out with a return path per message and recipient (``bounces.verp``).
What comes back is one of: an RFC 3464 delivery status notification (a multipart/report with a
message/delivery-status part), a non-standard bounce written as plain text (classic Exim, qmail,
Yahoo…), an RFC 5965 ARF feedback report (spam complaint), an auto-reply (RFC 3834, "Out of
Office"…) or a challenge-response verification request.  ``parse_report`` turns the raw bytes into a
``Report`` named with Postmark's bounce Type names (see ``bounces.types``); the replies quoted in
it are classified by ``bounces.replies``, the message read with the helpers of
``bounces.mimeparts``.  It needs no database and never raises.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass
from email.message import Message

from bounces.mimeparts import (
    MAX_DIAGNOSTIC,
    body_text,
    clean_addr,
    decode_part,
    field_blocks,
    first_addr,
    header_text,
    leaf_parts,
    one_line,
)
from bounces.replies import MAX_TEXT, classify_smtp_reply, first_enhanced, reply_code
from bounces.types import (
    ADDRESS_CHANGE,
    AUTO_RESPONDER,
    CHALLENGE_VERIFICATION,
    DNS_ERROR,
    HARD_BOUNCE,
    SPAM_COMPLAINT,
    TRANSIENT,
    UNKNOWN,
    UNSUBSCRIBE,
    VIRUS_NOTIFICATION,
    bounce_type,
)
from bounces.verp import (
    UUID_PATTERN,
    VERP_ADDRESS_RE,
    VERP_IN_TEXT_RE,
    message_id_from_verp,
    message_id_in,
    uuid_or_blank,
)
from core.mimeparams import Message as LinearMessage

MAX_BYTES = 2 * 1024 * 1024  # parse at most this much; the report parts come before the original
_MESSAGE_ID_RE = re.compile(r"<[^<>\s]{1,500}>")
_MESSAGE_ID_UUID_RE = re.compile(rf"<({UUID_PATTERN})@[^<>\s]{{1,255}}>", re.I)


@dataclass(frozen=True)
class Report:
    """What a message received at the bounce address says about an earlier message."""

    type: str  # a Postmark bounce Type name (HardBounce, SpamComplaint, AutoResponder, Unknown…)
    recipient: str = ""  # the failed/complaining recipient, lower-case addr-spec
    # Whether a field of the report names ``recipient`` (Final-Recipient, Original-Rcpt-To,
    # X-Failed-Recipients…), rather than it being guessed from the text or from the returned
    # copy's To (a Cc or Bcc recipient's copy shows others there).
    recipient_stated: bool = False
    status: str = ""  # enhanced status code, e.g. "5.1.1"
    diagnostic: str = ""  # the remote server's text, one short line
    message_id: str = ""  # the original message's MessageID (a UUID)
    original_message_id_header: str = ""  # the original message's Message-ID header


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
    return text[: match.start()], email.message_from_string(rest[:MAX_TEXT], _class=LinearMessage)


def _returned_original(parts: list[Message]) -> Message | None:
    for part in parts:
        ctype = part.get_content_type()
        payload = part.get_payload()
        if ctype in _ORIGINAL_TYPES and isinstance(payload, list) and payload[:1]:
            first = payload[0]
            return first if isinstance(first, Message) else None
        if ctype in _ORIGINAL_HEADER_TYPES:
            return email.message_from_string(decode_part(part), _class=LinearMessage)
    return None


# ---------------------------------------------------------------------------------------------
# RFC 5965 ARF feedback reports

_FEEDBACK_TYPES = {
    "abuse": SPAM_COMPLAINT,
    "fraud": SPAM_COMPLAINT,
    "other": SPAM_COMPLAINT,
    "virus": VIRUS_NOTIFICATION,
    "opt-out": UNSUBSCRIBE,
    "unsubscribe": UNSUBSCRIBE,
    "not-spam": UNKNOWN,
    "auth-failure": UNKNOWN,
}


def _feedback(msg: Message, parts: list[Message], original: Message | None) -> dict | None:
    """An ARF report: Feedback-Type → Type; the complainer from Original-Rcpt-To and friends."""
    part = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    is_arf = str(msg.get_param("report-type", "") or "").lower() == "feedback-report"
    if part is None and not is_arf:
        return None
    fields: dict[str, str] = {}
    for block in field_blocks(part) if part is not None else []:
        for name, value in block.items():
            fields.setdefault(name, value)
    kind = fields.get("feedback-type", "abuse").strip().lower()
    stated = (
        clean_addr(fields.get("original-rcpt-to", ""))
        or clean_addr(fields.get("removal-recipient", ""))
        or first_addr(header_text(original, "X-HmXmrOriginalRecipient"))
    )
    agent = fields.get("user-agent", "")
    return {
        "type": _FEEDBACK_TYPES.get(kind, SPAM_COMPLAINT),
        "recipient": stated or first_addr(header_text(original, "To")),
        "recipient_stated": bool(stated),
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
    blocks = field_blocks(part)
    per_message = blocks[0] if blocks and "reporting-mta" in blocks[0] else {}
    recipients = [b for b in blocks if any(f in b for f in _RECIPIENT_FIELDS)]
    recipients = [b for b in recipients if b is not per_message] or recipients

    def rank(block: dict[str, str]) -> int:
        action = block.get("action", "").lower()
        return 0 if action.startswith("failed") else 1 if action.startswith("delayed") else 2

    block = min(recipients, key=rank) if recipients else {}
    recipient = clean_addr(block.get("final-recipient", "")) or clean_addr(
        block.get("original-recipient", "")
    )
    diagnostic = one_line(block.get("diagnostic-code", "")) or _notice_diagnostic(notice)
    status = first_enhanced(block.get("status", ""))
    specific = first_enhanced(diagnostic)
    if specific and (not status or (status.endswith(".0.0") and specific[0] == status[0])):
        status = specific  # Exim and others say "5.0.0" and give the real code in the text
    action = block.get("action", "").lower()
    if not action:
        action = "delayed" if status.startswith("4") else "failed" if status else ""

    if action.startswith("delayed"):
        kind = classify_smtp_reply(reply_code(diagnostic) or 450, status, diagnostic)
        kind = kind if bounce_type(kind).delay else TRANSIENT
    elif action.startswith("failed") or not action:
        kind = classify_smtp_reply(reply_code(diagnostic), status, diagnostic)
    else:  # delivered, relayed, expanded: not a failure at all
        kind = UNKNOWN
    return {
        "type": kind,
        "recipient": recipient or _notice_recipient(notice),
        "recipient_stated": bool(recipient),
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
            return one_line(match.group(1))
    return ""


def _notice_recipient(notice: str) -> str:
    for pattern in _RECIPIENT_PATTERNS:
        for match in pattern.finditer(notice):
            addr = clean_addr(match.group(1))
            if addr and not _DAEMON_RE.search(addr):
                return addr
    return ""


def _plain_bounce(msg: Message, notice: str) -> dict:
    """A bounce without a DSN part: diagnostic and recipient found by the patterns above."""
    diagnostic = _notice_diagnostic(notice)
    code, status = reply_code(diagnostic), first_enhanced(diagnostic)
    kind = classify_smtp_reply(
        code, status, diagnostic or header_text(msg, "Subject") + "\n" + notice
    )
    if kind == UNKNOWN and _PERMANENT_RE.search(notice):
        kind = HARD_BOUNCE
    if _TEMPORARY_RE.search(notice) and kind not in (DNS_ERROR, VIRUS_NOTIFICATION):
        kind = TRANSIENT
    stated = first_addr(header_text(msg, "X-Failed-Recipients"))
    return {
        "type": kind,
        "recipient": stated or _notice_recipient(notice),
        "recipient_stated": bool(stated),
        "status": status,
        "diagnostic": diagnostic,
    }


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
    auto = header_text(msg, "Auto-Submitted").lower()
    precedence = header_text(msg, "Precedence").lower()
    flagged = (
        auto.startswith("auto-replied")
        or header_text(msg, "X-Autoreply").lower() in ("yes", "true", "1")
        or bool(header_text(msg, "X-Autorespond"))
        or bool(header_text(msg, "X-Autoresponder"))
        or precedence in ("auto_reply", "auto-reply")
    )
    subject_says = bool(_AUTO_SUBJECT_RE.match(re.sub(r"^(?:re|aw):\s*", "", subject, flags=re.I)))
    body_says = bool(_AUTO_BODY_RE.search(notice[:3000]))
    return flagged or subject_says or body_says


def _other(msg: Message, subject: str, notice: str) -> dict:
    """Everything that is neither an ARF report nor a DSN part."""
    sender = header_text(msg, "From")
    daemon = bool(_DAEMON_RE.search(sender))
    head = subject + "\n" + notice[:20000]
    auto = _is_auto_reply(msg, subject, notice)
    reply = {"recipient": first_addr(sender), "diagnostic": subject[:MAX_DIAGNOSTIC]}
    if not daemon and _CHALLENGE_RE.search(head):  # services like Boxbe send on the user's behalf
        recipient = first_addr(header_text(msg, "Reply-To")) or reply["recipient"]
        return {**reply, "type": CHALLENGE_VERIFICATION, "recipient": recipient}
    if daemon or (_BOUNCE_MARKERS_RE.search(head) and not auto):
        return _plain_bounce(msg, notice)
    if _UNSUBSCRIBE_RE.fullmatch(subject.strip()) or notice.strip().lower() in ("unsubscribe",):
        return {"type": UNSUBSCRIBE, **reply}
    if _ADDRESS_CHANGE_RE.search(head):
        return {"type": ADDRESS_CHANGE, **reply}
    if auto:
        return {"type": AUTO_RESPONDER, **reply}
    return {"type": UNKNOWN}


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
            match = VERP_ADDRESS_RE.search(str(value))
            if match:
                return message_id_in(match)
    return ""


def _message_id_header(value: str) -> str:
    match = _MESSAGE_ID_RE.search(value)
    return match.group(0) if match else value.strip()[:500]


def _find_ids(raw: bytes, msg: Message, original: Message | None, found: dict) -> tuple[str, str]:
    """(MessageID, original Message-ID header), preferring VERP over the Message-ID's UUID."""
    header = (
        _message_id_header(header_text(original, "Message-ID"))
        or _message_id_header(found.get("original_message_id", ""))
        or _message_id_header(header_text(msg, "In-Reply-To"))
        or _message_id_header(header_text(msg, "References"))
    )
    candidates = [
        lambda: _verp_in_headers(msg, _VERP_HEADERS),
        lambda: uuid_or_blank(found.get("envelope_id", "")),
        lambda: _verp_in_headers(original, ("Return-Path", "Sender", "Errors-To")),
        lambda: next(
            filter(None, (uuid_or_blank(header_text(original, h)) for h in _ID_HEADERS)), ""
        ),
        lambda: message_id_in(m) if (m := VERP_IN_TEXT_RE.search(raw)) else "",
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
    known = uuid_or_blank(verp_message_id) or message_id_from_verp(verp_message_id)
    try:
        return _parse(raw, known)
    except Exception:  # broken input of any kind: still an answer
        return Report(type=UNKNOWN, message_id=known)


def _parse(raw: bytes, known_message_id: str) -> Report:
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "replace")
    raw = bytes(raw or b"")[:MAX_BYTES]
    msg = email.message_from_bytes(raw, _class=LinearMessage)
    subject = header_text(msg, "Subject")
    parts = leaf_parts(msg)
    notice, inline_original = _split_inline_copy(body_text(parts))
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
        recipient_stated=bool(found.get("recipient_stated")) and bool(found.get("recipient")),
        status=found.get("status", ""),
        diagnostic=found.get("diagnostic", ""),
        message_id=known_message_id or message_id,
        original_message_id_header=header,
    )
